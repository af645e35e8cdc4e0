"""Scale-out on Dask: ingestion and text encoding partitioned across workers, output identical to
the single-process run.

Why Dask: it is already a dependency of the PyData stack we use (pandas/pyarrow), runs the same
code on a laptop thread pool, a local process cluster or a multi-node scheduler, and
``dask.delayed`` over plain functions needs no changes to the adapters.  (Ray would add a second
object store and a heavier runtime for the same map-then-merge pattern.)

Ingestion: every uncompressed line-based file is cut into byte ranges at line boundaries (a
range owns the lines that *start* inside it, line numbers are counted as in a whole-file run);
each range is ingested by its own worker into a partition folder; partitions are merged in
input order, keeping the first occurrence of each post/user/media ID, exactly as the streaming
writer does in one process.  Compressed (.zst), CSV and Parquet files are one partition each.

Text encoding: texts are cut into chunks, encoded per worker, and concatenated in order (each
text's features depend on that text alone).  GNN training scales with ``torchrun`` through the
shared Trainer's DDP support (``mm social train`` under ``torchrun --nproc-per-node N``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmcore.utils.io import atomic_path, atomic_write_json

from .ingest.common import CanonicalWriter
from .ingest.run import detect_format, ingest_file, load_labels
from .schema import REJECTS, TABLES

KEYS = {"posts": "post_id", "users": "user_id", "media": "media_id"}


def plan_partitions(paths, fmt: str = "auto", target_bytes: int = 64 << 20, n_parts: int | None = None) -> list[dict]:
    parts = []
    for path in map(Path, paths):
        kind = detect_format(path) if fmt == "auto" else fmt
        size = path.stat().st_size
        splittable = path.suffix != ".zst" and kind not in ("csv", "parquet")
        pieces = n_parts or max(1, -(-size // target_bytes))
        if not splittable or pieces == 1:
            parts.append({"path": str(path), "fmt": kind, "start": 0, "end": None})
            continue
        bounds = [size * i // pieces for i in range(pieces + 1)]
        parts += [{"path": str(path), "fmt": kind, "start": a, "end": b if b < size else None}
                  for a, b in zip(bounds, bounds[1:]) if b > a]
    return parts


def ingest_partition(part: dict, out_dir: str, options: dict) -> dict:
    writer = CanonicalWriter(out_dir, keep_owner=True)
    ingest_file(writer, part["path"], part["fmt"], start=part["start"], end=part["end"], **options)
    return writer.close().to_dict()


def _merge_edges(pieces: list[pa.Table], kept_posts: list[set]) -> pa.Table:
    """Keep an owned edge only where its partition's post row was kept (the first occurrence);
    ownerless edges (follows, anonymous reposts) once per whole key, as the single writer does."""
    import pandas as pd

    frames = []
    for piece, kept in zip(pieces, kept_posts):
        frame = piece.to_pandas()
        owned = frame["_of"].notna()
        frames.append(frame[~owned | frame["_of"].isin(kept)])
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TABLES["edges"].names)
    ownerless = merged["_of"].isna()
    key = ["src_type", "src_id", "relation", "dst_type", "dst_id", "created_at"]
    repeat = ownerless & merged[key].assign(_o=ownerless).duplicated()
    merged = merged[~repeat].drop(columns=["_of"])
    return pa.Table.from_pandas(merged, schema=TABLES["edges"], preserve_index=False)


def merge_partitions(part_dirs: list, out_dir: str | Path, part_stats: list[dict]) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    duplicates = sum(s["duplicates"] for s in part_stats)
    kept_posts: list[set] = [set() for _ in part_dirs]
    for table, schema in [*TABLES.items(), ("rejects", REJECTS)]:
        pieces = [pq.read_table(Path(d) / f"{table}.parquet") for d in part_dirs]
        if table == "edges":
            merged = _merge_edges(pieces, kept_posts)
        else:
            merged = pa.concat_tables(pieces) if pieces else schema.empty_table()
        if table in KEYS and merged.num_rows:
            ids = merged.column(KEYS[table]).to_numpy(zero_copy_only=False)
            _, first = np.unique(ids, return_index=True)
            keep = np.sort(first)
            if table == "posts":
                duplicates += merged.num_rows - len(keep)
                bounds = np.cumsum([0] + [p.num_rows for p in pieces])
                part_of = np.searchsorted(bounds, keep, side="right") - 1
                for i, part in zip(keep, part_of):
                    kept_posts[part].add(ids[i])
            merged = merged.take(pa.array(keep))
        rows[table] = merged.num_rows
        with atomic_path(out_dir / f"{table}.parquet") as tmp:
            pq.write_table(merged.cast(schema), tmp)
    summed = ("lines", "rejected", "media_problems", "duplicate_edges", "posts_collected", "posts_referenced",
              "non_utf8_lines")
    stats = {k: sum(s.get(k, 0) for s in part_stats) for k in summed} | {
        "rows": {t: rows[t] for t in TABLES}, "duplicates": duplicates, "partitions": len(part_dirs),
        "file_errors": [e for s in part_stats for e in s.get("file_errors", [])],
        "truncated": {k: v for s in part_stats for k, v in s.get("truncated", {}).items()}}
    atomic_write_json(out_dir / "ingest_report.json", stats)
    return stats


def dask_ingest(paths, out_dir: str | Path, client=None, fmt: str = "auto", n_parts: int | None = None,
                target_bytes: int = 64 << 20, labels=None, **options) -> dict:
    """Partitioned ingestion on a Dask client (``None``: the local threaded scheduler)."""
    import dask

    out_dir = Path(out_dir)
    work = out_dir / "_partitions"
    if labels is not None:
        options["labels"] = labels if isinstance(labels, dict) else load_labels(labels)
    parts = plan_partitions(paths, fmt, target_bytes, n_parts)
    tasks = [dask.delayed(ingest_partition)(p, str(work / f"part-{i:05d}"), options) for i, p in enumerate(parts)]
    stats = client.compute(tasks, sync=True) if client is not None else list(dask.compute(*tasks))
    result = merge_partitions([work / f"part-{i:05d}" for i in range(len(parts))], out_dir, stats)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _encode_chunk(texts: list, encoder: str, dim: int, cache_dir) -> tuple[np.ndarray, np.ndarray]:
    from .text import encode_texts

    return encode_texts(texts, encoder, cache_dir, dim)


def dask_encode_texts(texts: list, client=None, encoder: str = "hashed", dim: int = 512, chunk: int = 5000,
                      cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    import dask

    texts = list(texts)
    tasks = [dask.delayed(_encode_chunk)(texts[s:s + chunk], encoder, dim, cache_dir) for s in range(0, len(texts), chunk)]
    parts = client.compute(tasks, sync=True) if client is not None else list(dask.compute(*tasks))
    if not parts:
        return np.zeros((0, dim), np.float32), np.zeros(0, bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
