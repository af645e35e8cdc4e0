"""Watch-mode latency for `mm bench medical`: one cold single call vs the warm watcher, same archive.

Against a throw-away local Orthanc (skipped, with the reason, when it is not installed):

* cold: ``mm medical pacs analyze --url ... --study UID`` in a fresh process (interpreter start,
  imports, model load, pull, analyse, push) - what a cron job or a script pays per study;
* warm: one in-process :class:`~apps.medical.pacs.watch.Watcher` with the model loaded; each demo
  study is uploaded, then polled for (0.5 s interval) until its SR is stored. Per study we report the
  worker's own time (pull + analyse + push) and upload-to-results (which also includes Orthanc's
  ``StableAge`` of 1 s and the polling).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def watch_latency(tmp: Path, bundle: Path | None, n_studies: int = 3) -> dict:
    from ..analyze import load_model
    from ..bundle import DEFAULT_BUNDLE
    from ..demo_data import write_study
    from .archive import Archive
    from .ledger import Ledger
    from .orthanc import LocalOrthanc, missing
    from .watch import Watcher
    from .worker import Worker

    why = missing()
    if why:
        return {"skipped": why}
    bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
    entries = [write_study(tmp / "pacs-data", f"pacs{i}", 880_000 + i, label=i % 4, fmt="dicom") for i in range(n_studies + 1)]
    server = LocalOrthanc(tmp / "orthanc")
    try:
        import pydicom

        def uid_of(entry) -> str:
            first = next(Path(entry["study"]).rglob("*.dcm"))
            return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)

        cold_entry, warm_entries = entries[0], entries[1:]
        server.upload(Path(cold_entry["study"]))
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "mmcore.cli", "medical", "pacs", "analyze", "--url", server.url,
                              "--study", uid_of(cold_entry), "--out", str(tmp / "pacs-cold"), "--bundle", str(bundle)],
                             env={**os.environ, **server.env}, capture_output=True, text=True)
        cold = time.perf_counter() - t0
        if run.returncode != 0:
            return {"error": f"cold call failed: {run.stdout[-300:]} {run.stderr[-300:]}"}
        model = load_model(bundle)
        worker = Worker(model, bundle, tmp / "pacs-warm")
        watcher = Watcher(Archive(server.url, environ=server.env), worker, Ledger(tmp / "pacs-ledger.sqlite", "bench"),
                          feed="orthanc", interval=0.5)
        watcher.cycle()                                       # the cold study's change events: skipped (done)
        per_study, upload_to_result = [], []
        for entry in warm_entries:
            uid = uid_of(entry)
            server.upload(Path(entry["study"]))
            t0 = time.perf_counter()
            outcome = None
            while outcome is None and time.perf_counter() - t0 < 600:
                outcome = next((o for o in watcher.cycle() if o["study"] == uid), None)
                if outcome is None:
                    time.sleep(0.5)
            if not outcome or outcome["outcome"] != "done":
                return {"error": f"warm study {uid}: {outcome}"}
            upload_to_result.append(time.perf_counter() - t0)
            per_study.append(outcome["seconds"])
        return {"cold_single_call_seconds": cold, "warm_worker_seconds": per_study,
                "warm_worker_seconds_median": statistics.median(per_study),
                "warm_upload_to_results_seconds_median": statistics.median(upload_to_result),
                "studies_warm": len(per_study), "registration": True}
    finally:
        server.stop()
