"""The fast ingest engine: blocks of lines -> DuckDB's JSON reader -> pyarrow compute -> Parquet.

twarc2 ``flatten`` JSONL (one tweet per line, the common form of a large collection) and Reddit
NDJSON (plain or compressed) are parsed a block of lines at a time by DuckDB's JSON reader against
:data:`.fast_twitter.TWEET_SCHEMA` / :data:`.fast_reddit.REDDIT_SCHEMA`, held to the row adapters'
types by :mod:`.duck_json`, and converted with pyarrow compute (:func:`.fast_twitter.tweet_tables`,
:func:`.fast_reddit.reddit_tables`): no Python object per row.  A whole uncompressed file is read by
DuckDB itself (:class:`.duck_json.DuckJsonStream`) as long as its rows and the blocks' lines line
up; the blocks are still read here, for line numbers and the raw text of lines left to adapters.  When the parser refuses a block
(a line of the wrong shape), the block is halved until the refusing lines are alone (at most
:data:`LEAF` lines a piece); those lines, and the rows marked as not plain posts, go through the
row adapters of :mod:`.run` exactly as in the streaming engine, so every reject keeps its line
number and reason.  Other formats (generic JSONL, CSV, Parquet, raw twarc2 pages) go through the
row adapters into the same columnar writer.
Output, rejects and statistics are those of the streaming engine (``engine="stream"``); a test
compares the two on every sample file and on fuzzed lines.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .columnar import ColumnarWriter
from .common import Reject
from .duck_json import DuckJsonReader, DuckJsonStream, RawLines, strict_table
from .fast_reddit import REDDIT_KINDS, REDDIT_SCHEMA, reddit_tables
from .fast_twitter import TWEET_KINDS, TWEET_SCHEMA, tweet_tables
from .source import DecodeCounter, InputError, TruncatedInput, byte_lines, sniff

BATCH_LINES = 20_000
BLOCK_BYTES = 16 << 20
LEAF = 16
ASCII_SPACE = np.array([9, 11, 12, 13, 32], np.uint8)  # \t \v \f \r and space (bytes.strip)
SCHEMAS = {"twitter": (TWEET_SCHEMA, TWEET_KINDS), "reddit": (REDDIT_SCHEMA, REDDIT_KINDS)}  # the formats with a fast path


def line_offsets(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each newline-separated line of ``data``."""
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    return np.r_[0, nl + 1], np.r_[nl, len(data)]


