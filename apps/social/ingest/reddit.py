"""Reddit NDJSON dumps (Pushshift / Arctic Shift style): submissions and comments, ``.zst`` too.

Submissions become posts ``t3_<id>`` (title + selftext); comments become posts ``t1_<id>`` with a
``replies_to`` edge to their ``parent_id`` and ``thread_id`` = ``link_id``.  Deleted/removed
bodies count as missing text (masked), not as a bad row.  An image URL is looked up as
``media_root/<file name>`` when a media root is given.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from ..schema import POSTS, USERS, post_kind
from .common import RowError, id_str, parse_time, text_str

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp")
GONE = {"[deleted]", "[removed]", ""}


def _fullname(value: str, prefix: str) -> str:
    return value if "_" in value[:3] else f"{prefix}_{value}"


def reddit_rows(obj: dict, media_root=None) -> list[tuple[str, dict]]:
    """Rows of one submission/comment.  Reddit IDs, names and bodies are JSON strings: anything
    else (``"id": true``, ``"parent_id": 42``, an author list, a body object) is a typed reject.
    A ``[deleted]``/``[removed]`` author is *unknown* (null ``user_id``, no user row, no authored
    edge), not one shared account that would become a hub."""
    if not isinstance(obj, dict):
        raise RowError("line is not a JSON object")
    is_comment = "body" in obj or str(obj.get("name", "")).startswith("t1_")
    post_id = _fullname(id_str(obj.get("id"), "id", allow_int=False), "t1" if is_comment else "t3")
    author = id_str(obj.get("author"), "author", allow_int=False)
    user_id = None if author in GONE else author
    created = parse_time(obj.get("created_utc"), "created_utc")
    if is_comment:
        text = text_str(obj.get("body"), "body")
        parent = _fullname(id_str(obj.get("parent_id"), "parent_id", allow_int=False), "t3")
        thread = id_str(obj.get("link_id"), "link_id", required=False, allow_int=False) or parent
    else:
        parts = [text_str(obj.get("title"), "title"), text_str(obj.get("selftext"), "selftext")]
        text = "\n\n".join(p for p in parts if p and p not in GONE)
        parent, thread = None, post_id
    text = None if text is None or text.strip() in GONE else text
    image_path, out = None, []
    url = id_str(obj.get("url"), "url", required=False, allow_int=False)
    subreddit = id_str(obj.get("subreddit"), "subreddit", required=False, allow_int=False)
    if not is_comment and url and url.lower().split("?")[0].endswith(IMAGE_EXT):
        name = PurePosixPath(url.split("?")[0]).name
        path = str(media_root / name) if media_root is not None else None
        out.append(("media", {"media_id": f"{post_id}:{name}", "post_id": post_id, "path": path or url,
                              "kind": "photo", "status": None if path else "not_downloaded"}))
        image_path = path
    post = {**dict.fromkeys(POSTS.names), "post_id": post_id, "user_id": user_id, "created_at": created,
            "text": text, "image_path": image_path, "lang": None, "parent_id": parent, "quote_of": None,
            "thread_id": thread, "hashtags": [subreddit] if subreddit else [],
            "mentions": [], "urls": [url] if url and not is_comment else [], "label": None, "source": "reddit",
            "kind": post_kind(parent, None), "collection": "collected", "status": "ok"}
    out.append(("posts", post))
    if user_id is not None:
        author_created = obj.get("author_created_utc")
        out.append(("users", {**dict.fromkeys(USERS.names), "user_id": user_id, "username": user_id,
                              "created_at": parse_time(author_created, "author_created_utc") if author_created else None,
                              "source": "reddit"}))
        out.append(("edges", {"src_type": "user", "src_id": user_id, "relation": "authored", "dst_type": "post",
                              "dst_id": post_id, "created_at": created, "_of": post_id}))
    if parent:
        out.append(("edges", {"src_type": "post", "src_id": post_id, "relation": "replies_to", "dst_type": "post",
                              "dst_id": parent, "created_at": created, "_of": post_id}))
    return out
