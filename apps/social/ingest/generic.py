"""JSONL / CSV / Parquet with a column mapping onto the canonical tables.

``mapping`` maps canonical field -> source column, e.g. ``{"post_id": "id", "user_id": "author",
"created_at": "ts", "text": "body", "image_path": "img"}``; unmapped canonical fields are read
from a column of the same name when there is one.  ``table`` picks what one source row is:

* ``posts`` (default): a post, its author, and its authored / replies_to / quotes / mentions
  edges; a row whose ``repost_of`` is set is a repost edge only.
* ``users``: one account.  * ``edges``: one interaction (src_id, relation, dst_id, ...).
"""
from __future__ import annotations

import re

from ..schema import POSTS, RELATIONS, USERS
from .common import RowError, opt_str, parse_time, require_str

HASHTAG = re.compile(r"#(\w+)")
MENTION = re.compile(r"@(\w+)")


def _get(row: dict, mapping: dict, name: str):
    return row.get(mapping.get(name, name))


def _list(value) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[;,|\s]+", value) if v]
    return [str(v) for v in value]


def _int(value, name: str) -> int | None:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise RowError(f"bad integer in '{name}': {value!r}") from None


def _bool(value) -> bool | None:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "t", "y")
    return bool(value)


def post_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    user_id = require_str({"user_id": get("user_id")}, "user_id")
    created = parse_time(get("created_at"))
    repost_of = opt_str(get("repost_of"))
    if repost_of:
        return [("users", {**dict.fromkeys(USERS.names), "user_id": user_id, "source": source}),
                ("edges", {"src_type": "user", "src_id": user_id, "relation": "reposts", "dst_type": "post",
                           "dst_id": repost_of, "created_at": created})]
    post_id = require_str({"post_id": get("post_id")}, "post_id")
    text = opt_str(get("text"))
    text = text if text and text.strip() else None
    image = opt_str(get("image_path"))
    parent, quote = opt_str(get("parent_id")), opt_str(get("quote_of"))
    hashtags = _list(get("hashtags")) if get("hashtags") is not None else HASHTAG.findall(text or "")
    mentions = _list(get("mentions")) if get("mentions") is not None else MENTION.findall(text or "")
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": text, "image_path": image if image else None, "lang": opt_str(get("lang")),
            "parent_id": parent, "quote_of": quote, "thread_id": opt_str(get("thread_id")) or parent or post_id,
            "hashtags": hashtags, "mentions": mentions, "urls": _list(get("urls")),
            "label": opt_str(get("label")), "source": source}
    out = [("posts", post), ("users", {**dict.fromkeys(USERS.names), "user_id": user_id, "source": source}),
           ("edges", {"src_type": "user", "src_id": user_id, "relation": "authored", "dst_type": "post",
                      "dst_id": post_id, "created_at": created})]
    for relation, target in (("replies_to", parent), ("quotes", quote)):
        if target:
            out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": relation, "dst_type": "post",
                                  "dst_id": target, "created_at": created}))
    for user in mentions:
        out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": "mentions", "dst_type": "user",
                              "dst_id": user, "created_at": created}))
    return out


def user_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    created = get("created_at")
    user = {**dict.fromkeys(USERS.names), "user_id": require_str({"user_id": get("user_id")}, "user_id"),
            "username": opt_str(get("username")),
            "created_at": parse_time(created) if created not in (None, "") else None,
            "followers": _int(get("followers"), "followers"), "following": _int(get("following"), "following"),
            "post_count": _int(get("post_count"), "post_count"), "verified": _bool(get("verified")),
            "default_profile": _bool(get("default_profile")), "description": opt_str(get("description")),
            "label": opt_str(get("label")), "source": source}
    return [("users", user)]


def edge_rows(row: dict, mapping: dict, source: str = "generic") -> list[tuple[str, dict]]:
    get = lambda name: _get(row, mapping, name)  # noqa: E731
    relation = require_str({"relation": get("relation")}, "relation")
    if relation not in RELATIONS:
        raise RowError(f"unknown relation {relation!r} (one of {', '.join(RELATIONS)})")
    src_type, dst_type = RELATIONS[relation]
    created = get("created_at")
    edge = {"src_type": src_type, "src_id": require_str({"src_id": get("src_id")}, "src_id"), "relation": relation,
            "dst_type": dst_type, "dst_id": require_str({"dst_id": get("dst_id")}, "dst_id"),
            "created_at": parse_time(created) if created not in (None, "") else None}
    return [("edges", edge)]


ROW_PARSERS = {"posts": post_rows, "users": user_rows, "edges": edge_rows}
