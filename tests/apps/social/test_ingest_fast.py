"""The fast (Arrow) ingest engine writes exactly what the streaming engine writes: the same rows in
the same order, the same rejects with line and reason, the same counts -- on every sample file, on
a twarc2 file salted with every kind of odd line, on byte ranges, and on fuzzed tweets."""
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.social.ingest import fast as fast_mod
from apps.social.ingest import ingest
from apps.social.ingest.columnar import ColumnarWriter
from apps.social.ingest.common import CanonicalWriter
from apps.social.ingest.fast import fast_ingest_file
from apps.social.ingest.run import ingest_file

DATA = Path(__file__).resolve().parents[3] / "data" / "social"
TABLES = ("posts", "users", "media", "edges", "rejects")


def _same(a_dir: Path, b_dir: Path, a_stats, b_stats) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(a_dir / f"{table}.parquet"), pd.read_parquet(b_dir / f"{table}.parquet"),
                                      obj=table)
    assert a_stats.to_dict() == b_stats.to_dict()


def _both(tmp_path, inputs, **kwargs):
    fast = ingest(inputs, tmp_path / "fast", engine="fast", **kwargs)
    stream = ingest(inputs, tmp_path / "stream", engine="stream", **kwargs)
    _same(tmp_path / "fast", tmp_path / "stream", fast, stream)
    return fast


@pytest.mark.parametrize("name", ["mixed_lines.jsonl", "twitter_raw.jsonl", "twitter_flat.jsonl", "reddit.ndjson",
                                  "reddit.ndjson.zst", "posts.csv"])
def test_sample_files_identical(tmp_path, name):
    mapping = json.loads((DATA / "posts_mapping.json").read_text()) if name.endswith(".csv") else None
    _both(tmp_path, [DATA / name], mapping=mapping, media_root=DATA / "media" if not name.endswith(".csv") else None)


TWEET = {"id": "100", "author_id": "7", "created_at": "2024-05-01T10:00:00.250Z", "text": "hello #x @bob",
         "conversation_id": "100", "lang": "en",
         "entities": {"hashtags": [{"tag": "x"}], "mentions": [{"username": "bob", "id": "8"}],
                      "urls": [{"url": "https://t.co/a", "expanded_url": "https://example.org/a"}]},
         "author": {"id": "7", "username": "al", "created_at": "2019-01-01T00:00:00Z", "verified": False,
                    "profile_image_url": "https://x/default_profile_normal.png",
                    "public_metrics": {"followers_count": 3, "following_count": 4, "tweet_count": 5}}}


def _tweet(i: int, **change) -> str:
    t = json.loads(json.dumps(TWEET))
    t["id"] = str(100 + i)
    t["conversation_id"] = str(100 + i - i % 3)
    if i % 4 == 1:
        t["referenced_tweets"] = [{"type": "replied_to", "id": str(99 + i)}]
    if i % 5 == 2:
        t["referenced_tweets"] = [{"type": "quoted", "id": str(98 + i)}]
        t["entities"]["mentions"].append({"username": "cy", "id": ""})
    if i % 7 == 3:
        del t["author"]
    t.update(change)
    return json.dumps(t)


ODD = [
    "{broken", "[1, 2]", '"just a string"', "", "   ", "\x1c", "null", '{"id": "1"} null', ' {"id": "2"}',
    '{"id": "3"}{"id": "4"}',
    _tweet(50, id=51), _tweet(51, id=" "), _tweet(52, created_at=None), _tweet(53, created_at="1714557600"),
    _tweet(54, created_at="2024-02-30T00:00:00Z"), _tweet(55, created_at="2024-05-01 10:00:00"),
    _tweet(56, withheld={"copyright": True, "country_codes": ["DE"]}), _tweet(57, author_id=None),
    _tweet(58, referenced_tweets=[{"type": "retweeted", "id": "101"}], text="RT"),
    _tweet(59, referenced_tweets=[{"type": "quoted", "id": "101", "tweet": {"id": "101", "author_id": "9",
                                                                          "created_at": "2024-05-01T00:00:00Z"}}]),
    _tweet(60, attachments={"media_keys": ["3_1"]}), _tweet(3),  # a duplicate of line 4's tweet
    _tweet(61, entities={"hashtags": [{"tag": " "}]}), _tweet(62, entities={"mentions": [{"username": "z", "id": " "}]}),
    _tweet(63, text="   "), _tweet(64, author={"id": "7"}), _tweet(65, author={}), _tweet(66, lang=""),
    _tweet(67) + " " + _tweet(68), _tweet(69, verified="yes"), _tweet(70, author={"id": 7}),
    _tweet(71, referenced_tweets=[{"type": "replied_to", "id": "1"}, {"type": "replied_to", "id": "2"}]),
    _tweet(72, entities={"urls": [{"url": "https://t.co/b", "expanded_url": ""}]}),
    _tweet(73, created_at="2024-05-01T12:00:00+02:00"), _tweet(74, author={"id": "70", "created_at": ""}),
    json.dumps({"data": [json.loads(_tweet(75))], "includes": {"users": [TWEET["author"]]}}),
]


