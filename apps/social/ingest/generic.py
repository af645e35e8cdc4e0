"""JSONL / CSV / Parquet with a column mapping onto the canonical tables.

``mapping`` maps canonical field -> source column, e.g. ``{"post_id": "id", "user_id": "author",
"created_at": "ts", "text": "body", "image_path": "img"}``; unmapped canonical fields are read
from a column of the same name when there is one.  ``table`` picks what one source row is:

* ``posts`` (default): a post, its author, and its authored / replies_to / quotes / mentions
  edges; a row whose ``repost_of`` is set is a ``reposts`` edge, and also a ``kind = "repost"``
  post row when it has an ID of its own.
* ``users``: one account.  * ``edges``: one interaction (src_id, relation, dst_id, ...).
"""
from __future__ import annotations

import re

from ..schema import POSTS, RELATIONS, USERS, post_kind
from .common import RowError, bool_field, id_str, int_field, opt_str, parse_time, str_list, text_str

HASHTAG = re.compile(r"#(\w+)")
MENTION = re.compile(r"@(\w+)")


def _get(row: dict, mapping: dict, name: str):
    return row.get(mapping.get(name, name))


def _split(value: str) -> list[str]:
    return re.split(r"[;,|\s]+", value)


def _edge(src_type, src_id, relation, dst_type, dst_id, created, owner=None) -> dict:
    edge = {"src_type": src_type, "src_id": src_id, "relation": relation, "dst_type": dst_type, "dst_id": dst_id,
            "created_at": created}
    return edge if owner is None else {**edge, "_of": owner}


def post_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    """Each field is checked against its canonical type (strings, list<string>, timestamp): a
    wrong type rejects the row with the field's (source column's) name."""
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    col = lambda name: mapping.get(name, name)  # noqa: E731
    user_id = id_str(get("user_id"), col("user_id"))
    created = parse_time(get("created_at"), col("created_at"))
    repost_of = id_str(get("repost_of"), col("repost_of"), required=False)
    post_id = id_str(get("post_id"), col("post_id"), required=repost_of is None)
    users = [("users", {**dict.fromkeys(USERS.names), "user_id": user_id, "source": source})]
    if repost_of:
        edge = _edge("user", user_id, "reposts", "post", repost_of, created, owner=post_id)
        if post_id is None:  # an anonymous repost: an edge only
            return users + [("edges", edge)]
        post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
                "kind": "repost", "repost_of": repost_of, "collection": "collected", "status": "ok", "source": source,
                "thread_id": repost_of, "hashtags": [], "mentions": [], "urls": []}
        return [("posts", post)] + users + [("edges", edge)]
    text = text_str(get("text"), col("text"))
    image = opt_str(get("image_path"), col("image_path"))
    parent = id_str(get("parent_id"), col("parent_id"), required=False)
    quote = id_str(get("quote_of"), col("quote_of"), required=False)
    hashtags = str_list(get("hashtags"), col("hashtags"), _split) if get("hashtags") is not None else HASHTAG.findall(text or "")
    mentions = str_list(get("mentions"), col("mentions"), _split) if get("mentions") is not None else MENTION.findall(text or "")
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": text, "image_path": image if image else None, "lang": opt_str(get("lang"), col("lang")),
            "parent_id": parent, "quote_of": quote,
            "thread_id": id_str(get("thread_id"), col("thread_id"), required=False) or parent or post_id,
            "hashtags": hashtags, "mentions": mentions, "urls": str_list(get("urls"), col("urls"), _split),
            "label": opt_str(get("label"), col("label")), "source": source,
            "kind": post_kind(parent, quote), "collection": "collected", "status": "ok"}
    out = [("posts", post)] + users + [("edges", _edge("user", user_id, "authored", "post", post_id, created, post_id))]
    for relation, target in (("replies_to", parent), ("quotes", quote)):
        if target:
            out.append(("edges", _edge("post", post_id, relation, "post", target, created, post_id)))
    for user in mentions:
        out.append(("edges", _edge("post", post_id, "mentions", "user", user, created, post_id)))
    return out


def user_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    col = lambda name: mapping.get(name, name)  # noqa: E731
    created = get("created_at")
    user = {**dict.fromkeys(USERS.names), "user_id": id_str(get("user_id"), col("user_id")),
            "username": opt_str(get("username"), col("username")),
            "created_at": parse_time(created, col("created_at")) if created not in (None, "") else None,
            "followers": int_field(get("followers"), col("followers")),
            "following": int_field(get("following"), col("following")),
            "post_count": int_field(get("post_count"), col("post_count")),
            "verified": bool_field(get("verified"), col("verified")),
            "default_profile": bool_field(get("default_profile"), col("default_profile")),
            "description": text_str(get("description"), col("description")),
            "label": opt_str(get("label"), col("label")), "source": source}
    return [("users", user)]


def edge_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    col = lambda name: mapping.get(name, name)  # noqa: E731
    relation = id_str(get("relation"), col("relation"), allow_int=False)
    if relation not in RELATIONS:
        raise RowError(f"unknown relation {relation!r} (one of {', '.join(RELATIONS)})")
    src_type, dst_type = RELATIONS[relation]
    created = get("created_at")
    edge = _edge(src_type, id_str(get("src_id"), col("src_id")), relation, dst_type, id_str(get("dst_id"), col("dst_id")),
                 parse_time(created, col("created_at")) if created not in (None, "") else None)
    return [("edges", edge)]


ROW_PARSERS = {"posts": post_rows, "users": user_rows, "edges": edge_rows}
