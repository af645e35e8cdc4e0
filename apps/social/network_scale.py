"""Network analytics straight from the canonical Parquet tables, for collections of millions of posts.

``mm social network DATA --out DIR`` computes what :func:`apps.social.analytics.user_analytics` gives
an analyst -- Leiden communities, weighted PageRank, k-core, participation/bridges -- without a
pandas copy of the corpus: DuckDB joins and aggregates the ``edges``/``posts`` Parquet files into
one weighted user->user edge list (columns only, spilled to disk past its memory limit), igraph
runs on integer arrays, and the per-account table is written as Parquet.  The summary (posts per
day, relations, top accounts and hashtags) is a set of DuckDB queries over the same files.

User->user interactions (as :func:`apps.social.graph.user_interaction_edges`):

| relation in ``edges``          | user edge                                   |
|--------------------------------|---------------------------------------------|
| user follows user              | follower -> followed                        |
| user reposts post              | reposter -> the post's author               |
| post replies_to / quotes post  | author of the reply/quote -> author of the parent |
| post mentions user             | the post's author -> the mentioned user     |

Weights count interactions per ordered pair; self-loops and interactions with a post outside the
``posts`` table (whose author is unknown) are left out.  The vertex set is every account of the
``users`` table plus every account an edge or a post names, so isolated accounts count in PageRank
exactly as in the in-memory path (``tests/apps/social/test_network_scale.py`` compares them).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from mmcore.utils.io import atomic_path, atomic_write_json

_AUTHORS = """
    SELECT e.dst_id AS pid, e.src_id AS uid
    FROM edges e SEMI JOIN posts p ON e.dst_id = p.post_id
    WHERE e.relation = 'authored'
"""

_USER_EDGES = f"""
WITH authors AS ({_AUTHORS}),
e AS (SELECT relation, src_id, dst_id FROM edges),
pairs AS (
    SELECT src_id AS s, dst_id AS d FROM e WHERE relation = 'follows'
    UNION ALL
    SELECT e.src_id, a.uid FROM e JOIN authors a ON e.dst_id = a.pid WHERE e.relation = 'reposts'
    UNION ALL
    SELECT a1.uid, a2.uid FROM e JOIN authors a1 ON e.src_id = a1.pid JOIN authors a2 ON e.dst_id = a2.pid
    WHERE e.relation IN ('replies_to', 'quotes')
    UNION ALL
    SELECT a.uid, e.dst_id FROM e JOIN authors a ON e.src_id = a.pid WHERE e.relation = 'mentions'
)
SELECT s, d, count(*)::DOUBLE AS w FROM pairs WHERE s IS NOT NULL AND d IS NOT NULL AND s <> d GROUP BY s, d
"""

_ACCOUNTS = """
    SELECT user_id AS uid FROM users
    UNION SELECT src_id FROM edges WHERE src_type = 'user'
    UNION SELECT dst_id FROM edges WHERE dst_type = 'user'
    UNION SELECT user_id FROM posts WHERE user_id IS NOT NULL
"""


class NetworkInputError(ValueError):
    """The data folder lacks a table the analytics need (message names the file)."""


def connect(data_dir, memory_limit: str = "2GB", threads: int = 1):
    """A DuckDB connection bounded in memory (larger joins spill to its temporary folder) with the
    views ``posts``, ``users`` and ``edges`` over the folder's Parquet files."""
    import duckdb

    data_dir = Path(data_dir)
    paths = {t: data_dir / f"{t}.parquet" for t in ("posts", "users", "edges")}
    for table, path in paths.items():
        if not path.exists():
            raise NetworkInputError(f"{path}: no {table} table (run `mm social ingest ... --out {data_dir}` first)")
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    for table, path in paths.items():  # a file, or a folder partitioned by day (ingest --partition-by day)
        pattern = str(path.resolve() / "**" / "*.parquet") if path.is_dir() else str(path.resolve())
        quoted = pattern.replace("'", "''")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{quoted}', hive_partitioning = false)")
    return con


