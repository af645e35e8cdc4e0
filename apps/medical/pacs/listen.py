"""`mm medical pacs listen`: a DIMSE storage SCP (pynetdicom) feeding the same warm worker.

C-STORE requests are written to ``INBOX/<study>/<series>/<sop>.dcm`` (atomic rename) and answered
at once; a study is queued when no instance of it arrived for ``idle`` seconds, then analysed and
its SEG + SR sent to the destination: a DICOMweb archive (STOW-RS) or a DIMSE peer (C-STORE). The
inbox folder of a study is removed only after its results were stored; a study whose analysis or
delivery failed stays in the inbox and is retried with back-off, so nothing received is lost.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from mmcore.utils.io import publish

from .archive import ArchiveError

log = logging.getLogger(__name__)


class DimseSink:
    """Results back by C-STORE to ``AET@HOST:PORT``."""

    def __init__(self, spec: str, calling_aet: str = "MMCORE") -> None:
        try:
            aet, hostport = spec.split("@")
            host, port = hostport.rsplit(":", 1)
            self.aet, self.host, self.port = aet, host, int(port)
        except ValueError:
            raise ValueError(f"--to-dimse {spec!r}: write AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242") from None
        self.calling = calling_aet
        self.name = f"{self.aet}@{self.host}:{self.port}"

    def store(self, datasets: list, study_uid: str) -> None:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling)
        for ds in datasets:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            raise ArchiveError(f"{self.name}: association for study {study_uid} refused or peer unreachable; will retry",
                               transient=True)
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None or code not in (0x0000, 0xB000, 0xB007, 0xB006):
                    raise ArchiveError(f"{self.name}: C-STORE of {ds.SOPInstanceUID} failed (status "
                                       f"{'none' if code is None else hex(code)}); will retry", transient=True)
        finally:
            assoc.release()


class Listener:
    """Storage SCP on ``host:port`` with AE title ``aet``; :meth:`process_idle` runs finished studies."""

    def __init__(self, worker, sink, inbox: Path, *, host: str = "127.0.0.1", port: int = 11112, aet: str = "MMCORE",
                 idle: float = 10.0, ledger=None) -> None:
        self.worker, self.sink, self.inbox, self.idle, self.ledger = worker, sink, Path(inbox), idle, ledger
        self.host, self.port, self.aet = host, port, aet
        self.last_seen: dict[str, float] = {}
        self.retry_at: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = None
        self.outcomes: list[dict] = []
        self.inbox.mkdir(parents=True, exist_ok=True)
        for d in self.inbox.iterdir():     # studies received before a restart are still due
            if d.is_dir():
                self.last_seen[d.name] = 0.0

    def _on_store(self, event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            folder = self.inbox / study / series
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"{ds.SOPInstanceUID}.part"
            ds.save_as(part, enforce_file_format=True)
            publish(part, part.with_suffix(".dcm"))
        except Exception as exc:  # noqa: BLE001 - tell the sender, keep serving
            log.warning("C-STORE from %s rejected: %s: %s", event.assoc.requestor.ae_title, type(exc).__name__, exc)
            return 0xA700       # out of resources: the sender keeps the instance and may retry
        with self.lock:
            self.last_seen[study] = time.monotonic()
        return 0x0000

    def start(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.aet)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = 1 << 20
        self.server = ae.start_server((self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = self.server.server_address[1]
        log.info("storage SCP %s listening on %s:%d; results to %s", self.aet, self.host, self.port,
                 getattr(self.sink, "name", self.sink))

    def due(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            return [s for s, t in self.last_seen.items() if now - t >= self.idle and self.retry_at.get(s, 0) <= now]

    def process_idle(self) -> list[dict]:
        """Analyse every study idle for ``idle`` seconds; failed ones stay in the inbox with back-off."""
        done = []
        for study in self.due():
            folder = self.inbox / study
            with self.lock:
                seen = self.last_seen.get(study)
            try:
                # the inbox folder is deleted once done: the findings name the study as received
                out = self.worker.process_folder(folder, study, sink=self.sink,
                                                 source=f"dicom://{self.aet}@{self.host}:{self.port}/studies/{study}")
            except ArchiveError as exc:
                out = {"study": study, "outcome": "failed" if exc.transient else "refused", "message": str(exc)}
            except Exception as exc:  # noqa: BLE001 - keep listening
                out = {"study": study, "outcome": "failed", "message": f"{type(exc).__name__}: {exc}"}
            with self.lock:
                arrived_meanwhile = self.last_seen.get(study) != seen
                if out["outcome"] == "failed":
                    n = self.attempts[study] = self.attempts.get(study, 0) + 1
                    self.retry_at[study] = time.monotonic() + min(600.0, 5.0 * 2 ** (n - 1))
                elif not arrived_meanwhile:
                    self.last_seen.pop(study, None)
                    self.retry_at.pop(study, None)
                    if out["outcome"] == "done":
                        shutil.rmtree(folder, ignore_errors=True)
                    elif folder.exists():      # refused: keep the files aside for a person, out of the queue
                        aside = self.inbox.parent / f"{self.inbox.name}-refused"
                        aside.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(folder), str(aside / study))
            (log.info if out["outcome"] == "done" else log.warning)("study %s: %s: %s", study, out["outcome"], out["message"])
            done.append(out)
        self.outcomes += done
        return done

    def serve(self, poll: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.start()
        try:
            while not stop.is_set():
                self.process_idle()
                stop.wait(poll)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
