"""The social function set, executed over a :class:`~.context.SocialContext` (user_analytics.parquet
and metrics.json first; the account graph for paths and pictures; data/posts.parquet for hashtags)."""
from __future__ import annotations

import io

from .context import ResultError, SocialContext
from .program import Answer, Program, abstain

METRIC_WORDS = {"pagerank": "PageRank", "degree": "degree"}


def run(ctx: SocialContext, p: Program) -> Answer:
    fn = _OPS.get(p.op)
    if fn is None:
        return abstain(p)
    try:
        return fn(ctx, p)
    except ResultError as exc:
        return abstain(p, str(exc))


def _users(ctx: SocialContext, p: Program, key: str, n: int) -> list[str] | Answer:
    """The account ids named in argument ``key`` (``n`` of them), or an answer saying what is wrong."""
    names = p.get(key)
    names = [names] if isinstance(names, str) else list(names or ())
    if len(names) < n:
        return Answer(f"Which account{'s' if n > 1 else ''}? Name {n} (e.g. @{ctx.display(ctx.users.user_id.iloc[0])}).",
                      p, value=None)
    ids = []
    for name in names[:n]:
        uid = ctx.user_id(str(name))
        if uid is None:
            return abstain(p, f"the report has no account named {name}")
        ids.append(uid)
    return ids


def _row(ctx: SocialContext, uid: str):
    return ctx.users.loc[ctx.users.user_id == uid].iloc[0]


def _community(ctx, p):
    ids = _users(ctx, p, "of", 1)
    if isinstance(ids, Answer):
        return ids
    uid = ids[0]
    c = int(_row(ctx, uid).community)
    size = int((ctx.users.community == c).sum())
    n = int(ctx.users.community.nunique())
    return Answer(f"@{ctx.display(uid)} is in community {c} ({size} accounts; {n} Leiden communities in all).", p, value=c)


def _stat(ctx, p):
    ids = _users(ctx, p, "of", 1)
    if isinstance(ids, Answer):
        return ids
    uid, by = ids[0], p.get("by", "pagerank")
    col = ctx.users[by]
    v = _row(ctx, uid)[by]
    rank = int((col > v).sum()) + 1
    value = round(float(v), 5) if by == "pagerank" else int(v)
    return Answer(f"@{ctx.display(uid)} has {METRIC_WORDS[by]} {value:g} (rank {rank} of {len(col)}).", p, value=value)


def _bot(ctx, p):
    ids = _users(ctx, p, "of", 1)
    if isinstance(ids, Answer):
        return ids
    row = _row(ctx, ids[0])
    models = [c[5:] for c in ctx.users.columns if c.startswith("pred_")]
    if not models:
        return abstain(p, "the report has no account predictions")
    model = "graph" if "graph" in models else models[0]
    pred, score = row[f"pred_{model}"], float(row.get(f"score_{model}", float("nan")))
    return Answer(f"The {model} model predicts @{ctx.display(ids[0])} is {pred} (score {score:.3f}).", p, value=str(pred))


def _top(ctx, p):
    by, k = p.get("by", "pagerank"), int(p.get("k", 5))
    k = max(1, min(k, len(ctx.users)))
    top = ctx.users.sort_values([by, "user_id"], ascending=[False, True]).head(k)
    fmt = (lambda v: f"{v:.4f}") if by == "pagerank" else (lambda v: f"{int(v)}")
    items = [f"@{ctx.display(u)} ({fmt(v)})" for u, v in zip(top.user_id, top[by])]
    return Answer(f"Top {k} accounts by {METRIC_WORDS[by]}: " + ", ".join(items) + ".", p,
                  value=[ctx.display(u) for u in top.user_id])


def _bridges(ctx, p):
    b = ctx.users[ctx.users.bridge.astype(bool)].sort_values(["participation", "user_id"], ascending=[False, True])
    if b.empty:
        return Answer("No account is marked as a bridge between communities.", p, value=[])
    shown = ", ".join(f"@{ctx.display(u)} ({v:.2f})" for u, v in zip(b.user_id.head(8), b.participation.head(8)))
    more = f" and {len(b) - 8} more" if len(b) > 8 else ""
    return Answer(f"{len(b)} bridge accounts (participation coefficient): {shown}{more}.", p,
                  value=[ctx.display(u) for u in b.user_id])


