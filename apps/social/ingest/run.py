"""The ingestion driver: detect the format, stream lines/rows, route good rows and rejects.

Each input line is atomic: either every row it yields is written or the line goes to the rejects
file with its 1-based line number and the reason.  A Twitter page line holds many tweets: each
bad tweet is rejected on its own (same line number; the reason names the tweet's index after the
reason itself, so the histogram stays keyed by reason).  A post whose image is missing or
unreadable is *kept* with the image masked, and the problem is written to the rejects file too
(``media_problems`` in the counts), so nothing is dropped silently.

Whole-file problems (missing, empty, corrupt, not the compression its name says) raise
:class:`InputError` from :func:`ingest_file`; :func:`ingest` records each in
``stats.file_errors`` and goes on with the other files.  A compressed stream that ends early keeps
every line read before the cut and records ``stats.truncated[file] = lines read``.
"""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .common import CanonicalWriter, Reject, RowError, check_image, dumps
from .generic import ROW_PARSERS
from .reddit import reddit_rows
from .source import (
    DecodeCounter,
    InputError,
    TruncatedInput,
    byte_lines,
    open_binary,
    strip_compression_suffix,
)
from .twitter import gone_rows, is_raw_page, page_items, tweet_rows

FORMATS = ("auto", "jsonl", "csv", "parquet", "twitter", "reddit")
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (131,072 characters) aborts on one long post


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: input file is empty")


def detect_format(path: Path) -> str:
    path = Path(path)
    _check_file(path)
    name = strip_compression_suffix(path.name)
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    try:
        with open_binary(path) as fh:
            for raw in fh:
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
    except TruncatedInput:
        return "jsonl"  # the first record decoded; ingest_file reports the cut with its line count
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return "jsonl"


