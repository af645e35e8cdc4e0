"""`mm medical pacs watch`: poll the archive, analyse each new stable study once, with a warm model.

Feeds. ``orthanc``: Orthanc's change log (``GET /changes?since=N``), whose ``StableStudy`` events
say a study stopped receiving instances for Orthanc's ``StableAge`` seconds. ``qido``: any DICOMweb
archive: QIDO-RS by StudyDate (today and ``lookback_days`` before), a study counts as stable when
its instance count did not change between two polls. ``auto`` probes ``<root>/changes``.

Exactly once. New studies of this shard go into the ledger as ``pending`` *before* the feed cursor
moves; each is claimed, processed and finished in the ledger. A killed watcher resumes its own
claims; the archive keeps one SEG + SR per study and model version (deterministic UIDs, skip when
present). Errors never stop the loop: a study that fails transiently backs off (5 s doubling to
10 min), a refused one is recorded and left alone, an unreachable archive or HTTP 401/5xx makes
the whole poll wait and retry.
"""
from __future__ import annotations

import datetime
import logging
import signal
import time

from .archive import Archive, ArchiveError
from .ledger import Ledger, in_shard
from .worker import Worker

log = logging.getLogger(__name__)


class OrthancChanges:
    """Orthanc's change log under the DICOMweb root's parent (``http://host:8042/dicom-web`` -> ``/changes``)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.root = archive.url[: -len("/dicom-web")] if archive.url.endswith("/dicom-web") else archive.url

    def probe(self) -> bool:
        try:
            r = self.archive.session.get(f"{self.root}/changes", params={"limit": 0})
            return r.status_code == 200 and "Changes" in r.json()
        except Exception:  # noqa: BLE001 - anything else: not an Orthanc change log
            return False

    def new_stable_studies(self, ledger: Ledger) -> tuple[list[str], str]:
        """UIDs of studies that became stable since the ledger's cursor, and the new cursor."""
        since = int(ledger.get_cursor("orthanc_changes", "0"))
        uids: list[str] = []
        while True:
            try:
                r = self.archive.session.get(f"{self.root}/changes", params={"since": since, "limit": 500})
                r.raise_for_status()
                page = r.json()
                for c in page.get("Changes", []):
                    if c.get("ChangeType") == "StableStudy":
                        s = self.archive.session.get(f"{self.root}/studies/{c['ID']}")
                        if s.status_code == 404:       # deleted since
                            continue
                        s.raise_for_status()
                        uid = s.json()["MainDicomTags"].get("StudyInstanceUID")
                        if uid and uid not in uids:
                            uids.append(uid)
            except Exception as exc:  # noqa: BLE001
                from .archive import explain

                raise explain(exc, self.archive.name, "read the change log") from None
            since = int(page.get("Last", since))
            if page.get("Done", True):
                return uids, str(since)


class QidoPoll:
    """Any DICOMweb archive: studies of the last days whose instance count held still for one poll."""

    def __init__(self, archive: Archive, lookback_days: int = 1) -> None:
        self.archive, self.lookback = archive, lookback_days
        self.counts: dict[str, int] = {}

    def new_stable_studies(self, ledger: Ledger) -> tuple[list[str], str]:
        start = (datetime.date.today() - datetime.timedelta(days=self.lookback)).strftime("%Y%m%d")
        stable, seen = [], {}
        for row in self.archive.find_studies({"StudyDate": f"{start}-"}):
            seen[row["study_uid"]] = row["instances"]
            if self.counts.get(row["study_uid"]) == row["instances"]:
                stable.append(row["study_uid"])
        self.counts = seen
        return stable, ""


class Watcher:
    def __init__(self, archive: Archive, worker: Worker, ledger: Ledger, *, shard=(0, 1), feed: str = "auto",
                 interval: float = 10.0, lookback_days: int = 1) -> None:
        self.archive, self.worker, self.ledger, self.shard, self.interval = archive, worker, ledger, shard, interval
        if feed == "auto":
            feed = "orthanc" if OrthancChanges(archive).probe() else "qido"
        self.feed_name = feed
        self.feed = OrthancChanges(archive) if feed == "orthanc" else QidoPoll(archive, lookback_days)
        self.stop_requested = False
        self.log: list[dict] = []       # outcomes of this process (for tests, the bench and the summary line)

    def cycle(self) -> list[dict]:
        """One poll: enqueue new stable studies of our shard, then work through everything due."""
        version = self.worker.version
        uids, cursor = self.feed.new_stable_studies(self.ledger)
        for uid in uids:
            if in_shard(uid, self.shard):
                self.ledger.enqueue(uid, version)
        if cursor:
            self.ledger.set_cursor("orthanc_changes", cursor)
        done = []
        for uid in self.ledger.pending(version):
            if self.stop_requested:
                break
            if not in_shard(uid, self.shard) or not self.ledger.claim(uid, version):
                continue
            log.info("study %s: analysing", uid)
            try:
                out = self.worker.process(self.archive, uid)
            except Exception as exc:  # noqa: BLE001 - a bug on one study must not stop the watcher
                out = {"study": uid, "outcome": "failed", "message": f"{type(exc).__name__}: {exc}"}
            state = {"done": "done", "skipped": "done", "refused": "refused"}.get(out["outcome"], "failed")
            self.ledger.finish(uid, version, state, error=None if state == "done" else out["message"],
                               result=out.get("findings"), counted=out["outcome"] == "done")
            (log.info if state == "done" else log.warning)("study %s: %s: %s", uid, out["outcome"], out["message"])
            done.append(out)
        self.log += done
        return done

    def run(self, *, once: bool = False, max_cycles: int | None = None) -> int:
        """Poll until stopped (SIGINT/SIGTERM finish the current study first); ``once``: one cycle."""
        def stop(signum, frame):
            self.stop_requested = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if not once else {}
        cycles, wait = 0, self.interval
        log.info("watching %s (%s feed, shard %d/%d, model %s)", self.archive.name, self.feed_name, *self.shard,
                 self.worker.version)
        try:
            while not self.stop_requested:
                try:
                    self.cycle()
                    wait = self.interval
                except ArchiveError as exc:
                    wait = min(max(wait * 2, self.interval), 300.0)
                    log.warning("%s; next poll in %.0f s", exc, wait)
                cycles += 1
                if once or (max_cycles and cycles >= max_cycles):
                    break
                end = time.monotonic() + wait
                while time.monotonic() < end and not self.stop_requested:
                    time.sleep(min(0.2, wait))
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return 0
