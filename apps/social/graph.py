"""From canonical tables to graphs: PyG ``HeteroData`` for learning, igraph/networkx for analytics.

Node types ``user`` and ``post`` (indices follow the table order; a user only seen in an edge is
added as a stub with its metadata marked absent).  Relations (schema.RELATIONS) and their
reverses ``rev_<relation>``, so every node type receives messages:

| edge type                         | meaning                          |
|-----------------------------------|----------------------------------|
| (user, follows, user)             | a follows b                      |
| (user, authored, post)            | author of the post               |
| (user, reposts, post)             | shared without comment           |
| (post, replies_to, post)          | reply -> parent                  |
| (post, quotes, post)              | quote -> quoted                  |
| (post, mentions, user)            | the post @-mentions the user     |

Edges whose post endpoint is not in the posts table (e.g. a retweet of a tweet outside the
collection) are counted in ``dangling`` and left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .schema import RELATIONS, epoch_seconds


@dataclass
class SocialGraph:
    post_ids: np.ndarray
    user_ids: np.ndarray
    edge_index: dict                     # (src_type, rel, dst_type) -> LongTensor [2, E]
    edge_time: dict                      # same keys -> int64 seconds since epoch [E] (or -1)
    n_stub_users: int = 0
    dangling: int = 0
    post_index: dict = field(default_factory=dict)
    user_index: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> dict:
        return {"post": len(self.post_ids), "user": len(self.user_ids)}

    def to_heterodata(self):
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["post"].num_nodes = len(self.post_ids)
        data["user"].num_nodes = len(self.user_ids)
        for key, index in self.edge_index.items():
            data[key].edge_index = index
        return data


def _seconds(series: pd.Series) -> np.ndarray:
    return epoch_seconds(series)  # explicit unit: Parquet gives ms, memory may give ns


def build_graph(posts: pd.DataFrame, users: pd.DataFrame, edges: pd.DataFrame, reverse: bool = True) -> SocialGraph:
    post_ids = posts.post_id.astype(str).to_numpy()
    known_users = users.user_id.astype(str).tolist()
    user_set = set(known_users)
    referenced = pd.concat([edges.loc[edges.src_type == "user", "src_id"], edges.loc[edges.dst_type == "user", "dst_id"],
                            posts.user_id]).dropna().astype(str)  # an unknown author is no account
    stubs = [u for u in pd.unique(referenced) if u not in user_set]
    user_ids = np.array(known_users + stubs, dtype=object)
    pidx = pd.Series(np.arange(len(post_ids)), index=post_ids)
    uidx = pd.Series(np.arange(len(user_ids)), index=user_ids)
    maps = {"post": pidx, "user": uidx}
    edge_index, edge_time, dangling = {}, {}, 0
    for rel, (src_type, dst_type) in RELATIONS.items():
        part = edges[edges.relation == rel]
        src = maps[src_type].reindex(part.src_id.astype(str)).to_numpy()
        dst = maps[dst_type].reindex(part.dst_id.astype(str)).to_numpy()
        ok = ~(np.isnan(src) | np.isnan(dst))
        dangling += int((~ok).sum())
        index = torch.as_tensor(np.stack([src[ok], dst[ok]]).astype(np.int64))
        times = torch.as_tensor(_seconds(part.created_at)[ok])
        edge_index[(src_type, rel, dst_type)] = index
        edge_time[(src_type, rel, dst_type)] = times
        if reverse:
            edge_index[(dst_type, f"rev_{rel}", src_type)] = index.flip(0)
            edge_time[(dst_type, f"rev_{rel}", src_type)] = times
    return SocialGraph(post_ids, user_ids, edge_index, edge_time, len(stubs), dangling,
                       {p: i for i, p in enumerate(post_ids)}, {u: i for i, u in enumerate(user_ids)})


def user_interaction_edges(g: SocialGraph) -> pd.DataFrame:
    """Weighted user->user edges: follows plus replying to / reposting / quoting / mentioning someone.

    One row per (src, dst): ``weight`` (interactions), ``relations`` (the relation types, ``;``-
    joined), ``n_<relation>`` counts, ``first_s``/``last_s`` (epoch seconds, -1 when unknown)."""
    author = torch.full((len(g.post_ids),), -1, dtype=torch.long)
    a = g.edge_index[("user", "authored", "post")]
    author[a[1]] = a[0]
    key = ("user", "follows", "user")
    parts = [(g.edge_index[key], g.edge_time[key], "follows")]
    key = ("user", "reposts", "post")
    rp = g.edge_index[key]
    parts.append((torch.stack([rp[0], author[rp[1]]]), g.edge_time[key], "reposts"))
    for rel in ("replies_to", "quotes"):
        key = ("post", rel, "post")
        e = g.edge_index[key]
        parts.append((torch.stack([author[e[0]], author[e[1]]]), g.edge_time[key], rel))
    key = ("post", "mentions", "user")
    m = g.edge_index[key]
    parts.append((torch.stack([author[m[0]], m[1]]), g.edge_time[key], "mentions"))
    frame = pd.concat([pd.DataFrame({"src": e[0].numpy(), "dst": e[1].numpy(), "relation": rel,
                                     "t": t.numpy().astype(np.int64)}) for e, t, rel in parts], ignore_index=True)
    frame = frame[(frame.src >= 0) & (frame.dst >= 0) & (frame.src != frame.dst)]
    known_t = frame.t.where(frame.t >= 0)
    grouped = frame.assign(tk=known_t).groupby(["src", "dst"])
    out = grouped.agg(weight=("relation", "size"), first_s=("tk", "min"), last_s=("tk", "max"),
                      relations=("relation", lambda r: ";".join(sorted(set(r)))))
    counts = frame.groupby(["src", "dst", "relation"]).size().unstack(fill_value=0)
    for rel in ("follows", "reposts", "replies_to", "quotes", "mentions"):
        out[f"n_{rel}"] = counts[rel].reindex(out.index).fillna(0).astype(int) if rel in counts else 0
    out[["first_s", "last_s"]] = out[["first_s", "last_s"]].fillna(-1).astype(np.int64)
    return out.reset_index()


def to_igraph(g: SocialGraph, directed: bool = True):
    import igraph as ig

    e = user_interaction_edges(g)
    graph = ig.Graph(n=len(g.user_ids), edges=list(zip(e.src.tolist(), e.dst.tolist())), directed=directed)
    graph.es["weight"] = e.weight.astype(float).tolist()
    graph.vs["name"] = [str(u) for u in g.user_ids]
    return graph


def _iso(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat() if seconds >= 0 else ""


def to_networkx(g: SocialGraph, node_attrs: dict | None = None):
    """Directed weighted user graph for Gephi.  Nodes carry ``node_attrs`` (lists aligned with the
    users; a ``label`` list becomes the node label Gephi shows, e.g. the username).  Edges carry
    ``weight``, ``relations`` (``follows;reposts``...), ``n_<relation>``, and the first/last
    interaction time (``first_seen``/``last_seen`` ISO-8601 UTC, ``first_s``/``last_s`` epoch s)."""
    import networkx as nx

    e = user_interaction_edges(g)
    graph = nx.DiGraph()
    attrs = node_attrs or {}
    for i, uid in enumerate(g.user_ids):
        graph.add_node(str(uid), **{k: v[i] for k, v in attrs.items()})
    ids = g.user_ids
    counts = [c for c in e.columns if c.startswith("n_")]
    for row in e.itertuples(index=False):
        graph.add_edge(str(ids[row.src]), str(ids[row.dst]), weight=float(row.weight), relations=row.relations,
                       first_s=int(row.first_s), last_s=int(row.last_s), first_seen=_iso(row.first_s),
                       last_seen=_iso(row.last_s), **{c: int(getattr(row, c)) for c in counts})
    return graph


def propagation_trees(posts: pd.DataFrame, g: SocialGraph) -> pd.DataFrame:
    """One row per thread: posts, reposts, depth (longest reply chain), breadth, duration."""
    parent = np.full(len(g.post_ids), -1)
    r = g.edge_index[("post", "replies_to", "post")].numpy()
    parent[r[0]] = r[1]
    depth = np.zeros(len(parent), np.int64)
    order = np.argsort(_seconds(posts.created_at), kind="stable")
    for i in order:  # parents come before replies in time, so one pass resolves depth
        if parent[i] >= 0:
            depth[i] = depth[parent[i]] + 1
    # a reply older than its parent (clock skew) is resolved by a second pass
    for i in order:
        if parent[i] >= 0:
            depth[i] = max(depth[i], depth[parent[i]] + 1)
    reposts = np.bincount(g.edge_index[("user", "reposts", "post")][1].numpy(), minlength=len(parent))
    seconds = _seconds(posts.created_at)
    frame = pd.DataFrame({"thread_id": posts.thread_id.fillna(posts.post_id).astype(str).to_numpy(), "depth": depth,
                          "reposts": reposts, "t": np.where(seconds >= 0, seconds, np.nan)})
    out = frame.groupby("thread_id").agg(posts=("depth", "size"), depth=("depth", "max"), reposts=("reposts", "sum"),
                                         start=("t", "min"), end=("t", "max"))
    out["breadth"] = frame.groupby(["thread_id", "depth"]).size().groupby("thread_id").max()
    out["duration_s"] = (out.end - out.start).fillna(-1).astype(np.int64)  # -1: no post of the thread has a time
    return out.drop(columns=["start", "end"]).reset_index().sort_values("posts", ascending=False)


def coordination_edges(g: SocialGraph, window_s: int = 1800, min_count: int = 2) -> pd.DataFrame:
    """User pairs that reposted the same post within ``window_s`` of each other at least ``min_count`` times."""
    e = g.edge_index[("user", "reposts", "post")].numpy()
    t = g.edge_time[("user", "reposts", "post")].numpy()
    frame = pd.DataFrame({"user": e[0], "post": e[1], "t": t}).sort_values(["post", "t"])
    pairs: dict[tuple[int, int], int] = {}
    for _, grp in frame.groupby("post", sort=False):
        if len(grp) < 2:
            continue
        us, ts = grp.user.to_numpy(), grp.t.to_numpy()
        lo = 0
        for hi in range(len(us)):
            while ts[hi] - ts[lo] > window_s:
                lo += 1
            for k in range(lo, hi):
                if us[k] != us[hi]:
                    key = (min(us[k], us[hi]), max(us[k], us[hi]))
                    pairs[key] = pairs.get(key, 0) + 1
    rows = [(a, b, c) for (a, b), c in pairs.items() if c >= min_count]
    return pd.DataFrame(rows, columns=["src", "dst", "count"])


def coordination_clusters(g: SocialGraph, window_s: int = 1800, min_count: int = 2, min_size: int = 3) -> pd.DataFrame:
    """Connected groups of the coordination layer: user_id, cluster (-1 for users in none)."""
    import igraph as ig

    e = coordination_edges(g, window_s, min_count)
    graph = ig.Graph(n=len(g.user_ids), edges=list(zip(e.src.tolist(), e.dst.tolist())))
    membership = np.array(graph.connected_components().membership)
    sizes = np.bincount(membership)
    cluster = np.where(sizes[membership] >= min_size, membership, -1)
    labels = {c: i for i, c in enumerate(sorted(set(cluster[cluster >= 0])))}
    return pd.DataFrame({"user_id": g.user_ids, "coordination_cluster": [labels.get(c, -1) for c in cluster]})
