"""Reddit NDJSON lines (Pushshift / Arctic Shift) to canonical Arrow tables with pyarrow compute.

The Reddit counterpart of :mod:`.fast_twitter`: :data:`REDDIT_SCHEMA` is what the parser reads
(every other field ignored; every field as text, a value of another JSON type -- ``"id": true``, a
numeric ``parent_id``, a ``body`` object -- marked for the row adapter by :mod:`.duck_json`; the
times are read from their text here: a JSON integer, a whole float and a numeric string alike).  :func:`reddit_tables`
converts a parsed block with the semantics of :func:`.reddit.reddit_rows` and returns, beside the
tables, the rows it leaves to that adapter: a missing or blank ``id``/``author``/``created_utc``
(comment: ``parent_id``), a fractional, negative or out-of-range epoch (``author_created_utc``
too), a null ``body`` whose key may be present (the adapter calls that a comment), a text that
holds ``[deleted]``/``[removed]`` but is not exactly that, an image URL when a media root is given
(the adapter checks the file on disk).  So every reject and its reason still comes from the
adapter; ``tests/apps/social/test_ingest_fast.py`` compares both engines on Reddit files.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TS
from .columnar import POS_BITS
from .duck_json import ESCAPED_KEY, RawLines
from .fast_twitter import _blank, _np

S = pa.string()
REDDIT_SCHEMA = pa.schema([(name, S) for name in ("id", "name", "author", "created_utc", "author_created_utc", "body",
                                                  "parent_id", "link_id", "title", "selftext", "url", "subreddit")])
# every field is text to the adapter (no integer IDs); the short ones are read as JSON (.duck_json:
# numeric-looking IDs need no search of the raw lines); the two times are checked here, as text
REDDIT_KINDS = {**dict.fromkeys(REDDIT_SCHEMA.names, "text"), "created_utc": "any", "author_created_utc": "any",
                **dict.fromkeys(["id", "name", "author", "parent_id", "link_id", "subreddit"], "string")}
EPOCH_TEXT = r"^[0-9]{1,10}(\.0+)?$"  # whole epoch seconds, as a JSON integer, float or string writes them
GONE = pa.array(["[deleted]", "[removed]"], S)
# a line whose "body" key may be present with a null value (an escaped key cannot be searched for)
BODY_NULL = (re.compile(rb'"body"\s*:\s*null'), ESCAPED_KEY)
IMAGE = r"\.([pP][nN][gG]|[jJ][pP][eE]?[gG]|[gG][iI][fF]|[wW][eE][bB][pP])$"
MAX_EPOCH = 4.2e9


def _epoch_ms(values, slow: np.ndarray, check: np.ndarray, optional: bool = False) -> pa.Array:
    """Whole epoch seconds in [0, 4.2e9) (text: :data:`EPOCH_TEXT`) -> timestamp[ms, UTC]; rows of
    ``check`` with anything else (null unless ``optional``, a fraction, a sign, out of range, ISO)
    go ``slow``.  ``optional``: null is no time; so is 0 from a JSON number (the adapter's ``if
    author_created``), but the text "0" may be a string, which the adapter reads as 1970: slow."""
    whole = _np(pc.fill_null(pc.match_substring_regex(values, EPOCH_TEXT), False))
    x = _np(pc.cast(pc.if_else(pa.array(whole), values, pa.scalar(None, S)), pa.float64())).astype(np.float64)
    with np.errstate(invalid="ignore"):
        good = whole & (x < MAX_EPOCH)
    absent = _np(pc.is_null(values)) if optional else np.zeros(len(x), bool)
    if optional:
        good &= x != 0
    slow |= check & ~good & ~absent
    ms = np.where(good, x, 0).astype(np.int64) * 1000
    return pa.array(ms, pa.int64(), mask=~good).cast(TS)


def _fullname(ids, prefix) -> pa.Array:
    """``id if "_" in id[:3] else prefix + id`` (``prefix`` a scalar or an array, ``t1_``/``t3_``)."""
    has = pc.fill_null(pc.match_substring(pc.utf8_slice_codeunits(ids, 0, 3), "_"), False)
    return pc.if_else(has, ids, pc.binary_join_element_wise(prefix, ids, ""))


def _not_gone(values) -> np.ndarray:
    """Kept as a text part: present, not blank, not exactly ``[deleted]``/``[removed]``."""
    return ~_blank(values) & ~_np(pc.fill_null(pc.is_in(values, value_set=GONE), False))


def reddit_tables(t: pa.Table, rec: np.ndarray, labels: tuple | None = None, media_root=None,
                  raw: RawLines | None = None, suspect: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """(tables, slow): canonical ``posts``/``users``/``media``/``edges`` tables with ``_rec``/``_seq``
    (and ``_of``) for the plain submissions and comments of ``t``; ``slow`` marks the rows left to
    :func:`.reddit.reddit_rows`.  ``raw``: the block's raw lines, searched for a ``"body": null``
    (without it, every row whose ``body`` is null and is not a ``t1_`` goes slow);
    ``suspect`` rows (values the parser could not vouch for) go slow too."""
    n = t.num_rows
    c = {name: t[name].combine_chunks() for name in t.column_names}
    slow = np.zeros(n, bool) if suspect is None else suspect.copy()
    body = c["body"]
    body_valid = _np(pc.is_valid(body))
    is_t1 = _np(pc.fill_null(pc.starts_with(c["name"], "t1_"), False))
    unsure = np.flatnonzero(~body_valid & ~is_t1)  # a "body": null key makes the adapter read a comment
    # a submissions-only block, or one whose every "body" key is a comment's, needs no regex scan
    if len(unsure) and (raw is None or not raw.lacks_key("body", len(body_valid) - body.null_count)):
        slow[unsure] |= raw.holding(unsure, *BODY_NULL) if raw is not None else True
    comment = body_valid | is_t1
    slow |= _blank(c["id"]) | _blank(c["author"])
    created = _epoch_ms(c["created_utc"], slow, np.ones(n, bool))
    parent_raw = c["parent_id"]
    slow |= comment & _blank(parent_raw)
    author = c["author"]
    has_user = ~_np(pc.fill_null(pc.is_in(author, value_set=GONE), False))
    a_created = _epoch_ms(c["author_created_utc"], slow, has_user, optional=True)
    # text: a comment's body; a submission's title and selftext joined by a blank line
    title = pc.if_else(pa.array(_not_gone(c["title"])), c["title"], pa.scalar(None, S))
    selftext = pc.if_else(pa.array(_not_gone(c["selftext"])), c["selftext"], pa.scalar(None, S))
    joined = pc.coalesce(pc.binary_join_element_wise(title, selftext, "\n\n"), title, selftext)
    text = pc.if_else(pa.array(comment), pc.if_else(pa.array(_blank(body)), pa.scalar(None, S), body), joined)
    gone = _np(pc.fill_null(pc.is_in(text, value_set=GONE), False))
    for word in ("[deleted]", "[removed]"):
        slow |= ~gone & _np(pc.fill_null(pc.match_substring(text, word), False))
    text = pc.if_else(pa.array(gone), pa.scalar(None, S), text)
    url = pc.if_else(pa.array(_blank(c["url"])), pa.scalar(None, S), c["url"])
    sub = c["subreddit"]
    sub_ok = ~_blank(sub)
    before_query = pc.list_element(pc.split_pattern(pc.fill_null(url, ""), "?", max_splits=1), 0)
    image = ~comment & _np(pc.fill_null(pc.match_substring_regex(before_query, IMAGE), False)) & _np(pc.is_valid(url))
    if media_root is not None:
        slow |= image  # the adapter checks the file on disk

    good = ~slow
    keep = pa.array(good)
    nk = int(good.sum())
    rec_k = rec[good]
    base = rec_k << POS_BITS
    com_k = comment[good]
    ids = pc.filter(c["id"], keep)
    pid = _fullname(ids, pc.if_else(pa.array(com_k), "t1_", "t3_"))
    par = pc.if_else(pa.array(com_k), _fullname(pc.filter(parent_raw, keep), "t3_"), pa.scalar(None, S))
    link = pc.filter(c["link_id"], keep)
    link = pc.if_else(pa.array(_blank(link)), par, link)
    thread = pc.if_else(pa.array(com_k), link, pid)
    user_k = has_user[good]
    uid = pc.if_else(pa.array(user_k), pc.filter(author, keep), pa.scalar(None, S))
    ts = pc.filter(created, keep)
    sub_k = sub_ok[good]
    hashtags = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(sub_k)].astype(np.int32)), pc.filter(sub, pa.array(sub_ok & good)))
    url_k = pc.filter(url, keep)
    has_url = _np(pc.is_valid(url_k)) & ~com_k
    urls = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(has_url)].astype(np.int32)), pc.filter(url_k, pa.array(has_url)))
    nulls = pa.nulls(nk, S)
    empty = pa.ListArray.from_arrays(pa.array(np.zeros(nk + 1, np.int32)), pa.array([], S))
    post_label = nulls
    if labels is not None:
        post_label = pc.take(labels[1], pc.index_in(pid, value_set=labels[0]))
    posts = pa.table({
        "post_id": pid, "user_id": uid, "created_at": ts, "text": pc.filter(text, keep), "image_path": nulls,
        "lang": nulls, "parent_id": par, "quote_of": nulls, "thread_id": thread, "hashtags": hashtags,
        "mentions": empty, "urls": urls, "label": post_label, "source": pa.array(["reddit"] * nk, S),
        "kind": pc.if_else(pc.is_valid(par), "reply", "original"), "repost_of": nulls,
        "collection": pa.array(["collected"] * nk, S), "status": pa.array(["ok"] * nk, S),
        "_rec": pa.array(rec_k), "_seq": pa.array(base + 1)})
    # media (no media root: the URL, not downloaded)
    img_k = image[good]
    rows = np.flatnonzero(img_k)
    m_url = pc.take(url_k, pa.array(rows))
    m_name = pc.replace_substring_regex(pc.list_element(pc.split_pattern(m_url, "?", max_splits=1), 0), "(?s)^.*/", "")
    m_pid = pc.take(pid, pa.array(rows))
    media = pa.table({"media_id": pc.binary_join_element_wise(m_pid, m_name, ":"), "post_id": m_pid, "path": m_url,
                      "kind": pa.array(["photo"] * len(rows), S), "status": pa.array(["not_downloaded"] * len(rows), S),
                      "_rec": pa.array(rec_k[rows]), "_seq": pa.array(base[rows])})
    # users: the known authors, with their account time when the dump has one
    u_rows = np.flatnonzero(user_k)
    u_sel = pa.array(u_rows)
    u_id = pc.take(uid, u_sel)
    user_label = pa.nulls(len(u_rows), S)
    if labels is not None:
        user_label = pc.take(labels[1], pc.index_in(u_id, value_set=labels[0]))
    u_nulls = pa.nulls(len(u_rows), S)
    users = pa.table({
        "user_id": u_id, "username": u_id, "created_at": pc.take(pc.filter(a_created, keep), u_sel),
        "followers": pa.nulls(len(u_rows), pa.int64()), "following": pa.nulls(len(u_rows), pa.int64()),
        "post_count": pa.nulls(len(u_rows), pa.int64()), "verified": pa.nulls(len(u_rows), pa.bool_()),
        "default_profile": pa.nulls(len(u_rows), pa.bool_()), "description": u_nulls, "label": user_label,
        "source": pa.array(["reddit"] * len(u_rows), S), "_rec": pa.array(rec_k[u_rows]), "_seq": pa.array(base[u_rows] + 2)})
    c_rows = np.flatnonzero(com_k)
    edges = [_edges("user", u_id, "authored", "post", pc.take(pid, u_sel), u_rows, 3, ts, pid, rec_k, base),
             _edges("post", pc.take(pid, pa.array(c_rows)), "replies_to", "post", pc.take(par, pa.array(c_rows)),
                    c_rows, 4, ts, pid, rec_k, base)]
    return {"posts": posts, "users": users, "media": media, "edges": pa.concat_tables(edges)}, slow


def _edges(src_type, src, relation, dst_type, dst, rows: np.ndarray, slot: int, ts, pid, rec_k, base) -> pa.Table:
    m = len(rows)
    idx = pa.array(rows, pa.int64())
    return pa.table({"src_type": pa.array([src_type] * m, S), "src_id": src, "relation": pa.array([relation] * m, S),
                     "dst_type": pa.array([dst_type] * m, S), "dst_id": dst, "created_at": pc.take(ts, idx),
                     "_rec": pa.array(rec_k[rows], pa.int64()), "_seq": pa.array(base[rows] + slot, pa.int64()),
                     "_of": pc.take(pid, idx)})
