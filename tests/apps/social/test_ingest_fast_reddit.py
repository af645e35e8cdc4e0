"""The fast (Arrow) Reddit path writes exactly what the row adapter writes: the same rows in the same
order, the same rejects with line and reason, the same counts -- on the sample dumps, on a file
salted with every kind of odd line (plain, CRLF, zstd), with and without a media root, and on
fuzzed submissions/comments; and the plain lines do take the Arrow path."""
import json
from pathlib import Path

import pandas as pd
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.social.ingest import fast as fast_mod
from apps.social.ingest import ingest
from apps.social.ingest.columnar import ColumnarWriter
from apps.social.ingest.fast import fast_ingest_file
from apps.social.ingest.reddit_stream import write_reddit

DATA = Path(__file__).resolve().parents[3] / "data" / "social"


def _both(tmp_path, inputs, **kwargs):
    fast = ingest(inputs, tmp_path / "fast", engine="fast", **kwargs)
    stream = ingest(inputs, tmp_path / "stream", engine="stream", **kwargs)
    for table in ("posts", "users", "media", "edges", "rejects"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "fast" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "stream" / f"{table}.parquet"), obj=table)
    assert fast.to_dict() == stream.to_dict()
    return fast

SUB = {"id": "1ab", "name": "t3_1ab", "author": "ann", "created_utc": 1714557600, "subreddit": "news",
       "title": "Council confirms park", "selftext": "Statement below.", "url": "https://example.org/a", "score": 3}
COM = {"id": "c01", "author": "bob", "created_utc": 1714558200, "body": "Source?", "parent_id": "t3_1ab",
       "link_id": "t3_1ab", "subreddit": "news", "author_created_utc": 1600000000}


def _line(i: int, **change) -> str:
    obj = dict(COM if i % 3 else SUB)
    obj["id"] = f"{'c' if i % 3 else 's'}{i:x}"
    if i % 3 == 2:
        obj["parent_id"] = f"t1_c{i - 1:x}"
    if i % 5 == 4:
        obj["author"] = f"user{i % 4}"
    obj.update(change)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


ODD = [
    "{broken", "[1, 2]", '"just a string"', "", "   ", "null", '{"id": "1"} null', ' {"id": "zz", "author": "a", "created_utc": 1}',
    '{"id": "3"}{"id": "4"}', '{"id": "d1", "id": "d2", "author": "a", "created_utc": 1, "title": "t"}',
    _line(50, created_utc="1714557600"), _line(51, created_utc=" 1714557600"), _line(52, created_utc="-5"),
    _line(53, created_utc="1714557600.5"), _line(54, created_utc="2024-05-01T00:00:00Z"), _line(55, created_utc=""),
    _line(56, created_utc=True), _line(57, created_utc=1714557600.5), _line(58, created_utc=-1),
    _line(59, created_utc=5e9), _line(60, created_utc=0), _line(61, created_utc=None), _line(62, created_utc=1714557600.0),
    _line(63, id=7), _line(64, id=True), _line(65, id=None), _line(66, id=" "), _line(67, id="t3_full"),
    _line(68, id="ab_c"), _line(69, author=["frank"]), _line(70, author="[deleted]"), _line(71, author="[removed]"),
    _line(72, author=" [deleted]"), _line(73, author=None), _line(74, author=""), _line(75, body={"text": "hi"}),
    _line(76, body=None), _line(77, body="[removed]"), _line(78, body=" [deleted] "), _line(79, body="   "),
    _line(80, body="hi [deleted] there"), _line(81, parent_id=42), _line(82, parent_id=None), _line(83, parent_id="abc"),
    _line(84, link_id=5), _line(85, link_id=""), _line(86, link_id=...), _line(87, name="t1_x"), _line(89, name=5),
    _line(90, title="[deleted]"), _line(93, title=" ", selftext="[removed]"), _line(96, title="[removed] ", selftext=...),
    _line(99, title=..., selftext="only text"), _line(102, title=None, selftext=None), _line(105, url="https://i.redd.it/a.PNG?x=1"),
    _line(108, url="https://x.org/b/c.jpeg"), _line(111, url=5), _line(112, url="https://i.redd.it/c.png"),
    _line(114, url=" "), _line(115, subreddit=5), _line(117, subreddit=""), _line(118, author_created_utc=0),
    _line(119, author_created_utc=1.5), _line(121, author_created_utc="123"), _line(122, author_created_utc=-1),
    _line(124, author_created_utc=True), _line(125, author="[deleted]", author_created_utc="x"),
    _line(126, body=...).replace('"author"', '"b\\u006fdy": null, "author"'), _line(127, created_utc=float("nan")),
    _line(128, body="caf\u00e9 \u2028 \U0001f600"), _line(129, title="gif", url="https://a/b.gif?x=1.png"),
    _line(3), _line(4), "\x1c", _line(130) + " " + _line(131),
]


