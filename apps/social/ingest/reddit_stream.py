"""Large Reddit NDJSON (Pushshift / Arctic Shift style) for scale benchmarks: the posts of
:func:`apps.social.synthetic_stream.write_stream` -- the same network :func:`.twarc_stream.write_twarc2`
writes as tweets -- as Reddit submissions (thread roots and quotes, which Reddit has no form for)
and comments (replies: ``parent_id`` ``t3_``/``t1_`` as the parent is a submission or a comment,
``link_id`` the thread's submission), one object per line, plain or zstd-compressed.  Every 97th
comment's author is ``[deleted]`` (and every 89th body ``[removed]``), as in real dumps.  With
``pushshift_fields`` (the default) each line also carries the ~30-45 other fields a Pushshift /
Arctic Shift line has (flair, awards, gildings, ``edited`` false or a time, permalinks ...), so a
line is ~1-1.5 KB as in the real dumps and the parser skips what it would skip there.
"""
from __future__ import annotations

import calendar
import json
import time
from pathlib import Path


def _epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def _extra(n: int, created: int, comment: bool, permalink: str) -> dict:
    common = {"all_awardings": [], "author_flair_background_color": None, "author_flair_css_class": None,
              "author_flair_richtext": [], "author_flair_template_id": None, "author_flair_text": None,
              "author_flair_text_color": None, "author_flair_type": "text", "author_fullname": f"t2_{n * 7919:x}",
              "author_patreon_flair": False, "author_premium": n % 17 == 0, "awarders": [], "can_gild": True,
              "edited": created + 600 if n % 23 == 0 else False, "gilded": 0, "gildings": {}, "locked": False,
              "no_follow": n % 3 == 0, "permalink": permalink, "retrieved_on": created + 86_400,
              "send_replies": True, "stickied": False, "subreddit_id": f"t5_{n % 7:x}2b", "subreddit_type": "public",
              "top_awarded_type": None, "total_awards_received": 0, "treatment_tags": []}
    if comment:
        return {**common, "associated_award": None, "collapsed_because_crowd_control": None, "comment_type": None,
                "controversiality": 0, "distinguished": None, "is_submitter": n % 5 == 0, "score_hidden": False}
    return {**common, "allow_live_comments": False, "contest_mode": False, "domain": "i.redd.it" if n % 11 == 0 else "self.t",
            "full_link": f"https://www.reddit.com{permalink}", "is_crosspostable": True, "is_meta": False,
            "is_original_content": False, "is_reddit_media_domain": n % 11 == 0, "is_robot_indexable": True,
            "is_self": n % 11 != 0, "is_video": False, "link_flair_background_color": "", "link_flair_richtext": [],
            "link_flair_text_color": "dark", "link_flair_type": "text", "media_only": False, "num_comments": n % 40,
            "num_crossposts": 0, "over_18": False, "parent_whitelist_status": "all_ads", "pinned": False, "pwls": 6,
            "spoiler": False, "subreddit_subscribers": 120_000 + n % 1000, "thumbnail": "self", "upvote_ratio": 0.97,
            "whitelist_status": "all_ads", "wls": 6}


def write_reddit(n_posts: int, out_dir: str | Path, seed: int = 0, distinct_texts: bool = False,
                 vocab_size: int = 1024, compress: bool = False, pushshift_fields: bool = True) -> Path:
    """Write ``out_dir/reddit.ndjson`` (``.zst`` when ``compress``), ``n_posts`` lines; return its path."""
    import shutil

    from ..synthetic_stream import StreamConfig, write_stream

    out = Path(out_dir)
    raw = write_stream(StreamConfig(n_posts=n_posts, vocab_size=vocab_size, seed=seed), out / "_stream")
    path = out / ("reddit.ndjson.zst" if compress else "reddit.ndjson")
    root: dict[int, int] = {}  # post number -> its thread's submission
    submission: set[int] = set()
    with open(raw["posts"]) as src, open(path, "wb") as fh:
        dst = fh
        if compress:
            import zstandard

            dst = zstandard.ZstdCompressor(level=3).stream_writer(fh)
        lines = []
        for line in src:
            p = json.loads(line)
            n = int(p["id"][1:])
            text = p["body"] or ""
            if distinct_texts and text:
                text = f"{text} #{n}"
            base = {"id": f"{n:x}", "author": p["author"], "created_utc": _epoch(p["time"]), "subreddit": f"topic{n % 7}",
                    "score": n % 13}
            parent = int(p["reply_to"][1:]) if p["reply_to"] else None
            if parent is None or parent not in root:
                root[n] = n
                submission.add(n)
                obj = {**base, "name": f"t3_{n:x}", "title": text, "selftext": "",
                       "url": f"https://i.redd.it/{n:x}.jpg" if n % 11 == 0 else f"https://www.reddit.com/r/t/{n:x}/"}
            else:
                root[n] = root[parent]
                obj = {**base, "body": "[removed]" if n % 89 == 0 else text,
                       "parent_id": f"{'t3' if parent in submission else 't1'}_{parent:x}",
                       "link_id": f"t3_{root[parent]:x}"}
                if n % 97 == 0:
                    obj["author"] = "[deleted]"
            if pushshift_fields:
                link = f"/r/topic{n % 7}/comments/{root[n]:x}/_/" + ("" if parent is None or n == root[n] else f"{n:x}/")
                obj.update(_extra(n, base["created_utc"], "body" in obj, link))
            lines.append(json.dumps(obj))
            if len(lines) >= 10_000:
                dst.write(("\n".join(lines) + "\n").encode())
                lines = []
        if lines:
            dst.write(("\n".join(lines) + "\n").encode())
        if compress:
            dst.close()
    shutil.rmtree(out / "_stream", ignore_errors=True)
    return path
