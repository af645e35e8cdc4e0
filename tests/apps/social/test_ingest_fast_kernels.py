"""The byte-level shortcuts of the fast ingest engine agree with the definitions they stand in for:
ISO timestamps and blank strings read from Arrow buffers vs the regexes, numeric-ID codes vs
``dictionary_encode``, zero-copy blocks vs the file's bytes, and edge ownership by line vs by ID."""
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from apps.social.ingest import ingest
from apps.social.ingest.columnar import _as_numbers, _codes
from apps.social.ingest.fast import plain_blocks
from apps.social.ingest.fast_twitter import BLANK, ISO, _blank, _iso

ISO_SEEDS = ["2024-05-01T10:00:00.250Z", "2024-05-01T10:00:00Z", "2019-01-01T00:00:00+01:00", "2024-05-01T10:00:00.25Z"]


def _mutants(seeds: list[str], alphabet: str, n: int, seed: int = 0) -> list[str | None]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 2)):
            op = rng.random()
            i = rng.randrange(len(s) + 1)
            if op < 0.6 and i < len(s):
                s[i] = rng.choice(alphabet)
            elif op < 0.8:
                s.insert(i, rng.choice(alphabet))
            elif s:
                del s[min(i, len(s) - 1)]
        out.append(None if rng.random() < 0.05 else "".join(s))
    return out


def _regex(array, pattern: str, null: bool) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(array, pattern), null).to_numpy(zero_copy_only=False)


def test_iso_matches_the_regex():
    arr = pa.array(_mutants(ISO_SEEDS, "0123456789-T:.Z+ xa/\u0661\n", 20_000), pa.string())
    want = _regex(arr, ISO, False)
    assert want.sum() > 1000 and (~want).sum() > 1000  # both outcomes are exercised
    assert (_iso(arr) == want).all()
    assert (_iso(arr.slice(7, 5000)) == want[7:5007]).all()  # a slice: offsets not from 0
    same_form = pa.array(["2024-05-01T10:00:00.250Z"] * 5 + ["2024-05-01T10:00:0a.250Z"])  # one (n, 24) block
    assert _iso(same_form).tolist() == [True] * 5 + [False]
    assert _iso(same_form.slice(1, 4)).tolist() == [True] * 4


def test_blank_matches_python_isspace():
    spaces = " \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u1680\u2003\u2028\u202f\u205f\u3000"
    seeds = ["", " ", "a", "  x", "\u3000", "\u2003 ", "\u201cq", "\xe9", "\x1c", "hello world"]
    values = _mutants(seeds, spaces + "ab\u201c\u00e9", 5000, seed=1)
    arr = pa.array(values, pa.string())
    want = np.array([v is None or not v.strip() or v.isspace() for v in values])
    assert (want == _regex(arr, BLANK, True)).all()
    assert (_blank(arr) == want).all()
    assert (_blank(arr.slice(3, 1000)) == want[3:1003]).all()
    assert (_blank(pa.chunked_array([arr.slice(0, 10), arr.slice(10)])) == want).all()


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # a null ID's code (dictionary_encode path)
@pytest.mark.parametrize("values, numeric", [
    (["5", "3", "5", "10", "3", "0", "7"], True),
    (["9999999999999999999", "1", "9999999999999999999"], True),
    (["05", "5"], False),           # a leading zero: "05" and "5" are different IDs
    (["1", None], False),
    (["12345678901234567890"], False),  # 20 digits may not fit
    (["1a", "1"], False),
    (["+1", "1"], False),           # a sign or a space: not the digits of a number
    ([" 1", "2"], False),
    (["u01", "u02", "u01"], False),
])
def test_codes_numbered_by_first_appearance(values, numeric):
    arr = pa.array(values, pa.string())
    assert (_as_numbers(arr) is not None) == numeric
    want = pc.dictionary_encode(arr).indices.to_numpy(zero_copy_only=False).astype(float)
    valid = ~np.isnan(want)
    assert (_codes(arr)[valid] == want[valid]).all()


def test_numeric_codes_on_shuffled_ids():
    rng = np.random.default_rng(0)
    ids = pa.array([str(x) for x in rng.integers(1, 10**18, 3000)] * 2, pa.string())
    ids = ids.take(pa.array(rng.permutation(len(ids))))
    want = pc.dictionary_encode(ids).indices.to_numpy()
    assert (_codes(ids) == want).all()
    assert (_codes(ids.slice(11, 2000)) == pc.dictionary_encode(ids.slice(11, 2000)).indices.to_numpy()).all()


