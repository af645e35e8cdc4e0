"""Synthetic posts written in chunks, for throughput runs from 10k to millions of posts.

:func:`generate` (``synthetic.py``) builds the whole data set in memory with a per-post Python loop
and images; fine for the learning benchmarks (<= ~50k posts), too slow and too big for 1M.  This
writer draws the same kind of network with vectorised NumPy, one chunk of posts at a time, straight
to the raw files an analyst would ingest:

| file          | rows                                | ingested with                      |
|---------------|-------------------------------------|------------------------------------|
| users.csv     | one account (metadata, bot label)   | ``--table users`` (generic CSV)    |
| posts.jsonl   | one post (text, reply/quote, label) | generic JSONL, :data:`MAPPING`     |
| edges.csv     | follows and reposts                 | ``--table edges`` (generic CSV)    |

Memory: the user table (``n_posts * users_per_post`` rows), the text vocabulary and one chunk of
posts; nothing grows with the number of posts except the files.

Text: every post's text is drawn from a finite *vocabulary* of ``vocab_size`` distinct template
sentences (community topic + stance words + filler, with or without a label cue), as in the
in-memory generator but without the per-post @-mention prefix (mentions go to the ``mentions``
field).  So a million posts hold at most ``vocab_size`` distinct texts, like a stream full of
retweeted and copy-pasted wording: that is what lets a throughput run warm the MiniLM cache with
every distinct text once and then look up each post's embedding by text hash.  No images (image
decoding is measured by the learning benchmarks, not here).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .synthetic import LABELS, SyntheticConfig, _text, _users

MAPPING = {"post_id": "id", "user_id": "author", "created_at": "time", "text": "body", "parent_id": "reply_to"}
START = np.datetime64("2024-03-01T00:00:00", "ms")


@dataclass
class StreamConfig:
    n_posts: int
    users_per_post: float = 0.1
    n_communities: int = 6
    vocab_size: int = 1024
    frac_text_cue: float = 0.3        # text cue == label
    frac_xor_cue: float = 0.2         # text cue random (no image here: pure noise for a text model)
    text_missing: float = 0.05
    reply_frac: float = 0.15
    quote_frac: float = 0.05
    mention_frac: float = 0.1
    reposts_per_post: float = 0.5
    follows_per_user: float = 6.0
    label_noise: float = 0.05
    days: int = 30
    chunk: int = 50_000
    seed: int = 0


def text_vocabulary(size: int, n_communities: int = 6, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``size`` distinct texts in ``3 * n_communities`` buckets (community x cue none/0/1).

    Returns (texts, bucket_start [B], bucket_size [B]); bucket ``b = community * 3 + cue + 1``."""
    rng = np.random.default_rng(10_000 + seed)
    n_buckets = 3 * n_communities
    per = max(1, size // n_buckets)
    texts, start, count = [], [], []
    for b in range(n_buckets):
        community, cue = divmod(b, 3)
        found: dict[str, None] = {}
        for _ in range(per * 50):  # templates are varied enough; the cap only guards tiny vocabularies
            found.setdefault(_text(rng, community, None if cue == 0 else cue - 1, None))
            if len(found) == per:
                break
        start.append(len(texts))
        count.append(len(found))
        texts += list(found)
    return texts, np.array(start), np.array(count)


def _iso(ms: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(START + ms.astype("timedelta64[ms]"), unit="ms"), "Z")


def _follows(rng, comm: np.ndarray, bot: np.ndarray, cell: np.ndarray, per_user: float) -> tuple[np.ndarray, np.ndarray]:
    n = len(comm)
    order = np.argsort(comm, kind="stable")
    first = np.searchsorted(comm[order], np.arange(comm.max() + 1))
    size = np.bincount(comm, minlength=comm.max() + 1)
    k = rng.poisson(per_user, n)
    src = np.repeat(np.arange(n), k)
    local = rng.random(len(src)) < 0.85
    dst = np.where(local, order[first[comm[src]] + (rng.random(len(src)) * size[comm[src]]).astype(np.int64)],
                   rng.integers(0, n, len(src)))
    bots = np.flatnonzero(bot)  # cells follow each other
    mates = bots[np.argsort(cell[bots], kind="stable")]
    cs = int(np.bincount(cell[bots]).max()) if len(bots) else 0
    if cs:
        grid = mates[: len(mates) // cs * cs].reshape(-1, cs)
        src = np.r_[src, np.repeat(grid, cs, axis=1).ravel()]
        dst = np.r_[dst, np.tile(grid, (1, cs)).ravel()]
    pairs = np.unique(src.astype(np.int64) * n + dst)
    src, dst = pairs // n, pairs % n
    keep = src != dst
    return src[keep], dst[keep]


def write_stream(cfg: StreamConfig, out_dir: str | Path) -> dict:
    """Write users.csv, posts.jsonl, edges.csv under ``out_dir``; return paths and counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    n_users = max(80, int(cfg.n_posts * cfg.users_per_post))
    users, truth = _users(SyntheticConfig(n_posts=cfg.n_posts, n_users=n_users, n_communities=cfg.n_communities,
                                          seed=cfg.seed), rng)
    users = users.assign(created_at=users.created_at.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z")
    cols = ["user_id", "username", "created_at", "followers", "following", "post_count", "verified",
            "default_profile", "label"]
    users[cols].to_csv(out / "users.csv", index=False)
    uid = truth.user_id.to_numpy().astype(str)
    comm, bot, cell = truth.community.to_numpy(), truth.is_bot.to_numpy(), truth.cell.to_numpy()
    vocab, vstart, vsize = text_vocabulary(cfg.vocab_size, cfg.n_communities, cfg.seed)
    vocab_arr = np.array(vocab, dtype=object)
    by_comm = [np.flatnonzero((comm == c) & ~bot) for c in range(cfg.n_communities)]
    cells = [np.flatnonzero(cell == c) for c in range(cell.max() + 1)] if bot.any() else []
    weights = np.where(bot, 1.5, 1.0)
    weights /= weights.sum()
    span_ms = cfg.days * 86_400_000
    n_edges = 0
    with open(out / "edges.csv", "w") as edges, open(out / "posts.jsonl", "w") as posts:
        edges.write("src_id,relation,dst_id,created_at\n")
        src, dst = _follows(rng, comm, bot, cell, cfg.follows_per_user)
        for s in range(0, len(src), cfg.chunk):
            part = slice(s, s + cfg.chunk)
            edges.write("".join(f"{a},follows,{b},2024-03-01T00:00:00.000Z\n" for a, b in zip(uid[src[part]], uid[dst[part]])))
        n_edges += len(src)
        for s in range(0, cfg.n_posts, cfg.chunk):
            idx = np.arange(s, min(cfg.n_posts, s + cfg.chunk))
            n = len(idx)
            author = rng.choice(len(uid), n, p=weights)
            ms = ((idx + rng.random(n)) / cfg.n_posts * span_ms).astype(np.int64)  # time increases with the index
            y = rng.integers(0, 2, n)
            kind = rng.random(n)
            cue = np.where(kind < cfg.frac_text_cue, y, np.where(kind < cfg.frac_text_cue + cfg.frac_xor_cue,
                                                                  rng.integers(0, 2, n), -1))
            bucket = comm[author] * 3 + cue + 1
            text = vocab_arr[vstart[bucket] + (rng.random(n) * vsize[bucket]).astype(np.int64)]
            text[rng.random(n) < cfg.text_missing] = None
            parent = np.where((rng.random(n) < cfg.reply_frac) & (idx > 0), (rng.random(n) * idx).astype(np.int64), -1)
            quote = np.where((rng.random(n) < cfg.quote_frac) & (idx > 0), (rng.random(n) * idx).astype(np.int64), -1)
            mention = np.where(rng.random(n) < cfg.mention_frac, rng.integers(0, len(uid), n), -1)
            label = np.where(rng.random(n) < cfg.label_noise, 1 - y, y)
            times = _iso(ms)
            lines = []
            for i in range(n):
                row = {"id": f"p{idx[i]:07d}", "author": uid[author[i]], "time": times[i], "body": text[i],
                       "reply_to": f"p{parent[i]:07d}" if parent[i] >= 0 else None,
                       "quote_of": f"p{quote[i]:07d}" if quote[i] >= 0 else None,
                       "mentions": [uid[mention[i]]] if mention[i] >= 0 else [], "label": LABELS[label[i]]}
                lines.append(json.dumps(row))
            posts.write("\n".join(lines) + "\n")
            # reposts: community humans in the background; a bot cell within minutes for y=1 posts of the
            # amplified share (the graph signal)
            k = rng.poisson(cfg.reposts_per_post, n)
            rp_post = np.repeat(np.arange(n), k)
            pool = [by_comm[c] for c in comm[author[rp_post]]] if len(rp_post) else []
            rp_user = np.array([p[int(r * len(p))] for p, r in zip(pool, rng.random(len(rp_post)))], dtype=np.int64)
            rp_ms = ms[rp_post] + rng.integers(600_000, 3 * 86_400_000, len(rp_post))
            amp = np.flatnonzero((y == 1) & (rng.random(n) < 0.2)) if cells else np.empty(0, np.int64)
            if len(amp):
                members = np.stack([cells[c][:min(len(x) for x in cells)] for c in rng.integers(0, len(cells), len(amp))])
                take = rng.random(members.shape) < 0.7
                rp_post = np.r_[rp_post, np.repeat(amp, take.sum(1))]
                rp_user = np.r_[rp_user, members[take]]
                rp_ms = np.r_[rp_ms, ms[np.repeat(amp, take.sum(1))] + rng.integers(60_000, 1_800_000, int(take.sum()))]
            rp_times = _iso(rp_ms)
            edges.write("".join(f"{uid[u]},reposts,p{idx[p]:07d},{t}\n" for u, p, t in zip(rp_user, rp_post, rp_times)))
            n_edges += len(rp_post)
    return {"users": out / "users.csv", "posts": out / "posts.jsonl", "edges": out / "edges.csv", "n_users": n_users,
            "n_posts": cfg.n_posts, "n_edge_lines": n_edges, "vocabulary": vocab}
