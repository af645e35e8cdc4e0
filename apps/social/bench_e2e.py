"""``mm bench social --end-to-end``: a collection of distinct posts from raw twarc2 JSONL to network
analytics with a cold embedding cache, per stage, at several sizes, fitted and extrapolated to 1M.

    mm bench social --end-to-end --posts 10000,30000,100000 --workers 2

| stage   | what runs (each stage in a fresh process, as a user runs the commands one after another) |
|---------|------------------------------------------------------------------------------------------|
| ingest  | ``mm social ingest FILE --out DATA`` (fast engine); with ``--workers N`` > 1 the same     |
|         | command on a local Dask cluster of N processes (``--partition-mb`` set so the file has at |
|         | least 2N partitions: the command's 64 MB default leaves a small file in one partition)   |
| encode  | the posts' texts from ``DATA/posts.parquet`` through :func:`apps.social.scale.dask_encode_minilm` |
|         | (distinct texts, int8 ONNX MiniLM by default) into a fresh SQLite store: every text runs  |
|         | through the model; N > 1: a LocalCluster of N single-threaded processes                  |
| network | ``mm social network DATA --out NET``: Leiden, PageRank, k-core, bridges (DuckDB + igraph) |
|         | and the collection summary (DuckDB queries over the Parquet files: the report at scale)  |

Every time is the whole stage process, start to exit: interpreter start, imports, cluster
start-up and model loads included, because a user waits for them too; they are the fixed part a
fit's intercept absorbs.  The twarc2 file (``write_twarc2(..., distinct_texts=True)``) and the
one-off ONNX export of the model are made before any timing.  Per stage: wall seconds, CPU seconds
(the process and its workers), the peak RSS of the stage's process (its ``VmHWM``, exact) and of
the whole process tree with its Dask workers (the sum over the processes, sampled every 0.2 s).

Each stage's wall seconds are fitted by least squares as ``intercept + slope * posts`` through the
measured points (R^2 and the largest deviation of a point from the line, relative to the point, show
how linear it is), extrapolated to 1M posts and summed; beside it, the largest size's time scaled
in proportion (no intercept), as a check.  Results, with the date and the command:
``benchmarks/results/social/end_to_end.{json,txt}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmcore.utils.io import atomic_write_json, atomic_write_text

STAGES = ("ingest", "encode", "network")
TARGET_POSTS = 1_000_000
GOAL_S = 2 * 3600


def linear_fit(posts, seconds) -> dict:
    """Least squares ``seconds = intercept + slope * posts`` through the points.  One point: the
    line through the origin.  ``max_rel_dev``: the largest |measured - fitted| / measured."""
    x, y = np.asarray(posts, float), np.asarray(seconds, float)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
    else:
        slope, intercept = float(y.sum() / x.sum()), 0.0
    fitted = intercept + slope * x
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {"points": len(x), "slope_s_per_post": float(slope), "s_per_1k_posts": float(slope * 1000),
            "intercept_s": float(intercept), "r2": r2,
            "max_rel_dev": float(np.max(np.abs(y - fitted) / np.maximum(y, 1e-12))) if len(x) else 0.0}


def extrapolate(fit: dict, posts: int) -> float:
    return fit["intercept_s"] + fit["slope_s_per_post"] * posts


def fit_stages(rows: list[dict], target: int = TARGET_POSTS) -> dict:
    """Per stage: the fit of wall seconds vs posts, its value at ``target`` and the proportional
    check; the totals at ``target`` (sum over stages)."""
    posts = [r["posts"] for r in rows]
    largest = max(range(len(rows)), key=lambda i: posts[i])
    out: dict = {"target_posts": target, "stages": {}}
    for stage in STAGES:
        seconds = [r["stages"][stage]["wall_s"] for r in rows]
        fit = linear_fit(posts, seconds)
        fit["at_target_s"] = extrapolate(fit, target)
        fit["proportional_at_target_s"] = seconds[largest] / posts[largest] * target
        rss = [r["stages"][stage]["tree_peak_rss_mb"] for r in rows]
        fit["tree_peak_rss_at_target_mb_if_linear"] = extrapolate(linear_fit(posts, rss), target)
        out["stages"][stage] = fit
    out["total_at_target_s"] = sum(f["at_target_s"] for f in out["stages"].values())
    out["total_proportional_at_target_s"] = sum(f["proportional_at_target_s"] for f in out["stages"].values())
    out["goal_s"] = GOAL_S
    # a line that falls with size (fixed costs swamping tiny sizes) extrapolates to nonsense: no verdict
    out["linear_growth"] = all(f["slope_s_per_post"] > 0 for f in out["stages"].values())
    out["meets_goal"] = out["total_at_target_s"] <= GOAL_S if out["linear_growth"] else None
    return out


# ---- one stage in its own process -------------------------------------------------------------

def encode_stage(data_dir: str, store: str, workers: int, backend: str, chunk: int) -> dict:
    """The posts' texts -> embeddings (distinct texts through the model, cold store).  ``backend``
    "hashed" is the hashed bag of words on the same chunked path (fast, for tests)."""
    import pyarrow.parquet as pq

    from .scale import dask_encode_minilm, dask_encode_texts, make_client

    texts = pq.read_table(Path(data_dir) / "posts.parquet", columns=["text"]).column("text").to_pylist()
    client = make_client(workers=workers) if workers > 1 else None
    try:
        if backend == "hashed":
            emb, present = dask_encode_texts(texts, client=client, chunk=chunk)
            encoded = len({t for t, p in zip(texts, present) if p})
        else:
            emb, present, encoded = dask_encode_minilm(texts, store, client=client, backend=backend, chunk=chunk)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    return {"posts": len(texts), "present": int(present.sum()), "texts_encoded": int(encoded), "dim": int(emb.shape[1])}


def _child(result: str, argv: list[str]) -> int:
    """Run one stage (``mm ...`` in-process, or ``encode ...``) and write its figures to ``result``."""
    t = time.perf_counter()
    extra: dict = {}
    if argv[0] == "mm":
        from mmcore.cli import main

        rc = main(argv[1:])
    else:
        p = argparse.ArgumentParser(prog="encode")
        p.add_argument("data")
        p.add_argument("store")
        p.add_argument("--workers", type=int, default=1)
        p.add_argument("--backend", default="onnx-int8")
        p.add_argument("--chunk", type=int, default=250)
        a = p.parse_args(argv[1:])
        extra = encode_stage(a.data, a.store, a.workers, a.backend, a.chunk)
        rc = 0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    torch = sys.modules.get("torch")  # only where the stage loaded it: importing it would add to its time
    atomic_write_json(result, {"rc": rc, "s": round(time.perf_counter() - t, 3),
                               "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
                               "peak_rss_mb": _vm_hwm_mb(), "torch_threads": torch.get_num_threads() if torch else None}
                      | extra)
    return rc


def _vm_hwm_mb() -> int | None:
    """This process's peak RSS since its exec.  (Not ``ru_maxrss``: Linux carries the parent's peak
    across fork + exec into it, so every stage would report at least the launcher's size.)"""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def _tree_rss(proc) -> int:
    """RSS of the stage's process and every process under it (its Dask workers)."""
    try:
        total, kids = proc.memory_info().rss, proc.children(recursive=True)
    except Exception:  # the process is gone
        return 0
    for kid in kids:
        try:
            total += kid.memory_info().rss
        except Exception:  # a worker exiting between the listing and the read
            pass
    return total


