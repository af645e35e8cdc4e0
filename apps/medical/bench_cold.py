"""Cold single-study `mm medical analyze`: a fresh process per run, wall and CPU seconds, per-stage breakdown.

The child runs ``python -m mmcore.cli medical analyze STUDY --timings FILE`` (one torch thread); its
stages come from :mod:`apps.medical.stagetimes`. Rows: interpreter start + `mm` CLI import (torch
included; :func:`~apps.medical.stagetimes.process_age` at ``cmd_analyze``), imports, model load, each
analyse stage, and the exit (parent wall minus the child's age at its last line). CPU is the child's
user + system time (``getrusage``), which a shared machine's load does not inflate the way it does
wall time; the 1-minute load average before and after each run is recorded beside it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREPROCESS_PARTS = ("read volumes (MONAI reader)", "geometry check (DICOM headers)", "registration (SimpleITK MI)",
                    "resample CT onto MR", "intracranial mask")


def bytecode_cached() -> bool:
    """Whether imports read compiled bytecode (``.pyc`` beside the sources, or written on first import).
    A venv installed without ``.pyc`` under ``PYTHONDONTWRITEBYTECODE=1`` compiles every module of
    torch/MONAI/... from source in every process (~40 s instead of ~10 s here)."""
    import torch

    cached = importlib.util.cache_from_source(torch.__file__)
    return Path(cached).exists() or not sys.dont_write_bytecode


def one_run(study: Path, out: Path, bundle: str | None = None, env: dict | None = None) -> dict:
    timings = out.parent / f"{out.name}.timings.json"
    cmd = [sys.executable, "-m", "mmcore.cli", "medical", "analyze", str(study), "--out", str(out), "--no-progress",
           "--threads", "1", "--timings", str(timings)] + (["--bundle", bundle] if bundle else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          cwd=Path(__file__).resolve().parents[2])
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not timings.exists():
        raise RuntimeError(f"cold analyze failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    t = json.loads(timings.read_text())
    st = {k: v["wall_s"] for k, v in t["stages"].items()}
    cpu = {k: v["cpu_s"] for k, v in t["stages"].items()}
    rows: dict[str, tuple[float, float | None]] = {
        "interpreter start + `mm` CLI import (torch included)": (t["process_age_at_start_s"], t.get("cpu_s_at_start"))}
    for k in ("imports (torch, MONAI, app)", "model load (safetensors)", "intake (index DICOM headers)"):
        if k in st:
            rows[k] = (st[k], cpu[k])
    for k in PREPROCESS_PARTS:
        if k in st:
            rows[f"preprocess: {k}"] = (st[k], cpu[k])
    if "preprocess" in st:
        rows["preprocess: orient, spacing, normalise, crop (MONAI)"] = (
            st["preprocess"] - sum(st.get(k, 0.0) for k in PREPROCESS_PARTS),
            cpu["preprocess"] - sum(cpu.get(k, 0.0) for k in PREPROCESS_PARTS))
    for k in ("inference (sliding window + diagnosis)", "invert to native grid (Invertd)", "guards + OOD",
              "write NIfTI mask", "write DICOM SEG", "write report (HTML + PNG)", "write findings.json"):
        if k in st:
            rows[k] = (st[k], cpu[k])
    accounted = t["process_age_at_start_s"] + sum(v[0] for k, v in rows.items() if not k.startswith("interpreter"))
    rows["other (arguments, logging, findings assembly)"] = (max(0.0, t["process_age_at_end_s"] - accounted), None)
    child_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows["exit (interpreter teardown)"] = (max(0.0, wall - t["process_age_at_end_s"]), max(0.0, child_cpu - t["cpu_s"]))
    findings = json.loads((out / "findings.json").read_text()) if (out / "findings.json").exists() else {}
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "load_avg_1min": [load0, os.getloadavg()[0]], "status": findings.get("status"),
            "stages": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in rows.items()}}


def cold_analyze(study: Path, repeats: int = 3, bundle: str | None = None, work: Path | None = None) -> dict:
    """``repeats`` cold runs on ``study`` (the first also warms the OS file cache: reported, not in the medians)."""
    work = Path(work or tempfile.mkdtemp(prefix="mm-bench-cold-"))
    runs = [one_run(study, work / f"run{i}", bundle) for i in range(repeats + 1)]
    timed = runs[1:]
    med = {k: {"wall_s": statistics.median(r["stages"][k]["wall_s"] for r in timed),
               "cpu_s": (statistics.median(r["stages"][k]["cpu_s"] for r in timed)
                         if timed[0]["stages"][k]["cpu_s"] is not None else None)}
           for k in timed[0]["stages"]}
    return {"study": str(study), "repeats": repeats, "bytecode_cached": bytecode_cached(), "cpu_count": os.cpu_count(),
            "wall_s_median": statistics.median(r["wall_s"] for r in timed),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in timed),
            "user_s_median": statistics.median(r["user_s"] for r in timed),
            "sys_s_median": statistics.median(r["sys_s"] for r in timed),
            "load_avg_1min": [r["load_avg_1min"] for r in timed], "first_run_wall_s": runs[0]["wall_s"],
            "stages_median": med, "runs": timed}


def table(r: dict) -> str:
    loads = ", ".join(f"{a:.1f}->{b:.1f}" for a, b in r["load_avg_1min"])
    lines = [f"Cold single-study `mm medical analyze` ({r['study']}; fresh process each; median of {r['repeats']} after one "
             f"file-cache warm-up; {r['cpu_count']} cores; bytecode cache: {'yes' if r['bytecode_cached'] else 'NO'})", "",
             f"wall {r['wall_s_median']:.2f} s, CPU {r['cpu_s_median']:.2f} s (user {r['user_s_median']:.2f} + sys "
             f"{r['sys_s_median']:.2f}); 1-min load average before->after each run: {loads}", "",
             "| stage | wall s | CPU s |", "| --- | --- | --- |"]
    for k, v in r["stages_median"].items():
        cpu = "" if v["cpu_s"] is None else f"{v['cpu_s']:.2f}"
        lines.append(f"| {k} | {v['wall_s']:.2f} | {cpu} |")
    return "\n".join(lines) + "\n"
