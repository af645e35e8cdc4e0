"""Network analytics from Parquet (DuckDB + igraph) against the in-memory path and a hand-made graph."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.social.network_scale import NetworkInputError, network_analytics, participation, run
from apps.social.schema import EDGES, POSTS, USERS


def test_same_accounts_pagerank_coreness_and_communities_as_the_in_memory_path(small_synthetic):
    from sklearn.metrics import normalized_mutual_info_score

    from apps.social.analytics import user_analytics
    from apps.social.dataset import load_tables
    from apps.social.graph import build_graph

    _, written = small_synthetic
    tables = load_tables(written["canonical"])
    ref = user_analytics(build_graph(tables["posts"], tables["users"], tables["edges"]), seed=0).set_index("user_id")
    columns, figures = network_analytics(written["canonical"], seed=0)
    ours = pd.DataFrame(columns).set_index("user_id")
    assert sorted(ours.index) == sorted(ref.index)
    ref = ref.loc[ours.index]
    assert np.allclose(ours.pagerank, ref.pagerank, atol=1e-9)
    assert (ours.coreness == ref.coreness).all() and (ours.degree == ref.degree).all()
    assert np.allclose(ours.participation, ref.participation)
    assert normalized_mutual_info_score(ref.community, ours.community) > 0.9
    assert figures["communities"] == ours.community.nunique() and 0.3 < figures["modularity"] < 1


def _write(folder, posts, users, edges):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, schema in (("posts", posts, POSTS), ("users", users, USERS), ("edges", edges, EDGES)):
        cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
        pq.write_table(pa.table(cols, schema=schema), folder / f"{name}.parquet")


def test_user_edges_follow_the_relations_and_leave_out_unknown_authors(tmp_path):
    """a follows b; b reposts a's post; c replies to b's post and mentions a; d reposts a post outside
    the collection (no author: no edge, but d is an account); a self-reply is no edge."""
    t = pd.Timestamp("2024-01-01", tz="UTC")
    posts = [{"post_id": "p1", "user_id": "a", "created_at": t}, {"post_id": "p2", "user_id": "b", "created_at": t},
             {"post_id": "p3", "user_id": "c", "created_at": t, "parent_id": "p2", "hashtags": ["News", "x"]},
             {"post_id": "p4", "user_id": "a", "created_at": t, "parent_id": "p1"}]
    users = [{"user_id": u, "username": f"@{u}"} for u in "abc"]
    e = lambda s_t, s, rel, d_t, d: {"src_type": s_t, "src_id": s, "relation": rel, "dst_type": d_t, "dst_id": d,  # noqa: E731
                                     "created_at": t}
    edges = [e("user", p["user_id"], "authored", "post", p["post_id"]) for p in posts] + [
        e("user", "a", "follows", "user", "b"), e("user", "b", "reposts", "post", "p1"),
        e("post", "p3", "replies_to", "post", "p2"), e("post", "p3", "mentions", "user", "a"),
        e("user", "d", "reposts", "post", "gone"), e("post", "p4", "replies_to", "post", "p1")]
    _write(tmp_path / "data", posts, users, edges)
    columns, figures = network_analytics(tmp_path / "data")
    assert list(columns["user_id"]) == ["a", "b", "c", "d"]
    assert figures["user_edges"] == 4 and figures["interactions"] == 4  # a->b, b->a, c->b, c->a
    assert list(columns["degree"]) == [2, 2, 2, 0]  # undirected simple graph: a-b, b-c, a-c
    out = run(tmp_path / "data", tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "accounts_network.parquet").to_pandas()
    assert len(table) == 4 and table.pagerank.sum() == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "network.json").read_text())
    assert saved["summary"]["posts"] == 4 and saved["summary"]["top_hashtags"][0] == {"hashtag": "news", "posts": 1}
    assert saved["summary"]["edges_by_relation"]["reposts"] == 2 and out["accounts"] == 4
    assert saved["summary"]["top_accounts_by_pagerank"][0]["username"].startswith("@")


def test_participation_against_a_hand_count():
    # 0 has neighbours 1, 2 (community 0) and 3 (community 1): 1 - (2/3)^2 - (1/3)^2 = 4/9
    src, dst = np.array([0, 0, 3, 1]), np.array([1, 2, 0, 0])  # 1->0 duplicates 0->1
    p, degree = participation(4, src, dst, np.array([0, 0, 0, 1]))
    assert degree.tolist() == [3, 1, 1, 1] and p[0] == pytest.approx(4 / 9) and p[1] == 0


def test_a_folder_without_tables_is_named(tmp_path):
    with pytest.raises(NetworkInputError, match="posts.parquet: no posts table"):
        network_analytics(tmp_path)
