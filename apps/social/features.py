"""Per-node feature tables: user metadata and the graph statistics of each post.

User metadata ``[U, 8]``: log1p followers, following, posts, account age (days, at the latest
post time), followers/following log-ratio, posts per day of age (log1p), verified, default
profile.  Columns are standardised with the *training* users' mean/std; a stub user (only seen in
an edge) is absent (``present`` False), never zero-filled as if it were an account.

Post graph statistics ``[P, 4]``: log1p reposts, log1p replies, log1p quotes, and the share of
reposts that arrived within 30 minutes (bursts are what coordinated amplification looks like).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .graph import SocialGraph
from .schema import epoch_seconds

META_NAMES = ["log_followers", "log_following", "log_posts", "log_age_days", "follow_ratio", "log_posts_per_day",
              "verified", "default_profile"]


def user_metadata(users: pd.DataFrame, g: SocialGraph, reference_time=None) -> tuple[np.ndarray, np.ndarray]:
    frame = users.set_index(users.user_id.astype(str)).reindex([str(u) for u in g.user_ids])
    present = frame.followers.notna().to_numpy() | frame.created_at.notna().to_numpy()
    ref = pd.Timestamp(reference_time) if reference_time is not None else pd.Timestamp("2024-06-01", tz="UTC")
    age = ((ref - pd.to_datetime(frame.created_at, utc=True)).dt.total_seconds() / 86400).clip(lower=1)
    f = frame.followers.astype(float).fillna(0).clip(lower=0)
    fo = frame.following.astype(float).fillna(0).clip(lower=0)
    pc = frame.post_count.astype(float).fillna(0).clip(lower=0)
    age = age.fillna(age.median() if age.notna().any() else 365.0)
    x = np.stack([np.log1p(f), np.log1p(fo), np.log1p(pc), np.log(age), np.log1p(f) - np.log1p(fo),
                  np.log1p(pc / age), frame.verified.fillna(False).astype(float),
                  frame.default_profile.fillna(False).astype(float)], 1).astype(np.float32)
    return x, present


def standardise(x: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    rows = x[fit_rows] if fit_rows.any() else x
    mean, std = rows.mean(0), rows.std(0) + 1e-6
    return ((x - mean) / std).astype(np.float32)


def post_graph_stats(g: SocialGraph, posts: pd.DataFrame, burst_s: int = 1800) -> np.ndarray:
    n = len(g.post_ids)
    rp = g.edge_index[("user", "reposts", "post")]
    reposts = torch.bincount(rp[1], minlength=n).numpy().astype(np.float32)
    replies = torch.bincount(g.edge_index[("post", "replies_to", "post")][1], minlength=n).numpy().astype(np.float32)
    quotes = torch.bincount(g.edge_index[("post", "quotes", "post")][1], minlength=n).numpy().astype(np.float32)
    created = epoch_seconds(posts.created_at)  # explicit unit: Parquet gives ms, memory may give ns
    repost_t = g.edge_time[("user", "reposts", "post")].numpy()
    post_t = created[rp[1].numpy()]
    known = (repost_t >= 0) & (post_t >= 0)
    fast = np.bincount(rp[1].numpy(), weights=(known & (repost_t - post_t <= burst_s)).astype(float), minlength=n)
    share = np.divide(fast, reposts, out=np.zeros(n), where=reposts > 0)
    return np.stack([np.log1p(reposts), np.log1p(replies), np.log1p(quotes), share], 1).astype(np.float32)
