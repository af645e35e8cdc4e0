"""Ingest + encode on Dask, 1 vs 2 local worker processes, side by side (issue 19's scale-out figure).

One round = for each worker count a fresh ``LocalCluster`` (start-up and the model load on every
worker are not timed: ``_warm``), then, timed: :func:`apps.social.scale.dask_ingest` of the twarc2
file and :func:`apps.social.scale.dask_encode_minilm` of the ingested posts' distinct texts into a
fresh SQLite store (cold: every text runs through the model).  Rounds alternate 1, 2, 1, 2 ... so a
burst of load from another tenant hits both alike; the better time of each count is kept.  The
outputs of both counts are compared (Parquet tables equal, embeddings equal to 1e-6).  Beside the
wall seconds, each stage's CPU seconds of the client process (with the LocalCluster's scheduler and
nannies) and of the workers: where a 2-worker run loses against twice the 1-worker rate.

    python -m apps.social.bench_dask --posts 20000 --rounds 1 --out benchmarks/results/social/dask_pipeline.json
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

TABLES = ("posts", "users", "edges", "rejects")


def _warm_encoder(backend: str) -> None:
    """On a worker: import and load MiniLM once (the first task would otherwise pay it inside the timing)."""
    from apps.social.scale import _worker_encoder

    _worker_encoder(backend).encode(["warm up"])


def _cpu_s() -> float:
    """CPU seconds of this process so far (on a worker: the worker's; on the client: the client's,
    with the scheduler and the nannies of a LocalCluster, which run in its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_run(path: Path, out: Path, workers: int, backend: str, chunk: int) -> dict:
    import pandas as pd

    from .scale import dask_encode_minilm, dask_ingest, make_client

    shutil.rmtree(out, ignore_errors=True)
    client = make_client(workers=workers)
    cpu: dict = {}
    try:
        client.run(_warm_encoder, backend)
        w0, c0, t0 = client.run(_cpu_s), _cpu_s(), time.perf_counter()
        dask_ingest([path], out, client=client, n_parts=2 * workers)
        w1, c1, t1 = client.run(_cpu_s), _cpu_s(), time.perf_counter()
        texts = pd.read_parquet(out / "posts.parquet", columns=["text"])["text"].tolist()
        emb, present, encoded = dask_encode_minilm(texts, out / "store.sqlite", client=client, backend=backend, chunk=chunk)
        w2, c2, t2 = client.run(_cpu_s), _cpu_s(), time.perf_counter()
        for stage, (wa, wb, ca, cb) in {"ingest": (w0, w1, c0, c1), "encode": (w1, w2, c1, c2)}.items():
            cpu[f"{stage}_client_cpu_s"] = round(cb - ca, 2)
            cpu[f"{stage}_workers_cpu_s"] = round(sum(wb[k] - wa[k] for k in wb), 2)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    np.save(out / "embeddings.npy", emb)
    return {"ingest_s": round(t1 - t0, 2), "encode_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "posts": len(texts),
            "texts_encoded": int(encoded), "present": int(present.sum())} | cpu


def pipeline_figures(path: Path, work: Path, backend: str = "onnx-int8", rounds: int = 1, chunk: int = 250) -> dict:
    import pandas as pd

    best: dict[int, dict] = {}
    for _ in range(rounds):
        for workers in (1, 2):
            run = one_run(path, work / f"w{workers}", workers, backend, chunk)
            print(json.dumps({"workers": workers, **run}), flush=True)
            if workers not in best or run["total_s"] < best[workers]["total_s"]:
                best[workers] = run
    same_tables = all(pd.read_parquet(work / "w1" / f"{t}.parquet").equals(pd.read_parquet(work / "w2" / f"{t}.parquet"))
                      for t in TABLES)
    e1, e2 = np.load(work / "w1" / "embeddings.npy"), np.load(work / "w2" / "embeddings.npy")
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "input": str(path), "backend": backend,
           "rounds": rounds, "chunk": chunk, "workers_1": best[1], "workers_2": best[2],
           "two_over_one_total": round(best[1]["total_s"] / best[2]["total_s"], 2),
           "two_over_one_ingest": round(best[1]["ingest_s"] / best[2]["ingest_s"], 2),
           "two_over_one_encode": round(best[1]["encode_s"] / best[2]["encode_s"], 2),
           "identical_tables": bool(same_tables), "embeddings_max_abs_diff": float(np.abs(e1 - e2).max()) if e1.size else 0.0}
    return out


def main(argv=None) -> int:
    from .ingest.twarc_stream import write_twarc2

    p = argparse.ArgumentParser(prog="python -m apps.social.bench_dask", description=__doc__.split("\n")[0])
    p.add_argument("--posts", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--backend", default="onnx-int8", choices=["torch", "torch-int8", "onnx-int8"])
    p.add_argument("--chunk", type=int, default=250, help="distinct texts per encode task (smaller: better balance)")
    p.add_argument("--work", default="runs/bench-dask")
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    args = p.parse_args(argv)
    work = Path(args.work)
    path = work / f"twarc2-{args.posts}" / "tweets_flat.jsonl"
    if not path.exists():
        write_twarc2(args.posts, path.parent, distinct_texts=True)
    res = pipeline_figures(path, work, args.backend, args.rounds, args.chunk)
    print(json.dumps(res, indent=1))
    if args.out:
        from mmcore.utils.io import atomic_write_json

        atomic_write_json(Path(args.out), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
