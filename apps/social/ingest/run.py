"""The ingestion driver: detect the format, stream lines/rows, route good rows and rejects.

Each input line is atomic: either every row it yields is written or the line goes to the rejects
file with its 1-based line number and the reason.  A Twitter page line holds many tweets: each
bad tweet is rejected on its own (same line number, reason names the tweet index).  A post whose
image is missing or unreadable is *kept* with the image masked, and the problem is written to the
rejects file too (``media_problems`` in the counts), so nothing is dropped silently.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from .common import CanonicalWriter, IngestStats, Reject, RowError, check_image, dumps
from .generic import ROW_PARSERS
from .reddit import reddit_rows
from .twitter import is_raw_page, page_items, tweet_rows

FORMATS = ("auto", "jsonl", "csv", "parquet", "twitter", "reddit")


def _open_binary(path: Path):
    if path.suffix == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb"), closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    return open(path, "rb")


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".zst")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    with _open_binary(path) as fh:
        for raw in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                return "jsonl"
            if isinstance(obj, dict):
                if is_raw_page(obj) or "author_id" in obj or "conversation_id" in obj:
                    return "twitter"
                if "subreddit" in obj or "created_utc" in obj:
                    return "reddit"
            return "jsonl"
    return "jsonl"


def iter_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the lines that *start* inside the byte range [start, end)."""
    if path.suffix == ".zst" and (start or end is not None):
        raise ValueError(f"{path}: compressed files cannot be split by byte range")
    with _open_binary(path) as fh:
        lineno, pos = 0, 0
        if start:
            fh.seek(0)
            while pos < start:  # count the lines before the range so numbers match a whole-file run
                chunk = fh.read(min(1 << 20, start - pos))
                if not chunk:
                    break
                lineno += chunk.count(b"\n")
                pos += len(chunk)
            fh.seek(start - 1)
            if fh.read(1) != b"\n":  # we are mid-line: that line belongs to the previous range
                rest = fh.readline()
                pos = start + len(rest)
                lineno += 1
            else:
                pos = start
        for raw in fh:
            if end is not None and pos >= end:
                break
            pos += len(raw)
            lineno += 1
            yield lineno, raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _rows_of_line(fmt: str, obj, table: str, mapping: dict, media_root) -> Iterator[list | Reject]:
    if fmt == "twitter":
        if isinstance(obj, dict) and is_raw_page(obj):
            tweets, media, users = page_items(obj)
            for i, tweet in enumerate(tweets):
                try:
                    yield tweet_rows(tweet, media, users, media_root)
                except RowError as exc:
                    yield Reject(0, f"tweet {i}: {exc}", dumps(tweet))
        else:
            yield tweet_rows(obj, {}, {}, media_root) if isinstance(obj, dict) else Reject(0, "line is not a JSON object")
    elif fmt == "reddit":
        yield reddit_rows(obj, media_root)
    else:
        if not isinstance(obj, dict):
            raise RowError("line is not a JSON object")
        yield ROW_PARSERS[table](obj, mapping)


def _check_media(rows: list, base: Path, writer: CanonicalWriter, file: str, lineno: int) -> list:
    """Resolve image paths, check they decode, mask the image of a post when they do not."""
    posts = {r["post_id"]: r for t, r in rows if t == "posts"}
    extra = []
    for table, row in rows:
        if table == "posts" and row.get("image_path") and not any(t == "media" and m["post_id"] == row["post_id"] for t, m in rows):
            extra.append(("media", {"media_id": f"{row['post_id']}:image", "post_id": row["post_id"],
                                    "path": row["image_path"], "kind": "photo", "status": None}))
    rows = rows + extra
    for table, row in rows:
        if table != "media" or row["status"] is not None:
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else base / path
        status = check_image(path)
        row["status"], row["path"] = status, str(path)
        post = posts.get(row["post_id"])
        if post is not None:
            post["image_path"] = str(path) if status == "ok" else None
        if status != "ok":
            writer.reject(Reject(lineno, f"image {status}: {path} (post {row['post_id']} kept, image masked)", "", file),
                          media=True)
    return rows


def ingest_file(writer: CanonicalWriter, path: str | Path, fmt: str = "auto", *, table: str = "posts",
                mapping: dict | None = None, media_root: str | Path | None = None, labels: dict | None = None,
                start: int = 0, end: int | None = None) -> None:
    """Stream one input file (or the byte range [start, end) of it) into ``writer``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    if table not in ROW_PARSERS:
        raise ValueError(f"unknown table '{table}' (posts, users, edges)")
    mapping = mapping or {}
    root = Path(media_root).resolve() if media_root else None
    base = root or path.parent.resolve()
    labels = labels or {}
    name = str(path)

    def emit(lineno: int, rows: list) -> None:
        rows = _check_media(rows, base, writer, name, lineno)
        for table_name, row in rows:
            if labels and table_name in ("posts", "users") and row.get("label") is None:
                row["label"] = labels.get(row["post_id" if table_name == "posts" else "user_id"])
            writer.add(table_name, row)

    for lineno, raw, obj in _records(path, fmt, start, end):
        writer.stats.lines += 1
        if isinstance(obj, Reject):
            writer.reject(Reject(lineno, obj.reason, raw, name))
            continue
        try:
            results = list(_rows_of_line(fmt, obj, table, mapping, root))
        except RowError as exc:
            writer.reject(Reject(lineno, str(exc), raw, name))
            continue
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # odd JSON shapes
            writer.reject(Reject(lineno, f"unexpected structure: {type(exc).__name__}: {exc}", raw, name))
            continue
        for result in results:
            if isinstance(result, Reject):
                writer.reject(Reject(lineno, result.reason, result.raw, name))
            else:
                emit(lineno, result)


def _records(path: Path, fmt: str, start: int, end: int | None) -> Iterator[tuple[int, str, object]]:
    if fmt == "csv":
        with _open_binary(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
            reader = csv.reader(text)
            header = next(reader, None) or []
            for values in reader:
                line = reader.line_num
                raw = ",".join(values)
                if len(values) != len(header):
                    yield line, raw, Reject(line, f"wrong number of fields: {len(values)} (header has {len(header)})")
                    continue
                yield line, raw, {k: (v if v != "" else None) for k, v in zip(header, values)}
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq

        line = 1
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                line += 1  # row i is reported as "line i+1" like a CSV with a header
                yield line, dumps(row), row
        return
    for lineno, raw in iter_lines(path, start, end):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            yield lineno, raw, Reject(lineno, f"malformed JSON: {exc}")
            continue
        yield lineno, raw, obj


def load_labels(path: str | Path | None) -> dict:
    """A CSV of ``id,label`` (post or user IDs) joined onto rows whose label is empty."""
    if not path:
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        return {row[0]: row[1] for row in reader if len(row) >= 2}


def ingest(paths, out_dir: str | Path, fmt: str = "auto", *, table: str = "posts", mapping: dict | None = None,
           media_root=None, labels: str | dict | None = None, chunk_rows: int = 50_000, progress: bool = False) -> IngestStats:
    """Ingest every file in ``paths`` into canonical Parquet tables under ``out_dir``."""
    writer = CanonicalWriter(out_dir, chunk_rows=chunk_rows)
    label_map = labels if isinstance(labels, dict) else load_labels(labels)
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    iterator = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="ingest", unit="file")
    for path in iterator:
        ingest_file(writer, path, fmt, table=table, mapping=mapping, media_root=media_root, labels=label_map)
    return writer.close()
