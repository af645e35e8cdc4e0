"""`mm social ingest --partition-by day`: hive-partitioned posts/edges that every reader sees as the
single files, and a re-ingest that replaces one layout with the other."""
import json

import pandas as pd

from apps.social.cli import cmd_ingest, register
from apps.social.dataset import load_tables
from apps.social.network_scale import network_analytics


def _ingest(argv):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return cmd_ingest(parser.parse_args(["social", "ingest", *argv]))


def _sorted(frame, key):
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def test_day_partitions_read_back_as_the_single_files(small_synthetic, tmp_path):
    _, written = small_synthetic
    flat = str(written["twitter_flat"])
    assert _ingest([flat, "--out", str(tmp_path / "single")]) == 0
    assert _ingest([flat, "--out", str(tmp_path / "daily"), "--partition-by", "day"]) == 0
    days = sorted(p.name for p in (tmp_path / "daily" / "posts.parquet").iterdir())
    assert len(days) > 20 and all(d.startswith("day=2024-") for d in days)
    one = pd.read_parquet(tmp_path / "daily" / "posts.parquet" / days[0])
    assert "day" not in one and pd.to_datetime(one.created_at).dt.strftime("day=%Y-%m-%d").eq(days[0]).all()
    report = json.loads((tmp_path / "daily" / "ingest_report.json").read_text())
    assert report["partitioned_by_day"] == {"posts": len(days), "edges": report["partitioned_by_day"]["edges"]}
    a, b = load_tables(tmp_path / "single"), load_tables(tmp_path / "daily")
    for table, key in (("posts", ["post_id"]), ("users", ["user_id"]), ("edges", ["relation", "src_id", "dst_id", "created_at", "src_type", "dst_type"])):
        assert list(b[table].columns) == list(a[table].columns)
        assert _sorted(b[table], key).equals(_sorted(a[table], key)), table
    ours, _ = network_analytics(tmp_path / "daily")
    ref, _ = network_analytics(tmp_path / "single")
    assert list(ours["user_id"]) == list(ref["user_id"]) and (ours["pagerank"] == ref["pagerank"]).all()
    # the same folder ingested again without partitions: the day folders are replaced by single files
    assert _ingest([flat, "--out", str(tmp_path / "daily")]) == 0
    assert (tmp_path / "daily" / "posts.parquet").is_file() and not list(tmp_path.glob("daily/.*old*"))
    assert _sorted(load_tables(tmp_path / "daily")["posts"], ["post_id"]).equals(_sorted(a["posts"], ["post_id"]))