def _check_utf8(data: bytes) -> None:
    """Raise ArrowInvalid unless ``data`` is valid UTF-8 (Arrow's validator: ~10x Python's decode)."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)


class FastFile:
    """One input file (or byte range) into a :class:`ColumnarWriter`."""

    def __init__(self, writer: ColumnarWriter, path: Path, fmt: str, options: dict) -> None:
        from .run import handle_record

        self.writer, self.path, self.fmt, self.name = writer, path, fmt, str(path)
        self.options = options
        self.handle = handle_record
        self.decode = DecodeCounter()
        labels = options["labels"]
        self.labels = (pa.array(list(labels), pa.string()), pa.array(list(labels.values()), pa.string())) if labels else None
        self.base = writer.rec_base
        self.fast_rows = self.slow_lines = self.read = 0
        self.duck: DuckJsonReader | None = None
        self.stream: DuckJsonStream | None = None  # DuckDB reading the whole file, while rows and lines line up

    def slow(self, lineno: int, raw: bytes) -> None:
        """A line through the row adapters (the streaming engine's per-line path)."""
        import json

        text = self.decode(bytes(raw).rstrip(b"\r\n"))  # raw may be a view into the block
        if not text.strip():
            return
        self.writer.begin_line(self.base + lineno)
        try:
            obj = json.loads(text)
        except ValueError as exc:
            obj = Reject(lineno, f"malformed JSON: {exc}")
        o = self.options
        self.handle(self.writer, lineno, text, obj, self.fmt, o["table"], o["mapping"], o["root"], o["base"],
                    o["labels"], self.name)
        self.slow_lines += 1

    def read_json(self, data, raw: RawLines, parsed: pa.Table | None = None) -> tuple[pa.Table, np.ndarray]:
        """(the block parsed against the format's schema, rows to leave to the adapter): DuckDB's
        reader held to the adapters' types (:mod:`.duck_json`), the raw lines searched where a
        value's text alone cannot tell a number from a string.  ``parsed``: the block's rows as the
        whole-file stream read them."""
        if parsed is None:
            if self.duck is None:
                self.duck = DuckJsonReader(*SCHEMAS[self.fmt])
            parsed = self.duck.read(data)
        return strict_table(parsed, *SCHEMAS[self.fmt], raw=raw)

    def parse(self, data, starts: np.ndarray, ends: np.ndarray, numbers: np.ndarray,
              parsed: pa.Table | None = None) -> None:
        """Parse non-blank lines ``data[starts[i]:ends[i]]`` (bytes or a view; one newline
        between two lines, perhaps one after the last); halve the group while the parser refuses it."""
        try:
            if parsed is None:  # (DuckDB's own read refuses bad UTF-8 anywhere in a line)
                _check_utf8(data)  # the adapters count every line with bad UTF-8, in any field
            raw = RawLines(data, starts)
            table, suspect = self.read_json(data, raw, parsed)
            if table.num_rows != len(numbers):
                raise ValueError("a line holds more than one JSON value")
            if self.fmt == "twitter":
                tables, slow = tweet_tables(table, numbers + self.base, self.labels, suspect)
            else:
                tables, slow = reddit_tables(table, numbers + self.base, self.labels, self.options["root"], raw, suspect)
        except (pa.ArrowException, ValueError, UnicodeDecodeError):
            if len(starts) <= LEAF:
                for i, lineno in enumerate(numbers):
                    self.slow(int(lineno), data[starts[i]:ends[i]])
                return
            for part in (slice(0, len(starts) // 2), slice(len(starts) // 2, None)):
                s, e = starts[part], ends[part]
                self.parse(data[s[0]:e[-1]], s - s[0], e - s[0], numbers[part])
            return
        for name, part in tables.items():
            self.writer.add_table(name, part)
        self.writer.stats.lines += int((~slow).sum())
        self.fast_rows += int((~slow).sum())
        for i in np.flatnonzero(slow):
            self.slow(int(numbers[i]), data[starts[i]:ends[i]])

    def flush_block(self, block, first: int, nl: np.ndarray) -> None:
        """A block of whole lines numbered from ``first`` (bytes or a view; a final newline ends
        the last line), ``nl`` the positions of its newlines (:func:`plain_blocks`)."""
        if not len(block):
            return
        buf = np.frombuffer(block, np.uint8)
        closed = int(buf[-1] == 10)
        inner = nl[:-1] if closed else nl  # the newlines between two lines
        if self.fmt in SCHEMAS and buf[0] == 123 and (buf[inner + 1] == 123).all():
            # every line opens an object (none blank): the block is parsed whole
            n_lines = len(inner) + 1
            self.read = first + n_lines - 1
            starts, ends = np.r_[0, inner + 1], np.r_[inner, len(buf) - closed]
            parsed = None
            if self.stream is not None:
                parsed = self.stream.take(n_lines, block[starts[0]:ends[0]], block[starts[-1]:ends[-1]])
                self.stream = self.stream if parsed is not None else None
            self.parse(block, starts, ends, first + np.arange(n_lines, dtype=np.int64), parsed)
            self.writer.end_block()
            return
        if self.stream is not None:  # DuckDB skips blank lines and reads other values: rows and lines part
            self.stream.close()
            self.stream = None
        self.flush(bytes(block[:-1] if closed else block), first)

    def flush_lines(self, lines: list[bytes], first: int) -> None:
        """Consecutive lines (without their line ends) numbered from ``first``."""
        joined = b"\n".join(lines)
        self.flush_block(joined, first, newlines(joined))

    def flush(self, data: bytes, first: int) -> None:
        """The lines of ``data`` (newline-separated, no final newline), numbered from ``first``."""
        starts, ends = line_offsets(data)
        numbers = first + np.arange(len(starts), dtype=np.int64)
        buf = np.frombuffer(data, np.uint8)
        empty = starts == ends
        maybe = empty.copy()
        if len(buf):
            maybe |= np.isin(buf[np.minimum(starts, len(buf) - 1)], ASCII_SPACE)
        blank = empty
        for i in np.flatnonzero(maybe & ~empty):  # a line starting with a space: blank only if all of it is
            blank[i] = not data[starts[i]:ends[i]].strip()
        if len(starts):
            nonblank = np.flatnonzero(~blank)
            self.read = int(numbers[nonblank[-1]]) if len(nonblank) else self.read
        # the parser reads only lines that open a JSON object (a top-level ``null`` would be a row of nulls)
        obj = ~blank & (buf[np.minimum(starts, len(buf) - 1)] == ord("{")) if len(buf) and self.fmt in SCHEMAS \
            else np.zeros(len(starts), bool)
        for i in np.flatnonzero(~blank & ~obj):
            self.slow(int(numbers[i]), data[starts[i]:ends[i]])
        if obj.all():
            self.parse(data, starts, ends, numbers)
        elif obj.any():
            keep = np.flatnonzero(obj)
            joined = b"\n".join(data[starts[i]:ends[i]] for i in keep)
            self.parse(joined, *line_offsets(joined), numbers[keep])
        self.writer.end_block()

    def run(self, start: int = 0, end: int | None = None) -> int:
        """Ingest the lines; return the last line number read."""
        try:
            codec = sniff(self.path)
            if codec is None and not start and end is None and self.fmt in SCHEMAS:
                self.stream = DuckJsonStream.open(self.path, *SCHEMAS[self.fmt])
            if codec is None or (codec == "zstd" and not start and end is None):
                blocks = plain_blocks(self.path, start, end) if codec is None \
                    else stream_blocks(self.path, read=BLOCK_BYTES)
                for first, block, nl in blocks:
                    self.flush_block(block, first, nl)
                return self.read
            batch: list[bytes] = []
            first = 1
            try:
                for lineno, raw in byte_lines(self.path, start, end):
                    if batch and lineno != first + len(batch):
                        self.flush_lines(batch, first)
                        batch = []
                    if not batch:
                        first = lineno
                    batch.append(raw)
                    if len(batch) >= BATCH_LINES:
                        self.flush_lines(batch, first)
                        batch = []
            except InputError:
                if batch:
                    self.flush_lines(batch, first)
                raise
            if batch:
                self.flush_lines(batch, first)
            return self.read
        finally:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            self.writer.stats.non_utf8_lines += self.decode.bad_lines
            self.decode.bad_lines = 0


def newlines(block) -> np.ndarray:
    """Positions of the newlines of ``block`` (one vectorised pass: both the line count and the
    check that every line opens an object come from it)."""
    return np.flatnonzero(np.frombuffer(block, np.uint8) == 10)


def plain_blocks(path: Path, start: int = 0, end: int | None = None,
                 size: int | None = None) -> Iterator[tuple[int, bytes | memoryview, np.ndarray]]:
    """(number of the first line, bytes, positions of their newlines) of newline-aligned blocks of an
    uncompressed file holding the lines that start in [start, end): the lines of :func:`byte_lines`,
    read a block at a time.  Each block is read once and handed on as a view of the read (a
    16 MB copy costs as much as counting its lines); the line cut by the block's end is read
    again with the next block."""
    size = size or BLOCK_BYTES
    total = path.stat().st_size
    end = total if end is None or end > total else end
    with open(path, "rb") as fh:
        def align(offset: int) -> int:  # the first line start at or after ``offset``
            if offset <= 0 or offset >= total:
                return max(0, min(offset, total))
            fh.seek(offset - 1)
            return offset if fh.read(1) == b"\n" else offset + len(fh.readline())

        a, b = align(start), align(end)
        fh.seek(0)
        lineno, pos = 1, 0
        while pos < a:
            chunk = fh.read(min(1 << 22, a - pos))
            lineno += chunk.count(b"\n")
            pos += len(chunk)
        want = size
        while pos < b:
            fh.seek(pos)
            data = fh.read(min(want, b - pos))
            if not data:
                return
            nl = newlines(data)
            if pos + len(data) < b:
                if not len(nl):  # one line longer than a block: read more of it at once
                    want *= 2
                    continue
                cut = int(nl[-1]) + 1
            else:
                cut = len(data)
            yield lineno, (data if cut == len(data) else memoryview(data)[:cut]), nl
            lineno += len(nl)
            pos, want = pos + cut, size


def stream_blocks(path: Path, size: int | None = None, read: int = 1 << 20) -> Iterator[tuple[int, bytes, np.ndarray]]:
    """:func:`plain_blocks` of a whole compressed file (:func:`.source.open_binary`), read ``read``
    bytes at a time (one raw read each).  When the stream breaks (truncated, corrupt), the complete
    lines read before are yielded, then the error is raised: what :func:`.source.byte_lines` gives
    up to the same point.  Used for zstd, whose reader raises only once every byte decoded before
    the break has been delivered, so the read size does not change what is kept."""
    from .source import open_binary

    size = size or BLOCK_BYTES
    lineno, parts, have = 1, [], 0
    with open_binary(path) as fh:
        while True:
            try:
                chunk = fh.read1(read)
            except InputError:
                data = b"".join(parts)
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield lineno, data[:cut], newlines(data[:cut])
                raise
            if chunk:
                parts.append(chunk)
                have += len(chunk)
                if have < size:
                    continue
            data = b"".join(parts)
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if cut:
                block, rest = data[:cut], data[cut:]
                nl = newlines(block)
                yield lineno, block, nl
                lineno += len(nl)
                parts, have = ([rest], len(rest)) if rest else ([], 0)
            if not chunk:
                return


def fast_ingest_file(writer: ColumnarWriter, path: str | Path, fmt: str = "auto", *, table: str = "posts",
                     mapping: dict | None = None, media_root=None, labels: dict | None = None, start: int = 0,
                     end: int | None = None) -> dict:
    """:func:`.run.ingest_file` for the columnar writer; returns how many rows took the fast path."""
    from .generic import ROW_PARSERS
    from .run import FORMATS, _check_file, _records, detect_format

    path = Path(path)
    _check_file(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    if table not in ROW_PARSERS:
        raise ValueError(f"unknown table '{table}' (posts, users, edges)")
    root = Path(media_root).resolve() if media_root else None
    options = {"table": table, "mapping": mapping or {}, "root": root, "base": root or path.parent.resolve(),
               "labels": labels or {}}
    lines_before = writer.stats.lines
    job = FastFile(writer, path, fmt, options)
    read = 0
    try:
        if fmt in ("csv", "parquet"):
            for i, (lineno, raw, obj) in enumerate(_records(path, fmt, start, end, job.decode)):
                read = lineno
                writer.begin_line(job.base + lineno)
                job.handle(writer, lineno, raw, obj, fmt, table, options["mapping"], root, options["base"],
                           options["labels"], job.name)
                if i % BATCH_LINES == BATCH_LINES - 1:
                    writer.end_block()
            writer.end_block()
            writer.stats.non_utf8_lines += job.decode.bad_lines
        else:
            read = job.run(start, end)
    except InputError as exc:
        read = read if fmt in ("csv", "parquet") else job.read
        writer.stats.truncated[str(path)] = read
        writer.rec_base = job.base + read + 1
        kind = TruncatedInput if isinstance(exc, TruncatedInput) else InputError
        raise kind(f"{path}: {exc} after {read} lines; the {read} lines read were ingested") from None
    writer.rec_base = job.base + read + 1
    if writer.stats.lines == lines_before and start == 0 and end is None:
        raise InputError(f"{path}: no records in the file (only blank lines or a header)")
    return {"fast_rows": job.fast_rows, "slow_lines": job.slow_lines}
