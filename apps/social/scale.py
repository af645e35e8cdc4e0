"""Scale-out on Dask: ingestion and text encoding partitioned across workers, output identical to
the single-process run.

Why Dask: it is already a dependency of the PyData stack we use (pandas/pyarrow), runs the same
code on a laptop thread pool, a local process cluster or a multi-node scheduler.  (Ray would add a
second object store and a heavier runtime for the same map-then-merge pattern.)

Ingestion: every uncompressed line-based file is cut into byte ranges at line boundaries (a range
owns the lines that *start* inside it; line numbers are counted as in a whole-file run), a Parquet
file into runs of row groups (rows numbered as in a whole-file run); a compressed or CSV file is
one partition.  Each partition is one task that reads its
input and writes its rows itself (the fast engine's block files, :mod:`.ingest.columnar`): only
the counts travel back.  The merge adopts the block files in input order and deduplicates them
exactly as one process does (first occurrence by record order), so the output is the same
whatever the number of workers.  ``make_client(workers=N)`` starts a ``distributed.LocalCluster``
of N single-threaded processes; ``make_client(scheduler="tcp://host:8786")`` joins a running
scheduler (its workers must see the input and output paths, e.g. a shared file system).

Text encoding: distinct texts are cut into chunks, one task per chunk; with the MiniLM encoder
every worker writes to and reads from the shared SQLite embedding store
(:class:`mmcore.represent.text_quant.EmbeddingStore`), so a text is encoded once per store, across
restarts.  GNN training scales with ``torchrun`` through the shared Trainer's DDP support.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .ingest.run import detect_format, load_labels


def _row_groups(path: Path) -> int:
    """Row groups of a Parquet file (0 when its footer cannot be read: the file's own task reports it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).num_row_groups
    except (pa.ArrowInvalid, OSError):
        return 0


def plan_partitions(paths, fmt: str = "auto", target_bytes: int = 64 << 20, n_parts: int | None = None,
                    errors: list | None = None) -> list[dict]:
    """One partition per file, per newline-aligned byte range of a large uncompressed line-based
    file, and per run of row groups of a Parquet file (its bytes / ``target_bytes`` pieces at most,
    or ``n_parts``).  A compressed or CSV file is one partition.  A file that cannot be opened is
    skipped and named in ``errors``."""
    from .ingest.source import InputError, sniff

    parts = []
    for index, path in enumerate(map(Path, paths)):
        try:
            kind = detect_format(path) if fmt == "auto" else fmt
            compressed = sniff(path) is not None
        except InputError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        size = path.stat().st_size
        pieces = n_parts or max(1, -(-size // target_bytes))
        if kind == "parquet":  # by row group: start/end are row-group indices
            size = _row_groups(path)
            pieces = min(pieces, size)
        elif compressed or kind == "csv":  # no safe cut: a quoted CSV field may hold a newline
            pieces = 1
        if pieces <= 1:
            parts.append({"path": str(path), "fmt": kind, "start": 0, "end": None, "file_index": index})
            continue
        bounds = [size * i // pieces for i in range(pieces + 1)]
        parts += [{"path": str(path), "fmt": kind, "start": a, "end": b if b < size else None, "file_index": index}
                  for a, b in zip(bounds, bounds[1:]) if b > a]
    return parts


def ingest_partition(part: dict, out_dir: str, options: dict) -> dict:
    """Ingest one partition with the fast engine into ``out_dir`` (block files, not deduplicated:
    the merge does that over every partition in input order).  Runs on a worker: it reads its
    input and writes its output itself; only the counts go back."""
    from .ingest.columnar import ColumnarWriter
    from .ingest.common import reason_key
    from .ingest.fast import fast_ingest_file
    from .ingest.source import InputError

    writer = ColumnarWriter(out_dir)
    writer.rec_base = part["file_index"] << 32  # record order = (file, line) across partitions
    try:
        fast_ingest_file(writer, part["path"], part["fmt"], start=part["start"], end=part["end"], **options)
    except InputError as exc:
        writer.stats.file_errors.append(str(exc))
        key = reason_key(str(exc).split(": ", 1)[-1].split(" after ")[0])
        writer.stats.reasons[key] = writer.stats.reasons.get(key, 0) + 1
    writer.finish_blocks()
    return writer.stats.to_dict()


def make_client(workers: int = 0, scheduler: str | None = None):
    """A Dask client: ``scheduler`` = address of a running scheduler (``tcp://host:8786``), or
    ``workers`` > 0 = a ``distributed.LocalCluster`` of that many single-threaded processes;
    None when neither (the caller runs the tasks on local threads)."""
    if not scheduler and not workers:
        return None
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def dask_ingest(paths, out_dir: str | Path, client=None, fmt: str = "auto", n_parts: int | None = None,
                target_bytes: int = 64 << 20, labels=None, **options) -> dict:
    """Partitioned ingestion: one Dask task per partition (``client.map``, or a Dask bag on local
    threads when ``client`` is None); each writes its own block files, then the columnar writer
    merges them in input order and deduplicates exactly as one process would."""
    from .ingest.columnar import ColumnarWriter
    from .ingest.common import reason_key

    out_dir = Path(out_dir)
    work = out_dir / "_partitions"
    options.setdefault("mapping", None)
    options.setdefault("media_root", None)
    options["labels"] = (labels if isinstance(labels, dict) else load_labels(labels)) if labels is not None else None
    errors: list = []
    parts = plan_partitions(paths, fmt, target_bytes, n_parts, errors=errors)
    dirs = [str(work / f"part-{i:05d}") for i in range(len(parts))]
    t0 = time.perf_counter()
    if client is not None:
        futures = client.map(ingest_partition, parts, dirs, [options] * len(parts), pure=False)
        stats = client.gather(futures)
    else:
        import dask.bag as db

        bag = db.from_sequence(list(zip(parts, dirs)), npartitions=max(1, len(parts)))
        stats = bag.map(lambda pd: ingest_partition(pd[0], pd[1], options)).compute(scheduler="threads")
    t1 = time.perf_counter()
    writer = ColumnarWriter(out_dir)
    writer.stats.file_errors += errors
    for message in errors:  # counted under its reason, as ingest() does
        key = reason_key(message.split(": ", 1)[-1].split(" after ")[0])
        writer.stats.reasons[key] = writer.stats.reasons.get(key, 0) + 1
    for d, st in zip(dirs, stats):
        writer.adopt(d, st)
    result = writer.close().to_dict() | {"partitions": len(parts), "seconds": {
        "partitions": round(t1 - t0, 2), "merge": round(time.perf_counter() - t1, 2)}}
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


_ENCODERS: dict = {}  # one loaded model per worker process and backend


def _worker_encoder(backend: str):
    """This process's MiniLM for ``backend``, loaded once.  Inside a Dask worker, torch and ONNX
    Runtime get one thread each: the cluster has one task slot per worker process, and N workers with
    several threads each would fight over the same cores."""
    from mmcore.represent.text_encoder import MiniLMEncoder

    if backend not in _ENCODERS:
        try:
            from distributed import get_worker

            get_worker()
            import torch

            torch.set_num_threads(1)
        except (ImportError, ValueError):
            pass
        _ENCODERS[backend] = MiniLMEncoder(backend=backend, batch_size=64)
    return _ENCODERS[backend]


def _encode_into_store(texts: list, store: str, backend: str) -> int:
    """Encode the texts the store lacks (on a worker); return how many ran through the model."""
    from mmcore.represent.text_encoder import MiniLMEncoder, text_hash
    from mmcore.represent.text_quant import EmbeddingStore

    model_id = "all-MiniLM-L6-v2" + ("" if backend == "torch" else f"/{backend}")
    hashes = {text_hash(t): t for t in texts}
    db = EmbeddingStore(store, model_id, MiniLMEncoder.dim)
    known = db.get(list(hashes))
    todo = {h: t for h, t in hashes.items() if h not in known}
    if not todo:  # all in the store already: no model to load
        return 0
    enc = _worker_encoder(backend)
    vectors = enc.encode(list(todo.values()))
    enc.cache.clear()  # the store holds them; a worker's memory stays bounded by one chunk
    db.put(dict(zip(todo, vectors)))
    return len(todo)


def dask_encode_minilm(texts, store: str | Path, client=None, backend: str = "torch",
                       chunk: int = 2000) -> tuple[np.ndarray, np.ndarray, int]:
    """(embeddings [N, 384], present [N], texts encoded): distinct non-blank texts in chunks, one
    task per chunk, each worker writing into the shared SQLite store; the result is read back
    from the store by text hash.  Missing/blank texts are absent (zeros)."""
    from mmcore.represent.text_encoder import MiniLMEncoder, text_hash
    from mmcore.represent.text_quant import EmbeddingStore

    texts = list(texts)
    store = str(Path(store).with_suffix(".sqlite"))
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], bool)
    slot: dict[str, int] = {}
    index = np.array([slot.setdefault(t, len(slot)) if p else -1 for t, p in zip(texts, present)], np.int64)
    distinct = list(slot)
    chunks = [distinct[s:s + chunk] for s in range(0, len(distinct), chunk)]
    if client is not None:
        encoded = sum(client.gather(client.map(_encode_into_store, chunks, [store] * len(chunks),
                                               [backend] * len(chunks), pure=False)))
    else:
        encoded = sum(_encode_into_store(c, store, backend) for c in chunks)
    model_id = "all-MiniLM-L6-v2" + ("" if backend == "torch" else f"/{backend}")
    hashes = [text_hash(t) for t in distinct]
    found = EmbeddingStore(store, model_id, MiniLMEncoder.dim).get(hashes)
    table = np.zeros((len(distinct) + 1, MiniLMEncoder.dim), np.float32)
    for i, h in enumerate(hashes):
        table[i] = found[h].numpy()
    return table[index], present, encoded
