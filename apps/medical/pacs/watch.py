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
        self.last_error: ArchiveError | None = None      # why the last probe could not decide

    def probe(self) -> bool | None:
        """True: an Orthanc change log answers; False: the archive answers but has none; None: no
        answer to decide on (unreachable, HTTP 401/403/429/5xx; the reason in ``last_error``)."""
        from .archive import explain

        self.last_error = None
        try:
            r = self.archive.session.get(f"{self.root}/changes", params={"limit": 0})
            if r.status_code in (401, 403, 429) or r.status_code >= 500:
                r.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeout, refusals: undecided
            self.last_error = explain(exc, self.archive.name, "probe for Orthanc's change log")
            return None
        try:
            return r.status_code == 200 and "Changes" in r.json()
        except ValueError:       # a 200 that is not JSON: some other server's page
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
        self.lookback_days = lookback_days
        self.feed_name, self.feed = "auto (undecided)", None
        if feed != "auto":
            self._use_feed(feed)
        else:
            self._detect_feed()
        self.stop_requested = False
        self.log: list[dict] = []       # outcomes of this process (for tests, the bench and the summary line)

    def _use_feed(self, feed: str) -> None:
        self.feed_name = feed
        self.feed = OrthancChanges(self.archive) if feed == "orthanc" else QidoPoll(self.archive, self.lookback_days)

    def _detect_feed(self) -> ArchiveError | None:
        """``auto``: Orthanc's change log when the archive has one, QIDO otherwise. Decided only on an
        answer: a watcher started while the archive is down or refusing asks again on every poll
        (choosing QIDO then would miss studies whose StudyDate is older than the lookback). Returns
        why it could not decide, or None."""
        probe = OrthancChanges(self.archive)
        found = probe.probe()
        if found is not None:
            self._use_feed("orthanc" if found else "qido")
        return probe.last_error

    def cycle(self) -> list[dict]:
        """One poll: enqueue new stable studies of our shard, then work through everything due."""
        if self.feed is None:
            why = self._detect_feed()
            if why is not None:
                raise why
            log.info("%s answers: %s feed", self.archive.name, self.feed_name)
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
        """Poll until stopped (SIGINT/SIGTERM finish the current study first); ``once``: one cycle.
        Returns 1 when the last poll could not reach the archive (``--once`` in a script), else 0."""
        def stop(signum, frame):
            self.stop_requested = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if not once else {}
        cycles, wait, failed = 0, self.interval, False
        log.info("watching %s (%s feed, shard %d/%d, model %s)", self.archive.name, self.feed_name, *self.shard,
                 self.worker.version)
        try:
            while not self.stop_requested:
                last = once or (max_cycles and cycles + 1 >= max_cycles)
                try:
                    self.cycle()
                    wait, failed = self.interval, False
                except ArchiveError as exc:
                    wait, failed = min(max(wait * 2, self.interval), 300.0), True
                    text = str(exc).replace("; will retry", "") if last else str(exc)
                    log.warning("%s; %s", text, "that was the last poll" if last else f"next poll in {wait:.0f} s")
                cycles += 1
                if last:
                    break
                end = time.monotonic() + wait
                while time.monotonic() < end and not self.stop_requested:
                    time.sleep(min(0.2, wait))
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return 1 if failed else 0