def user_edge_arrays(con) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(account IDs [U] sorted, src [E] int64, dst [E] int64, weight [E] float64) of the directed,
    weighted user->user interaction graph."""
    con.execute("CREATE OR REPLACE TEMP TABLE accounts AS SELECT uid, (row_number() OVER (ORDER BY uid)) - 1 AS ix "
                f"FROM ({_ACCOUNTS}) WHERE uid IS NOT NULL")
    accounts = con.sql("SELECT uid FROM accounts ORDER BY ix").to_arrow_table()
    ids = accounts.column("uid").to_numpy(zero_copy_only=False).astype(object)
    edges = con.sql(f"SELECT a.ix AS s, b.ix AS d, w FROM ({_USER_EDGES}) x JOIN accounts a ON x.s = a.uid "
                        "JOIN accounts b ON x.d = b.uid ORDER BY s, d").to_arrow_table()
    return (ids, edges.column("s").to_numpy().astype(np.int64), edges.column("d").to_numpy().astype(np.int64),
            edges.column("w").to_numpy().astype(np.float64))


def participation(n: int, src: np.ndarray, dst: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(participation [n], degree [n]) on the undirected simple graph of the pairs:
    ``P_i = 1 - sum_c (k_ic / k_i)^2`` with k_ic the neighbours of i in community c."""
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    pairs = np.unique(np.stack([lo, hi], 1), axis=0) if len(src) else np.zeros((0, 2), np.int64)
    a = np.concatenate([pairs[:, 0], pairs[:, 1]])
    b = np.concatenate([pairs[:, 1], pairs[:, 0]])
    degree = np.bincount(a, minlength=n)
    n_comm = int(membership.max()) + 1 if len(membership) else 1
    keys, counts = np.unique(a * n_comm + membership[b], return_counts=True)
    squares = np.bincount(keys // n_comm, weights=counts.astype(np.float64) ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(degree > 0, 1.0 - squares / np.maximum(degree, 1) ** 2, 0.0)
    return p, degree


def network_analytics(data_dir, seed: int = 0, resolution: float = 1.0, memory_limit: str = "2GB",
                      threads: int = 1, leiden_iterations: int = -1) -> tuple[dict, dict]:
    """(columns of the per-account table, figures) for the canonical tables in ``data_dir``.
    ``leiden_iterations`` -1 runs Leiden until the partition is stable (as the in-memory path);
    a small number trades a little modularity for much less time on large graphs."""
    import igraph as ig

    seconds = {}
    t = time.perf_counter()
    con = connect(data_dir, memory_limit, threads)
    ids, src, dst, weight = user_edge_arrays(con)
    seconds["edges"] = time.perf_counter() - t
    t = time.perf_counter()
    n = len(ids)
    directed = ig.Graph(n=n, edges=np.stack([src, dst], 1), directed=True)
    directed.es["weight"] = weight.tolist()
    undirected = directed.as_undirected(combine_edges="sum")
    random.seed(seed)
    ig.set_random_number_generator(random.Random(seed))
    parts = undirected.community_leiden(objective_function="modularity", resolution=resolution,
                                        n_iterations=leiden_iterations,
                                        weights=undirected.es["weight"] if undirected.ecount() else None)
    raw = np.asarray(parts.membership, np.int64)
    sizes = np.bincount(raw)
    order = np.argsort(-sizes, kind="stable")  # community 0 is the largest; ties by first label
    membership = np.empty_like(order)
    membership[order] = np.arange(len(order))
    membership = membership[raw]
    pagerank = np.asarray(directed.pagerank(weights="weight" if len(weight) else None))
    coreness = np.asarray(undirected.coreness(), np.int64)
    part, degree = participation(n, src, dst, membership)
    seconds["graph"] = time.perf_counter() - t
    columns = {"user_id": ids, "community": membership, "pagerank": pagerank, "coreness": coreness,
               "degree": degree, "participation": part, "bridge": (part >= 0.5) & (degree >= 4)}
    figures = {"accounts": n, "user_edges": int(len(src)), "interactions": int(weight.sum()),
               "communities": int(len(sizes)), "largest_community": int(sizes.max()) if len(sizes) else 0,
               "modularity": float(undirected.modularity(membership.tolist(), weights=undirected.es["weight"]))
               if undirected.ecount() else 0.0,
               "max_coreness": int(coreness.max()) if n else 0, "bridges": int(columns["bridge"].sum()),
               "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    con.close()
    return columns, figures


def summary(data_dir, top_accounts_path=None, k: int = 10, memory_limit: str = "2GB") -> dict:
    """The collection in numbers, by DuckDB queries over the Parquet files (no table in memory)."""
    con = connect(data_dir, memory_limit)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    out = {
        "posts": q("SELECT count(*) FROM posts")[0][0],
        "accounts": q("SELECT count(*) FROM users")[0][0],
        "posts_by_kind": dict(q("SELECT coalesce(kind, 'unknown'), count(*) FROM posts GROUP BY 1 ORDER BY 2 DESC")),
        "edges_by_relation": dict(q("SELECT relation, count(*) FROM edges GROUP BY 1 ORDER BY 2 DESC")),
        "posts_per_day": {str(d): c for d, c in q(
            "SELECT CAST(created_at AS DATE) d, count(*) FROM posts WHERE created_at IS NOT NULL "
            "GROUP BY 1 ORDER BY 1")},
        "top_hashtags": q(f"SELECT lower(h) tag, count(*) n FROM (SELECT unnest(hashtags) h FROM posts) "
                          f"WHERE h IS NOT NULL GROUP BY 1 ORDER BY n DESC, tag LIMIT {int(k)}"),
    }
    if top_accounts_path is not None:
        out["top_accounts_by_pagerank"] = [
            {"user_id": u, "username": name, "pagerank": round(pr, 6), "community": int(c)} for u, name, pr, c in
            con.execute(f"SELECT a.user_id, u.username, a.pagerank, a.community FROM read_parquet(?) a "
                        f"LEFT JOIN users u USING (user_id) ORDER BY a.pagerank DESC, a.user_id LIMIT {int(k)}",
                        [str(top_accounts_path)]).fetchall()]
    out["top_hashtags"] = [{"hashtag": t, "posts": n} for t, n in out["top_hashtags"]]
    con.close()
    return out


def run(data_dir, out_dir, seed: int = 0, resolution: float = 1.0, memory_limit: str = "2GB",
        leiden_iterations: int = -1) -> dict:
    """Write ``accounts_network.parquet`` (one row per account) and ``network.json`` (figures and
    the DuckDB summary) into ``out_dir``; return the figures."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns, figures = network_analytics(data_dir, seed, resolution, memory_limit, leiden_iterations=leiden_iterations)
    figures["leiden_iterations"] = leiden_iterations
    table = pa.table({k: pa.array(v if k != "user_id" else v.tolist(), pa.string() if k == "user_id" else None)
                      for k, v in columns.items()})
    target = out_dir / "accounts_network.parquet"
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=100_000)
    t = time.perf_counter()
    figures["summary"] = summary(data_dir, target, memory_limit=memory_limit)
    figures["seconds"]["summary"] = round(time.perf_counter() - t, 2)
    figures["seed"] = seed
    atomic_write_json(out_dir / "network.json", figures)
    return figures
