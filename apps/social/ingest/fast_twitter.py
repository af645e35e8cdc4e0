"""twarc2 ``flatten`` lines to canonical Arrow tables with pyarrow compute: no Python object per row.

:data:`TWEET_SCHEMA` is what the fast path reads (Arrow's JSON parser, every other field ignored);
a line whose JSON does not fit it (a number where an ID string should be, an object for a
boolean, two JSON values on a line, bad UTF-8 ...) makes Arrow raise for the block, and the
caller splits the block until the lines that fit are separated from those that do not.
:func:`tweet_tables` then converts a parsed block and returns, beside the tables, the rows it
leaves to the row adapter (:func:`.twitter.tweet_rows`): everything that is not a plain tweet --
a raw page, a retweet, media attachments, a withheld tweet, an embedded referenced tweet, a
missing or blank required field, a timestamp not in ``YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm)`` form,
the same reference type twice.  So every reject (and its reason) still comes from the adapter,
and the tables from both paths are the same rows (``tests/apps/social/test_ingest_fast.py``).
"""
from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TS
from .columnar import POS_BITS

S = pa.string()
_ref = pa.struct([("type", S), ("id", S), ("tweet", pa.struct([("id", S)]))])
_metrics = pa.struct([("followers_count", pa.int64()), ("following_count", pa.int64()), ("tweet_count", pa.int64())])
TWEET_SCHEMA = pa.schema([
    ("id", S), ("author_id", S), ("created_at", S), ("text", S), ("conversation_id", S), ("lang", S),
    ("withheld", pa.struct([("copyright", pa.bool_())])), ("attachments", pa.struct([("media_keys", pa.list_(S))])),
    ("data", pa.list_(pa.struct([("id", S)]))), ("includes", pa.struct([("users", pa.list_(pa.struct([("id", S)])))])),
    ("referenced_tweets", pa.list_(_ref)),
    ("entities", pa.struct([("hashtags", pa.list_(pa.struct([("tag", S)]))),
                            ("mentions", pa.list_(pa.struct([("username", S), ("id", S)]))),
                            ("urls", pa.list_(pa.struct([("url", S), ("expanded_url", S)])))])),
    ("author", pa.struct([("id", S), ("username", S), ("created_at", S), ("verified", pa.bool_()),
                          ("profile_image_url", S), ("description", S), ("public_metrics", _metrics)])),
])
# Python's str.isspace() characters: "blank" means what text_str/id_str mean by it
_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACE) + "]*$"
SPACES = pa.array(list(_SPACE), S)
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$"


def _np(array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _blank(array) -> np.ndarray:
    """null or only whitespace (Python's definition); the regex runs only where the first
    character is whitespace (or the string is empty), which is rare."""
    first = pc.utf8_slice_codeunits(array, 0, 1)
    maybe = _np(pc.fill_null(pc.or_(pc.is_in(first, value_set=SPACES), pc.equal(first, "")), True))
    if not maybe.any():
        return maybe
    out = _np(pc.fill_null(pc.match_substring_regex(array, BLANK), True))
    return out & maybe


def _present_blank(array) -> np.ndarray:
    """Not null but blank: a required-looking value the adapter would reject."""
    return _blank(array) & _np(pc.is_valid(array))


def _null_blank(array) -> pa.Array:
    return pc.if_else(pa.array(_blank(array)), pa.scalar(None, S), array)


def _time(array, slow: np.ndarray) -> pa.Array:
    """ISO timestamps -> timestamp[ms, UTC]; other forms are marked ``slow`` (null here)."""
    ok = _np(pc.fill_null(pc.match_substring_regex(array, ISO), False))
    slow |= ~ok & _np(pc.is_valid(array))
    return pc.cast(pc.if_else(pa.array(ok), array, pa.scalar(None, S)), TS)  # an impossible date raises: split


def _field(struct, name: str):
    return pc.struct_field(struct, name)


def _list_parts(lists):
    """(flat values, row of each value, any null element per row)."""
    flat = pc.list_flatten(lists)
    parent = _np(pc.list_parent_indices(lists)).astype(np.int64)
    return flat, parent


def _per_row(n: int, parent: np.ndarray, mask: np.ndarray, values, slow: np.ndarray) -> pa.Array:
    """The value of the one element of each row where ``mask`` holds (rows with two go ``slow``)."""
    count = np.bincount(parent[mask], minlength=n)
    slow |= count > 1
    idx = np.full(n, -1, np.int64)
    idx[parent[mask]] = np.flatnonzero(mask)
    return pc.take(values, pa.array(idx, mask=idx < 0))


def _segments(values, parent: np.ndarray, keep: np.ndarray, n: int) -> pa.Array:
    """list<string> per row from flat values (``keep`` selects elements)."""
    counts = np.bincount(parent[keep], minlength=n)
    offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pc.filter(values, pa.array(keep)))