def _salted(path: Path, n: int = 120, crlf: bool = False) -> Path:
    lines = [_tweet(i) for i in range(n)]
    for k, odd in enumerate(ODD):
        lines.insert(3 + k * (n // len(ODD)), odd)
    end = "\r\n" if crlf else "\n"
    data = end.join(lines).encode() + end.encode()
    data = data.replace(b'"text": "hello #x @bob", "conversation_id": "130"', b'"text": "caf\xe9", "conversation_id": "130"')
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("crlf", [False, True])
def test_salted_twarc2_file_identical(tmp_path, monkeypatch, crlf):
    monkeypatch.setattr(fast_mod, "LEAF", 2)  # split blocks down to single lines
    path = _salted(tmp_path / "t.jsonl", crlf=crlf)
    labels = {"105": "misinformation", "7": "bot"}
    stats = _both(tmp_path, [path], fmt="twitter", labels=labels)
    assert stats.rejected > 5 and stats.duplicates >= 1 and stats.non_utf8_lines >= 1
    fast = ColumnarWriter(tmp_path / "count")
    counts = fast_ingest_file(fast, path, "twitter")
    fast.close()
    assert counts["fast_rows"] > 80 and counts["slow_lines"] < 60  # the plain tweets took the Arrow path


def test_byte_ranges_identical(tmp_path):
    path = _salted(tmp_path / "t.jsonl", n=200)
    size = path.stat().st_size
    cuts = [0, 17, size // 3, size // 3 + 1, 2 * size // 3, size]
    for a, b in zip(cuts, cuts[1:]):
        fw, sw = ColumnarWriter(tmp_path / f"f{a}"), CanonicalWriter(tmp_path / f"s{a}")
        fast_ingest_file(fw, path, "twitter", start=a, end=b if b < size else None)
        ingest_file(sw, path, "twitter", start=a, end=b if b < size else None)
        _same(tmp_path / f"f{a}", tmp_path / f"s{a}", fw.close(), sw.close())


# values of every JSON type where a string belongs: the parser must not turn 1.5 or true into text
odd_values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.integers(-5, 10**20),
                       st.sampled_from(["true", "false", "1.5", "-3", "0", "{}", "[1]", "1e3"]),
                       st.just({"a": 1}), st.just([1]))
ids = st.one_of(st.text(max_size=4), st.integers(0, 99), st.none(), odd_values)
stamps = st.one_of(st.sampled_from(["2024-05-01T00:00:00Z", "2024-05-01T00:00:00.5+02:00", "1714521600", "", "x"]),
                   st.none(), st.integers(0, 2 * 10**9))
words = st.one_of(st.none(), st.text(max_size=6), st.integers(0, 3), odd_values)
counts = st.one_of(st.none(), st.integers(-3, 10**19), st.sampled_from(["12", " 5", "+4", "1e3", "007", "x"]),
                   st.floats(allow_nan=False, allow_infinity=False), st.booleans())
tweets = st.fixed_dictionaries(
    {"id": ids, "author_id": ids, "created_at": stamps},
    optional={"text": words, "lang": words, "conversation_id": ids,
              "referenced_tweets": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["replied_to", "quoted", "x"]),
                                                                   "id": ids}), max_size=2),
              "entities": st.fixed_dictionaries({}, optional={
                  "hashtags": st.lists(st.fixed_dictionaries({"tag": words}), max_size=2),
                  "mentions": st.lists(st.fixed_dictionaries({"username": words, "id": ids}), max_size=2)}),
              "author": st.fixed_dictionaries({"id": ids}, optional={
                  "username": words, "created_at": stamps, "description": words, "profile_image_url": words,
                  "verified": st.one_of(st.booleans(), words),
                  "public_metrics": st.fixed_dictionaries({}, optional={"followers_count": counts, "tweet_count": counts})})})


# one odd value per line, each beside plain tweets: every form a JSON value can take where the
# fast path's parser reads text, checked against the row adapters
ODD_VALUES = [1.5, 42.0, 1e3, -5, 0, 10**20, True, False, "true", "false", "1.5", "0", "-0", "{}", "[1]", {"a": 1}, [1],
              "", " ", "007"]
