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
the client looks the texts up in the SQLite embedding store
(:class:`mmcore.represent.text_quant.EmbeddingStore`), sends only the missing ones, and writes
the vectors the workers return into it, so a text is encoded once per store, across restarts (the
workers need no access to the store).  GNN training scales with ``torchrun`` through the shared
Trainer's DDP support.
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


# A local cluster's own upkeep, idle, on this 2-core box (CPU seconds per second over 15 s, 2-4
# runs, pinned to one core): with the defaults 0.045-0.055 in the client process (scheduler and
# nannies) + 0.069-0.080 in 2 workers; with these two settings 0.019-0.023 + 0.016-0.017.  The event-loop tick (every 20 ms in
# every process) only warns of a blocked loop; the statistical profiler samples the task thread every
# 10 ms for the dashboard, which a LocalCluster started here does not serve.
LOCAL_CLUSTER_CONFIG = {"distributed.admin.tick.interval": "1s", "distributed.worker.profile.enabled": False}


def make_client(workers: int = 0, scheduler: str | None = None):
    """A Dask client: ``scheduler`` = address of a running scheduler (``tcp://host:8786``), or
    ``workers`` > 0 = a ``distributed.LocalCluster`` of that many single-threaded processes;
    None when neither (the caller runs the tasks on local threads)."""
    if not scheduler and not workers:
        return None
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # read when the scheduler and the nannies start
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
    """This process's MiniLM for ``backend``, loaded once.  Inside a Dask worker, torch, ONNX Runtime
    and the tokenizer get one thread each: the cluster has one task slot per worker process, and N
    workers with several threads each would fight over the same cores."""
    import os

    from mmcore.represent.text_encoder import MiniLMEncoder

    if backend not in _ENCODERS:
        try:
            from distributed import get_worker

            get_worker()
            import torch

            torch.set_num_threads(1)
            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the Rust tokenizer's batch thread pool
        except (ImportError, ValueError):
            pass
        _ENCODERS[backend] = MiniLMEncoder(backend=backend, batch_size=64)
    return _ENCODERS[backend]


def _encode_chunk_minilm(texts: list, backend: str) -> np.ndarray:
    """[len(texts), 384] float32 through this process's model (on a worker: no store access, so
    a remote worker needs no path to it; the client writes what comes back)."""
    enc = _worker_encoder(backend)
    vectors = enc.encode(texts).numpy()
    enc.cache.clear()  # the client keeps them; a worker's memory stays bounded by one chunk
    return vectors


def _rows_by_slot(index: np.ndarray, n_slots: int):
    """``rows(slots)``: every row of ``index`` that holds one of ``slots``, grouped slot by slot in
    the order given, and ``counts`` (rows per slot), to scatter one vector per slot into the rows."""
    valid = np.flatnonzero(index >= 0)
    perm = valid[np.argsort(index[valid], kind="stable")]
    counts = np.bincount(index[valid], minlength=n_slots)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def rows(slots: np.ndarray) -> np.ndarray:
        c = counts[slots]
        before = np.concatenate([[0], np.cumsum(c)[:-1]])
        return perm[np.repeat(offsets[slots] - before, c) + np.arange(c.sum())]

    return rows, counts


def dask_encode_minilm(texts, store: str | Path, client=None, backend: str = "torch",
                       chunk: int = 2000, flush: int = 4096, lookup: int = 50_000,
                       window: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(embeddings [N, 384], present [N], texts encoded): the distinct non-blank texts the SQLite
    store lacks, longest first, in chunks of ``chunk``, one task per chunk; each task returns its
    vectors and the client, the store's only writer, adds them (``flush`` vectors per transaction),
    so a text is encoded once per store, across restarts.  Missing/blank texts are absent (zeros).

    Why the workers do not write the store themselves (as they did): the store's single write lock,
    one commit per task from every worker and a read-back of every vector through SQLite at the end
    cost CPU that a fully busy 2-core box takes from the model.  Why longest first: texts of one
    length share a batch (less padding), and the cheap chunks come last, so workers finish together.
    The chunks depend only on the texts and ``chunk``, never on the number of workers: the int8
    backends quantise activations per batch, so a text's vector depends on its batch, and the same
    chunks give identical output.  Memory: the output and one chunk's vectors (no second copy per
    distinct text); the store is read ``lookup`` hashes at a time.  At most ``window`` chunks (default:
    4 per worker thread) are in flight: the client sends the next chunk's texts as one comes back,
    so neither the scheduler nor the client holds every text at once (at 1M distinct texts the
    whole map was a 63 MiB task graph)."""
    import torch

    from mmcore.represent.text_encoder import MiniLMEncoder, minilm_model_id, text_hash
    from mmcore.represent.text_quant import EmbeddingStore

    texts = list(texts)
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], bool)
    slot: dict[str, int] = {}
    index = np.array([slot.setdefault(t, len(slot)) if p else -1 for t, p in zip(texts, present)], np.int64)
    distinct = list(slot)
    del slot
    hashes = [text_hash(t) for t in distinct]
    rows, counts = _rows_by_slot(index, len(distinct))
    out = np.zeros((len(texts), MiniLMEncoder.dim), np.float32)

    def fill(slots, vectors: np.ndarray) -> None:
        slots = np.asarray(slots, np.int64)
        out[rows(slots)] = np.repeat(vectors, counts[slots], axis=0)

    db = EmbeddingStore(Path(store).with_suffix(".sqlite"), minilm_model_id(backend), MiniLMEncoder.dim)
    todo: list[int] = []
    for s in range(0, len(hashes), lookup):
        known = db.get(hashes[s:s + lookup])
        found = [i for i in range(s, min(s + lookup, len(hashes))) if hashes[i] in known]
        if found:
            fill(found, torch.stack([known[hashes[i]] for i in found]).numpy())
        todo += [i for i in range(s, min(s + lookup, len(hashes))) if hashes[i] not in known]
    todo.sort(key=lambda i: -len(distinct[i]))  # stable: ties keep first-seen order
    chunks = [np.array(todo[s:s + chunk], np.int64) for s in range(0, len(todo), chunk)]
    pending: dict = {}

    def take(slots: np.ndarray, vectors: np.ndarray) -> None:
        fill(slots, vectors)
        pending.update({hashes[i]: torch.from_numpy(v) for i, v in zip(slots.tolist(), vectors)})
        if len(pending) >= flush:
            db.put(pending)
            pending.clear()

    batches = ([distinct[i] for i in c.tolist()] for c in chunks)
    if client is not None and chunks:
        from distributed import as_completed

        window = window or max(4, 4 * sum(client.nthreads().values()))
        queue = zip(chunks, batches)
        where: dict = {}

        def submit():
            for c, batch in queue:  # the next chunk, if any
                future = client.submit(_encode_chunk_minilm, batch, backend, pure=False)
                where[future.key] = c
                return future
            return None

        done = as_completed([f for f in (submit() for _ in range(window)) if f is not None], with_results=True)
        for future, vectors in done:
            take(where.pop(future.key), vectors)
            future.release()  # a result leaves its worker's memory once it is in the output
            following = submit()
            if following is not None:
                done.add(following)
    else:
        for c, batch in zip(chunks, batches):
            take(c, _encode_chunk_minilm(batch, backend))
    db.put(pending)
    return out, present, len(todo)