def tweet_tables(t: pa.Table, rec: np.ndarray, labels: tuple | None = None) -> tuple[dict, np.ndarray]:
    """(tables, slow): canonical ``posts``/``users``/``edges`` Arrow tables with ``_rec``/``_seq``
    (and ``_of`` for edges) for the plain tweets of ``t``; ``slow`` marks the rows left to the adapter."""
    n = t.num_rows
    t = {name: t[name].combine_chunks() for name in t.column_names}
    slow = np.zeros(n, bool)
    for name in ("withheld", "attachments", "data", "includes"):
        slow |= _np(pc.is_valid(t[name]))
    post_id, author_id = t["id"], t["author_id"]
    slow |= _blank(post_id) | _blank(author_id) | _blank(t["created_at"])
    created = _time(t["created_at"], slow)
    # references: one replied_to / quoted at most, no retweets, no embedded tweets
    refs, ref_row = _list_parts(t["referenced_tweets"])
    if len(refs):
        slow[ref_row[_np(pc.is_null(refs))]] = True
        rtype = pc.fill_null(_field(refs, "type"), "")
        slow[ref_row[_np(pc.equal(rtype, "retweeted")) | _np(pc.is_valid(_field(refs, "tweet")))]] = True
        ref_id = _null_blank(_field(refs, "id"))
        parent_id = _per_row(n, ref_row, _np(pc.equal(rtype, "replied_to")), ref_id, slow)
        quote_of = _per_row(n, ref_row, _np(pc.equal(rtype, "quoted")), ref_id, slow)
    else:
        parent_id = quote_of = pa.nulls(n, S)
    ent = t["entities"]
    tags, tag_row = _list_parts(_field(ent, "hashtags"))
    tag = _field(tags, "tag")
    slow[tag_row[_np(pc.is_null(tags)) | _blank(tag)]] = True
    ments, men_row = _list_parts(_field(ent, "mentions"))
    uname, mid = _field(ments, "username"), _field(ments, "id")
    slow[men_row[_np(pc.is_null(ments)) | _blank(uname) | _present_blank(mid)]] = True
    target = pc.if_else(pc.equal(pc.fill_null(mid, ""), ""), uname, mid)  # `id or username`
    urls, url_row = _list_parts(_field(ent, "urls"))
    expanded = _field(urls, "expanded_url")
    url = pc.if_else(pc.equal(pc.fill_null(expanded, ""), ""), _field(urls, "url"), expanded)  # `a or b`
    slow[url_row[_np(pc.is_null(urls)) | _blank(url)]] = True
    author = t["author"]
    has_author = _np(pc.is_valid(author))
    a_id = _field(author, "id")
    slow |= has_author & _blank(a_id)
    a_created_raw = _field(author, "created_at")
    a_created_raw = pc.if_else(pc.equal(pc.fill_null(a_created_raw, ""), ""), pa.scalar(None, S), a_created_raw)
    a_created = _time(a_created_raw, slow)

    good = ~slow
    keep = pa.array(good)
    nk = int(good.sum())
    rec_k = rec[good]
    base = rec_k << POS_BITS
    pid = pc.filter(post_id, keep)
    uid = pc.filter(author_id, keep)
    ts = pc.filter(created, keep)
    par, quo = pc.filter(parent_id, keep), pc.filter(quote_of, keep)
    conv = pc.filter(_null_blank(t["conversation_id"]), keep)
    kind = pc.if_else(pc.is_valid(par), "reply", pc.if_else(pc.is_valid(quo), "quote", "original"))
    nulls = pa.nulls(nk, S)
    post_label = user_label = nulls
    if labels is not None:
        post_label = pc.take(labels[1], pc.index_in(pid, value_set=labels[0]))
    posts = pa.table({
        "post_id": pid, "user_id": uid, "created_at": ts, "text": pc.filter(_null_blank(t["text"]), keep),
        "image_path": nulls, "lang": pc.filter(_null_blank(t["lang"]), keep), "parent_id": par, "quote_of": quo,
        "thread_id": pc.coalesce(conv, pid),
        "hashtags": _segments(tag, tag_row, good[tag_row], n).filter(keep),
        "mentions": _segments(uname, men_row, good[men_row], n).filter(keep),
        "urls": _segments(url, url_row, good[url_row], n).filter(keep),
        "label": post_label, "source": pa.array(["twitter"] * nk, S), "kind": kind, "repost_of": nulls,
        "collection": pa.array(["collected"] * nk, S), "status": pa.array(["ok"] * nk, S),
        "_rec": pa.array(rec_k), "_seq": pa.array(base + 1)})
    au = pc.filter(author, keep)
    has = pc.is_valid(au)
    metrics = _field(au, "public_metrics")
    picture = _field(au, "profile_image_url")
    user_id = pc.if_else(has, _field(au, "id"), uid)
    if labels is not None:
        user_label = pc.take(labels[1], pc.index_in(user_id, value_set=labels[0]))
    users = pa.table({
        "user_id": user_id, "username": _null_blank(_field(au, "username")), "created_at": pc.filter(a_created, keep),
        "followers": _field(metrics, "followers_count"), "following": _field(metrics, "following_count"),
        "post_count": _field(metrics, "tweet_count"), "verified": _field(au, "verified"),
        "default_profile": pc.match_substring(picture, "default_profile"),
        "description": _null_blank(_field(au, "description")), "label": user_label,
        "source": pa.array(["twitter"] * nk, S), "_rec": pa.array(rec_k), "_seq": pa.array(base)})
    # edges in the adapter's order: authored, replies_to, quotes, mentions...
    row_of = np.cumsum(good) - 1                       # index among kept rows
    m_keep = good[men_row] if len(ments) else np.zeros(0, bool)
    m_rows = row_of[men_row[m_keep]]
    m_rank = np.arange(len(m_rows)) - np.r_[0, np.cumsum(np.bincount(m_rows, minlength=nk))][m_rows]
    pieces = [("user", uid, "authored", "post", pid, np.arange(nk), 2)]
    for relation, dst, slot in (("replies_to", par, 3), ("quotes", quo, 4)):
        sel = _np(pc.is_valid(dst))
        pieces.append(("post", pc.filter(pid, pa.array(sel)), relation, "post", pc.filter(dst, pa.array(sel)),
                       np.flatnonzero(sel), slot))
    edges = [_edge_table(*p, ts, pid, rec_k, base) for p in pieces]
    if len(m_rows):
        edges.append(_edge_table("post", pc.take(pid, pa.array(m_rows)), "mentions", "user",
                                 pc.filter(target, pa.array(m_keep)), m_rows, 5 + m_rank, ts, pid, rec_k, base))
    return {"posts": posts, "users": users, "edges": pa.concat_tables(edges)}, slow


def _edge_table(src_type, src, relation, dst_type, dst, rows: np.ndarray, slot, ts, pid, rec_k, base) -> pa.Table:
    m = len(rows)
    idx = pa.array(rows)
    return pa.table({"src_type": pa.array([src_type] * m, S), "src_id": src, "relation": pa.array([relation] * m, S),
                     "dst_type": pa.array([dst_type] * m, S), "dst_id": dst, "created_at": pc.take(ts, idx),
                     "_rec": pa.array(rec_k[rows]), "_seq": pa.array(base[rows] + slot), "_of": pc.take(pid, idx)})
