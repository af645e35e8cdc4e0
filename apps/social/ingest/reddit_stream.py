"""Large Reddit NDJSON (Pushshift / Arctic Shift style) for scale benchmarks: the posts of
:func:`apps.social.synthetic_stream.write_stream` -- the same network :func:`.twarc_stream.write_twarc2`
writes as tweets -- as Reddit submissions (thread roots and quotes, which Reddit has no form for)
and comments (replies: ``parent_id`` ``t3_``/``t1_`` as the parent is a submission or a comment,
``link_id`` the thread's submission), one object per line, plain or zstd-compressed.  Every 97th
comment's author is ``[deleted]`` (and every 89th body ``[removed]``), as in real dumps.
"""
from __future__ import annotations

import calendar
import json
import time
from pathlib import Path


def _epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def write_reddit(n_posts: int, out_dir: str | Path, seed: int = 0, distinct_texts: bool = False,
                 vocab_size: int = 1024, compress: bool = False) -> Path:
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
