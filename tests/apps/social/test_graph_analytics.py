"""Graph building, propagation trees, coordination and analytics against references
(networkx PageRank and core numbers) and against what the generator planted."""
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from apps.social.analytics import topic_clusters, user_analytics
from apps.social.graph import build_graph, coordination_clusters, propagation_trees, to_igraph, to_networkx


@pytest.fixture(scope="module")
def graph(small_synthetic):
    from apps.social.dataset import load_tables

    data, written = small_synthetic
    tables = load_tables(written["canonical"])  # through Parquet, the way ingest writes them
    return data, build_graph(tables["posts"], tables["users"], tables["edges"])


def test_hetero_graph_relations_and_reverses(graph):
    data, g = graph
    hd = g.to_heterodata()
    assert hd["post"].num_nodes == len(data.posts) and hd["user"].num_nodes == len(data.users)
    for rel in ("follows", "authored", "reposts", "replies_to", "quotes", "mentions"):
        key = next(k for k in g.edge_index if k[1] == rel)
        rev = (key[2], f"rev_{rel}", key[0])
        assert g.edge_index[key].shape[1] == int((data.edges.relation == rel).sum())
        assert np.array_equal(g.edge_index[rev].numpy(), g.edge_index[key].flip(0).numpy())
    hd.validate()


def test_stub_users_and_dangling_edges():
    posts = pd.DataFrame({"post_id": ["a"], "user_id": ["u1"], "created_at": pd.to_datetime(["2024-01-01"], utc=True)})
    users = pd.DataFrame({"user_id": ["u1"]})
    edges = pd.DataFrame({"src_type": ["user", "user"], "src_id": ["u2", "u1"], "relation": ["reposts", "reposts"],
                          "dst_type": ["post", "post"], "dst_id": ["a", "missing"],
                          "created_at": pd.to_datetime(["2024-01-01"] * 2, utc=True)})
    g = build_graph(posts, users, edges)
    assert list(g.user_ids) == ["u1", "u2"] and g.n_stub_users == 1 and g.dangling == 1


def test_propagation_tree_depths():
    posts = pd.DataFrame({"post_id": list("abcde"), "thread_id": ["a", "a", "a", "a", "e"],
                          "created_at": pd.to_datetime([1, 2, 3, 4, 5], unit="s", utc=True), "user_id": ["u"] * 5})
    edges = pd.DataFrame({"src_type": "post", "src_id": ["b", "c", "d"], "relation": "replies_to", "dst_type": "post",
                          "dst_id": ["a", "b", "a"], "created_at": pd.to_datetime([2, 3, 4], unit="s", utc=True)})
    g = build_graph(posts, pd.DataFrame({"user_id": ["u"]}), edges)
    trees = propagation_trees(posts, g).set_index("thread_id")
    assert trees.loc["a"].tolist()[:3] == [4, 2, 0] and trees.loc["a", "breadth"] == 2 and trees.loc["e", "depth"] == 0


def test_coordination_clusters_are_the_planted_co_reposting_groups(graph):
    """Amplifying bot cells and human fan groups both co-repost within minutes (coordination is
    not bot-ness): the accounts flagged are members of co-reposting groups, and groups that never
    co-repost are not flagged."""
    data, g = graph
    clusters = coordination_clusters(g).merge(data.user_truth, on="user_id")
    flagged = clusters[clusters.coordination_cluster >= 0]
    assert len(flagged) and flagged.active.mean() > 0.95
    assert (clusters[~clusters.active].coordination_cluster >= 0).mean() < 0.05
    active_bots = clusters[clusters.is_bot & clusters.active]
    assert (active_bots.coordination_cluster >= 0).mean() >= 0.5


def test_analytics_match_networkx_and_planted_communities(graph):
    data, g = graph
    users = user_analytics(g, seed=0)
    ig_graph = to_igraph(g, directed=True)
    nxg = nx.DiGraph()
    nxg.add_nodes_from(range(ig_graph.vcount()))
    nxg.add_weighted_edges_from((e.source, e.target, e["weight"]) for e in ig_graph.es)
    ref = nx.pagerank(nxg, weight="weight", tol=1e-10)
    assert np.allclose(users.pagerank.to_numpy(), [ref[i] for i in range(len(ref))], atol=1e-5)
    core = nx.core_number(nx.Graph(nxg.to_undirected()))
    assert users.coreness.tolist() == [core[i] for i in range(len(core))]
    from sklearn.metrics import normalized_mutual_info_score

    humans = ~data.user_truth.is_bot.to_numpy()
    nmi = normalized_mutual_info_score(data.user_truth.community[humans], users.community[humans])
    assert nmi > 0.5
    assert to_networkx(g).number_of_nodes() == len(g.user_ids)


def test_topic_clusters_follow_community_topics(small_synthetic):
    from apps.social.text import hashed_features

    data, _ = small_synthetic
    texts = data.posts.text.tolist()
    present = data.posts.text.notna().to_numpy()
    topic, table = topic_clusters(texts, hashed_features(texts), present, k=6)
    assert (topic[~present] == -1).all() and table.posts.sum() == present.sum()
    assert any(w in table.top_words.str.cat(sep=" ") for w in ("election", "vaccine", "climate", "economy"))
