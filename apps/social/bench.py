"""``mm bench social``: stage throughput (posts/s) at several sizes, and the acceptance figures.

    mm bench social --throughput --sizes 10000,100000,1000000
    mm bench social --acceptance --posts 20000 --seeds 5
    mm bench social --acceptance --posts 3000 --text-encoder minilm --text-backend onnx-int8
    mm bench social --leakage --posts 20000 --seed 0
    mm bench social --scale --posts 100000 --workers 2
    mm bench social --end-to-end --posts 10000,30000,100000 --workers 2

End to end (``apps/social/bench_e2e.py``): ingest, cold MiniLM encoding of distinct texts and the
network analytics, each stage in a fresh process at every size, fitted linearly and extrapolated
to 1M posts; results in ``benchmarks/results/social/end_to_end.{json,txt}``.

Scale (``apps/social/bench_scale.py``): fast ingest vs DuckDB ``read_json_auto`` and the streaming
engine, Dask 2 vs 1 worker processes, MiniLM fp32 vs int8 (torch, ONNX Runtime); results in
``benchmarks/results/social/scale.{json,txt}``.

Throughput (``apps/social/throughput.py`` has the stage table): the MiniLM cache is warmed once
with the streaming generator's whole text vocabulary (its rate is compared with the bare encoder's
on the same texts), then each size runs in a fresh process: ingest, encode (a cache lookup by
text hash for every post), graph, train (fixed mini-batch steps), predict, export.  Results:
``benchmarks/results/social/throughput.{json,csv,txt,png}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

from mmcore.utils.io import atomic_path, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)
OUT = Path("benchmarks/results/social")


def _timer():
    t = time.perf_counter()
    return lambda: time.perf_counter() - t


def throughput(sizes: list[int], work: Path, out: Path, vocab: int = 1024, train_steps: int = 20, threads: int = 1,
               timeout_s: float | None = None) -> list[dict]:
    """Warm the MiniLM cache with the generator's vocabulary, then run each size in its own process."""
    import subprocess
    import sys

    import torch

    from .synthetic_stream import text_vocabulary
    from .throughput import warm_cache

    torch.set_num_threads(threads)
    cache = work / "cache"
    texts, _, _ = text_vocabulary(vocab)
    encoder = warm_cache(texts, cache)
    logger.info(f"cache warmed: {encoder['distinct_texts']} distinct texts (the generator's whole vocabulary) "
          f"in {encoder['warm_seconds']} s through MiniLMEncoder.encode = {encoder['our_encode_cold_sentences_per_s']} "
          f"sentences/s; bare MiniLM forward on the same texts {encoder['raw_minilm_sentences_per_s']} sentences/s "
          f"-> raw/ours = {encoder['raw_over_ours']} (target <= 1.5)")
    rows = []
    for n in sizes:
        result = work / f"size-{n}.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "apps.social.throughput", "--one", str(n), "--work", str(work / f"tp-{n}"),
               "--cache", str(cache), "--json", str(result), "--train-steps", str(train_steps), "--vocab", str(vocab),
               "--threads", str(threads)]
        t = _timer()
        try:
            subprocess.run(cmd, check=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(f"{n} posts: stopped after {timeout_s} s")
            break
        rows.append(json.loads(result.read_text()) | {"wall_s": round(t(), 1)})
        print(json.dumps(rows[-1]), flush=True)
        _write_throughput(rows, encoder, out, threads)
    return rows


def _write_throughput(rows: list[dict], encoder: dict, out: Path, threads: int) -> None:
    import pandas as pd

    from .throughput import scaling_table

    frame = pd.DataFrame(rows)
    frame.drop(columns=["train_loss_first_last"]).to_csv(out / "throughput.csv", index=False)
    _plot(frame, out / "throughput.png")
    table = scaling_table(rows)
    meta = {"machine": platform.platform(), "python": platform.python_version(), "torch_threads": threads}
    atomic_write_json(out / "throughput.json", {**meta, "encoder": encoder, "sizes": rows})
    atomic_write_text(out / "throughput.txt", table + "\n")
    print(table, flush=True)


def acceptance(n_posts: int, work: Path, epochs: int = 12, threads: int = 1, seed: int = 0, split: str = "hash",
               text_encoder: str = "hashed", text_backend: str = "torch") -> dict:
    """One seed of the acceptance run: the generator at ``seed``, every model trained with ``seed``,
    the figures on the test split, and the data's single-feature leakage beside them.  The text
    features: hashed bag of words (default) or MiniLM through ``text_backend`` (cache in ``work/cache``)."""
    import torch

    from .dataset import build_tensors, load_tables
    from .leakage import leakage_table
    from .synthetic import ceilings, generate
    from .synthetic_io import write_canonical
    from .train import default_train_config, train_all

    torch.set_num_threads(threads)
    t = _timer()
    data = generate(n_posts=n_posts, seed=seed)
    write_canonical(data, work / "data")
    tables = load_tables(work / "data")
    leak = leakage_table(tables)
    store = build_tensors(tables, text_encoder, work / "cache", split=split, text_backend=text_backend)
    report = train_all(store, work / "out", default_train_config(epochs=epochs, batch_size=512, device="cpu", seed=seed),
                       fanouts=(15,), post_models=("image", "text", "graph", "fused"),
                       user_models=("text", "metadata", "graph"))
    test = store.post_split == "test"
    labels = store.post_label.numpy()
    group = data.truth.set_index("post_id").group.reindex(store.posts.post_id).to_numpy()
    acc = {k: v["accuracy"] for k, v in report["post"].items()}
    xor = test & (group == "X")
    per_xor = {k: float((p.argmax(1)[xor] == labels[xor]).mean()) for k, p in report["post_probs"].items()}
    ceil = ceilings(data.truth, store.posts.post_id[test])
    best_uni = max(acc[k] for k in ("text", "image", "graph"))
    bots = report["user"]
    max_auc = {task: float(part.auc.max()) for task, part in leak.groupby("task")}
    return {"posts": n_posts, "seed": seed, "split": split, "text_encoder": text_encoder,
            "text_backend": text_backend if text_encoder == "minilm" else None, "test_posts": int(test.sum()), "seconds": round(t(), 1),
            "accuracy": acc, "ceilings": ceil, "xor_accuracy": per_xor, "bots": bots,
            "leakage_max_auc": max_auc, "leakage": leak.to_dict("records"),
            "checks": {"fused_minus_best_unimodal": acc["fused"] - best_uni,
                       "ceiling_minus_fused": ceil["all"] - acc["fused"],
                       "xor_fused": per_xor["fused"], "xor_late_fusion": per_xor.get("late_fusion"),
                       "bot_f1_graph": bots["graph"]["f1_positive"], "bot_f1_text": bots["text"]["f1_positive"],
                       "bot_f1_graph_minus_text": bots["graph"]["f1_positive"] - bots["text"]["f1_positive"],
                       "max_single_feature_auc": max(max_auc.values())}}


def summarise(runs: list[dict]) -> dict:
    """mean and sd (ddof=1; 0 for one run) of every check over the seeds."""
    import numpy as np

    out = {}
    for key in runs[0]["checks"]:
        values = np.array([r["checks"][key] for r in runs if r["checks"][key] is not None], float)
        out[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "values": values.round(4).tolist()}
    return out


def leakage(n_posts: int, seed: int, work: Path) -> str:
    from .dataset import load_tables
    from .leakage import format_table, leakage_table
    from .synthetic import generate
    from .synthetic_io import write_canonical

    data = generate(n_posts=n_posts, seed=seed)
    write_canonical(data, work / "data")
    return format_table(leakage_table(load_tables(work / "data")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mm bench social")
    p.add_argument("--throughput", action="store_true")
    p.add_argument("--acceptance", action="store_true")
    p.add_argument("--leakage", action="store_true", help="print each single feature's AUC for each label")
    p.add_argument("--scale", action="store_true", help="ingest vs DuckDB, Dask workers, int8 MiniLM (one run)")
    p.add_argument("--no-dask", action="store_true", help="scale: skip the LocalCluster runs")
    p.add_argument("--encode-texts", type=int, default=256, help="scale: distinct texts timed per MiniLM backend")
    p.add_argument("--end-to-end", action="store_true",
                   help="ingest + cold encode + network per stage at each --posts size, extrapolated to 1M")
    p.add_argument("--workers", type=int, default=2,
                   help="end-to-end: Dask worker processes for ingest and encode (1: one process, no Dask)")
    p.add_argument("--leiden-iterations", type=int, default=None,
                   help="end-to-end: passed to mm social network (default: its own, -1 = until stable)")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--posts", default="20000", help="posts (end-to-end: a comma-separated list of sizes)")
    p.add_argument("--seed", type=int, default=0, help="first seed (generator and training)")
    p.add_argument("--seeds", type=int, default=1, help="acceptance: run seeds seed .. seed+N-1, report mean and sd")
    p.add_argument("--split", default="hash", choices=["hash", "time"], help="acceptance: split posts by ID hash or by time")
    p.add_argument("--text-encoder", default="hashed", choices=["hashed", "minilm"], help="acceptance: post text features")
    p.add_argument("--text-backend", default=None, choices=["torch", "torch-int8", "onnx-int8"],
                   help="acceptance with --text-encoder minilm: fp32 (torch, the default) or int8 MiniLM weights; "
                        "end-to-end: the encoder (default onnx-int8)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--vocab", type=int, default=1024, help="distinct texts of the throughput generator")
    p.add_argument("--train-steps", type=int, default=20, help="mini-batch steps timed by the train stage")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared box)")
    p.add_argument("--size-timeout", type=float, default=None, help="seconds allowed for one size")
    p.add_argument("--work", default="runs/bench-social")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        sizes = [int(v) for v in str(args.posts).split(",") if v.strip()]
    except ValueError:
        p.error(f"--posts {args.posts}: not a number or a comma-separated list of numbers")
    if args.end_to_end:
        from .bench_e2e import end_to_end

        end_to_end(sizes, Path(args.work) / "end_to_end", out, workers=args.workers,
                   backend=args.text_backend or "onnx-int8", leiden_iterations=args.leiden_iterations,
                   command="mm bench social " + " ".join(sys.argv[1:] if argv is None else argv))
        return 0
    if len(sizes) != 1:
        p.error(f"--posts {args.posts}: one number (a comma-separated list only with --end-to-end)")
    args.posts = sizes[0]
    args.text_backend = args.text_backend or "torch"
    if args.scale:
        from .bench_scale import scale

        scale(args.posts, Path(args.work) / "scale", out, dask=not args.no_dask, encode_texts=args.encode_texts,
              threads=max(2, args.threads))
        return 0
    if not (args.throughput or args.acceptance or args.leakage):
        args.throughput = True
    meta = {"machine": platform.platform(), "python": platform.python_version()}
    if args.leakage:
        print(leakage(args.posts, args.seed, Path(args.work) / f"leakage-{args.posts}-{args.seed}"))
    if args.acceptance:
        runs = []
        text = "" if args.text_encoder == "hashed" else f"_minilm-{args.text_backend}"
        name = f"acceptance_{args.posts}" + ("_time" if args.split == "time" else "") + text
        for seed in range(args.seed, args.seed + args.seeds):
            res = acceptance(args.posts, Path(args.work) / f"acceptance-{args.posts}-{seed}{text}", args.epochs,
                             args.threads, seed, args.split, args.text_encoder, args.text_backend)
            runs.append(res)
            print(json.dumps({"seed": seed, **res["checks"]}), flush=True)
            summary = summarise(runs)
            atomic_write_json(out / f"{name}.json", {**meta, "seeds": [r["seed"] for r in runs], "summary": summary,
                                                     "runs": runs})
        print(json.dumps({k: f"{v['mean']:.3f} +- {v['sd']:.3f}" for k, v in summarise(runs).items()}, indent=1))
    if args.throughput:
        sizes = [int(v) for v in args.sizes.split(",")]
        throughput(sizes, Path(args.work), out, args.vocab, args.train_steps, args.threads, args.size_timeout)
    return 0


def _plot(frame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in ("ingest", "encode", "graph", "predict", "export"):
        ax.plot(frame.posts, frame[f"{stage}_s"], marker="o", label=stage)
    ax.plot(frame.posts, frame.train_s / frame.train_seed_posts * frame.posts * 0.6, marker="o", ls="--",
            label="train (one epoch, extrapolated)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("posts")
    ax.set_ylabel("seconds per stage")
    ax.set_title("social pipeline: time per stage (linear growth = slope 1)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