def test_plain_blocks_are_the_file(tmp_path):
    rng = random.Random(2)
    lines = [("x" * rng.choice([0, 1, 5, 40, 300, 2500])).encode() for _ in range(400)]
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines))  # no final newline
    data = path.read_bytes()
    for start, end in [(0, None), (0, len(data) // 2), (len(data) // 3, None), (17, 18)]:
        got, first_line = b"", None
        for lineno, block, nl in plain_blocks(path, start, end, size=1000):  # lines longer than a block
            block = bytes(block)
            assert (nl == np.flatnonzero(np.frombuffer(block, np.uint8) == 10)).all()
            assert first_line is None or lineno == first_line + got.count(b"\n")
            first_line = lineno if first_line is None else first_line
            got += block
        a = 0 if start == 0 else data.index(b"\n", start - 1) + 1
        b = len(data) if end is None else data.index(b"\n", end - 1) + 1
        assert got == data[a:b]
        if got:
            assert first_line == data[:a].count(b"\n") + 1


def test_edges_of_a_post_seen_again(tmp_path):
    """A post delivered twice keeps the edges of its first line only, also when the second line
    is the first post row of its line (the by-line shortcut) or the edges come from a raw page."""
    def tweet(i, mention):
        return {"id": str(100 + i % 3), "author_id": "7", "created_at": "2024-05-01T10:00:00.000Z", "text": f"t{i}",
                "entities": {"mentions": [{"username": mention, "id": mention}]}}
    lines = [json.dumps(tweet(i, f"m{i}")) for i in range(6)]
    lines.insert(3, json.dumps({"data": [tweet(9, "page"), tweet(10, "page2")], "includes": {}}))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fast = ingest([path], tmp_path / "fast", engine="fast")
    stream = ingest([path], tmp_path / "stream", engine="stream")
    assert fast.to_dict() == stream.to_dict()
    a, b = (pq.read_table(tmp_path / d / "edges.parquet") for d in ("fast", "stream"))
    assert a.equals(b)
    assert fast.duplicate_edges > 0


def test_whitespace_table_is_pythons():
    """The blank test's character set stops at U+3000: no character above it is whitespace."""
    import sys

    from apps.social.ingest.fast_twitter import _SPACE

    assert _SPACE == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_duckdb_text_that_may_not_be_a_string_is_suspect():
    """DuckDB writes 1.5, true, {"a": 1} into a VARCHAR column as text; which texts could have been
    such values (and go to the row adapter) depends on what the adapter accepts for the field."""
    from apps.social.ingest.duck_json import DuckJsonReader, strict_table, suspect_strings

    values = pa.array(["abc", "1800", "0", "1.5", "-3", "1e3", "true", "false", "{}", "[1]", "", None, "true story",
                       "12 monkeys"])
    assert suspect_strings(values, "text").tolist() == [False, True, True, True, True, True, True, True, True, True,
                                                        False, False, False, False]
    assert suspect_strings(values, "id").tolist() == [False, False, True, True, True, True, True, True, True, True,
                                                      False, False, False, False]
    schema = pa.schema([("id", pa.string()), ("author", pa.struct([("verified", pa.bool_()), ("n", pa.int64())]))])
    lines = [{"id": "a", "author": {"verified": True, "n": 3}}, {"id": "b", "author": {"verified": "yes", "n": 3}},
             {"id": "c", "author": {"verified": "false", "n": "4"}}, {"id": "d", "author": {"n": 2.5}}, {"id": 1.5}]
    table = DuckJsonReader(schema).read("\n".join(json.dumps(x) for x in lines).encode())
    out, suspect = strict_table(table, schema, {})
    assert out.schema == schema
    assert suspect.tolist() == [False, True, False, True, True]
    assert out.column("author").to_pylist()[:3] == [{"verified": True, "n": 3}, {"verified": None, "n": 3},
                                                    {"verified": False, "n": 4}]


def test_duckdb_double_agrees_with_int_field_where_it_passes():
    """Integer leaves are read as DOUBLE: every value that passes must be what the row adapter's
    ``int_field`` reads; everything else (fractions, booleans, huge or non-finite numbers, strings
    DuckDB reads differently) goes to the adapter."""
    from apps.social.ingest.common import RowError, int_field
    from apps.social.ingest.duck_json import DuckJsonReader, RawLines, strict_table
    from apps.social.ingest.fast import line_offsets

    values = ["12", '"12"', "1.5", "1.0", "1e3", "true", "false", "0", "1", '"1"', '" 12"', '"-12"', "-0",
              "12345678901234567890", "9007199254740993", "9007199254740991", '"nan"', '"inf"', '"1e400"', "1e400",
              '"1."', '".5"', '"5."', '"1E+2"', '"12.0"', '"1.5"', "null", "-7"]
    schema = pa.schema([("n", pa.int64())])
    for value in values:
        data = ('{"n": %s}\n' % value).encode()
        try:
            table = DuckJsonReader(schema).read(data)
        except ValueError:  # DuckDB refuses it: the block goes to the adapter line by line
            continue
        out, suspect = strict_table(table, schema, {}, RawLines(data, line_offsets(data)[0]))
        try:
            expected = int_field(json.loads(value), "n")
        except RowError:
            expected = "reject"
        if not suspect[0]:
            assert out["n"][0].as_py() == expected, value
    data = b'{"n": true}\n{"n": 1}\n{"n": 0}\n{"n": false}\n{"n": 2}\n'
    table = DuckJsonReader(schema).read(data)
    out, suspect = strict_table(table, schema, {}, RawLines(data, line_offsets(data)[0]))
    assert suspect.tolist() == [True, False, False, True, False] and out["n"].to_pylist() == [None, 1, 0, None, 2]
    _, suspect = strict_table(table, schema, {})  # no raw lines to search: 0 and 1 go to the adapter
    assert suspect.tolist() == [True, True, True, True, False]