def run_stage(argv: list[str], run_dir: Path, name: str) -> dict:
    """``argv`` in a fresh process under this interpreter; its figures, wall seconds and the
    sampled peak RSS of its process tree.  A failing stage raises with its log's tail."""
    import psutil

    result, log = run_dir / f"{name}.json", run_dir / f"{name}.log"
    result.unlink(missing_ok=True)
    t = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "apps.social.bench_e2e", "--child", str(result), *argv],
                                stdout=fh, stderr=subprocess.STDOUT)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(watched))
            time.sleep(0.2)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not result.exists():
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"end-to-end stage {name} failed (exit {proc.returncode}); {log}:\n{tail}")
    figures = json.loads(result.read_text())
    if figures["rc"] != 0:
        raise RuntimeError(f"end-to-end stage {name}: `{' '.join(argv)}` exited {figures['rc']}; see {log}")
    return figures | {"wall_s": round(wall, 3), "tree_peak_rss_mb": round(peak / 2**20)}


def stage_argv(stage: str, path: Path, run_dir: Path, workers: int, backend: str, chunk: int,
               leiden_iterations: int | None) -> list[str]:
    data = str(run_dir / "data")
    if stage == "ingest":
        argv = ["mm", "social", "ingest", str(path), "--out", data]
        if workers > 1:
            size_mb = path.stat().st_size / 2**20
            argv += ["--workers", str(workers), "--partition-mb", str(max(1, min(64, int(size_mb / (2 * workers)))))]
        return argv
    if stage == "encode":
        return ["encode", data, str(run_dir / "store.sqlite"), "--workers", str(workers), "--backend", backend,
                "--chunk", str(chunk)]
    argv = ["mm", "social", "network", data, "--out", str(run_dir / "network")]
    return argv + (["--leiden-iterations", str(leiden_iterations)] if leiden_iterations is not None else [])


