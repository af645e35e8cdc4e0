"""Twitter/X API v2 JSON as written by twarc2: raw response pages and ``twarc2 flatten`` lines.

Raw: one line per response page ``{"data": [tweet...], "includes": {"users", "tweets", "media"},
"errors": [...]}``.  Flattened: one tweet per line with ``author``, ``attachments.media`` and
``referenced_tweets[].tweet`` expanded in place.

Every tweet keeps its own ID and author: a retweet is a ``kind = "repost"`` post row (with
``repost_of``) *and* a ``reposts`` edge from its author to the original.  ``data`` tweets and
flattened lines are ``collected``; ``includes.tweets`` and embedded tweets are ``referenced``.
A withheld tweet (``withheld`` object) is kept with ``status = "withheld"`` even without a time or
author; a tweet the page's ``errors`` report as gone is kept as a ``deleted``/``unavailable``
row, so replies to it still have a node.  Images: ``media_root/<media_key>.{png,jpg,jpeg}`` when
a media root is given (no downloads here); a media key that ``includes.media`` does not describe
gets ``status = "not_in_includes"``, distinct from ``not_downloaded`` (no media root given).
"""
from __future__ import annotations

from ..schema import POSTS, USERS, post_kind
from .common import RowError, bool_field, id_str, int_field, parse_time, text_str

GONE_TITLES = {"Not Found Error": "deleted", "Authorization Error": "unavailable", "Forbidden": "unavailable"}


def is_raw_page(obj: dict) -> bool:
    return isinstance(obj.get("data"), list) or "includes" in obj


def user_row(user: dict) -> dict:
    metrics = user.get("public_metrics") or {}
    if not isinstance(metrics, dict):
        raise RowError(f"bad type for 'public_metrics': expected object, got {type(metrics).__name__}")
    created = user.get("created_at")
    picture = user.get("profile_image_url")
    return {**dict.fromkeys(USERS.names), "user_id": id_str(user.get("id"), "author.id"),
            "username": id_str(user.get("username"), "username", required=False, allow_int=False),
            "created_at": parse_time(created, "author.created_at") if created else None,
            "followers": int_field(metrics.get("followers_count"), "followers_count"),
            "following": int_field(metrics.get("following_count"), "following_count"),
            "post_count": int_field(metrics.get("tweet_count"), "tweet_count"),
            "verified": bool_field(user.get("verified"), "verified"),
            "default_profile": ("default_profile" in picture) if isinstance(picture, str) else None,
            "description": text_str(user.get("description"), "description"), "label": None, "source": "twitter"}


def _edge(src_type, src_id, relation, dst_type, dst_id, created, owner) -> tuple[str, dict]:
    return ("edges", {"src_type": src_type, "src_id": src_id, "relation": relation, "dst_type": dst_type,
                      "dst_id": dst_id, "created_at": created, "_of": owner})


def _media_rows(tweet: dict, post_id: str, media_by_key: dict, media_root) -> tuple[list, str | None]:
    attachments = tweet.get("attachments") or {}
    if not isinstance(attachments, dict):
        raise RowError(f"bad type for 'attachments': expected object, got {type(attachments).__name__}")
    keys = [id_str(k, "media_keys[]") for k in attachments.get("media_keys") or []]
    for m in attachments.get("media") or []:  # flattened lines embed the media objects
        if isinstance(m, dict) and m.get("media_key"):
            media_by_key.setdefault(m["media_key"], m)
            if m["media_key"] not in keys:
                keys.append(m["media_key"])
    out, image_path = [], None
    for key in keys:
        m = media_by_key.get(key)
        if m is None:  # the page does not describe this key: a gap in the collection, not a download issue
            out.append(("media", {"media_id": key, "post_id": post_id, "path": None, "kind": None,
                                  "status": "not_in_includes"}))
            continue
        if m.get("type", "photo") != "photo":
            continue
        path = None
        if media_root is not None:
            found = [media_root / f"{key}{ext}" for ext in (".png", ".jpg", ".jpeg") if (media_root / f"{key}{ext}").exists()]
            path = str(found[0] if found else media_root / f"{key}.png")
        out.append(("media", {"media_id": key, "post_id": post_id, "path": path or m.get("url"), "kind": "photo",
                              "status": None if path else "not_downloaded"}))
        image_path = image_path or path
    return out, image_path


