"""Blocks of JSON lines -> Arrow tables with DuckDB's JSON reader, exactly as strict as the row adapters.

Why DuckDB: on one core it parses 1M twarc2 lines into Arrow in ~1.6-2.0 s against ~3.9-5 s for
Arrow's own JSON reader (the parse was half of the fast engine's time).  Why not its types: DuckDB
converts a JSON value to the column's type where the row adapters refuse it (``"id": 1.5`` read into
a VARCHAR column becomes ``'1.5'``, ``"text": 123`` becomes ``'123'``, ``"verified": "yes"`` a
BOOLEAN true).  So string and boolean leaves are read as VARCHAR (integers as DOUBLE, short
strings as JSON: below) and :func:`strict_table` decides, from what DuckDB produced, whether the
JSON value could have been of another type than the one the adapter accepts; such a row is marked
for the adapter (:mod:`.twitter`, :mod:`.reddit`), which gives it its exact value or its reject.  The rules, per kind of leaf:

- ``text`` (strings only): the text of a number, ``true``/``false``, or anything opening with
  ``{``/``[`` (an object or array written as JSON) is suspect;
- ``id`` (a string or an integer, as :func:`.common.id_str`): as ``text``, except that a plain
  positive integer (digits, no leading zero) is the same value either way and passes;
- ``string`` (strings only, short values): DuckDB reads the leaf as JSON, so the type is known
  without looking at the raw line: a JSON string written without escapes passes with its text,
  anything else (another JSON type, a string with an escape) is suspect;
- ``any``: no check (the converter reads the text itself, e.g. Reddit's epoch times);
- ``bool``: only ``true``/``false`` (a JSON boolean or the same word as a string, which the
  adapter reads alike) passes;
- ``int``: read by DuckDB as DOUBLE (turning a number to text is DuckDB's costliest conversion):
  DuckDB's DOUBLE and :func:`.common.int_field` (which reads ``float(value)``) agree on every
  number and numeric string DuckDB accepts (a test compares them), so a finite whole value below
  2**53 passes, except 0 and 1, which ``false``/``true`` also give: those rows' raw lines are
  searched for a boolean after the key.  Anything else is suspect.

A block DuckDB refuses (malformed JSON, a duplicate key, an object where a list belongs, two values
on a line) raises :class:`BlockRefused`; the caller splits the block until the refusing lines are
alone and sends those to the adapter.
"""
from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .fast_twitter import _string_parts, _where_regex

S = pa.string()
NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"  # a JSON number's text
BOOL_WORDS = pa.array(["true", "false"], S)
# first bytes: '-' and digits can open a number, 't'/'f' a boolean word, '{'/'[' an object/array
_NUMBER_LEAD = np.zeros(256, bool)
_NUMBER_LEAD[[ord("-"), *range(ord("0"), ord("9") + 1)]] = True
_WORD_LEAD = np.zeros(256, bool)
_WORD_LEAD[[ord("t"), ord("f")]] = True
_NESTED_LEAD = np.zeros(256, bool)
_NESTED_LEAD[[ord("{"), ord("[")]] = True


# a key written with an escape ("\u0069d" is "id"): the raw text cannot be searched for it
ESCAPED_KEY = re.compile(rb'\\u[0-9a-fA-F]{4}(?:[^"\\]|\\.)*"\s*:')


def byte_span(data) -> tuple[bytes, int, int]:
    """(a bytes object, start, end) holding ``data`` (bytes, or a view of bytes) without copying:
    regexes and ``bytes.count`` take a range of the object the view looks into."""
    if isinstance(data, bytes):
        return data, 0, len(data)
    if isinstance(data.obj, bytes) and data.nbytes and data.contiguous:
        start = np.frombuffer(data, np.uint8).ctypes.data - np.frombuffer(data.obj, np.uint8).ctypes.data
        return data.obj, start, start + data.nbytes
    data = bytes(data)
    return data, 0, len(data)