def one_size(n: int, work: Path, workers: int, backend: str, chunk: int, leiden_iterations: int | None) -> dict:
    import pyarrow.parquet as pq

    from .ingest.twarc_stream import write_twarc2

    path = work / f"twarc2-{n}" / "tweets_flat.jsonl"
    if not path.exists():  # the input is made once and kept (not timed)
        write_twarc2(n, path.parent, distinct_texts=True)
    run_dir = work / f"e2e-{n}-w{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)  # cold: no tables, no embedding store
    run_dir.mkdir(parents=True)
    stages = {s: run_stage(stage_argv(s, path, run_dir, workers, backend, chunk, leiden_iterations), run_dir, s)
              for s in STAGES}
    network = json.loads((run_dir / "network" / "network.json").read_text())
    stages["network"]["parts_s"] = network["seconds"]
    stages["network"] |= {k: network[k] for k in ("accounts", "user_edges", "communities")}
    posts = pq.ParquetFile(run_dir / "data" / "posts.parquet").metadata.num_rows
    return {"posts": posts, "input_lines": n, "input_mb": round(path.stat().st_size / 2**20, 1), "stages": stages,
            "total_wall_s": round(sum(s["wall_s"] for s in stages.values()), 2),
            "total_cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 2)}


def _prepare_model(backend: str) -> None:
    """Export/quantise the ONNX model once, outside every timing (a one-off per installation)."""
    if backend != "hashed":  # in its own process: the launcher stays small
        subprocess.run([sys.executable, "-c", "from mmcore.represent.text_encoder import MiniLMEncoder; "
                        f"MiniLMEncoder(backend={backend!r})"], check=True)


def end_to_end(sizes: list[int], work: Path, out: Path, workers: int = 2, backend: str = "onnx-int8",
               chunk: int = 250, leiden_iterations: int | None = None, command: str = "") -> dict:
    """Each size cold, stage by stage; the fit and the 1M extrapolation rewritten after every size."""
    work, out = Path(work), Path(out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _prepare_model(backend)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
            "machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "nice": os.nice(0), "workers": workers, "backend": backend, "chunk": chunk,
            "leiden_iterations": leiden_iterations if leiden_iterations is not None else -1}
    rows: list[dict] = []
    for n in sorted(sizes):
        rows.append(one_size(n, work, workers, backend, chunk, leiden_iterations))
        print(json.dumps({"posts": rows[-1]["posts"], **{s: rows[-1]["stages"][s]["wall_s"] for s in STAGES}}), flush=True)
        res = {**meta, "sizes": rows, "fit": fit_stages(rows)}
        atomic_write_json(out / "end_to_end.json", res)
        atomic_write_text(out / "end_to_end.txt", table(res) + "\n")
    print(table(res), flush=True)
    return res


def table(res: dict) -> str:
    rows, fit = res["sizes"], res["fit"]
    sizes = [r["posts"] for r in rows]
    head = (f"{'stage':<8}" + "".join(f"{n:>12,}" for n in sizes) + f" | {'s/1k posts':>10} {'intercept':>9} {'R^2':>7}"
            f" {'max dev':>7} | {'1M fit':>8} {'1M prop.':>8}")
    encoder = "hashed bag of words (a test run)" if res["backend"] == "hashed" else f"{res['backend']} MiniLM"
    lines = [f"End to end, distinct texts, cold embedding cache: {res['workers']} worker process(es), {encoder}; "
             f"{res['date']}", f"command: {res['command']}",
             "measured wall seconds per stage (whole process) beside the least-squares line through them", head,
             "-" * len(head)]
    for stage in STAGES:
        f = fit["stages"][stage]
        lines.append(f"{stage:<8}" + "".join(f"{r['stages'][stage]['wall_s']:>11.1f}s" for r in rows)
                     + f" | {f['s_per_1k_posts']:>10.3f} {f['intercept_s']:>8.1f}s {f['r2']:>7.4f} {f['max_rel_dev']:>6.1%}"
                     + f" | {f['at_target_s'] / 3600:>7.2f}h {f['proportional_at_target_s'] / 3600:>7.2f}h")
    lines.append(f"{'total':<8}" + "".join(f"{r['total_wall_s']:>11.1f}s" for r in rows)
                 + f" | {'':>10} {'':>9} {'':>7} {'':>7} | {fit['total_at_target_s'] / 3600:>7.2f}h"
                 f" {fit['total_proportional_at_target_s'] / 3600:>7.2f}h")
    lines.append(f"{'cpu':<8}" + "".join(f"{r['total_cpu_s']:>11.1f}s" for r in rows) + "   (CPU seconds, all processes)")
    lines.append("peak RSS of the process tree, MB (sampled): " + "; ".join(
        f"{stage} " + "/".join(str(r["stages"][stage]["tree_peak_rss_mb"]) for r in rows) for stage in STAGES))
    verdict = {True: "meets", False: "misses", None: "no verdict on"}[fit["meets_goal"]]
    lines.append(f"1M posts: {fit['total_at_target_s'] / 3600:.2f} h by the per-stage fits "
                 f"({fit['total_proportional_at_target_s'] / 3600:.2f} h in proportion to the largest size); "
                 f"{verdict} the goal of {fit['goal_s'] / 3600:.0f} h"
                 + (f" (only {len(rows)} size(s): the fit is not a linearity check)" if len(rows) < 3 else "")
                 + ("" if fit["linear_growth"] else "; a stage's time falls with size: fixed costs dominate these sizes"))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        raise SystemExit(_child(sys.argv[2], sys.argv[3:]))
    raise SystemExit("run it as `mm bench social --end-to-end --posts 10000,30000,100000 [--workers 2]`")