def tweet_rows(tweet: dict, media_by_key: dict, users_by_id: dict, media_root=None,
               collection: str = "collected") -> list[tuple[str, dict]]:
    """Rows for one v2 tweet object (raises RowError when a required field is missing or mistyped)."""
    if not isinstance(tweet, dict):
        raise RowError("tweet is not a JSON object")
    post_id = id_str(tweet.get("id"), "id")
    withheld = isinstance(tweet.get("withheld"), dict)
    user_id = id_str(tweet.get("author_id"), "author_id", required=not withheld)
    created = parse_time(tweet.get("created_at")) if (tweet.get("created_at") or not withheld) else None
    refs = {}
    for r in tweet.get("referenced_tweets") or []:
        if not isinstance(r, dict):
            raise RowError("bad type for 'referenced_tweets[]': expected object")
        refs[r.get("type")] = r
    out: list[tuple[str, dict]] = []
    author = tweet.get("author") or users_by_id.get(user_id)
    if isinstance(author, dict):
        out.append(("users", user_row(author)))
    elif user_id is not None:
        out.append(("users", {**dict.fromkeys(USERS.names), "user_id": user_id, "source": "twitter"}))
    for ref in refs.values():  # flattened lines embed the referenced tweet
        if isinstance(ref.get("tweet"), dict) and ref["tweet"].get("author_id"):
            try:
                out += tweet_rows(ref["tweet"], media_by_key, users_by_id, media_root, "referenced")
            except RowError:
                pass  # an incomplete embedded tweet does not spoil the tweet that cites it
    parent = id_str(refs.get("replied_to", {}).get("id"), "replied_to.id", required=False)
    quote = id_str(refs.get("quoted", {}).get("id"), "quoted.id", required=False)
    repost_of = id_str(refs["retweeted"].get("id"), "retweeted.id") if "retweeted" in refs else None
    entities = tweet.get("entities") or {}
    if not isinstance(entities, dict):
        raise RowError(f"bad type for 'entities': expected object, got {type(entities).__name__}")
    media, image_path = _media_rows(tweet, post_id, media_by_key, media_root) if not repost_of else ([], None)
    mentions = [m for m in entities.get("mentions") or [] if isinstance(m, dict)]
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": text_str(tweet.get("text"), "text"), "image_path": image_path,
            "lang": id_str(tweet.get("lang"), "lang", required=False, allow_int=False),
            "parent_id": parent, "quote_of": quote,
            "thread_id": id_str(tweet.get("conversation_id"), "conversation_id", required=False) or repost_of or post_id,
            "hashtags": [id_str(h.get("tag"), "hashtags[].tag") for h in entities.get("hashtags") or [] if isinstance(h, dict)],
            "mentions": [id_str(m.get("username"), "mentions[].username") for m in mentions],
            "urls": [id_str(u.get("expanded_url") or u.get("url"), "urls[].url")
                     for u in entities.get("urls") or [] if isinstance(u, dict)],
            "label": None, "source": "twitter", "kind": post_kind(parent, quote, repost_of), "repost_of": repost_of,
            "collection": collection, "status": "withheld" if withheld else "ok"}
    out.append(("posts", post))
    out += media
    if repost_of:  # the graph sees a repost as an edge from its author to the original
        return out + ([_edge("user", user_id, "reposts", "post", repost_of, created, post_id)] if user_id else [])
    if user_id is not None:
        out.append(_edge("user", user_id, "authored", "post", post_id, created, post_id))
    for relation, target in (("replies_to", parent), ("quotes", quote)):
        if target:
            out.append(_edge("post", post_id, relation, "post", target, created, post_id))
    for m in mentions:
        target = m.get("id") or m.get("username")
        if target:
            out.append(_edge("post", post_id, "mentions", "user", id_str(target, "mentions[].id"), created, post_id))
    return out


def gone_rows(error: dict) -> list[tuple[str, dict]]:
    """A tweet the page reports as deleted/suspended (``errors[]``): a row with its status only."""
    if not isinstance(error, dict) or error.get("resource_type") != "tweet" or not error.get("resource_id"):
        return []
    status = GONE_TITLES.get(str(error.get("title")), "unavailable")
    post_id = id_str(error.get("resource_id"), "errors[].resource_id")
    return [("posts", {**dict.fromkeys(POSTS.names), "post_id": post_id, "thread_id": post_id, "hashtags": [],
                       "mentions": [], "urls": [], "source": "twitter", "kind": None, "collection": "referenced",
                       "status": status})]


def page_items(obj: dict) -> tuple[list, list, dict, dict, list]:
    """(collected tweets, referenced tweets, media_by_key, users_by_id, errors) of one raw page."""
    includes = obj.get("includes") or {}
    media = {m["media_key"]: m for m in includes.get("media") or [] if isinstance(m, dict) and "media_key" in m}
    users = {str(u["id"]): u for u in includes.get("users") or [] if isinstance(u, dict) and "id" in u}
    data = obj.get("data") or []
    if not isinstance(data, list):
        raise RowError("bad type for 'data': expected list")
    errors = obj.get("errors") or []
    return list(data), list(includes.get("tweets") or []), media, users, errors if isinstance(errors, list) else []
