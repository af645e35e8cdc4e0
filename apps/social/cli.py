"""``mm social ingest|train|analyze|network|demo|synth`` (heavy imports stay inside the functions)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _mapping(value: str | None) -> dict | None:
    if not value:
        return None
    path = Path(value)
    try:
        return json.loads(path.read_text() if path.exists() else value)
    except ValueError as exc:
        raise SystemExit(f"mm social: --mapping is neither a JSON file nor JSON text: {exc}") from None


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet", "twitter", "reddit"])
    p.add_argument("--mapping", help="column mapping JSON (file or text): canonical field -> source column")
    p.add_argument("--table", default="posts", choices=["posts", "users", "edges"], help="what one generic row is")
    p.add_argument("--media-root", help="folder holding the images the records point to")
    p.add_argument("--labels", help="CSV of id,label joined onto posts/users without a label")


def _add_text_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-backend", default="torch", choices=["torch", "torch-int8", "onnx-int8"],
                   help="MiniLM weights (with --text-encoder minilm): torch = fp32, torch-int8 = torch dynamic int8, "
                        "onnx-int8 = ONNX Runtime int8 (fastest on a CPU; see mmcore.represent.text_quant for the "
                        "recipe and its cosine to fp32); each backend has its own embedding cache file")


def _user_error(message: str) -> int:
    print(f"mm social: {message}", file=sys.stderr)
    return 2


def cmd_ingest(args) -> int:
    """Exit 0: everything read (row rejects are in rejects.csv); 2: a file could not be read in
    full (missing, empty, corrupt, truncated: one line each on stderr); 1: nothing usable at all."""
    from mmcore.utils.io import atomic_write_json

    from .ingest import IngestStats, InputError, ingest

    try:
        if args.workers or args.scheduler:
            from .scale import dask_ingest, make_client

            client = make_client(args.workers, args.scheduler)
            try:
                result = dask_ingest(args.inputs, args.out, client=client, fmt=args.format, table=args.table,
                                     mapping=_mapping(args.mapping), media_root=args.media_root, labels=args.labels,
                                     target_bytes=args.partition_mb << 20)
            finally:
                cluster = getattr(client, "cluster", None) if args.workers and not args.scheduler else None
                client.close()
                if cluster is not None:
                    cluster.close()
            stats = IngestStats(**{k: v for k, v in result.items() if k not in ("partitions", "seconds")})
        else:
            stats = ingest(args.inputs, args.out, args.format, table=args.table, mapping=_mapping(args.mapping),
                           media_root=args.media_root, labels=args.labels, progress=True, engine=args.engine)
    except InputError as exc:  # e.g. the labels file
        return _user_error(str(exc))
    report = stats.to_dict()
    if args.partition_by == "day" and sum(stats.rows.values()):
        from .ingest.partition import partition_by_day

        report["partitioned_by_day"] = partition_by_day(args.out)
        atomic_write_json(Path(args.out) / "ingest_report.json", report)
    print(json.dumps(report, indent=1))
    print(f"canonical tables in {args.out}; rejects: {Path(args.out) / 'rejects.csv'}" if stats.rejected
          or stats.media_problems else f"canonical tables in {args.out}")
    for message in stats.file_errors:
        print(f"mm social: {message}", file=sys.stderr)
    if stats.file_errors:
        return 2
    return 1 if not sum(stats.rows.values()) else 0


def _train_config(args):
    from dataclasses import replace

    from mmcore.train import config_from_args
    from mmcore.utils.device import resolve_device

    from .train import default_train_config

    return replace(config_from_args(args, base=default_train_config()), device=str(resolve_device(args.device)))


def _text_backend_error(args) -> str | None:
    if args.text_backend != "torch" and args.text_encoder != "minilm":
        return f"--text-backend {args.text_backend} needs --text-encoder minilm (the hashed features have no weights)"
    return None


def cmd_train(args) -> int:
    from .dataset import build_tensors, load_tables
    from .train import train_all

    if error := _text_backend_error(args):
        return _user_error(error)
    store = build_tensors(load_tables(args.data), args.text_encoder, args.cache, progress=True, split=args.split,
                          text_backend=args.text_backend)
    cfg = _train_config(args)
    report = train_all(store, Path(cfg.out_dir), cfg)
    print(json.dumps({"post": report["post"], "user": report["user"]}, indent=1))
    return 0


def cmd_analyze(args) -> int:
    from .pipeline import analyze

    if error := _text_backend_error(args):
        return _user_error(error)
    cfg = _train_config(args)
    metrics = analyze(args.inputs, cfg.out_dir, fmt=args.format, mapping=_mapping(args.mapping), media_root=args.media_root,
                      labels=args.labels, text_encoder=args.text_encoder, text_backend=args.text_backend,
                      cache_dir=args.cache, train_config=cfg,
                      zero_shot_labels=args.zero_shot.split(",") if args.zero_shot else None,
                      zero_shot_margin=args.zero_shot_margin, seed=cfg.seed, split=args.split)
    print(json.dumps({"post_models": metrics["post_models"], "user_models": metrics["user_models"]}, indent=1))
    return 0


def cmd_network(args) -> int:
    """Communities, PageRank, k-core and bridges of every account, from the Parquet tables."""
    from .network_scale import NetworkInputError, run

    try:
        figures = run(args.data, args.out, seed=args.seed, resolution=args.resolution, memory_limit=args.memory_limit,
                      leiden_iterations=args.leiden_iterations)
    except NetworkInputError as exc:
        return _user_error(str(exc))
    print(json.dumps({k: figures[k] for k in ("accounts", "user_edges", "communities", "modularity", "max_coreness",
                                              "bridges", "seconds")}, indent=1))
    return 0


def cmd_synth(args) -> int:
    from .synthetic import SyntheticConfig, generate
    from .synthetic_io import write_all

    data = generate(SyntheticConfig(n_posts=args.posts, seed=args.seed))
    written = write_all(data, args.out, raw_formats=not args.canonical_only)
    print(json.dumps({k: str(v) for k, v in written.items()}, indent=1))
    return 0


def cmd_demo(args) -> int:
    from mmcore.utils.device import resolve_device

    print(json.dumps(demo(Path(args.out), str(resolve_device(args.device)), n_posts=args.posts, threads=args.threads,
                          seed=args.seed), indent=1))
    return 0


def demo(out_dir: Path, device: str = "cpu", n_posts: int = 3000, epochs: int = 10, zero_shot: bool = True,
         quick: bool = False, threads: int = 1, seed: int = 0) -> dict:
    """Synthetic data written as twarc2 pages + a follows CSV + a labels CSV, ingested through the
    real adapters, then the whole analysis: models, analytics, Gephi files, predictions, report.

    3,000 posts is about the least that shows what fusion adds (1,200 did not: ~240 test posts of
    which ~50 are XOR posts).  One torch thread: the models are small, and on a busy 2-core box a
    second thread mostly waits (a 1-hop training step ran ~7x faster with 1 thread than with 2)."""
    import time

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        summary = _demo_run(Path(out_dir), device, n_posts, epochs, zero_shot, quick, seed)
    finally:
        torch.set_num_threads(before)  # the thread count is process-wide: leave it as we found it
    return summary | {"seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
                      "report": str(Path(out_dir) / "report.html")}


def _demo_run(out_dir: Path, device: str, n_posts: int, epochs: int, zero_shot: bool, quick: bool, seed: int) -> dict:
    from mmcore.utils.io import atomic_path

    from .ingest import CanonicalWriter, ingest_file, load_labels
    from .pipeline import analyze
    from .synthetic import SyntheticConfig, generate
    from .synthetic_io import write_follows, write_generic, write_media, write_twitter
    from .train import default_train_config

    raw = out_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data = generate(SyntheticConfig(n_posts=n_posts, bot_frac=0.15, seed=seed))
    write_media(data, raw)
    pages, _ = write_twitter(data, raw)
    _, labels = write_generic(data, raw)
    follows = write_follows(data, raw)
    writer = CanonicalWriter(out_dir / "data")
    label_map = load_labels(labels)
    ingest_file(writer, pages, "twitter", media_root=raw / "media", labels=label_map)
    ingest_file(writer, follows, "csv", table="edges")
    stats = writer.close().to_dict()
    with atomic_path(out_dir / "data" / "truth_posts.parquet") as tmp:
        data.truth.to_parquet(tmp, index=False)
    cfg = default_train_config(out_dir=str(out_dir), epochs=epochs, batch_size=256, device=device, seed=seed)
    metrics = analyze([out_dir / "data"], out_dir, train_config=cfg,
                      zero_shot_labels=["misinformation", "reliable"] if zero_shot else None, zero_shot_max=300, ingest_stats=stats,
                      seed=seed,
                      **({"post_models": ("text", "image", "fused"), "user_models": ("text", "graph")} if quick else {}))
    post, user = metrics["post_models"], metrics["user_models"]
    best_uni = max(post[k]["accuracy"] for k in ("text", "image", "graph") if k in post)
    fused = post.get("fused", {}).get("accuracy", float("nan"))
    xor = {k: v.get("X", float("nan")) for k, v in metrics.get("per_group_test", {}).items()}
    return {"posts": metrics["n_posts"], "fused_acc": fused, "best_unimodal_acc": best_uni,
            "fusion_adds_points": round(100 * (fused - best_uni), 1),
            "xor_fused": xor.get("fused", float("nan")), "xor_late_fusion": xor.get("late_fusion", float("nan")),
            "ceiling_all": metrics.get("ceilings_test", {}).get("all", float("nan")),
            "bot_f1_graph": user.get("graph", {}).get("f1_positive", float("nan")),
            "bot_f1_text": user.get("text", {}).get("f1_positive", float("nan")), "seed": seed,
            "zero_shot": metrics.get("zero_shot")}


def register(subparsers) -> None:
    from mmcore.train import add_train_arguments

    p = subparsers.add_parser("social", help="social media analyzer: text + images + interaction graph")
    sub = p.add_subparsers(dest="social_command", metavar="COMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    q = sub.add_parser("ingest", help="raw files -> canonical Parquet tables (+ rejects with line and reason)")
    q.add_argument("inputs", nargs="+")
    q.add_argument("--out", required=True)
    _add_input_args(q)
    q.add_argument("--engine", default="fast", choices=["fast", "stream"],
                   help="fast: Arrow blocks (twarc2 flatten lines without a Python object per row); stream: row by row")
    q.add_argument("--workers", type=int, default=0,
                   help="run on a local Dask cluster of N single-threaded worker processes (partitions in parallel)")
    q.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786); workers must see the paths")
    q.add_argument("--partition-mb", type=int, default=64, help="byte-range partition size of large uncompressed files")
    q.add_argument("--partition-by", default="none", choices=["none", "day"],
                   help="day: posts and edges as hive-partitioned datasets (posts.parquet/day=YYYY-MM-DD/...)")
    q.set_defaults(func=cmd_ingest)

    for name, helptext, func in (("train", "train the fused model and every baseline on canonical data", cmd_train),
                                 ("analyze", "ingest -> encode -> predict -> analytics -> outputs", cmd_analyze)):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("inputs" if name == "analyze" else "data", nargs="+" if name == "analyze" else None,
                       help="canonical data folder" + (" or raw input files" if name == "analyze" else ""))
        q.add_argument("--text-encoder", default="hashed", choices=["hashed", "minilm"])
        _add_text_backend(q)
        q.add_argument("--cache", help="embedding cache folder (default: OUT/cache)")
        q.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
        q.add_argument("--split", default="hash", choices=["hash", "time"], help="posts split by ID hash or by time")
        add_train_arguments(q)
        if name == "analyze":
            _add_input_args(q)
            q.add_argument("--zero-shot", help="comma-separated label names for zero-shot post labelling")
            q.add_argument("--zero-shot-margin", type=float, default=0.08,
                           help="abstain below this corrected cosine margin (0: always answer)")
        q.set_defaults(func=func)

    q = sub.add_parser("network", help="network analytics of a collection of any size, straight from its Parquet tables")
    q.add_argument("data", help="canonical data folder (mm social ingest --out)")
    q.add_argument("--out", required=True)
    q.add_argument("--seed", type=int, default=0, help="Leiden seed")
    q.add_argument("--resolution", type=float, default=1.0, help="Leiden modularity resolution")
    q.add_argument("--leiden-iterations", type=int, default=-1,
                   help="-1: until stable (as analyze); e.g. 2 on a million-post graph (~40x faster, ~5%% lower modularity)")
    q.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit (larger joins spill to disk)")
    q.set_defaults(func=cmd_network)

    q = sub.add_parser("synth", help="write the synthetic data set (canonical + twarc2 + Reddit + generic)")
    q.add_argument("--out", required=True)
    q.add_argument("--posts", type=int, default=3000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--canonical-only", action="store_true")
    q.set_defaults(func=cmd_synth)

    q = sub.add_parser("demo", help="end-to-end demo on embedded synthetic data")
    q.add_argument("--out", default="runs/social-demo")
    q.add_argument("--device", default="auto")
    q.add_argument("--posts", type=int, default=3000)
    q.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    q.add_argument("--seed", type=int, default=0, help="generator and training seed")
    q.set_defaults(func=cmd_demo)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="social")
    register(parser.add_subparsers())
    args = parser.parse_args()
    sys.exit(args.func(args))
