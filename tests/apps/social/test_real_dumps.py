"""Issue 18's defects on the way real dumps travel: every input goes through files and the
canonical Parquet tables that ``ingest`` writes (pandas 3 reads their times back as
``datetime64[ms]``), never through in-memory frames.  Each test failed on c25a5c5."""
import bz2
import gzip
import json
import lzma
import os

import numpy as np
import pandas as pd
import pytest

from apps.social.dataset import load_tables
from apps.social.features import post_graph_stats
from apps.social.graph import build_graph, propagation_trees
from apps.social.ingest import ingest
from mmcore.cli import main as mm

T0 = pd.Timestamp("2024-05-01T10:00:00Z")


def _iso(seconds_after: float) -> str:
    return (T0 + pd.Timedelta(seconds=seconds_after)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _posts(n: int) -> list[dict]:
    return [{"post_id": f"p{i}", "user_id": f"u{i % 7}", "created_at": _iso(i), "text": f"post number {i}"} for i in range(n)]


def _read(out, table):
    return pd.read_parquet(out / f"{table}.parquet")


# ----------------------------------------------------------------------------- 1. time units
def test_edge_times_and_burst_share_survive_the_parquet_round_trip(tmp_path):
    rows = [{"post_id": "a", "user_id": "u1", "created_at": _iso(0), "text": "original"},
            {"post_id": "b", "user_id": "u2", "created_at": _iso(60), "text": "a reply", "parent_id": "a"},
            {"user_id": "u3", "created_at": _iso(600), "repost_of": "a"},      # 10 min: inside the burst window
            {"user_id": "u4", "created_at": _iso(7200), "repost_of": "a"}]     # 2 h: outside
    ingest([_jsonl(tmp_path / "in.jsonl", rows)], tmp_path / "data")
    tables = load_tables(tmp_path / "data")
    assert str(tables["edges"].created_at.dtype) == "datetime64[ms, UTC]"  # what pandas 3 gives back
    g = build_graph(tables["posts"], tables["users"], tables["edges"])
    t0 = int(T0.timestamp())
    assert sorted(g.edge_time[("user", "reposts", "post")].tolist()) == [t0 + 600, t0 + 7200]
    stats = post_graph_stats(g, tables["posts"])
    assert stats[g.post_index["a"], 3] == pytest.approx(0.5)  # one of two reposts within 30 minutes
    trees = propagation_trees(tables["posts"], g).set_index("thread_id")
    assert trees.loc["a", "duration_s"] == 60


def test_graph_statistics_equal_in_memory_and_through_parquet(small_synthetic):
    data, written = small_synthetic
    tables = load_tables(written["canonical"])
    mem = build_graph(data.posts, data.users, data.edges)
    disk = build_graph(tables["posts"], tables["users"], tables["edges"])
    for key in mem.edge_time:
        assert np.array_equal(mem.edge_time[key].numpy(), disk.edge_time[key].numpy()), key
    assert np.allclose(post_graph_stats(mem, data.posts), post_graph_stats(disk, tables["posts"]))
    assert post_graph_stats(disk, tables["posts"])[:, 3].max() <= 1.0


# ----------------------------------------------------------------------------- 2. damaged input
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_truncated_zst_keeps_what_was_read_reports_lines_and_exits_nonzero(tmp_path, capsys):
    import zstandard

    text = "".join(json.dumps(r) + "\n" for r in _posts(3000)).encode()
    blob = zstandard.ZstdCompressor(level=3).compress(text)
    cut = tmp_path / "dump.jsonl.zst"
    cut.write_bytes(blob[: len(blob) // 2])
    assert mm(["social", "ingest", str(cut), "--out", str(tmp_path / "out")]) == 2
    message = _one_line_error(capsys)
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    lines_read = report["truncated"][str(cut)]
    assert "truncated" in message and f"after {lines_read} lines" in message
    assert 0 < lines_read < 3000 and report["rows"]["posts"] >= lines_read - 1


@pytest.mark.parametrize("codec", ["gzip", "bz2", "xz", "zst"])
def test_compression_found_by_magic_bytes_not_by_name(tmp_path, codec):
    import zstandard

    text = "".join(json.dumps(r) + "\n" for r in _posts(50)).encode()
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
              "zst": zstandard.ZstdCompressor().compress}[codec](text)
    path = tmp_path / "dump.jsonl.zst"  # the name says zstd whatever the bytes are
    path.write_bytes(packed)
    stats = ingest([path], tmp_path / "out")
    assert stats.rows["posts"] == 50 and not getattr(stats, "file_errors", [])


def test_missing_empty_and_corrupt_files_give_one_line_and_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.zst"
    junk.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    corrupt_gz = tmp_path / "bad.jsonl.gz"
    corrupt_gz.write_bytes(gzip.compress(b'{"post_id": "x"}\n' * 100)[:20] + os.urandom(200))
    for path in (tmp_path / "missing.jsonl", junk, empty, corrupt_gz):
        assert mm(["social", "ingest", str(path), "--out", str(tmp_path / f"out-{path.name}")]) == 2, path
        message = _one_line_error(capsys)
        assert message.startswith("mm social: ") and str(path) in message


def test_one_bad_file_does_not_stop_the_others(tmp_path, capsys):
    good = _jsonl(tmp_path / "good.jsonl", _posts(5))
    assert mm(["social", "ingest", str(tmp_path / "missing.jsonl"), good, "--out", str(tmp_path / "out")]) == 2
    assert len(_read(tmp_path / "out", "posts")) == 5
    assert "missing.jsonl" in _one_line_error(capsys)


def test_csv_cell_over_the_csv_module_limit_is_kept(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters > csv's default 131,072
    path = tmp_path / "posts.csv"
    pd.DataFrame({"post_id": ["a", "b"], "user_id": ["u", "v"], "created_at": [_iso(0), _iso(1)],
                  "text": [long_text, "short"]}).to_csv(path, index=False)
    stats = ingest([path], tmp_path / "out")
    posts = _read(tmp_path / "out", "posts").set_index("post_id")
    assert stats.rows["posts"] == 2 and len(posts.loc["a", "text"]) == len(long_text)


# ----------------------------------------------------------------------------- 3. duplicates and types
def test_a_duplicated_line_adds_no_edge_twice(tmp_path):
    rows = _posts(15) + [{"post_id": "r", "user_id": "u9", "created_at": _iso(99), "text": "reply", "parent_id": "p1"}]
    stats = ingest([_jsonl(tmp_path / "in.jsonl", rows + [rows[-1], rows[3]])], tmp_path / "out")
    edges = _read(tmp_path / "out", "edges")
    assert stats.duplicates == 2
    assert (edges.relation == "authored").sum() == len(_read(tmp_path / "out", "posts")) == 16
    assert (edges.relation == "replies_to").sum() == 1


@pytest.mark.parametrize("fmt, row, field", [
    ("reddit", {"id": "c1", "author": ["frank"], "created_utc": 1714557600, "body": "hi", "parent_id": "t3_a"}, "author"),
    ("reddit", {"id": True, "author": "ann", "created_utc": 1714557600, "title": "t"}, "id"),
    ("reddit", {"id": "c2", "author": "ann", "created_utc": 1714557600, "body": {"text": "hi"}, "parent_id": "t3_a"}, "body"),
    ("reddit", {"id": "c3", "author": "ann", "created_utc": 1714557600, "body": "hi", "parent_id": 42}, "parent_id"),
    ("jsonl", {"post_id": "a", "user_id": ["frank"], "created_at": "2024-05-01T00:00:00Z"}, "user_id"),
    ("jsonl", {"post_id": "b", "user_id": "u", "created_at": "2024-05-01T00:00:00Z", "text": {"x": 1}}, "text"),
])
def test_fields_of_the_wrong_type_are_rejected_with_their_name(tmp_path, fmt, row, field):
    ok = {"id": "s1", "author": "ann", "created_utc": 1714557600, "title": "fine"} if fmt == "reddit" else \
        {"post_id": "ok", "user_id": "u", "created_at": "2024-05-01T00:00:00Z", "text": "fine"}
    stats = ingest([_jsonl(tmp_path / "in.jsonl", [ok, row])], tmp_path / "out", fmt)
    rejects = _read(tmp_path / "out", "rejects")
    assert stats.rows["posts"] == 1 and stats.rejected == 1
    assert rejects.line.tolist() == [2] and f"'{field}'" in rejects.reason[0], rejects.reason[0]


# ----------------------------------------------------------------------------- 4. encoding and identity
def test_non_utf8_lines_are_counted(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(r).encode() for r in _posts(3)]
    lines[1] = lines[1].replace(b"post number", b"caf\xe9 number")  # Latin-1 byte
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = ingest([path], tmp_path / "out")
    assert stats.rows["posts"] == 3
    assert json.loads((tmp_path / "out" / "ingest_report.json").read_text())["non_utf8_lines"] == 1


def test_deleted_reddit_authors_are_unknown_not_one_hub(tmp_path):
    rows = [{"id": "s1", "author": "ann", "created_utc": 1714557600, "title": "a thread", "subreddit": "news"}]
    rows += [{"id": f"c{i}", "author": "[deleted]", "created_utc": 1714557600 + i, "body": f"comment {i}",
              "parent_id": "t3_s1", "link_id": "t3_s1"} for i in range(5)]
    ingest([_jsonl(tmp_path / "in.ndjson", rows)], tmp_path / "out", "reddit")
    tables = load_tables(tmp_path / "out")
    assert "[deleted]" not in set(tables["users"].user_id)
    assert tables["posts"].user_id.isna().sum() == 5
    g = build_graph(tables["posts"], tables["users"], tables["edges"])
    assert list(g.user_ids) == ["ann"] and g.edge_index[("user", "authored", "post")].shape[1] == 1


# ----------------------------------------------------------------------------- 5. Twitter v2 fidelity
def test_twitter_page_keeps_every_tweet_with_its_id_author_and_status(tmp_path):
    page = {"data": [
        {"id": "1", "author_id": "10", "created_at": _iso(0), "text": "an original", "attachments": {"media_keys": ["m404"]}},
        {"id": "2", "author_id": "20", "created_at": _iso(5), "text": "RT @ann: an original",
         "referenced_tweets": [{"type": "retweeted", "id": "1"}]},
        {"id": "3", "author_id": "30", "created_at": _iso(9), "text": "replying", "referenced_tweets": [{"type": "replied_to", "id": "4"}]},
        {"id": "5", "text": "This Tweet is withheld", "withheld": {"copyright": False, "country_codes": ["DE"]}}],
        "includes": {"users": [{"id": "10", "username": "ann"}, {"id": "20", "username": "bob"}, {"id": "30", "username": "cy"}],
                     "tweets": [{"id": "4", "author_id": "10", "created_at": _iso(-60), "text": "cited only"}],
                     "media": []},
        "errors": [{"resource_id": "6", "resource_type": "tweet", "title": "Not Found Error", "detail": "gone"}]}
    stats = ingest([_jsonl(tmp_path / "raw.jsonl", [page])], tmp_path / "out", "twitter", media_root=tmp_path)
    posts = _read(tmp_path / "out", "posts").set_index("post_id")
    assert posts.loc["2", "user_id"] == "20" and posts.loc["2", "kind"] == "repost" and posts.loc["2", "repost_of"] == "1"
    assert posts.loc["5", "status"] == "withheld" and pd.isna(posts.loc["5", "created_at"])
    assert posts.loc["6", "status"] == "deleted"
    assert posts.collection.to_dict() == {"1": "collected", "2": "collected", "3": "collected", "5": "collected",
                                          "4": "referenced", "6": "referenced"}
    assert (stats.posts_collected, stats.posts_referenced) == (4, 2)
    edges = _read(tmp_path / "out", "edges")
    assert edges[edges.relation == "reposts"][["src_id", "dst_id"]].values.tolist() == [["20", "1"]]
    media = _read(tmp_path / "out", "media").set_index("media_id")
    assert media.loc["m404", "status"] == "not_in_includes"
    assert _read(tmp_path / "out", "rejects").reason.str.contains("not in includes").any()


# ----------------------------------------------------------------------------- 6. outputs
def test_rejects_histogram_is_keyed_by_reason(tmp_path):
    bad = [{"id": str(i), "author_id": "1", "text": "no time"} for i in range(3)]
    page = {"data": [{"id": "9", "author_id": "1", "created_at": _iso(0), "text": "fine"}] + bad}
    stats = ingest([_jsonl(tmp_path / "raw.jsonl", [page])], tmp_path / "out", "twitter")
    assert stats.reasons == {"missing required field 'created_at'": 3}


def test_gephi_export_labels_nodes_by_username_and_edges_by_relation_and_time(tmp_path, small_synthetic):
    import networkx as nx

    from apps.social.analytics import user_analytics
    from apps.social.graph import to_networkx
    from apps.social.outputs import node_attributes, write_gephi

    _, written = small_synthetic
    tables = load_tables(written["canonical"])
    g = build_graph(tables["posts"], tables["users"], tables["edges"])
    users = user_analytics(g)
    names = dict(zip(tables["users"].user_id, tables["users"].username))
    try:
        from apps.social.outputs import usernames
        attrs = node_attributes(users, None, usernames(tables["users"], g.user_ids))
    except ImportError:  # the code before issue 18 had no way to pass them
        attrs = node_attributes(users, None)
    write_gephi(to_networkx(g, attrs), tmp_path)
    gexf = nx.read_gexf(tmp_path / "users.gexf")
    assert all(d["label"] == names[n] for n, d in gexf.nodes(data=True))
    edges = list(gexf.edges(data=True))
    assert edges and all(d["relations"] and "first_seen" in d for _, _, d in edges)
    reposts = [d for _, _, d in edges if "reposts" in d["relations"].split(";")]
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    assert reposts and all(pd.Timestamp(d["last_seen"]) > t0 for d in reposts)
    graphml = nx.read_graphml(tmp_path / "users.graphml")
    assert all("relations" in d and "last_s" in d for _, _, d in graphml.edges(data=True))
