"""Single-feature leakage: how well each feature *alone* separates each label.

For every label (post: misinformation vs reliable; user: bot vs human) and every feature f the
pipeline computes per node, plus the IDs, times and each word:

    AUC_sep(f) = max(AUC(f), 1 - AUC(f))      (0.5: useless alone; 1.0: the label is f)

over all labelled rows.  A benchmark whose labels one column gives away measures that column,
not fusion; ``mm bench social --leakage`` prints this table and the synthetic generator is built
so that every entry stays <= 0.80.  Features are read from the canonical Parquet tables, the way
``analyze`` reads them.

Post features: ``post_id_number``, ``created_s``, ``author_id_number``, the four post graph
statistics (``features.post_graph_stats``), has_text/has_image, text length, hashtag/mention
counts, reply/quote flags, image stripe orientation (horizontal minus vertical gradient energy),
the author's 8 metadata columns, and ``best_word`` (the single word whose presence separates best).
User features: ``user_id_number``, the 8 metadata columns, posts authored, follows out/in,
reciprocal follows, reposts made, reposts within 30 min of the post (count and share),
co-repost partners (accounts that reposted the same post within 30 min at least twice), member
of a coordination cluster, and ``best_word`` over the account's posts.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from .features import META_NAMES, post_graph_stats, user_metadata
from .graph import build_graph, coordination_clusters, coordination_edges
from .schema import epoch_seconds
from .synthetic_io import image_array
from .text import TOKEN


def separation_auc(values, positive) -> float:
    """max(AUC, 1 - AUC) of ``values`` as a score for ``positive`` (nan when one class is absent)."""
    from sklearn.metrics import roc_auc_score

    values, positive = np.asarray(values, float), np.asarray(positive, bool)
    ok = np.isfinite(values)
    if positive[ok].all() or not positive[ok].any():
        return float("nan")
    auc = roc_auc_score(positive[ok], values[ok])
    return float(max(auc, 1 - auc))


def _id_number(ids) -> np.ndarray:
    """The number inside an ID (``u00042`` -> 42); the rank of the string where there is none."""
    ids = pd.Series(ids).astype(str)
    num = pd.to_numeric(ids.str.extract(r"(\d+)", expand=False), errors="coerce")
    return num.fillna(ids.rank(method="dense")).to_numpy(float)


def best_word(texts: list, positive: np.ndarray, min_count: int = 5) -> tuple[str, float]:
    """The word whose presence (in a row's text) alone separates ``positive`` best, and its AUC.

    A presence indicator's AUC is ``(TPR + 1 - FPR) / 2``, so this needs counts only."""
    pos_n, neg_n = int(positive.sum()), int((~positive).sum())
    if not pos_n or not neg_n:
        return "", float("nan")
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for text, is_pos in zip(texts, positive):
        if isinstance(text, str):
            for w in set(TOKEN.findall(text.lower())):
                counts[w][0 if is_pos else 1] += 1
    best, best_auc = "", 0.5
    for w, (p, q) in counts.items():
        if p + q < min_count:
            continue
        auc = (p / pos_n + 1 - q / neg_n) / 2
        auc = max(auc, 1 - auc)
        if auc > best_auc:
            best, best_auc = w, auc
    return best, float(best_auc)


def _stripe_orientation(pixels: np.ndarray, present: np.ndarray) -> np.ndarray:
    x = pixels.astype(np.float32).mean(-1)
    down = np.abs(np.diff(x, axis=1)).mean((1, 2))    # changes down a column: horizontal stripes
    across = np.abs(np.diff(x, axis=2)).mean((1, 2))  # changes along a row: vertical stripes
    return np.where(present, down - across, np.nan)


def post_features(tables: dict, g=None) -> pd.DataFrame:
    posts, users = tables["posts"], tables["users"]
    g = g or build_graph(posts, users, tables["edges"])
    stats = post_graph_stats(g, posts)
    meta, present = user_metadata(users, g, pd.to_datetime(posts.created_at, utc=True).max())
    author = pd.Series(g.user_index).reindex(posts.user_id.astype(str)).to_numpy()
    known = ~np.isnan(author)
    author_meta = np.full((len(posts), meta.shape[1]), np.nan)
    rows = author[known].astype(int)
    author_meta[known] = np.where(present[rows, None], meta[rows], np.nan)
    text = posts.text
    frame = pd.DataFrame({
        "post_id_number": _id_number(posts.post_id), "created_s": epoch_seconds(posts.created_at).astype(float),
        "author_id_number": _id_number(posts.user_id),
        "log_reposts": stats[:, 0], "log_replies": stats[:, 1], "log_quotes": stats[:, 2], "fast_repost_share": stats[:, 3],
        "has_text": text.notna().astype(float), "text_length": text.fillna("").str.len().astype(float),
        "n_hashtags": posts.hashtags.map(lambda v: len(v) if v is not None else 0).astype(float),
        "n_mentions": posts.mentions.map(lambda v: len(v) if v is not None else 0).astype(float),
        "is_reply": posts.parent_id.notna().astype(float), "is_quote": posts.quote_of.notna().astype(float)})
    if "image_path" in posts:
        pixels, has_image = image_array(posts.image_path.tolist())
        frame["has_image"] = has_image.astype(float)
        frame["image_stripe_orientation"] = _stripe_orientation(pixels, has_image)
    for j, name in enumerate(META_NAMES):
        frame[f"author_{name}"] = author_meta[:, j]
    return frame


def user_features(tables: dict, g=None, window_s: int = 1800) -> pd.DataFrame:
    posts, users, edges = tables["posts"], tables["users"], tables["edges"]
    g = g or build_graph(posts, users, edges)
    n = len(g.user_ids)
    meta, present = user_metadata(users, g, pd.to_datetime(posts.created_at, utc=True).max())
    follows = g.edge_index[("user", "follows", "user")].numpy()
    out_deg, in_deg = np.bincount(follows[0], minlength=n), np.bincount(follows[1], minlength=n)
    pairs = set(zip(follows[0].tolist(), follows[1].tolist()))
    reciprocal = np.zeros(n)
    for a, b in pairs:
        if (b, a) in pairs:
            reciprocal[a] += 1
    authored = g.edge_index[("user", "authored", "post")].numpy()
    rp = g.edge_index[("user", "reposts", "post")].numpy()
    rp_t = g.edge_time[("user", "reposts", "post")].numpy()
    post_t = epoch_seconds(posts.created_at)[rp[1]]
    fast = (rp_t >= 0) & (post_t >= 0) & (rp_t - post_t <= window_s)
    reposts = np.bincount(rp[0], minlength=n).astype(float)
    fast_n = np.bincount(rp[0], weights=fast.astype(float), minlength=n)
    co = coordination_edges(g, window_s)
    partners = np.bincount(np.r_[co.src.to_numpy(), co.dst.to_numpy()].astype(int), minlength=n).astype(float)
    cluster = coordination_clusters(g, window_s).coordination_cluster.to_numpy()
    frame = pd.DataFrame({"user_id_number": _id_number(g.user_ids), "posts_authored": np.bincount(authored[0], minlength=n),
                          "follows_out": out_deg, "follows_in": in_deg, "reciprocal_follows": reciprocal,
                          "reposts_made": reposts, "fast_reposts": fast_n,
                          "fast_repost_share": np.divide(fast_n, reposts, out=np.full(n, np.nan), where=reposts > 0),
                          "co_repost_partners": partners, "in_coordination_cluster": (cluster >= 0).astype(float)})
    for j, name in enumerate(META_NAMES):
        frame[name] = np.where(present, meta[:, j], np.nan)
    return frame.astype(float)


def leakage_table(tables: dict) -> pd.DataFrame:
    """One row per (label, feature): AUC_sep, sorted by label then descending AUC."""
    posts, users = tables["posts"], tables["users"]
    g = build_graph(posts, users, tables["edges"])
    rows = []
    labels = posts.label
    classes = sorted(labels.dropna().unique())
    if len(classes) == 2:
        known = labels.notna().to_numpy()
        positive = (labels == classes[1]).to_numpy()
        for name, values in post_features(tables, g).items():
            rows.append(("post", f"{classes[1]} vs {classes[0]}", name, separation_auc(values[known], positive[known])))
        word, auc = best_word(posts.text[known].tolist(), positive[known])
        rows.append(("post", f"{classes[1]} vs {classes[0]}", f"best_word ({word})", auc))
    frame = users.set_index(users.user_id.astype(str)).reindex([str(u) for u in g.user_ids])
    ulabels = frame.label
    uclasses = sorted(ulabels.dropna().unique())
    if len(uclasses) == 2:
        pos_class = "bot" if "bot" in uclasses else uclasses[1]
        neg_class = next(c for c in uclasses if c != pos_class)
        known = ulabels.notna().to_numpy()
        positive = (ulabels == pos_class).to_numpy()
        for name, values in user_features(tables, g).items():
            rows.append(("user", f"{pos_class} vs {neg_class}", name, separation_auc(values.to_numpy()[known], positive[known])))
        words = posts.groupby(posts.user_id.astype(str)).text.apply(lambda s: " ".join(t for t in s if isinstance(t, str)))
        texts = words.reindex(frame.index).tolist()
        word, auc = best_word([t for t, k in zip(texts, known) if k], positive[known])
        rows.append(("user", f"{pos_class} vs {neg_class}", f"best_word ({word})", auc))
    out = pd.DataFrame(rows, columns=["task", "label", "feature", "auc"])
    return out.sort_values(["task", "auc"], ascending=[True, False], na_position="last").reset_index(drop=True)


def format_table(table: pd.DataFrame) -> str:
    lines = []
    for (task, label), part in table.groupby(["task", "label"], sort=False):
        lines.append(f"{task} label: {label}  (max single-feature AUC {part.auc.max():.3f})")
        lines += [f"  {row.feature:<34} {row.auc:.3f}" for row in part.itertuples()]
    return "\n".join(lines)

