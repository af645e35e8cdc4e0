"""Reddit NDJSON dumps (Pushshift / Arctic Shift style): submissions and comments, ``.zst`` too.

Submissions become posts ``t3_<id>`` (title + selftext); comments become posts ``t1_<id>`` with a
``replies_to`` edge to their ``parent_id`` and ``thread_id`` = ``link_id``.  Deleted/removed
bodies count as missing text (masked), not as a bad row.  An image URL is looked up as
``media_root/<file name>`` when a media root is given.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from ..schema import POSTS, USERS
from .common import RowError, opt_str, parse_time, require_str

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp")
GONE = {"[deleted]", "[removed]", ""}


def _fullname(value: str, prefix: str) -> str:
    return value if "_" in value[:3] else f"{prefix}_{value}"


def reddit_rows(obj: dict, media_root=None) -> list[tuple[str, dict]]:
    if not isinstance(obj, dict):
        raise RowError("line is not a JSON object")
    is_comment = "body" in obj or str(obj.get("name", "")).startswith("t1_")
    post_id = _fullname(require_str(obj, "id"), "t1" if is_comment else "t3")
    user_id = require_str(obj, "author")
    created = parse_time(obj.get("created_utc"), "created_utc")
    if is_comment:
        text = opt_str(obj.get("body"))
        parent = _fullname(require_str(obj, "parent_id"), "t3")
        thread = opt_str(obj.get("link_id")) or parent
    else:
        parts = [opt_str(obj.get("title")), opt_str(obj.get("selftext"))]
        text = "\n\n".join(p for p in parts if p and p not in GONE)
        parent, thread = None, post_id
    text = None if text is None or text.strip() in GONE else text
    image_path, out = None, []
    url = opt_str(obj.get("url"))
    if not is_comment and url and url.lower().split("?")[0].endswith(IMAGE_EXT):
        name = PurePosixPath(url.split("?")[0]).name
        path = str(media_root / name) if media_root is not None else None
        out.append(("media", {"media_id": f"{post_id}:{name}", "post_id": post_id, "path": path or url,
                              "kind": "photo", "status": None if path else "not_downloaded"}))
        image_path = path
    author_created = obj.get("author_created_utc")
    user = {**dict.fromkeys(USERS.names), "user_id": user_id, "username": user_id,
            "created_at": parse_time(author_created, "author_created_utc") if author_created else None,
            "source": "reddit"}
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": text, "image_path": image_path, "lang": None, "parent_id": parent, "quote_of": None,
            "thread_id": thread, "hashtags": [str(obj["subreddit"])] if obj.get("subreddit") else [],
            "mentions": [], "urls": [url] if url and not is_comment else [], "label": None, "source": "reddit"}
    out += [("posts", post), ("users", user),
            ("edges", {"src_type": "user", "src_id": user_id, "relation": "authored", "dst_type": "post",
                       "dst_id": post_id, "created_at": created})]
    if parent:
        out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": "replies_to", "dst_type": "post",
                              "dst_id": parent, "created_at": created}))
    return out
