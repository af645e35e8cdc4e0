"""The canonical tables every adapter writes and every later stage reads.

IDs are strings everywhere (Twitter IDs overflow float64 and Reddit IDs are base-36).
Times are UTC ``timestamp[ms]`` (pandas 3 reads them back as ``datetime64[ms, UTC]``: convert
with an explicit unit, :func:`epoch_seconds`, never ``astype("int64")``).  A repost is an *edge*
(user --reposts--> post) for the graph; where the source gave the repost an ID of its own (a
retweet) it is also a ``posts`` row with ``kind = "repost"`` and ``repost_of``, so no tweet loses
its ID or author.  Replies and quotes are posts *and* edges.

Posts columns beyond the content: ``kind`` (original | reply | quote | repost), ``collection``
(``collected``: the input delivered it; ``referenced``: only seen because a collected post cites it)
and ``status`` (ok | withheld | deleted | unavailable: kept with whatever the source still gave).
A post whose author is unknown (Reddit ``[deleted]``) has a null ``user_id`` and no authored edge.

| table  | one row per            | key columns                                                   |
|--------|------------------------|---------------------------------------------------------------|
| posts  | original/reply/quote   | post_id, user_id, created_at, text, image_path, parent_id ... |
| users  | account                | user_id, username, created_at, followers, following, ...      |
| media  | attached image         | media_id, post_id, path, status (ok/missing/unreadable)       |
| edges  | interaction            | src_type, src_id, relation, dst_type, dst_id, created_at      |
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

TS = pa.timestamp("ms", tz="UTC")

POSTS = pa.schema([
    ("post_id", pa.string()), ("user_id", pa.string()), ("created_at", TS),
    ("text", pa.string()), ("image_path", pa.string()), ("lang", pa.string()),
    ("parent_id", pa.string()), ("quote_of", pa.string()), ("thread_id", pa.string()),
    ("hashtags", pa.list_(pa.string())), ("mentions", pa.list_(pa.string())), ("urls", pa.list_(pa.string())),
    ("label", pa.string()), ("source", pa.string()),
    ("kind", pa.string()), ("repost_of", pa.string()), ("collection", pa.string()), ("status", pa.string()),
])

USERS = pa.schema([
    ("user_id", pa.string()), ("username", pa.string()), ("created_at", TS),
    ("followers", pa.int64()), ("following", pa.int64()), ("post_count", pa.int64()),
    ("verified", pa.bool_()), ("default_profile", pa.bool_()), ("description", pa.string()),
    ("label", pa.string()), ("source", pa.string()),
])

MEDIA = pa.schema([
    ("media_id", pa.string()), ("post_id", pa.string()), ("path", pa.string()),
    ("kind", pa.string()), ("status", pa.string()),
])

EDGES = pa.schema([
    ("src_type", pa.string()), ("src_id", pa.string()), ("relation", pa.string()),
    ("dst_type", pa.string()), ("dst_id", pa.string()), ("created_at", TS),
])

REJECTS = pa.schema([
    ("file", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string()),
])

TABLES = {"posts": POSTS, "users": USERS, "media": MEDIA, "edges": EDGES}

# relation -> (source node type, destination node type); reverses are added by the graph builder
RELATIONS = {
    "follows": ("user", "user"),
    "authored": ("user", "post"),
    "replies_to": ("post", "post"),
    "reposts": ("user", "post"),
    "quotes": ("post", "post"),
    "mentions": ("post", "user"),
}

POST_KINDS = ("original", "reply", "quote", "repost")


def epoch_seconds(values) -> np.ndarray:
    """Whole seconds since 1970 of any datetime-like Series/array, whatever its unit (s/ms/us/ns);
    missing times are -1.  ``int64 [N]``."""
    times = pd.to_datetime(pd.Series(values), utc=True)
    seconds = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.fillna(-1).astype("int64").to_numpy()


def post_kind(parent_id, quote_of, repost_of=None) -> str:
    return "repost" if repost_of else "reply" if parent_id else "quote" if quote_of else "original"
