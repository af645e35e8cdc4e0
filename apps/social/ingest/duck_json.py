"""Blocks of JSON lines -> Arrow tables with DuckDB's JSON reader, exactly as strict as the row adapters.

Why DuckDB: on one core it parses 1M twarc2 lines into Arrow in ~1.6-2.0 s against ~3.9-5 s for
Arrow's own JSON reader (the parse was half of the fast engine's time).  Why not its types: DuckDB
converts a JSON value to the column's type where the row adapters refuse it (``"id": 1.5`` read into
a VARCHAR column becomes ``'1.5'``, ``"text": 123`` becomes ``'123'``, ``"verified": "yes"`` a
BOOLEAN true).  So every leaf is read as VARCHAR and :func:`strict_table` decides, from the text
DuckDB produced, whether the JSON value could have been of another type than the one the adapter
accepts; such a row is marked for the adapter (:mod:`.twitter`, :mod:`.reddit`), which gives it
its exact value or its reject.  The rules, per kind of leaf:

- ``text`` (strings only): the text of a number, ``true``/``false``, or anything opening with
  ``{``/``[`` (an object or array written as JSON) is suspect;
- ``id`` (a string or an integer, as :func:`.common.id_str`): as ``text``, except that a plain
  positive integer (digits, no leading zero) is the same value either way and passes;
- ``any``: no check (the converter reads the text itself, e.g. Reddit's epoch times);
- ``bool``: only ``true``/``false`` (a JSON boolean or the same word as a string, which the
  adapter reads alike) passes;
- ``int``: what Arrow's string-to-int64 cast accepts (``[+-]digits``) passes, read alike by
  :func:`.common.int_field`; anything else is suspect;
- ``float``: the text of a JSON number passes (only for fields whose adapter reads numbers and
  numeric strings alike).

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


def lines_matching(data, starts: np.ndarray, pattern: re.Pattern) -> np.ndarray:
    """Which lines of ``data`` (bytes or a view; line ``i`` starts at ``starts[i]``) hold a match of
    the bytes regex ``pattern`` (one C-level scan of the block, not a search per line)."""
    data = data if isinstance(data, bytes) else bytes(data)
    out = np.zeros(len(starts), bool)
    hits = [m.start() for m in pattern.finditer(data)]
    if hits:
        out[np.searchsorted(starts, np.array(hits, np.int64), side="right") - 1] = True
    return out


@functools.lru_cache(maxsize=64)
def non_string_value(key: str) -> re.Pattern:
    """``"key":`` followed by what opens a number, ``true``/``false``, an array or an object."""
    return re.compile(b'"' + re.escape(key.encode()) + rb'"\s*:\s*[-0-9tf\[{]')


class RawLines:
    """The raw text of a block's lines, searched with bytes regexes; each pattern scanned once."""

    def __init__(self, data, starts: np.ndarray) -> None:
        self.data, self.starts = data, starts
        self.found: dict[re.Pattern, np.ndarray] = {}

    def matching(self, *patterns: re.Pattern) -> np.ndarray:
        """Which lines hold a match of one of ``patterns``."""
        out = np.zeros(len(self.starts), bool)
        for pattern in patterns:
            if pattern not in self.found:
                self.found[pattern] = lines_matching(self._bytes(), self.starts, pattern)
            out |= self.found[pattern]
        return out

    def non_string(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Which of the lines ``rows`` may give ``key`` a value that is not a string: those where
        ``"key":`` is followed by a digit, a minus, ``t``/``f``, ``[`` or ``{`` anywhere (a nested
        key of the same name counts too), or where any key is written with an escape.  A few rows
        are searched line by line, many with one scan of the block."""
        patterns = (ESCAPED_KEY, non_string_value(key))
        if len(rows) * 8 >= len(self.starts):
            return self.matching(*patterns)[rows]
        data = self._bytes()
        ends = np.r_[self.starts[1:], len(data)]
        return np.array([any(p.search(data, self.starts[i], ends[i]) for p in patterns) for i in rows], bool)

    def _bytes(self) -> bytes:
        if not isinstance(self.data, bytes):  # a view has no finditer/search: one copy per block
            self.data = bytes(self.data)
        return self.data


class BlockRefused(ValueError):
    """DuckDB refused the block (the caller splits it)."""


def duck_columns(schema: pa.Schema) -> dict[str, str]:
    """DuckDB's ``columns=`` for ``schema`` with every leaf VARCHAR (nesting kept)."""
    def ddl(t: pa.DataType) -> str:
        if pa.types.is_struct(t):
            return "STRUCT(" + ", ".join(f'"{f.name}" {ddl(f.type)}' for f in t) + ")"
        if pa.types.is_list(t):
            return ddl(t.value_type) + "[]"
        return "VARCHAR"
    return {f.name: ddl(f.type) for f in schema}


class DuckJsonReader:
    """One DuckDB connection (one thread) reading blocks against a fixed set of columns."""

    def __init__(self, schema: pa.Schema) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET threads=1")  # one core: the parallelism is the caller's (partitions)
        self.columns = duck_columns(schema)
        self.error = duckdb.Error

    def read(self, data) -> pa.Table:
        """Parse ``data`` (newline-delimited objects, bytes or a view) into a VARCHAR-leaved table."""
        try:
            rel = self.con.read_json(io.BytesIO(data), format="newline_delimited", columns=self.columns)
            return rel.to_arrow_table()
        except self.error as exc:
            raise BlockRefused(str(exc).split("\n")[0]) from None


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


def _leaf(array: pa.Array, target: pa.DataType, kind: str, flag: np.ndarray, may_be_other=None) -> pa.Array:
    """A VARCHAR leaf as ``target``; ``flag`` (per element) gets the suspect values (null in a
    boolean or number result, kept as read in a string one: their rows go to the adapter anyway)."""
    if target == S:
        if kind != "any":
            flag |= suspect_strings(array, kind, may_be_other)
        return array
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(target):
        bad = valid & ~pc.fill_null(pc.is_in(array, value_set=BOOL_WORDS), False).to_numpy(zero_copy_only=False)
        flag |= bad
        value = pc.equal(array, "true")
        return pc.if_else(pa.array(bad), pa.scalar(None, target), value) if bad.any() else value
    if pa.types.is_integer(target):
        try:  # Arrow's cast accepts exactly the forms ([+-]digits) int_field reads alike
            return pc.cast(array, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    pattern = r"^[+-]?[0-9]+$" if pa.types.is_integer(target) else NUMBER
    ok = _where_regex(array, np.flatnonzero(valid), pattern, False)
    if pa.types.is_integer(target):  # in range too
        ok &= pc.fill_null(pc.less_equal(pc.utf8_length(pc.utf8_ltrim(array, "+-0")), 18), False).to_numpy(zero_copy_only=False)
    flag |= valid & ~ok
    return pc.cast(pc.if_else(pa.array(ok), array, pa.scalar(None, S)), target)


def _walk(array: pa.Array, target: pa.DataType, path: str, kinds: dict[str, str], rows: np.ndarray,
          flagged: np.ndarray, raw_non_string=None) -> pa.Array:
    """``array`` (VARCHAR leaves) as ``target``; the top-level rows (``rows`` maps elements to
    them) of suspect values set in ``flagged``."""
    if pa.types.is_struct(target):
        children = [_walk(pc.struct_field(array, f.name), f.type, f"{path}.{f.name}" if path else f.name, kinds, rows, flagged)
                    for f in target]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target):
        lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
        values = array.flatten()  # the elements of the valid lists, in order
        parent = np.repeat(np.arange(len(array)), lengths)
        inner = _walk(values, target.value_type, path, kinds, rows[parent], flagged)
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(pa.array(offsets), inner, type=target, mask=mask)
    flag = np.zeros(len(array), bool)
    # only a top-level leaf gets the raw-line check (elements = rows; nested calls pass none)
    check = (lambda rows: raw_non_string(path, rows)) if raw_non_string is not None else None
    out = _leaf(array, target, kinds.get(path, "id"), flag, check)
    if flag.any():
        flagged[rows[flag]] = True
    return out


def strict_table(table: pa.Table, schema: pa.Schema, kinds: dict[str, str],
                 raw_non_string: Callable[[str, np.ndarray], np.ndarray] | None = None) -> tuple[pa.Table, np.ndarray]:
    """(``table`` cast to ``schema``, rows to leave to the adapter).  ``kinds`` names the kind
    (``text``, ``id`` or ``any``) of each string leaf by its dotted path (list levels add nothing:
    ``entities.hashtags.tag``); a string leaf not named is an ``id``.  ``raw_non_string(key, rows)``,
    where given, says which of those rows' raw lines may hold another JSON type than a string for a
    top-level ``key`` (:meth:`RawLines.non_string`)."""
    n = table.num_rows
    flagged = np.zeros(n, bool)
    rows = np.arange(n)
    columns = []
    for field in schema:
        column = table[field.name]
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        columns.append(_walk(column, field.type, field.name, kinds, rows, flagged, raw_non_string))
    return pa.Table.from_arrays(columns, schema=schema), flagged