def lines_matching(data, starts: np.ndarray, pattern: re.Pattern) -> np.ndarray:
    """Which lines of ``data`` (bytes or a view; line ``i`` starts at ``starts[i]``) hold a match of
    the bytes regex ``pattern`` (one C-level scan of the block, not a search per line)."""
    src, lo, hi = byte_span(data)
    out = np.zeros(len(starts), bool)
    hits = [m.start() - lo for m in pattern.finditer(src, lo, hi)]
    if hits:
        out[np.searchsorted(starts, np.array(hits, np.int64), side="right") - 1] = True
    return out


@functools.lru_cache(maxsize=64)
def boolean_value(key: str) -> re.Pattern:
    """``"key":`` followed by ``true``/``false``."""
    return re.compile(b'"' + re.escape(key.encode()) + rb'"\s*:\s*[tf]')


@functools.lru_cache(maxsize=64)
def non_string_value(key: str) -> re.Pattern:
    """``"key":`` followed by what opens a number, ``true``/``false``, an array or an object."""
    return re.compile(b'"' + re.escape(key.encode()) + rb'"\s*:\s*[-0-9tf\[{]')


class RawLines:
    """The raw text of a block's lines, searched with bytes regexes; each pattern scanned once."""

    def __init__(self, data, starts: np.ndarray) -> None:
        self.data, self.starts = data, starts
        self.found: dict[re.Pattern, np.ndarray] = {}
        self.src, self.lo, self.hi = byte_span(data)

    def matching(self, *patterns: re.Pattern) -> np.ndarray:
        """Which lines hold a match of one of ``patterns``."""
        out = np.zeros(len(self.starts), bool)
        for pattern in patterns:
            if pattern not in self.found:
                self.found[pattern] = lines_matching(self.data, self.starts, pattern)
            out |= self.found[pattern]
        return out

    def lacks_key(self, key: str, holders: int) -> bool:
        """Whether no line but the ``holders`` lines known to hold the top-level ``key`` can hold it:
        the block writes ``"key"`` exactly ``holders`` times and no key with a ``\\u`` escape (two
        C-level searches of the block, ~10x faster than a regex scan)."""
        src, lo, hi = self.src, self.lo, self.hi
        # a one-byte search (memchr) first: most blocks hold no backslash at all
        escaped = src.find(b"\\", lo, hi) >= 0 and src.find(b"\\u", lo, hi) >= 0
        return not escaped and src.count(b'"' + key.encode() + b'"', lo, hi) == holders

    def non_string(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Which of the lines ``rows`` may give ``key`` a value that is not a string: those where
        ``"key":`` is followed by a digit, a minus, ``t``/``f``, ``[`` or ``{`` anywhere (a nested
        key of the same name counts too), or where any key is written with an escape.  A few rows
        are searched line by line, many with one scan of the block."""
        return self.holding(rows, ESCAPED_KEY, non_string_value(key))

    def boolean(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Which of the lines ``rows`` may give ``key`` (at any depth) a ``true``/``false`` value."""
        return self.holding(rows, ESCAPED_KEY, boolean_value(key))

    def holding(self, rows: np.ndarray, *patterns: re.Pattern) -> np.ndarray:
        """Which of the lines ``rows`` hold a match of one of ``patterns``: a few searched line by
        line, many with one scan of the block."""
        if len(rows) * 8 >= len(self.starts):
            return self.matching(*patterns)[rows]
        src, lo = self.src, self.lo
        ends = np.r_[self.starts[1:], self.hi - lo]
        return np.array([any(p.search(src, lo + self.starts[i], lo + ends[i]) for p in patterns) for i in rows], bool)


class BlockRefused(ValueError):
    """DuckDB refused the block (the caller splits it)."""


def duck_columns(schema: pa.Schema, kinds: dict[str, str] | None = None) -> dict[str, str]:
    """DuckDB's ``columns=`` for ``schema`` with every leaf VARCHAR (nesting kept), DOUBLE for the
    integer leaves, JSON for the leaves of kind ``string``."""
    kinds = kinds or {}

    def ddl(t: pa.DataType, path: str) -> str:
        if pa.types.is_struct(t):
            return "STRUCT(" + ", ".join(f'"{f.name}" {ddl(f.type, f"{path}.{f.name}")}' for f in t) + ")"
        if pa.types.is_list(t):
            return ddl(t.value_type, path) + "[]"
        if pa.types.is_integer(t):
            return "DOUBLE"
        return "JSON" if kinds.get(path) == "string" else "VARCHAR"
    return {f.name: ddl(f.type, f.name) for f in schema}


class DuckJsonReader:
    """One DuckDB connection (one thread) reading blocks against a fixed set of columns."""

    def __init__(self, schema: pa.Schema, kinds: dict[str, str] | None = None) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET threads=1")  # one core: the parallelism is the caller's (partitions)
        self.columns = duck_columns(schema, kinds)
        self.error = duckdb.Error

    def read(self, data) -> pa.Table:
        """Parse ``data`` (newline-delimited objects, bytes or a view) into a VARCHAR-leaved table."""
        try:
            rel = self.con.read_json(io.BytesIO(data), format="newline_delimited", columns=self.columns)
            return rel.to_arrow_table()
        except (self.error, UnicodeDecodeError) as exc:  # (a message quoting bad UTF-8 fails to decode)
            raise BlockRefused(str(exc).split("\n")[0]) from None


GLOB = re.compile(r"[*?\[\]{}]")  # DuckDB expands these in a path


class DuckJsonStream:
    """DuckDB reading a whole uncompressed file of JSON lines itself (one thread, ~2x faster than
    handing it the same bytes a block at a time) against a fixed set of columns, its rows handed
    out in file order as the caller's blocks need them.

    Rows and lines line up because DuckDB's newline-delimited reader gives exactly one row per line
    that opens an object, skips only blank lines, and raises on a line holding anything else
    (checked by a test).  The caller offers only blocks whose every line opens an object and stops
    using the stream at the first block that does not (:meth:`close`); :meth:`take` also checks
    that the block's first and last rows are its first and last lines (their ``id`` is in those
    lines' raw text: a shift by one row cannot pass both by chance on real data) and gives
    None, closing the stream, when DuckDB refused a line or the rows and lines do not line up: the
    caller then parses that block and the rest on its own, a block at a time."""

    def __init__(self, path, schema: pa.Schema, kinds: dict[str, str] | None = None, batch_rows: int = 1 << 15) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET threads=1")
        self.error = duckdb.Error
        columns = duck_columns(schema, kinds)
        self.json_id = columns.get("id") == "JSON"
        self.buffer: list[pa.RecordBatch] = []
        self.have = 0
        try:  # DuckDB reads the first rows at once: a refused line there means no stream
            rel = self.con.read_json(str(path), format="newline_delimited", columns=columns, compression="uncompressed")
            self.reader = rel.to_arrow_reader(batch_rows)
        except (self.error, ValueError):  # (a message quoting bad UTF-8 arrives as UnicodeDecodeError)
            self.close()

    @classmethod
    def open(cls, path, schema: pa.Schema, kinds: dict[str, str] | None = None) -> DuckJsonStream | None:
        """The stream over ``path``, or None when DuckDB cannot serve it: glob characters in the
        path (DuckDB would expand them) or a line it refuses among the first it reads."""
        if GLOB.search(str(path)):
            return None
        stream = cls(path, schema, kinds)
        return stream if stream.reader is not None else None

    def take(self, n: int, first_line, last_line) -> pa.Table | None:
        """The next ``n`` rows (``first_line``, ``last_line``: the raw bytes of the block's first and
        last lines, which must give the first and last rows' ``id``), or None (the stream is then
        closed)."""
        if self.reader is None:
            return None
        try:
            while self.have < n:
                batch = self.reader.read_next_batch()
                self.buffer.append(batch)
                self.have += batch.num_rows
        except (StopIteration, self.error, ValueError):
            self.close()
            return None
        table = pa.Table.from_batches(self.buffer)
        rest = table.slice(n)
        self.buffer, self.have = rest.to_batches(), rest.num_rows
        table = table.slice(0, n)
        ids = table["id"]
        if not n or not (_same_line(ids[0].as_py(), first_line, self.json_id)
                         and _same_line(ids[n - 1].as_py(), last_line, self.json_id)):
            self.close()
            return None
        return table

    def close(self) -> None:
        self.reader, self.buffer, self.have = None, [], 0
        self.con.close()


def _same_line(id_text: str | None, line, json: bool = False) -> bool:
    """Whether ``line`` (raw bytes) gives ``"id"`` the value whose text DuckDB read as ``id_text``
    (``json``: the value as JSON, e.g. ``"t3_x"`` with its quotes)."""
    if not id_text:
        return False
    value = re.escape(id_text.encode())
    if json:  # a string's JSON text ends with its quote; a number needs the end of the value
        written = value if id_text.startswith('"') else value + rb"(?=[\s,}])"
    else:
        written = rb'(?:"' + value + rb'"|' + value + rb"(?=[\s,}]))"
    return re.search(rb'"id"\s*:\s*' + written, bytes(line)) is not None


def _first_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first byte of each string or 0, byte length, valid mask) from the array's own buffers."""
    offsets, values, null = _string_parts(array if array.type == S else array.cast(S))
    length = np.diff(offsets)
    first = np.zeros(len(length), np.uint8)
    has = length > 0
    if has.any():
        first[has] = values[offsets[:-1][has]]
    return first, length, ~null


def suspect_strings(array: pa.Array, kind: str, may_be_other: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Which values of a VARCHAR leaf may come from a JSON value the adapter reads differently
    (``kind`` ``text`` or ``id``, see the module docstring).  ``may_be_other(rows)``, where given,
    says which of those rows' raw lines may hold a value other than a string for this (top-level) key:
    elsewhere the suspect text was a string (Reddit's ``"7"`` IDs and ``"[deleted]"`` authors
    stay on the fast path)."""
    first, length, valid = _first_bytes(array)
    out = _NESTED_LEAD[first] & valid
    word = _WORD_LEAD[first] & valid & ((length == 4) | (length == 5))
    if word.any():
        rows = np.flatnonzero(word)
        out[rows] |= pc.is_in(array.take(pa.array(rows)), value_set=BOOL_WORDS).to_numpy(zero_copy_only=False)
    number = _NUMBER_LEAD[first] & valid
    if kind == "id" and number.any():
        # a plain positive integer reads the same from a JSON number and from a string
        digits = pc.fill_null(pc.ascii_is_decimal(array), False).to_numpy(zero_copy_only=False)
        number &= ~(digits & (first != ord("0")))
    out |= _where_regex(array, np.flatnonzero(number), NUMBER, False)
    if may_be_other is not None and out.any():
        rows = np.flatnonzero(out)
        out[rows] = may_be_other(rows)
    return out


def json_strings(array: pa.Array, flag: np.ndarray) -> pa.Array:
    """The text of each JSON string DuckDB wrote for a JSON-typed leaf (``"abc"`` -> ``abc``);
    ``flag`` gets every other value (a number, ``true``, an object, a string written with an
    escape, which the adapter decodes), null in the result."""
    first, length, valid = _first_bytes(array)
    plain = valid & (first == ord('"'))
    if plain.any():
        plain &= ~pc.fill_null(pc.match_substring(array, "\\"), False).to_numpy(zero_copy_only=False)
    flag |= valid & ~plain
    text = pc.utf8_slice_codeunits(array, 1, -1)
    return text if plain.sum() == valid.sum() else pc.if_else(pa.array(plain), text, pa.scalar(None, S))


def _whole_numbers(array: pa.Array, target: pa.DataType, flag: np.ndarray, may_be_boolean=None) -> pa.Array:
    """A DOUBLE leaf as the integer ``target``: finite whole values below 2**53 (exact in a double);
    0 and 1 only where ``may_be_boolean(elements)`` finds no ``true``/``false`` (without it, they
    are suspect).  ``flag`` gets the others (null in the result)."""
    x = array.to_numpy(zero_copy_only=False)  # nulls as NaN
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        ok = valid & (np.abs(x) < 2.0 ** 53) & (x == np.floor(x))
    maybe = np.flatnonzero(ok & ((x == 0) | (x == 1)))
    if len(maybe):
        ok[maybe] = ~may_be_boolean(maybe) if may_be_boolean is not None else False
    flag |= valid & ~ok
    return pa.array(np.where(ok, x, 0).astype(np.int64), target, mask=~ok)


def _leaf(array: pa.Array, target: pa.DataType, kind: str, flag: np.ndarray, may_be_other=None) -> pa.Array:
    """A leaf as DuckDB read it (see :func:`duck_columns`) as ``target``; ``flag`` (per element)
    gets the suspect values (null in a boolean or number result, kept as read in a string one:
    their rows go to the adapter anyway).  ``may_be_other(elements)``: the raw-line check of a
    text leaf (another JSON type than a string?) or of an integer leaf (a boolean?)."""
    if target == S:
        if kind == "string":
            return json_strings(array, flag)
        if kind != "any":
            flag |= suspect_strings(array, kind, may_be_other)
        return array
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(target):
        return _whole_numbers(array, target, flag, may_be_other)
    if pa.types.is_boolean(target):
        bad = valid & ~pc.fill_null(pc.is_in(array, value_set=BOOL_WORDS), False).to_numpy(zero_copy_only=False)
        flag |= bad
        value = pc.equal(array, "true")
        return pc.if_else(pa.array(bad), pa.scalar(None, target), value) if bad.any() else value
    raise TypeError(f"no reading of {target} leaves (a schema's leaves are strings, booleans and integers)")


def _walk(array: pa.Array, target: pa.DataType, path: str, kinds: dict[str, str], rows: np.ndarray,
          flagged: np.ndarray, raw: RawLines | None = None, top: bool = True) -> pa.Array:
    """``array`` (leaves as DuckDB read them) as ``target``; the top-level rows (``rows`` maps
    elements to them) of suspect values set in ``flagged``."""
    if pa.types.is_struct(target):
        children = [_walk(pc.struct_field(array, f.name), f.type, f"{path}.{f.name}", kinds, rows, flagged, raw, False)
                    for f in target]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target):
        lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
        values = array.flatten()  # the elements of the valid lists, in order
        parent = np.repeat(np.arange(len(array)), lengths)
        inner = _walk(values, target.value_type, path, kinds, rows[parent], flagged, raw, False)
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(pa.array(offsets), inner, type=target, mask=mask)
    flag = np.zeros(len(array), bool)
    check = None  # the raw-line check: a text leaf's at the top level only; an integer leaf's anywhere
    if raw is not None and pa.types.is_integer(target):
        check = lambda elements: raw.boolean(path.rsplit(".", 1)[-1], rows[elements])  # noqa: E731
    elif raw is not None and top:
        check = lambda elements: raw.non_string(path, rows[elements])  # noqa: E731
    out = _leaf(array, target, kinds.get(path, "id"), flag, check)
    if flag.any():
        flagged[rows[flag]] = True
    return out


def strict_table(table: pa.Table, schema: pa.Schema, kinds: dict[str, str],
                 raw: RawLines | None = None) -> tuple[pa.Table, np.ndarray]:
    """(``table`` cast to ``schema``, rows to leave to the adapter).  ``kinds`` names the kind
    (``text``, ``id`` or ``any``) of each string leaf by its dotted path (list levels add nothing:
    ``entities.hashtags.tag``); a string leaf not named is an ``id``.  ``raw``, where given, is the
    block's raw lines: searched for another JSON type than a string after a top-level text key
    (:meth:`RawLines.non_string`), and for a boolean after an integer key read as 0 or 1
    (:meth:`RawLines.boolean`); without it, those values are suspect."""
    n = table.num_rows
    flagged = np.zeros(n, bool)
    rows = np.arange(n)
    columns = []
    for field in schema:
        column = table[field.name]
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        columns.append(_walk(column, field.type, field.name, kinds, rows, flagged, raw))
    return pa.Table.from_arrays(columns, schema=schema), flagged