def _path(ctx, p):
    import networkx as nx

    ids = _users(ctx, p, "between", 2)
    if isinstance(ids, Answer):
        return ids
    a, b = ids
    g = ctx.graph.to_undirected(as_view=True)
    try:
        path = nx.shortest_path(g, a, b)
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return Answer(f"@{ctx.display(a)} and @{ctx.display(b)} are not connected in the account graph.", p, value=None)
    hops = len(path) - 1
    via = " -> ".join(f"@{ctx.display(u)}" for u in path)
    return Answer(f"Shortest path ({hops} hop{'s' if hops != 1 else ''}, any relation, either direction): {via}.", p,
                  value=hops, unit="hops")


def _timeline(ctx, p):
    tag = p.get("hashtag")
    if ctx.posts is None:
        return abstain(p, f"the report folder holds no posts table ({ctx.folder / 'data' / 'posts.parquet'})")
    if not tag:
        return Answer(f"Which hashtag? The posts use {', '.join('#' + t for t in ctx.hashtags[:8])}.", p, value=None)
    tag = str(tag).lower().lstrip("#")
    posts = ctx.posts
    hit = posts[posts.hashtags.map(lambda ts: ts is not None and tag in {str(t).lower().lstrip('#') for t in ts})]
    if hit.empty:
        return abstain(p, f"no post uses #{tag}")
    per_day = hit.groupby(hit.created_at.dt.strftime("%Y-%m-%d")).size()
    peak = per_day.idxmax()
    days = ", ".join(f"{d} {n}" for d, n in per_day.items())
    return Answer(f"#{tag}: {len(hit)} posts from {per_day.index[0]} to {per_day.index[-1]}, peak {per_day[peak]} on "
                  f"{peak} (posts per day, UTC: {days}).", p, value={d: int(n) for d, n in per_day.items()}, unit="posts/day")


def _counts(ctx, p):
    m = ctx.metrics
    mod = m.get("modularity")
    return Answer(f"{m.get('n_posts')} posts, {m.get('n_users', len(ctx.users))} accounts, {m.get('communities')} "
                  f"communities (modularity {mod:.3f}), {m.get('coordination_clusters')} coordination clusters.", p,
                  value={"posts": m.get("n_posts"), "accounts": m.get("n_users"), "communities": m.get("communities")})


def _subgraph(ctx, p):
    names = p.get("around")
    names = [names] if isinstance(names, str) else list(names or ())
    ids = _users(ctx, p, "around", max(1, len(names)))
    if isinstance(ids, Answer):
        return ids
    png, n_nodes, n_edges = subgraph_png(ctx, ids)
    caption = (f"The accounts within one hop of {', '.join('@' + ctx.display(u) for u in ids)}: {n_nodes} accounts, "
               f"{n_edges} edges; colour = community, size = PageRank.")
    return Answer(f"The picture shows {caption[0].lower()}{caption[1:]}", p, value=n_nodes, image_png=png, image_caption=caption)


def subgraph_png(ctx: SocialContext, ids: list[str], max_nodes: int = 40) -> tuple[bytes, int, int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = ctx.graph.to_undirected(as_view=True)
    pr = ctx.users.set_index("user_id").pagerank
    comm = ctx.users.set_index("user_id").community
    around = set(ids)
    for u in ids:
        around |= set(g.neighbors(u)) if u in g else set()
    keep = sorted(around - set(ids), key=lambda u: -float(pr.get(u, 0)))[: max(0, max_nodes - len(ids))]
    sub = g.subgraph(set(ids) | set(keep))
    pos = nx.spring_layout(sub, seed=0, iterations=40)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    nx.draw_networkx_edges(sub, pos, ax=ax, alpha=0.2, width=0.6)
    nodes = list(sub.nodes)
    nx.draw_networkx_nodes(sub, pos, nodelist=nodes, ax=ax, node_size=[40 + 3000 * float(pr.get(n, 0)) for n in nodes],
                           node_color=[int(comm.get(n, 0)) for n in nodes], cmap="tab10", alpha=0.85)
    nx.draw_networkx_labels(sub, pos, labels={u: "@" + ctx.display(u) for u in ids}, font_size=8, ax=ax)
    ax.set_title(f"{sub.number_of_nodes()} accounts around {', '.join(ctx.display(u) for u in ids)}", fontsize=8)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue(), sub.number_of_nodes(), sub.number_of_edges()


_OPS = {"community": _community, "user.stat": _stat, "bot": _bot, "top": _top, "bridges": _bridges, "path": _path,
        "timeline": _timeline, "counts": _counts, "subgraph.image": _subgraph}
