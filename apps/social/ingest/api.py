"""``ingest()``: every input file into the canonical tables, with the fast or the streaming engine
(a module of its own: :mod:`.fast` builds on :mod:`.run`, and this chooses between them)."""
from __future__ import annotations

from pathlib import Path

from .common import CanonicalWriter, IngestStats, reason_key
from .run import ingest_file, load_labels
from .source import InputError

ENGINES = ("fast", "stream")


def ingest(paths, out_dir: str | Path, fmt: str = "auto", *, table: str = "posts", mapping: dict | None = None,
           media_root=None, labels: str | dict | None = None, chunk_rows: int = 50_000, progress: bool = False,
           engine: str = "fast") -> IngestStats:
    """Ingest every file in ``paths`` into canonical Parquet tables under ``out_dir``.

    ``engine``: ``fast`` (Arrow blocks, :mod:`.fast`) or ``stream`` (one row dict at a time,
    :class:`CanonicalWriter`); both write the same tables, rejects and counts.
    A file that cannot be read is recorded in ``stats.file_errors`` (one line each) and the other
    files are still ingested; the caller decides the exit status (``mm social ingest``: 2)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown ingest engine '{engine}' (one of {', '.join(ENGINES)})")
    if engine == "fast":
        from .columnar import ColumnarWriter
        from .fast import fast_ingest_file

        writer, one_file = ColumnarWriter(out_dir, chunk_rows=chunk_rows), fast_ingest_file
    else:
        writer, one_file = CanonicalWriter(out_dir, chunk_rows=chunk_rows), ingest_file
    label_map = labels if isinstance(labels, dict) else load_labels(labels)
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    iterator = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="ingest", unit="file")
    for path in iterator:
        try:
            one_file(writer, path, fmt, table=table, mapping=mapping, media_root=media_root, labels=label_map)
        except InputError as exc:
            writer.stats.file_errors.append(str(exc))
            key = reason_key(str(exc).split(": ", 1)[-1].split(" after ")[0])
            writer.stats.reasons[key] = writer.stats.reasons.get(key, 0) + 1
    return writer.close()
