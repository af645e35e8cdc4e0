"""Large twarc2 ``flatten`` JSONL for scale benchmarks: :func:`apps.social.synthetic_stream.write_stream`'s
posts and accounts rewritten as Twitter API v2 tweets, one per line, each with its ``author``
object expanded in place (as ``twarc2 flatten`` writes them), its replied-to / quoted tweet IDs in
``referenced_tweets``, hashtags and mentions in ``entities``.  Texts come from the stream's finite
vocabulary unless ``distinct_texts`` is set (then every text carries its post number, so no two
posts share a text: the cold-cache case of the text encoder).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path


def write_twarc2(n_posts: int, out_dir: str | Path, seed: int = 0, distinct_texts: bool = False,
                 vocab_size: int = 1024) -> Path:
    """Write ``out_dir/tweets_flat.jsonl`` (``n_posts`` lines) and return its path."""
    from ..synthetic_stream import StreamConfig, write_stream

    out = Path(out_dir)
    raw = write_stream(StreamConfig(n_posts=n_posts, vocab_size=vocab_size, seed=seed), out / "_stream")
    users = {}
    with open(raw["users"], newline="") as fh:
        for u in csv.DictReader(fh):
            users[u["user_id"]] = {"id": u["user_id"], "username": u["username"], "created_at": u["created_at"],
                                   "verified": u["verified"] == "True",
                                   "profile_image_url": "https://abs.twimg.com/sticky/default_profile_images/x.png"
                                   if u["default_profile"] == "True" else f"https://pbs.twimg.com/p/{u['user_id']}.jpg",
                                   "public_metrics": {"followers_count": int(u["followers"]),
                                                      "following_count": int(u["following"]),
                                                      "tweet_count": int(u["post_count"])}}
    path = out / "tweets_flat.jsonl"
    with open(raw["posts"]) as src, open(path, "w") as dst:
        lines = []
        for line in src:
            p = json.loads(line)
            n = int(p["id"][1:])
            tid = str(1_800_000_000_000_000_000 + n)
            text = p["body"]
            if distinct_texts and text:
                text = f"{text} #{n}"
            refs = []
            if p["reply_to"]:
                refs.append({"type": "replied_to", "id": str(1_800_000_000_000_000_000 + int(p["reply_to"][1:]))})
            if p["quote_of"]:
                refs.append({"type": "quoted", "id": str(1_800_000_000_000_000_000 + int(p["quote_of"][1:]))})
            tweet = {"id": tid, "author_id": p["author"], "created_at": p["time"], "text": text or "",
                     "conversation_id": refs[0]["id"] if p["reply_to"] else tid, "lang": "en",
                     "entities": {"hashtags": [{"tag": f"topic{n % 7}"}],
                                  "mentions": [{"username": users[m]["username"], "id": m} for m in p["mentions"]]},
                     "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": n % 13, "quote_count": 0},
                     "author": users[p["author"]], "__twarc": {"version": "2.14.0", "retrieved_at": p["time"]}}
            if refs:
                tweet["referenced_tweets"] = refs
            lines.append(json.dumps(tweet))
            if len(lines) >= 10_000:
                dst.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            dst.write("\n".join(lines) + "\n")
    import shutil

    shutil.rmtree(out / "_stream", ignore_errors=True)
    return path
