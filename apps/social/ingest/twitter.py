"""Twitter/X API v2 JSON as written by twarc2: raw response pages and ``twarc2 flatten`` lines.

Raw: one line per response page ``{"data": [tweet...], "includes": {"users", "tweets", "media"}}``.
Flattened: one tweet per line with ``author``, ``attachments.media`` and ``referenced_tweets[].tweet``
expanded in place.  Retweets become ``reposts`` edges (their text is the original's, truncated).
Images: ``media_root/<media_key>.{png,jpg,jpeg}`` when a media root is given (no downloads here).
"""
from __future__ import annotations

from ..schema import POSTS, USERS
from .common import RowError, opt_str, parse_time, require_str


def is_raw_page(obj: dict) -> bool:
    return isinstance(obj.get("data"), list) or "includes" in obj


def user_row(user: dict) -> dict:
    metrics = user.get("public_metrics") or {}
    created = user.get("created_at")
    return {**dict.fromkeys(USERS.names), "user_id": require_str(user, "id"), "username": opt_str(user.get("username")),
            "created_at": parse_time(created) if created else None,
            "followers": metrics.get("followers_count"), "following": metrics.get("following_count"),
            "post_count": metrics.get("tweet_count"), "verified": user.get("verified"),
            "default_profile": "default_profile" in str(user.get("profile_image_url", "")) if user.get("profile_image_url") else None,
            "description": opt_str(user.get("description")), "label": None, "source": "twitter"}


def tweet_rows(tweet: dict, media_by_key: dict, users_by_id: dict, media_root=None) -> list[tuple[str, dict]]:
    """Rows for one v2 tweet object (raises RowError when a required field is missing/bad)."""
    if not isinstance(tweet, dict):
        raise RowError("tweet is not a JSON object")
    post_id = require_str(tweet, "id")
    user_id = require_str(tweet, "author_id")
    created = parse_time(tweet.get("created_at"))
    refs = {r.get("type"): r for r in tweet.get("referenced_tweets") or [] if isinstance(r, dict)}
    out: list[tuple[str, dict]] = []
    author = tweet.get("author") or users_by_id.get(user_id)
    out.append(("users", user_row(author) if isinstance(author, dict) else
                {**dict.fromkeys(USERS.names), "user_id": user_id, "source": "twitter"}))
    for ref in refs.values():  # flattened lines embed the referenced tweet
        if isinstance(ref.get("tweet"), dict) and ref["tweet"].get("author_id"):
            try:
                out += tweet_rows(ref["tweet"], media_by_key, users_by_id, media_root)
            except RowError:
                pass  # an incomplete embedded tweet does not spoil the tweet that cites it
    if "retweeted" in refs:
        return out + [("edges", {"src_type": "user", "src_id": user_id, "relation": "reposts", "dst_type": "post",
                                 "dst_id": require_str(refs["retweeted"], "id"), "created_at": created})]
    entities = tweet.get("entities") or {}
    media_keys = (tweet.get("attachments") or {}).get("media_keys") or []
    for m in (tweet.get("attachments") or {}).get("media") or []:
        if isinstance(m, dict) and m.get("media_key"):
            media_by_key.setdefault(m["media_key"], m)
            if m["media_key"] not in media_keys:
                media_keys.append(m["media_key"])
    image_path = None
    for key in media_keys:
        m = media_by_key.get(key, {})
        if m.get("type", "photo") != "photo":
            continue
        path = None
        if media_root is not None:
            found = [media_root / f"{key}{ext}" for ext in (".png", ".jpg", ".jpeg") if (media_root / f"{key}{ext}").exists()]
            path = str(found[0] if found else media_root / f"{key}.png")
        out.append(("media", {"media_id": key, "post_id": post_id, "path": path or m.get("url"), "kind": "photo",
                              "status": None if path else "not_downloaded"}))
        image_path = image_path or path
    parent = refs.get("replied_to", {}).get("id")
    quote = refs.get("quoted", {}).get("id")
    mentions = [m for m in entities.get("mentions") or [] if isinstance(m, dict)]
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": opt_str(tweet.get("text")) or None, "image_path": image_path, "lang": opt_str(tweet.get("lang")),
            "parent_id": opt_str(parent), "quote_of": opt_str(quote),
            "thread_id": opt_str(tweet.get("conversation_id")) or post_id,
            "hashtags": [str(h.get("tag")) for h in entities.get("hashtags") or [] if isinstance(h, dict)],
            "mentions": [str(m.get("username")) for m in mentions],
            "urls": [str(u.get("expanded_url") or u.get("url")) for u in entities.get("urls") or [] if isinstance(u, dict)],
            "label": None, "source": "twitter"}
    out.append(("posts", post))
    out.append(("edges", {"src_type": "user", "src_id": user_id, "relation": "authored", "dst_type": "post",
                          "dst_id": post_id, "created_at": created}))
    for relation, target in (("replies_to", parent), ("quotes", quote)):
        if target:
            out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": relation, "dst_type": "post",
                                  "dst_id": str(target), "created_at": created}))
    for m in mentions:
        target = m.get("id") or m.get("username")
        if target:
            out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": "mentions", "dst_type": "user",
                                  "dst_id": str(target), "created_at": created}))
    return out


def page_items(obj: dict) -> tuple[list, dict, dict]:
    """(tweets, media_by_key, users_by_id) of one raw page; includes.tweets are cited tweets."""
    includes = obj.get("includes") or {}
    media = {m["media_key"]: m for m in includes.get("media") or [] if isinstance(m, dict) and "media_key" in m}
    users = {str(u["id"]): u for u in includes.get("users") or [] if isinstance(u, dict) and "id" in u}
    data = obj.get("data") or []
    if not isinstance(data, list):
        raise RowError("'data' is not a list")
    return list(data) + list(includes.get("tweets") or []), media, users