ODD_FIELDS = [("id",), ("author_id",), ("text",), ("lang",), ("conversation_id",), ("author", "id"), ("author", "username"),
              ("author", "description"), ("author", "verified"), ("author", "public_metrics", "followers_count"),
              ("entities", "urls", 0, "expanded_url"), ("entities", "mentions", 0, "id"), ("entities", "hashtags", 0, "tag")]


def test_every_odd_value_identical(tmp_path):
    lines = []
    for i, (field, value) in enumerate((f, v) for f in ODD_FIELDS for v in ODD_VALUES):
        t = json.loads(_tweet(i))
        t["entities"]["urls"][0]["url"] = "https://t.co/u"
        t.setdefault("author", {"id": t["author_id"], "public_metrics": {}})
        *path, last = field
        node = t
        for key in path:
            node = node[key]
        node[last] = value
        lines += [json.dumps(t), _tweet(1000 + i)]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stats = _both(tmp_path, [path], fmt="twitter")
    assert stats.rejected > 50
    fast = ColumnarWriter(tmp_path / "count")
    counts = fast_ingest_file(fast, path, "twitter")
    fast.close()
    plain = sum((1000 + i) % 5 != 2 for i in range(len(lines) // 2))  # _tweet's blank mention id goes slow
    assert counts["fast_rows"] >= plain  # the plain tweets beside the odd ones took the fast path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(tweets.map(json.dumps), min_size=1, max_size=30))
def test_fuzzed_tweets_identical(tmp_path, lines):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for engine in ("fast", "stream"):
        for f in (tmp_path / engine).glob("*"):
            f.unlink()
    _both(tmp_path, [path], fmt="twitter")


class _CountingStream(fast_mod.DuckJsonStream):
    """The whole-file stream, counting the blocks it served."""
    served = 0

    def take(self, n, first_line, last_line):
        table = super().take(n, first_line, last_line)
        type(self).served += table is not None
        return table


@pytest.mark.parametrize("odd", [None, "{broken", "", '{"id": "1"} null', "null", "AT_BLOCK_EDGE", "NUMBER_ID",
                                 "BAD_UTF8", "CRLF"])
def test_whole_file_stream_identical(tmp_path, monkeypatch, odd):
    """DuckDB reading the whole file serves block after block in line order; a line it refuses, a
    blank or a non-object line ends it there, and the rest is parsed a block at a time: the same
    output as the streaming engine either way."""
    monkeypatch.setattr(fast_mod, "BLOCK_BYTES", 4096)  # ~9 lines a block: ~40 blocks
    monkeypatch.setattr(fast_mod, "DuckJsonStream", _CountingStream)
    _CountingStream.served = 0
    lines = [_tweet(i) for i in range(360)]
    if odd == "NUMBER_ID":  # DuckDB reads it; strict_table sends it to the adapter; the stream goes on
        lines[200] = _tweet(200, id=1.5)
    elif odd == "AT_BLOCK_EDGE":  # a refused line as the first and the last of a file
        lines[0], lines[-1] = "{broken", "{broken"
    elif odd == "BAD_UTF8":  # DuckDB refuses the line (bad UTF-8 anywhere); the adapters count it
        lines[200] = _tweet(200, text="cafQQ")
    elif odd not in (None, "CRLF"):
        lines[200] = odd
    path = tmp_path / "t.jsonl"
    end = "\r\n" if odd == "CRLF" else "\n"
    path.write_bytes((end.join(lines) + end).encode().replace(b"cafQQ", b"caf\xe9"))
    stats = _both(tmp_path, [path], fmt="twitter")
    assert stats.non_utf8_lines == (odd == "BAD_UTF8")
    firsts = [first for first, _, _ in fast_mod.plain_blocks(path)]
    before_odd = sum(first <= 201 for first in firsts[1:])  # blocks wholly before line 201
    assert len(firsts) > 40
    if odd in (None, "NUMBER_ID", "CRLF"):
        assert _CountingStream.served == len(firsts)  # every block came from the stream
    elif odd in ("", "null"):  # DuckDB reads past them; the block holding one ends the stream
        assert _CountingStream.served == before_odd
    else:  # DuckDB reads ahead, and refused the line (in a file this small, before the first block)
        assert _CountingStream.served <= before_odd


def test_whole_file_stream_reddit_and_glob_path(tmp_path, monkeypatch):
    from apps.social.ingest.reddit_stream import write_reddit

    monkeypatch.setattr(fast_mod, "BLOCK_BYTES", 8192)
    monkeypatch.setattr(fast_mod, "DuckJsonStream", _CountingStream)
    _CountingStream.served = 0
    path = write_reddit(300, tmp_path / "r")
    _both(tmp_path, [path], fmt="reddit")
    assert _CountingStream.served >= 20
    odd = tmp_path / "in[1]*.ndjson"  # DuckDB would expand the brackets and star: blocks only
    odd.write_bytes(path.read_bytes())
    _CountingStream.served = 0
    _both(tmp_path / "g", [odd], fmt="reddit")
    assert _CountingStream.served == 0


def test_stream_refuses_rows_that_are_not_the_blocks_lines(tmp_path):
    from apps.social.ingest.duck_json import DuckJsonStream
    from apps.social.ingest.fast_twitter import TWEET_KINDS, TWEET_SCHEMA

    lines = [_tweet(i).encode() for i in range(6)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stream = DuckJsonStream(path, TWEET_SCHEMA, TWEET_KINDS)
    assert stream.take(2, lines[0], lines[1])["id"].to_pylist() == ["100", "101"]
    assert stream.take(2, lines[3], lines[4]) is None  # the rows are lines 2 and 3: the stream stops
    assert stream.reader is None and stream.take(1, lines[4], lines[4]) is None


def test_stream_checks_rows_and_lines_line_up():
    from apps.social.ingest.duck_json import _same_line

    assert _same_line("105", b'{"text": "x", "id": "105", "author": {"id": "7"}}')
    assert _same_line("105", b'{"id": 105, "text": "x"}')
    assert not _same_line("10", b'{"id": "105"}') and not _same_line("10", b'{"id": 105}')
    assert not _same_line("105", b'{"text": "105", "id": "106"}') and not _same_line(None, b'{"id": "1"}')
    assert _same_line('"t3_x"', b'{"id": "t3_x"}', json=True) and not _same_line('"t3_x"', b'{"id": "t3_xy"}', json=True)
    assert _same_line("7", b'{"id": 7}', json=True) and not _same_line("7", b'{"id": 75}', json=True)


def test_json_typed_leaves_pass_only_plain_strings():
    import numpy as np
    import pyarrow as pa

    from apps.social.ingest.duck_json import DuckJsonReader, strict_table

    schema = pa.schema([("id", pa.string())])
    values = ['"abc"', "7", "true", '"a\\"b"', "null", "{}", "[1]", '"7"', '"caf\\u00e9"', '""', "1.5"]
    table = DuckJsonReader(schema, {"id": "string"}).read("\n".join('{"id": %s}' % v for v in values).encode())
    out, suspect = strict_table(table, schema, {"id": "string"})
    assert out["id"].to_pylist()[:2] == ["abc", None] and out["id"].to_pylist()[7] == "7"
    assert out["id"].to_pylist()[9] == ""  # an empty string is a string (blank is the converter's business)
    assert np.flatnonzero(suspect).tolist() == [1, 2, 3, 5, 6, 10]  # other JSON types; an escape (the adapter decodes)
    assert not suspect[4]  # null is missing to both


def test_raw_lines_lack_key():
    import numpy as np

    from apps.social.ingest.duck_json import RawLines

    block = b'{"id": "a", "body": "x"}\n{"id": "b", "title": "t"}\n{"id": "c", "body": "y"}\n'
    starts = np.array([0, 25, 52])
    assert RawLines(block, starts).lacks_key("body", 2)
    assert not RawLines(block.replace(b'"title"', b'"body"'), starts).lacks_key("body", 2)
    assert not RawLines(block.replace(b'"title"', b'"b\\u006fdy"'), starts).lacks_key("body", 2)
    view = memoryview(b"xx" + block)[2:]  # a view into a larger buffer: searched in place
    assert RawLines(view, starts).lacks_key("body", 2)


@pytest.mark.parametrize("fmt", ["twitter", "reddit"])
def test_duckdb_message_cut_inside_a_character_is_a_refused_line(tmp_path, fmt):
    """DuckDB quotes a refused object in its message, cut at a byte count: inside a multi-byte
    character the message fails to decode (UnicodeDecodeError, not a DuckDB error).  That line goes
    to the adapter like any refused line, in the whole-file stream and in the block reader."""
    refused = '{"id": "1", "x": "' + "é" * 300 + '", "id": "2"}'  # a duplicate key
    plain = _tweet(5) if fmt == "twitter" else json.dumps({"id": "a1", "name": "t3_a1", "author": "u", "created_utc": 1700000000,
                                                           "title": "t", "subreddit": "s"})
    for name, lines in (("first", [refused, plain]), ("later", [plain, refused, plain])):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        stats = _both(tmp_path / name, [path], fmt=fmt)
        assert stats.rejected == 1
