"""Watch-mode latency for `mm bench medical`: one cold single call vs the warm watcher, same archive.

Against a throw-away local Orthanc (skipped, with the reason, when it is not installed):

* cold: ``mm medical pacs analyze --url ... --study UID`` in a fresh process (interpreter start,
  imports, model load, pull, analyse, push) - what a cron job or a script pays per study;
* warm: one in-process :class:`~apps.medical.pacs.watch.Watcher` with the model loaded; each demo
  study is uploaded, then polled for (0.5 s interval) until its SR is stored. Per study we report the
  worker's own time (pull + analyse + push) and upload-to-results (which also includes Orthanc's
  ``StableAge`` of 1 s and the polling).

Per warm study the worker's time is also split into stages (wall seconds, median over the warm
studies): the worker's own clocks (pull, analyse, results, STOW) and, inside analyse, timers put
around the pipeline's steps for the duration of the run (:class:`StageClock`; a step the code no
longer has is left out, never an error).
"""
from __future__ import annotations

import collections
import importlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# (module, attribute, stage) timed inside analyse; "Class.method" patches a method
ANALYSE_STEPS = (
    ("apps.medical.analyze", "read_study", "intake (index + select series)"),
    ("apps.medical.transforms", "LoadSeriesd.__call__", "load volumes (MONAI PydicomReader)"),
    ("apps.medical.registration", "register_rigid", "CT->MR registration (SimpleITK MI)"),
    ("apps.medical.registration", "resample_to", "CT resample onto the MR grid"),
    ("apps.medical.intracranial", "IntracranialMaskd.__call__", "intracranial mask"),
    ("apps.medical.analyze", "predict", "model (sliding window + diagnosis)"),
    ("apps.medical.transforms", "invert_to_native", "invert to the native grid"),
    ("apps.medical.ood", "study_features", "out-of-domain features"),
    ("apps.medical.outputs", "write_dicom_seg", "DICOM SEG write (analyse)"),
    ("apps.medical.outputs", "write_report", "HTML report"),
    ("apps.medical.outputs", "write_nifti_mask", "NIfTI mask"),
)


class StageClock:
    """Within ``with``: wall seconds spent in each of ``steps`` (summed per stage into ``seconds``)."""

    def __init__(self, steps=ANALYSE_STEPS) -> None:
        self.steps, self.seconds, self._undo = steps, collections.defaultdict(float), []

    def __enter__(self) -> StageClock:
        for module, attr, stage in self.steps:
            owner, _, name = attr.rpartition(".")
            try:
                target = importlib.import_module(module)
                target = getattr(target, owner) if owner else target
                original = getattr(target, name)
            except (ImportError, AttributeError):
                continue
            setattr(target, name, self._timed(original, stage))
            self._undo.append((target, name, original))
        return self

    def _timed(self, fn, stage: str):
        seconds = self.seconds

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - t0
        return timed

    def __exit__(self, *exc) -> None:
        for target, name, original in reversed(self._undo):
            setattr(target, name, original)

    def take(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        self.seconds.clear()
        return out


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) used so far by this process, or by process ``pid`` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


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
        warm_up_s = worker.warm_up()                          # as `mm medical pacs watch` does at start-up
        watcher = Watcher(Archive(server.url, environ=server.env), worker, Ledger(tmp / "pacs-ledger.sqlite", "bench"),
                          feed="orthanc", interval=0.5)
        watcher.cycle()                                       # the cold study's change events: skipped (done)
        per_study, upload_to_result, stages, cpu = [], [], [], []
        load_before = os.getloadavg()
        with StageClock() as clock:
            for entry in warm_entries:
                uid = uid_of(entry)
                server.upload(Path(entry["study"]))
                t0 = time.perf_counter()
                outcome = None
                clock.take()
                cpu0 = (_cpu_seconds(), _cpu_seconds(server.proc.pid))
                while outcome is None and time.perf_counter() - t0 < 600:
                    outcome = next((o for o in watcher.cycle() if o["study"] == uid), None)
                    if outcome is None:
                        time.sleep(0.5)
                if not outcome or outcome["outcome"] != "done":
                    return {"error": f"warm study {uid}: {outcome}"}
                upload_to_result.append(time.perf_counter() - t0)
                per_study.append(outcome["seconds"])
                cpu.append((_cpu_seconds() - cpu0[0], _cpu_seconds(server.proc.pid) - cpu0[1]))
                stages.append(_stages(outcome, clock.take()))
        worker.close()
        names = list(dict.fromkeys(k for row in stages for k in row))
        return {"cold_single_call_seconds": cold, "warm_worker_seconds": per_study,
                "warm_worker_seconds_median": statistics.median(per_study),
                "warm_upload_to_results_seconds_median": statistics.median(upload_to_result),
                "warm_stages_seconds_median": {k: round(statistics.median(row.get(k, 0.0) for row in stages), 3) for k in names},
                "warm_stages_seconds": stages, "worker_warm_imports_seconds": worker.warm_seconds, "worker_warm_up_study_seconds": round(warm_up_s, 3),
                # CPU seconds per warm study (upload to results): the watcher process and Orthanc; on a busy
                # machine they move far less than wall time does (load average given for that reason)
                "warm_cpu_seconds": [{"watcher": round(a, 3), "orthanc": round(b, 3)} for a, b in cpu],
                "warm_cpu_seconds_median": round(statistics.median(a + b for a, b in cpu), 3),
                "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)], "cpu_count": os.cpu_count(),
                "studies_warm": len(per_study), "registration": True}
    finally:
        server.stop()


def _stages(outcome: dict, inside: dict[str, float]) -> dict[str, float]:
    """One warm study's wall seconds by stage: pull, the steps inside analyse (and the rest of it),
    results (SEG finalise + SR), STOW, and what is left (the skip check, bookkeeping)."""
    analyse = outcome.get("analyse_seconds", 0.0)
    row = {"pull (QIDO + WADO-RS to disk)": outcome.get("download_seconds", 0.0), **inside,
           "analyse: rest (preprocess glue, findings)": round(analyse - sum(inside.values()), 3),
           "SEG finalise + SR build": outcome.get("results_seconds", 0.0), "STOW-RS push": outcome.get("push_seconds", 0.0)}
    row["other (skip check, bookkeeping)"] = round(outcome["seconds"] - analyse - sum(
        v for k, v in row.items() if k in ("pull (QIDO + WADO-RS to disk)", "SEG finalise + SR build", "STOW-RS push")), 3)
    row["total"] = outcome["seconds"]
    return row
