"""The chunked synthetic writer behind the throughput benchmark: its files go through the real
adapters without a reject, every text comes from the finite vocabulary (what lets the benchmark
warm the embedding cache once), replies and quotes point to earlier posts across chunk borders,
and the output is deterministic."""
from apps.social.dataset import load_tables
from apps.social.ingest import CanonicalWriter, ingest_file
from apps.social.synthetic_stream import MAPPING, StreamConfig, text_vocabulary, write_stream
from apps.social.throughput import scaling_table


def test_stream_files_ingest_cleanly_and_use_the_vocabulary(tmp_path):
    cfg = StreamConfig(n_posts=2500, vocab_size=90, chunk=700, seed=3)
    raw = write_stream(cfg, tmp_path / "raw")
    writer = CanonicalWriter(tmp_path / "data")
    ingest_file(writer, raw["users"], "csv", table="users")
    ingest_file(writer, raw["posts"], "jsonl", mapping=MAPPING)
    ingest_file(writer, raw["edges"], "csv", table="edges")
    stats = writer.close()
    assert stats.rejected == 0 and stats.duplicates == 0
    assert stats.rows["posts"] == 2500 and stats.rows["users"] == raw["n_users"] == 250
    tables = load_tables(tmp_path / "data")
    posts, users = tables["posts"], tables["users"]
    assert users.followers.notna().all() and set(users.label) == {"bot", "human"}  # metadata kept, not stub rows
    texts = posts.text.dropna()
    assert set(texts) <= set(raw["vocabulary"]) and len(raw["vocabulary"]) <= 90
    assert 0.9 < len(texts) / len(posts) < 1.0  # a few posts without text
    order = posts.post_id.str[1:].astype(int)
    for col in ("parent_id", "quote_of"):
        ref = posts[col].dropna()
        assert len(ref) and (ref.str[1:].astype(int) < order[ref.index]).all()
    assert posts.created_at.is_monotonic_increasing
    edges = tables["edges"]
    assert {"follows", "reposts", "authored", "replies_to", "quotes", "mentions"} <= set(edges.relation)
    again = write_stream(cfg, tmp_path / "again")
    for name in ("users", "posts", "edges"):
        assert raw[name].read_bytes() == again[name].read_bytes(), name


def test_vocabulary_buckets_and_scaling_table():
    texts, start, size = text_vocabulary(180, n_communities=6, seed=0)
    assert len(texts) == len(set(texts)) == int(size.sum()) and len(start) == 18
    from apps.social.synthetic import CUES

    misinfo_bucket = [texts[start[b] + i] for b in range(2, 18, 3) for i in range(size[b])]  # cue 1
    assert all(any(phrase in t for phrase in CUES[1]) for t in misinfo_bucket)
    rows = [{"posts": 10_000, **{f"{s}_posts_per_s": 100.0 for s in ("ingest", "encode", "graph", "train", "predict", "export")}},
            {"posts": 100_000, **{f"{s}_posts_per_s": 50.0 for s in ("ingest", "encode", "graph", "train", "predict", "export")}}]
    table = scaling_table(rows)
    assert "x per post 100k" in table and table.splitlines()[1].split()[-1] == "2.00"  # half the rate = twice the time per post
