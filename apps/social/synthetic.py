"""An offline synthetic social network with planted signals and known accuracy ceilings.

Every post has a true binary label (``misinformation`` / ``reliable``) and belongs to exactly one
*reveal group*; only that group's evidence carries the label, everything else is label-free:

| group | fraction     | evidence of the true label y                                        |
|-------|--------------|---------------------------------------------------------------------|
| T     | frac_text    | a cue word in the text (``hoax`` ... vs ``confirmed`` ...)          |
| I     | frac_image   | a cue pattern in the image (vertical vs horizontal stripes)         |
| X     | frac_xor     | text cue a and image cue b with y = a XOR b (neither alone helps)   |
| G     | frac_graph   | y=1 posts are amplified by a coordinated bot cell within minutes     |
| N     | the rest     | nothing                                                             |

The observed label is y flipped with probability ``label_noise``.  So the Bayes-optimal accuracy of
any model that sees a set of modalities M is exactly
``ceiling(M) = (1 - noise_rate_on_revealed) * R(M) + 0.5 * (1 - R(M))``, R(M) the fraction of
posts whose group M reveals: text {T}, image {I}, graph {G}, text+image {T, I, X},
late fusion of the text, image and graph scores {T, I, G} (a sum of per-modality scores
cannot express XOR),
all {T, I, X, G}.  :func:`ceilings` computes these on any subset using the realised flips, so
a model above its ceiling means a leak.

The graph: human users in communities (each with a topic and a stance on it, shown in their
words and hashtags, independent of the label) follow mostly inside their community; bots come
in cells that follow each other, have shifted but noisy metadata (younger accounts, fewer
followers, more posts, default profiles), post near-duplicate images and co-repost the same
item within minutes (the coordination signal).  Text alone says nothing about bot-ness.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

LABELS = ("reliable", "misinformation")
CUES = {0: ["confirmed", "official", "verified", "sourced", "factchecked"],
        1: ["hoax", "fake", "rigged", "coverup", "scam"]}
TOPICS = [["election", "ballot", "vote", "senate"], ["vaccine", "health", "clinic", "doctors"],
          ["climate", "carbon", "heatwave", "energy"], ["economy", "jobs", "prices", "wages"],
          ["football", "match", "league", "coach"], ["transit", "bridge", "train", "traffic"],
          ["housing", "rent", "landlord", "zoning"], ["schools", "teachers", "exam", "campus"]]
STANCE = {0: ["support", "love", "proud", "good"], 1: ["against", "angry", "worried", "bad"]}
FILLER = ["the", "a", "today", "people", "news", "about", "this", "new", "report", "update", "our", "they",
          "said", "week", "local", "more", "time", "story", "just", "read", "everyone", "again"]
GROUPS = ("T", "I", "X", "G", "N")
REVEALS = {"text": {"T"}, "image": {"I"}, "graph": {"G"}, "metadata": set(), "text+image": {"T", "I", "X"},
           "late_fusion": {"T", "I", "G"}, "text+graph": {"T", "G"}, "image+graph": {"I", "G"},
           "all": {"T", "I", "X", "G"}}


@dataclass
class SyntheticConfig:
    n_posts: int = 3000
    n_users: int | None = None          # default: n_posts // 8 (at least 80)
    n_communities: int = 6
    bot_frac: float = 0.1
    cell_size: int = 8
    frac_text: float = 0.2
    frac_image: float = 0.2
    frac_xor: float = 0.2
    frac_graph: float = 0.2
    label_noise: float = 0.05
    image_missing: float = 0.4          # for posts whose group needs no image
    text_missing: float = 0.3           # for image-group posts
    reply_frac: float = 0.15
    quote_frac: float = 0.05
    days: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frac_text + self.frac_image + self.frac_xor + self.frac_graph > 1:
            raise ValueError("group fractions add up to more than 1")


@dataclass
class SyntheticData:
    posts: pd.DataFrame
    users: pd.DataFrame
    edges: pd.DataFrame
    images: np.ndarray                   # [n_images, 32, 32, 3] uint8; posts.image_index points here (-1: none)
    truth: pd.DataFrame                  # post_id, group, y_true, flipped, text_cue, image_cue, amplified
    user_truth: pd.DataFrame             # user_id, is_bot, cell, community
    config: dict = field(default_factory=dict)


def _image(rng: np.random.Generator, cue: int | None, base: np.ndarray | None = None) -> np.ndarray:
    """32x32 RGB: cue 0 = horizontal stripes, cue 1 = vertical stripes, None = blobs (no stripes)."""
    if base is not None:
        img = base.astype(np.float32) + 8 * rng.standard_normal(base.shape, dtype=np.float32)
    else:
        img = np.empty((32, 32, 3), np.float32)
        img[:] = rng.uniform(0, 255, 3)
        img += 20 * rng.standard_normal(img.shape, dtype=np.float32)
    if cue is None and base is None:
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, 24, 2)
            h, w = rng.integers(4, 12, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    elif cue is not None:
        width, phase = int(rng.integers(2, 5)), int(rng.integers(0, 8))
        band = ((np.arange(32) + phase) // width) % 2 == 0
        colour = rng.uniform(0, 255, 3)
        if cue == 0:
            img[band, :, :] = 0.3 * img[band, :, :] + 0.7 * colour
        else:
            img[:, band, :] = 0.3 * img[:, band, :] + 0.7 * colour
    return np.clip(img, 0, 255).astype(np.uint8)


def _users(cfg: SyntheticConfig, rng: np.random.Generator):
    n_users = cfg.n_users or max(80, cfg.n_posts // 8)
    n_bots = max(cfg.cell_size, int(round(n_users * cfg.bot_frac)) // cfg.cell_size * cfg.cell_size)
    n_humans = n_users - n_bots
    is_bot = np.r_[np.zeros(n_humans, bool), np.ones(n_bots, bool)]
    cell = np.r_[-np.ones(n_humans, int), np.arange(n_bots) // cfg.cell_size]
    community = np.r_[rng.integers(0, cfg.n_communities, n_humans),
                      np.repeat(rng.integers(0, cfg.n_communities, n_bots // cfg.cell_size), cfg.cell_size)]
    # metadata: bots shifted by about one standard deviation in log space, so each is noisy alone
    shift = is_bot.astype(float)
    age_days = np.exp(rng.normal(np.log(1500) - 0.9 * shift, 0.8))
    followers = np.exp(rng.normal(np.log(300) - 1.1 * shift, 1.2)).astype(np.int64)
    following = np.exp(rng.normal(np.log(250) + 0.9 * shift, 1.0)).astype(np.int64)
    post_count = np.exp(rng.normal(np.log(2000) + 1.0 * shift, 1.2)).astype(np.int64)
    default_profile = rng.random(n_users) < np.where(is_bot, 0.3, 0.1)
    verified = (rng.random(n_users) < 0.03) & ~is_bot
    ids = [f"u{i:05d}" for i in range(n_users)]
    perm = rng.permutation(n_users)  # bots are not the last rows of the table
    now = pd.Timestamp("2024-03-01", tz="UTC")
    users = pd.DataFrame({
        "user_id": [ids[i] for i in perm], "username": [f"user_{ids[i]}" for i in perm],
        "created_at": [now - pd.Timedelta(days=float(age_days[i])) for i in perm],
        "followers": followers[perm], "following": following[perm], "post_count": post_count[perm],
        "verified": verified[perm], "default_profile": default_profile[perm], "description": None,
        "label": np.where(is_bot[perm], "bot", "human"), "source": "synthetic"})
    truth = pd.DataFrame({"user_id": users.user_id, "is_bot": is_bot[perm], "cell": cell[perm],
                          "community": community[perm]})
    return users, truth


def _follows(cfg: SyntheticConfig, rng: np.random.Generator, truth: pd.DataFrame) -> list[tuple[str, str]]:
    ids = truth.user_id.to_numpy()
    comm, cell, bot = truth.community.to_numpy(), truth.cell.to_numpy(), truth.is_bot.to_numpy()
    by_comm = {c: np.flatnonzero((comm == c) & ~bot) for c in range(cfg.n_communities)}
    humans = np.flatnonzero(~bot)
    pairs: set[tuple[int, int]] = set()
    for u in range(len(ids)):
        if bot[u]:
            mates = np.flatnonzero(cell == cell[u])
            targets = list(mates) + list(rng.choice(by_comm[comm[u]], min(len(by_comm[comm[u]]), rng.poisson(6)), replace=False))
        else:
            local = by_comm[comm[u]]
            targets = list(rng.choice(local, min(len(local), rng.poisson(8)), replace=False))
            targets += list(rng.choice(humans, rng.poisson(1)))
        pairs.update((u, int(v)) for v in targets if v != u)
    for b in np.flatnonzero(bot):  # a few humans follow bots back
        pairs.update((int(h), int(b)) for h in rng.choice(by_comm[comm[b]], min(len(by_comm[comm[b]]), rng.poisson(1))))
    return sorted((ids[u], ids[v]) for u, v in pairs)


def _text(rng, community: int, cue: int | None, mention: str | None) -> str:
    topic, stance = TOPICS[community % len(TOPICS)], STANCE[community % 2]
    r = rng.integers(0, 1 << 30, 12).tolist()  # one draw, many picks: this runs once per post
    words = [topic[r[0] % 4], topic[r[1] % 4], stance[r[2] % 4]]
    words += [FILLER[x % len(FILLER)] for x in r[3:3 + 3 + r[11] % 4]]
    if cue is not None:
        cues = CUES[cue]
        first = r[9] % 5
        words += [cues[first]] + ([cues[(first + 1 + r[10] % 4) % 5]] if r[10] % 2 else [])
    order = rng.permutation(len(words))
    words = [words[k] for k in order]
    words.append(f"#{topic[0]}")
    if mention:
        words.insert(0, f"@{mention}")
    return " ".join(str(w) for w in words)


def generate(cfg: SyntheticConfig | None = None, **overrides) -> SyntheticData:
    """Build the whole data set in memory (deterministic for a given config)."""
    cfg = cfg or SyntheticConfig(**overrides)
    rng = np.random.default_rng(cfg.seed)
    users, user_truth = _users(cfg, rng)
    follows = _follows(cfg, rng, user_truth)
    n = cfg.n_posts
    uid = user_truth.user_id.to_numpy()
    comm, cell, bot = user_truth.community.to_numpy(), user_truth.cell.to_numpy(), user_truth.is_bot.to_numpy()
    weights = np.where(bot, 1.5, 1.0)
    author = rng.choice(len(uid), n, p=weights / weights.sum())
    start = pd.Timestamp("2024-03-01", tz="UTC")
    seconds = np.sort(rng.uniform(0, cfg.days * 86400, n))
    created = start + pd.to_timedelta(seconds, unit="s")
    p = [cfg.frac_text, cfg.frac_image, cfg.frac_xor, cfg.frac_graph]
    group = rng.choice(np.array(GROUPS), n, p=p + [1 - sum(p)])
    y = rng.integers(0, 2, n)
    flipped = rng.random(n) < cfg.label_noise
    text_cue = np.full(n, -1)
    image_cue = np.full(n, -1)
    text_cue[group == "T"] = y[group == "T"]
    image_cue[group == "I"] = y[group == "I"]
    xor = group == "X"
    text_cue[xor] = rng.integers(0, 2, xor.sum())
    image_cue[xor] = text_cue[xor] ^ y[xor]
    needs_image = np.isin(group, ["I", "X"])
    has_image = needs_image | (rng.random(n) >= cfg.image_missing)
    has_text = ~((group == "I") & (rng.random(n) < cfg.text_missing))
    cell_base = {c: _image(rng, None) for c in np.unique(cell[cell >= 0])}
    post_ids = [f"p{i:07d}" for i in range(n)]
    texts, images, image_index, parents, quotes, threads, mentions = [], [], [], [], [], [], []
    for i in range(n):
        a = author[i]
        mention = uid[rng.integers(len(uid))] if rng.random() < 0.1 else None
        mentions.append([mention] if mention else [])
        texts.append(_text(rng, comm[a], None if text_cue[i] < 0 else int(text_cue[i]), mention) if has_text[i] else None)
        if has_image[i]:
            cue = None if image_cue[i] < 0 else int(image_cue[i])
            base = cell_base.get(cell[a]) if cue is None and bot[a] else None
            images.append(_image(rng, cue, base))
            image_index.append(len(images) - 1)
        else:
            image_index.append(-1)
        parent = int(rng.integers(0, i)) if i > 0 and rng.random() < cfg.reply_frac else -1
        parents.append(post_ids[parent] if parent >= 0 else None)
        threads.append(threads[parent] if parent >= 0 else post_ids[i])
        q = int(rng.integers(0, i)) if i > 0 and rng.random() < cfg.quote_frac else -1
        quotes.append(post_ids[q] if q >= 0 else None)
    # reposts: background ones for every post, bursts from one bot cell for amplified posts
    amplified = (group == "G") & (y == 1)
    reposts = []
    humans_by_comm = {c: np.flatnonzero((comm == c) & ~bot) for c in range(cfg.n_communities)}
    cells = np.unique(cell[cell >= 0])
    for i in range(n):
        for _ in range(rng.poisson(1.2)):
            pool = humans_by_comm[comm[author[i]]] if rng.random() < 0.7 else np.arange(len(uid))
            reposts.append((uid[rng.choice(pool)], post_ids[i], seconds[i] + rng.uniform(600, 3 * 86400)))
        if amplified[i]:
            members = np.flatnonzero(cell == rng.choice(cells))
            chosen = rng.choice(members, int(rng.integers(4, len(members) + 1)), replace=False)
            delays = np.sort(rng.uniform(60, 1800, len(chosen)))
            reposts += [(uid[b], post_ids[i], seconds[i] + d) for b, d in zip(chosen, delays)]
    observed = np.where(flipped, 1 - y, y)
    posts = pd.DataFrame({
        "post_id": post_ids, "user_id": uid[author], "created_at": created, "text": texts,
        "image_path": None, "lang": "en", "parent_id": parents, "quote_of": quotes, "thread_id": threads,
        "hashtags": [[t.split("#")[-1]] if t else [] for t in texts], "mentions": mentions, "urls": [[] for _ in range(n)],
        "label": [LABELS[v] for v in observed], "source": "synthetic", "image_index": image_index})
    edge_rows = [("user", a, "follows", "user", b, start) for a, b in follows]
    authors = uid[author]
    edge_rows += [("user", authors[i], "authored", "post", post_ids[i], created[i]) for i in range(n)]
    edge_rows += [("post", post_ids[i], "replies_to", "post", parents[i], created[i]) for i in range(n) if parents[i]]
    edge_rows += [("post", post_ids[i], "quotes", "post", quotes[i], created[i]) for i in range(n) if quotes[i]]
    edge_rows += [("post", post_ids[i], "mentions", "user", m, created[i]) for i in range(n) for m in mentions[i]]
    edge_rows += [("user", u, "reposts", "post", pid, start + pd.Timedelta(seconds=float(t))) for u, pid, t in reposts]
    edges = pd.DataFrame(edge_rows, columns=["src_type", "src_id", "relation", "dst_type", "dst_id", "created_at"])
    truth = pd.DataFrame({"post_id": post_ids, "group": group, "y_true": y, "flipped": flipped,
                          "text_cue": text_cue, "image_cue": image_cue, "amplified": amplified})
    imgs = np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)
    for frame in (posts, users, edges):  # the canonical tables keep milliseconds
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.floor("ms")
    return SyntheticData(posts, users, edges, imgs, truth, user_truth, asdict(cfg))


def ceilings(truth: pd.DataFrame, post_ids=None) -> dict[str, float]:
    """Bayes-optimal accuracy against the observed labels for each modality set (see module doc)."""
    t = truth if post_ids is None else truth.set_index("post_id").loc[list(post_ids)].reset_index()
    out = {}
    for name, groups in REVEALS.items():
        revealed = t.group.isin(groups).to_numpy()
        correct = np.where(revealed, 1.0 - t.flipped.to_numpy(), 0.5)
        out[name] = float(correct.mean())
    return out


def split_of(ids) -> np.ndarray:
    """Deterministic split from the ID alone: 60% train, 20% val, 20% test (stable across runs)."""
    import zlib

    buckets = np.array([zlib.crc32(str(i).encode()) % 10 for i in ids])
    return np.where(buckets < 6, "train", np.where(buckets < 8, "val", "test"))


def start_time() -> dt.datetime:
    return dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
