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

import functools

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
# the string leaves the adapter takes as free text (a number there is refused, not turned into
# digits); every other string leaf is an ID, which may also be an integer (.duck_json)
TWEET_KINDS = {**dict.fromkeys(["text", "lang", "referenced_tweets.type", "author.username", "author.profile_image_url",
                                "author.description"], "text"),
               # times: only the ISO form takes the fast path, which no other JSON type can write
               "created_at": "any", "author.created_at": "any"}
# Python's str.isspace() characters: "blank" means what text_str/id_str mean by it (none above U+3000)
_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACE) + "]*$"
SPACES = pa.array(list(_SPACE), S)
SPACE_LEAD = np.zeros(256, bool)  # the first UTF-8 byte of each whitespace character
SPACE_LEAD[[c.encode()[0] for c in _SPACE]] = True
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$"
# (lowest, highest) byte at each position of the two forms twarc2 writes (9: any digit)
ISO_FORMS = [(np.frombuffer(form.replace("9", "0").encode(), np.uint8), np.frombuffer(form.encode(), np.uint8))
             for form in ("9999-99-99T99:99:99.999Z", "9999-99-99T99:99:99Z")]


def _np(array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _string_parts(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets [n+1], bytes, null mask) of a string array, as numpy views of its buffers."""
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], np.int32, count=n + 1, offset=4 * array.offset)
    values = array.buffers()[2]
    values = np.frombuffer(values, np.uint8) if values is not None else np.zeros(0, np.uint8)
    return offsets, values, (_np(pc.is_null(array)) if array.null_count else np.zeros(n, bool))


def _where_regex(array, rows: np.ndarray, pattern: str, null) -> np.ndarray:
    """``match_substring_regex`` on ``rows`` of ``array`` only (null -> ``null``), False elsewhere."""
    out = np.zeros(len(array), bool)
    if len(rows):
        out[rows] = _np(pc.fill_null(pc.match_substring_regex(pc.take(array, pa.array(rows)), pattern), null))
    return out


def _blank(array) -> np.ndarray:
    """null or only whitespace (Python's definition).  Read from the array's own offsets and bytes:
    the regex runs only on the strings that are empty or whose first byte can start a whitespace
    character, which are rare."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != S:
        first = pc.utf8_slice_codeunits(array, 0, 1)
        maybe = _np(pc.fill_null(pc.or_(pc.is_in(first, value_set=SPACES), pc.equal(first, "")), True))
        return _where_regex(array, np.flatnonzero(maybe), BLANK, True)
    offsets, values, null = _string_parts(array)
    starts = offsets[:-1]
    maybe = offsets[1:] == starts
    if len(values):
        maybe |= SPACE_LEAD[values[np.minimum(starts, len(values) - 1)]]
    return null | _where_regex(array, np.flatnonzero(maybe & ~null), BLANK, True)


def _present_blank(array) -> np.ndarray:
    """Not null but blank: a required-looking value the adapter would reject."""
    return _blank(array) & _np(pc.is_valid(array))


def _null_blank(array) -> pa.Array:
    """Blank strings as nulls (the array itself when none is: no copy of a text column)."""
    blank = _present_blank(array)
    return pc.if_else(pa.array(blank), pa.scalar(None, S), array) if blank.any() else array


@functools.lru_cache(maxsize=16)
def _constant_run(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, S), n)


def _const(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times: a slice of one long run built once (blocks differ in rows, not values)."""
    size = 1 << max(16, (n - 1).bit_length())
    return _constant_run(value, size).slice(0, n)


def _iso(array) -> np.ndarray:
    """Whether each string matches :data:`ISO` (null: False).  The forms twarc2 writes,
    ``YYYY-MM-DDTHH:MM:SS.fffZ`` and ``YYYY-MM-DDTHH:MM:SSZ``, are checked byte by byte against a
    template, on the array's own buffers; only the other strings go through the regex."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != S:
        return _np(pc.fill_null(pc.match_substring_regex(array, ISO), False))
    offsets, values, null = _string_parts(array)
    length = np.diff(offsets)
    fast = np.zeros(len(array), bool)
    for lo, hi in ISO_FORMS:
        rows = np.flatnonzero((length == len(lo)) & ~null)
        if not len(rows):
            continue
        if len(rows) * len(lo) == offsets[-1] - offsets[0]:
            # every byte is in a string of this width (the others empty or null): an (n, width)
            # block, no gather
            chars = values[offsets[0]:offsets[-1]].reshape(len(rows), len(lo))
        else:
            chars = values[offsets[rows][:, None] + np.arange(len(lo))]
        fast[rows] = ((chars >= lo) & (chars <= hi)).all(1)
    return fast | _where_regex(array, np.flatnonzero(~fast & ~null), ISO, False)


def _time(array, slow: np.ndarray) -> pa.Array:
    """ISO timestamps -> timestamp[ms, UTC]; other forms are marked ``slow`` (null here)."""
    ok = _iso(array)
    slow |= ~ok & _np(pc.is_valid(array))
    if not ok.all():
        array = pc.if_else(pa.array(ok), array, pa.scalar(None, S))
    return pc.cast(array, TS)  # an impossible date raises: split


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


def tweet_tables(t: pa.Table, rec: np.ndarray, labels: tuple | None = None,
                 suspect: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """(tables, slow): canonical ``posts``/``users``/``edges`` Arrow tables with ``_rec``/``_seq``
    (and ``_of`` for edges) for the plain tweets of ``t``; ``slow`` marks the rows left to the
    adapter (``suspect`` ones among them: values the parser could not vouch for)."""
    n = t.num_rows
    t = {name: t[name].chunk(0) if t[name].num_chunks == 1 else t[name].combine_chunks() for name in t.column_names}
    slow = np.zeros(n, bool) if suspect is None else suspect.copy()
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
    every = nk == n

    def kept(values):  # most blocks keep every row: no copy then
        return values if every else pc.filter(values, keep)

    rec_k = rec[good]
    base = rec_k << POS_BITS
    pid = kept(post_id)
    uid = kept(author_id)
    ts = kept(created)
    par, quo = kept(parent_id), kept(quote_of)
    conv = kept(_null_blank(t["conversation_id"]))
    kind = pc.if_else(pc.is_valid(par), "reply", pc.if_else(pc.is_valid(quo), "quote", "original"))
    nulls = pa.nulls(nk, S)
    post_label = user_label = nulls
    if labels is not None:
        post_label = pc.take(labels[1], pc.index_in(pid, value_set=labels[0]))
    posts = pa.table({
        "post_id": pid, "user_id": uid, "created_at": ts, "text": kept(_null_blank(t["text"])),
        "image_path": nulls, "lang": kept(_null_blank(t["lang"])), "parent_id": par, "quote_of": quo,
        "thread_id": pc.coalesce(conv, pid),
        "hashtags": kept(_segments(tag, tag_row, good[tag_row], n)),
        "mentions": kept(_segments(uname, men_row, good[men_row], n)),
        "urls": kept(_segments(url, url_row, good[url_row], n)),
        "label": post_label, "source": _const("twitter", nk), "kind": kind, "repost_of": nulls,
        "collection": _const("collected", nk), "status": _const("ok", nk),
        "_rec": pa.array(rec_k), "_seq": pa.array(base + 1)})
    au = kept(author)
    has = pc.is_valid(au)
    metrics = _field(au, "public_metrics")
    picture = _field(au, "profile_image_url")
    user_id = pc.if_else(has, _field(au, "id"), uid)
    if labels is not None:
        user_label = pc.take(labels[1], pc.index_in(user_id, value_set=labels[0]))
    users = pa.table({
        "user_id": user_id, "username": _null_blank(_field(au, "username")), "created_at": kept(a_created),
        "followers": _field(metrics, "followers_count"), "following": _field(metrics, "following_count"),
        "post_count": _field(metrics, "tweet_count"), "verified": _field(au, "verified"),
        "default_profile": pc.match_substring(picture, "default_profile"),
        "description": _null_blank(_field(au, "description")), "label": user_label,
        "source": _const("twitter", nk), "_rec": pa.array(rec_k), "_seq": pa.array(base)})
    row_of = np.cumsum(good) - 1                       # index among kept rows
    m_keep = good[men_row] if len(ments) else np.zeros(0, bool)
    m_rows = row_of[men_row[m_keep]]
    m_rank = np.arange(len(m_rows)) - np.r_[0, np.cumsum(np.bincount(m_rows, minlength=nk))][m_rows]
    mention_dst = pc.filter(target, pa.array(m_keep)) if len(m_rows) else pa.array([], S)
    return {"posts": posts, "users": users,
            "edges": _edges(uid, pid, par, quo, mention_dst, m_rows, m_rank, ts, rec_k, base)}, slow


# an edge's kind: (relation, source type, destination type, its slot in the line after the post)
EDGE_KINDS = (("authored", "user", "post", 2), ("replies_to", "post", "post", 3), ("quotes", "post", "post", 4),
              ("mentions", "post", "user", 5))
RELATION, SRC_TYPE, DST_TYPE = (pa.array([k[i] for k in EDGE_KINDS], S) for i in range(3))


def _edges(uid, pid, par, quo, mention_dst, m_rows: np.ndarray, m_rank: np.ndarray, ts, rec_k: np.ndarray,
           base: np.ndarray) -> pa.Table:
    """Every edge of the kept rows, already in the adapter's order (line, then authored,
    replies_to, quotes, mentions...), each column one ``take`` from its sources."""
    nk = len(pid)
    reply, quote = np.flatnonzero(_np(pc.is_valid(par))), np.flatnonzero(_np(pc.is_valid(quo)))
    rows = np.concatenate([np.arange(nk), reply, quote, m_rows]).astype(np.int64)
    kind = np.repeat(np.arange(4), [nk, len(reply), len(quote), len(m_rows)])
    slot = np.array([k[3] for k in EDGE_KINDS])[kind]
    slot[len(rows) - len(m_rows):] += m_rank
    seq = base[rows] + slot
    order = np.argsort(seq, kind="stable")
    rows, kind, seq = rows[order], kind[order], seq[order]
    # sources: [uid | pid]; destinations: [pid | parent | quoted | mentioned]
    src_at = rows + np.where(kind == 0, 0, nk)
    dst_at = np.concatenate([np.arange(nk), nk + reply, 2 * nk + quote, 3 * nk + np.arange(len(m_rows))])[order]
    kind_idx = pa.array(kind)
    return pa.table({"src_type": pc.take(SRC_TYPE, kind_idx), "src_id": pc.take(pa.concat_arrays([uid, pid]), pa.array(src_at)),
                     "relation": pc.take(RELATION, kind_idx), "dst_type": pc.take(DST_TYPE, kind_idx),
                     "dst_id": pc.take(pa.concat_arrays([pid, par, quo, mention_dst]), pa.array(dst_at)),
                     "created_at": pc.take(ts, pa.array(rows)), "_rec": pa.array(rec_k[rows]), "_seq": pa.array(seq),
                     "_of": pc.take(pid, pa.array(rows))})
