"""Ingestion: every shipped sample format, a mixed good/bad file, rejects with line and reason,
byte-range partitions, and a round trip of the synthetic data through the twarc2 writer."""
import json
from pathlib import Path

import pandas as pd
import pytest

from apps.social.ingest import CanonicalWriter, detect_format, ingest, ingest_file, iter_lines, parse_time
from apps.social.ingest.common import RowError

DATA = Path(__file__).resolve().parents[3] / "data" / "social"


def _read(out, table):
    return pd.read_parquet(Path(out) / f"{table}.parquet")


def test_mixed_good_and_bad_lines_all_accounted_for(tmp_path):
    stats = ingest([DATA / "mixed_lines.jsonl"], tmp_path)
    posts, rejects = _read(tmp_path, "posts"), _read(tmp_path, "rejects")
    assert sorted(posts.post_id) == ["g1", "g2", "g3", "g4"]
    row_rejects = rejects[~rejects.reason.str.startswith("image")]
    assert dict(zip(row_rejects.line, row_rejects.reason.str.split(":").str[0])) == {
        2: "malformed JSON", 4: "missing required field 'post_id'", 5: "bad timestamp in 'created_at'",
        7: "line is not a JSON object"}
    assert stats.lines == 8 == len(posts) + stats.rejected
    # the post whose image is missing is kept, its image masked, and the problem recorded
    g4 = posts.set_index("post_id").loc["g4"]
    assert pd.isna(g4.image_path) and g4.text == "image is gone"
    assert rejects[rejects.reason.str.startswith("image missing")].line.tolist() == [8]
    assert (tmp_path / "rejects.csv").exists()
    assert json.loads((tmp_path / "ingest_report.json").read_text())["rejected"] == 4
    # empty text is missing text, timestamps with offsets are converted to UTC
    g3 = posts.set_index("post_id").loc["g3"]
    assert pd.isna(g3.text) and str(g3.created_at) == "2024-04-30 23:00:00+00:00"


# reddit: the "[deleted]" author of k0003 is unknown, not a third account
@pytest.mark.parametrize("name, fmt, posts, users, reposts", [
    ("twitter_raw.jsonl", "twitter", 3, 4, 1), ("twitter_flat.jsonl", "twitter", 2, 3, 1),
    ("reddit.ndjson", "reddit", 4, 2, 0), ("reddit.ndjson.zst", "reddit", 4, 2, 0), ("posts.csv", "csv", 3, 3, 0)])
def test_sample_files(tmp_path, name, fmt, posts, users, reposts):
    assert detect_format(DATA / name) == fmt
    mapping = json.loads((DATA / "posts_mapping.json").read_text()) if fmt == "csv" else None
    stats = ingest([DATA / name], tmp_path, mapping=mapping, media_root=DATA / "media" if fmt != "csv" else None)
    p, e = _read(tmp_path, "posts"), _read(tmp_path, "edges")
    content = p[p.kind != "repost"]  # a retweet keeps its own row (kind "repost") and is a reposts edge
    assert (len(content), stats.rows["users"], int((e.relation == "reposts").sum())) == (posts, users, reposts)
    assert int((p.kind == "repost").sum()) == reposts
    assert stats.rejected == 0
    assert p.post_id.map(type).eq(str).all() and str(p.created_at.dtype) == "datetime64[ms, UTC]"


def test_twitter_unreadable_image_is_masked_and_reported(tmp_path):
    ingest([DATA / "twitter_raw.jsonl"], tmp_path, media_root=DATA / "media")
    posts = _read(tmp_path, "posts").set_index("post_id")
    assert posts.loc["1790000000000000001"].image_path.endswith("3_100.png")
    assert pd.isna(posts.loc["1790000000000000004"].image_path)  # 3_101.png is not a PNG
    media = _read(tmp_path, "media").set_index("media_id")
    assert media.loc["3_101"].status == "unreadable"
    edges = _read(tmp_path, "edges")
    assert {"replies_to", "quotes", "mentions", "reposts", "authored"} <= set(edges.relation)


def test_reddit_zst_equals_plain(tmp_path):
    ingest([DATA / "reddit.ndjson"], tmp_path / "a")
    ingest([DATA / "reddit.ndjson.zst"], tmp_path / "b")
    for table in ("posts", "users", "edges"):
        a, b = _read(tmp_path / "a", table), _read(tmp_path / "b", table)
        pd.testing.assert_frame_equal(a.drop(columns=[c for c in ("image_path",) if c in a]),
                                      b.drop(columns=[c for c in ("image_path",) if c in b]))
    posts = _read(tmp_path / "a", "posts").set_index("post_id")
    assert pd.isna(posts.loc["t1_k0003"].text)  # "[removed]" is missing text, not a bad row
    assert posts.loc["t1_k0002"].parent_id == "t1_k0001" and posts.loc["t1_k0002"].thread_id == "t3_1abcd"


def test_byte_ranges_cover_every_line_once_with_true_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i % 7)}) for i in range(50)]
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    cuts = [0, 17, 100, 101, 333, size]
    got = [item for a, b in zip(cuts, cuts[1:]) for item in iter_lines(path, a, b)]
    assert got == list(iter_lines(path)) == [(i + 1, s) for i, s in enumerate(lines)]


def test_parse_time_forms():
    assert parse_time("2024-05-01T10:00:00.000Z").isoformat() == "2024-05-01T10:00:00+00:00"
    assert parse_time(1714557600) == parse_time("1714557600") == parse_time("2024-05-01T10:00:00Z")
    for bad in ("tomorrow", "", None, -5, True, "2024-13-01"):
        with pytest.raises(RowError):
            parse_time(bad)


def test_synthetic_twitter_round_trip(tmp_path, small_synthetic):
    data, written = small_synthetic
    ingest([written["twitter_raw"]], tmp_path, media_root=written["media"])
    canon = pd.read_parquet(written["canonical"] / "posts.parquet")
    got = _read(tmp_path, "posts")
    got = got[got.kind != "repost"]
    cols = ["post_id", "user_id", "created_at", "text", "parent_id", "quote_of", "thread_id"]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), canon[cols].reset_index(drop=True))
    assert (got.image_path.notna() == canon.image_path.notna()).all()
    key = ["src_id", "relation", "dst_id"]
    want = pd.read_parquet(written["canonical"] / "edges.parquet")
    want = want[want.relation != "follows"]  # twarc2 pages carry no follow graph
    assert sorted(map(tuple, _read(tmp_path, "edges")[key].values)) == sorted(map(tuple, want[key].values))
    users = _read(tmp_path, "users").set_index("user_id")
    ref = data.users.set_index("user_id").loc[users.index]
    assert (users.followers == ref.followers).all() and (users.default_profile == ref.default_profile).all()


def test_writer_streams_in_chunks(tmp_path):
    writer = CanonicalWriter(tmp_path, chunk_rows=3)
    ingest_file(writer, DATA / "reddit.ndjson", "reddit")
    writer.close()
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "edges.parquet").num_row_groups >= 2