def iter_lines(path: Path, start: int = 0, end: int | None = None,
               decode: DecodeCounter | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the lines that *start* inside the byte range [start, end)
    (:func:`.source.byte_lines`, decoded).

    Text is UTF-8; undecodable lines are decoded with U+FFFD and counted by ``decode``."""
    decode = decode or DecodeCounter()
    for lineno, raw in byte_lines(path, start, end):
        yield lineno, decode(raw)


def _rows_of_line(fmt: str, obj, table: str, mapping: dict, media_root) -> Iterator[list | Reject]:
    if fmt == "twitter":
        if isinstance(obj, dict) and is_raw_page(obj):
            collected, referenced, media, users, errors = page_items(obj)
            for i, (tweet, kind) in enumerate([(t, "collected") for t in collected] + [(t, "referenced") for t in referenced]):
                try:
                    yield tweet_rows(tweet, media, users, media_root, kind)
                except RowError as exc:
                    where = f"data[{i}]" if kind == "collected" else f"includes.tweets[{i - len(collected)}]"
                    yield Reject(0, f"{exc} [at {where}]", dumps(tweet))
            for error in errors:
                rows = gone_rows(error)
                if rows:
                    yield rows
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
        if table != "media":
            continue
        if row["status"] == "not_in_includes":
            writer.reject(Reject(lineno, f"media key not in includes.media: {row['media_id']} (post {row['post_id']} "
                                         "kept, image masked)", "", file), media=True)
            continue
        if row["status"] is not None:
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


def handle_record(writer, lineno: int, raw: str, obj, fmt: str, table: str, mapping: dict, root, base: Path,
                  labels: dict, name: str) -> None:
    """One input record (a parsed line, or a :class:`Reject` for a line that did not parse) into
    ``writer`` (anything with ``add_line`` and ``reject``, see :class:`CanonicalWriter`)."""
    writer.stats.lines += 1
    if isinstance(obj, Reject):
        writer.reject(Reject(lineno, obj.reason, raw, name))
        return
    try:
        results = list(_rows_of_line(fmt, obj, table, mapping, root))
    except RowError as exc:
        writer.reject(Reject(lineno, str(exc), raw, name))
        return
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # odd JSON shapes
        writer.reject(Reject(lineno, f"unexpected structure: {type(exc).__name__}: {exc}", raw, name))
        return
    for result in results:
        if isinstance(result, Reject):
            writer.reject(Reject(lineno, result.reason, result.raw, name))
            continue
        rows = _check_media(result, base, writer, name, lineno)
        for table_name, row in rows:
            key = "post_id" if table_name == "posts" else "user_id"
            if labels and table_name in ("posts", "users") and row.get("label") is None and row.get(key) is not None:
                row["label"] = labels.get(row[key])
        writer.add_line(rows)


def ingest_file(writer: CanonicalWriter, path: str | Path, fmt: str = "auto", *, table: str = "posts",
                mapping: dict | None = None, media_root: str | Path | None = None, labels: dict | None = None,
                start: int = 0, end: int | None = None) -> None:
    """Stream one input file (or the byte range [start, end) of it; of a Parquet file, the row
    groups [start, end)) into ``writer``.

    Raises :class:`InputError` (one line, names the file) when the file is missing, empty, corrupt
    or truncated; rows read before a truncation or corruption are kept (``stats.truncated``)."""
    path = Path(path)
    _check_file(path)
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
    decode = DecodeCounter()

    lines_before, read = writer.stats.lines, 0
    try:
        for lineno, raw, obj in _records(path, fmt, start, end, decode):
            read = lineno
            handle_record(writer, lineno, raw, obj, fmt, table, mapping, root, base, labels, name)
    except TruncatedInput as exc:
        writer.stats.truncated[name] = read
        raise TruncatedInput(f"{path}: {exc} after {read} lines; the {read} lines read were ingested") from None
    except InputError as exc:
        writer.stats.truncated[name] = read
        raise InputError(f"{path}: {exc} after {read} lines; the {read} lines read were ingested") from None
    finally:
        writer.stats.non_utf8_lines += decode.bad_lines
    if writer.stats.lines == lines_before and start == 0 and end is None:
        raise InputError(f"{path}: no records in the file (only blank lines or a header)")


def _csv_lines(path: Path, decode: DecodeCounter) -> Iterator[str]:
    with open_binary(path) as fh:
        for raw in fh:
            yield decode(raw)


def _records(path: Path, fmt: str, start: int, end: int | None, decode: DecodeCounter) -> Iterator[tuple[int, str, object]]:
    if fmt == "csv":
        limit = csv.field_size_limit()
        csv.field_size_limit(min(sys.maxsize, CSV_FIELD_LIMIT))
        try:
            reader = csv.reader(_csv_lines(path, decode))
            header = next(reader, None) or []
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    yield reader.line_num, "", Reject(reader.line_num, f"bad CSV row: {exc}")
                    continue
                line = reader.line_num
                raw = ",".join(values)
                if len(values) != len(header):
                    yield line, raw, Reject(line, f"wrong number of fields: {len(values)} (header has {len(header)})")
                    continue
                yield line, raw, {k: (v if v != "" else None) for k, v in zip(header, values)}
        finally:
            csv.field_size_limit(limit)
        return
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:  # start/end: row-group indices (a partition of a parallel run), rows numbered as in the whole file
            pf = pq.ParquetFile(path)
            end = pf.num_row_groups if end is None else end
            line = 1 + sum(pf.metadata.row_group(g).num_rows for g in range(start))
            batches = pf.iter_batches(batch_size=10_000, row_groups=list(range(start, end)))
            for batch in batches:
                for row in batch.to_pylist():
                    line += 1  # row i is reported as "line i+1" like a CSV with a header
                    yield line, dumps(row), row
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})") from None
        return
    for lineno, raw in iter_lines(path, start, end, decode):
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
    if not Path(path).is_file():
        raise InputError(f"{path}: labels file not found")
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        return {row[0]: row[1] for row in reader if len(row) >= 2}