def _salted(path: Path, n: int = 120, crlf: bool = False, compress: bool = False) -> Path:
    lines = [_line(i) for i in range(n)]
    for k, odd in enumerate(ODD):
        lines.insert(3 + k * (n // len(ODD)), odd)
    end = "\r\n" if crlf else "\n"
    data = end.join(lines).encode() + end.encode()
    data = data.replace(b'"body": "Source?", "parent_id": "t1_c1f"', b'"body": "caf\xe9", "parent_id": "t1_c1f"')
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if compress else data)
    return path


@pytest.mark.parametrize("name", ["reddit.ndjson", "reddit.ndjson.zst"])
@pytest.mark.parametrize("media", [True, False])
def test_sample_dumps_identical(tmp_path, name, media):
    _both(tmp_path, [DATA / name], fmt="reddit", media_root=DATA / "media" if media else None)


@pytest.mark.parametrize("crlf,compress,media", [(False, False, False), (True, False, True), (False, True, False)])
def test_salted_reddit_file_identical(tmp_path, monkeypatch, crlf, compress, media):
    monkeypatch.setattr(fast_mod, "LEAF", 2)  # split blocks down to single lines
    path = _salted(tmp_path / ("r.ndjson.zst" if compress else "r.ndjson"), crlf=crlf, compress=compress)
    labels = {"t3_s0": "misinformation", "ann": "bot", "t1_c1": "ok"}
    stats = _both(tmp_path, [path], fmt="reddit", labels=labels, media_root=DATA / "media" if media else None)
    assert stats.rejected > 15 and stats.duplicates >= 2 and stats.non_utf8_lines >= 1
    fast = ColumnarWriter(tmp_path / "count")
    counts = fast_ingest_file(fast, path, "reddit")
    fast.close()
    assert counts["fast_rows"] > 100 and counts["slow_lines"] < 80  # the plain lines took the Arrow path


@pytest.mark.parametrize("cut", [None, 0.6, "corrupt"])
def test_zstd_frames_truncation_and_corruption_identical(tmp_path, monkeypatch, cut):
    monkeypatch.setattr(fast_mod, "BLOCK_BYTES", 3000)  # many blocks, lines across block ends
    data = _salted(tmp_path / "plain.ndjson", n=300).read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    packed = b"".join(zstandard.ZstdCompressor().compress(part) for part in (data[:half], data[half:]))  # 2 frames
    if cut == "corrupt":
        packed = packed[:len(packed) // 2] + bytes(64) + packed[len(packed) // 2 + 64:]
    elif cut:
        packed = packed[:int(len(packed) * cut)]
    path = tmp_path / "r.ndjson.zst"
    path.write_bytes(packed)
    stats = _both(tmp_path, [path], fmt="reddit")
    assert bool(stats.file_errors) == bool(cut) and (cut == "corrupt" or stats.rows["posts"] > 50)


def test_generated_dump_takes_the_arrow_path(tmp_path):
    for compress in (False, True):
        path = write_reddit(600, tmp_path / f"g{compress}", compress=compress)
        stats = _both(tmp_path / f"o{compress}", [path], fmt="reddit")
        assert stats.rows["posts"] == 600 and stats.rejected == 0
        fast = ColumnarWriter(tmp_path / f"count{compress}")
        assert fast_ingest_file(fast, path, "reddit") == {"fast_rows": 600, "slow_lines": 0}
        fast.close()
    # a dump that writes every created_utc as a string still takes the Arrow path
    text = path.with_suffix("").parent / "s.ndjson"
    text.write_text("".join(json.dumps({**json.loads(x), "created_utc": str(json.loads(x)["created_utc"])}) + "\n"
                            for x in zstandard.ZstdDecompressor().stream_reader(open(path, "rb")).read().decode().splitlines()))
    _both(tmp_path / "s", [text], fmt="reddit")
    fast = ColumnarWriter(tmp_path / "count_s")
    assert fast_ingest_file(fast, text, "reddit")["fast_rows"] == 600
    fast.close()


ids = st.one_of(st.text(max_size=4), st.sampled_from(["t3_a", "t1_b", "[deleted]", "[removed]", "a_b"]),
                st.integers(0, 99), st.none())
stamps = st.one_of(st.sampled_from(["1714521600", "1714521600.5", "", "x", " 5"]), st.none(), st.booleans(),
                   st.integers(-5, 5 * 10**9), st.floats(-1, 5e9, allow_nan=False))
words = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["[deleted]", "[removed]", " [removed]"]),
                  st.integers(0, 3))
things = st.fixed_dictionaries(
    {"id": ids, "author": ids, "created_utc": stamps},
    optional={"name": ids, "body": words, "parent_id": ids, "link_id": ids, "title": words, "selftext": words,
              "url": st.one_of(words, st.sampled_from(["https://i.redd.it/x.png", "a/b.JPG?q", "x.webp/"])),
              "subreddit": words, "author_created_utc": stamps})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(things.map(json.dumps), min_size=1, max_size=30))
def test_fuzzed_reddit_identical(tmp_path, lines):
    path = tmp_path / "in.ndjson"
    path.write_text("\n".join(lines) + "\n")
    for engine in ("fast", "stream"):
        for f in (tmp_path / engine).glob("*"):
            f.unlink()
    _both(tmp_path, [path], fmt="reddit", labels={"t3_a": "x", "a": "y"})
