"""An offline synthetic social network with planted signals, known accuracy ceilings, and no label
that one feature gives away.

Every post has a true binary label (``misinformation`` / ``reliable``) and belongs to exactly one
*reveal group*; only that group's evidence carries the label, everything else is label-free:

| group | fraction     | evidence of the true label y                                              |
|-------|--------------|---------------------------------------------------------------------------|
| T     | frac_text    | a class phrase in the text, one of several paraphrases per class, worded  |
|       |              | so a sentence encoder relates it to the class name (zero-shot can read it) |
| I     | frac_image   | a cue pattern in the image (vertical vs horizontal stripes)               |
| X     | frac_xor     | a label-free time phrase a (morning/evening words) and image cue b with   |
|       |              | y = a XOR b (neither alone helps, and the phrase says nothing to zero-shot)|
| G     | frac_graph   | y=1 posts are reposted within minutes by one coordinated bot cell         |
| N     | the rest     | nothing                                                                   |

The observed label is y flipped with probability ``label_noise``.  So the Bayes-optimal accuracy of
any model that sees a set of modalities M is exactly
``ceiling(M) = (1 - noise_rate_on_revealed) * R(M) + 0.5 * (1 - R(M))``, R(M) the fraction of
posts whose group M reveals: text {T}, image {I}, graph {G}, text+image {T, I, X}, late fusion of
the text, image and graph scores {T, I, G} (a sum of per-modality scores cannot express XOR),
all {T, I, X, G}.  :func:`ceilings` computes these on any subset using the realised flips, so a
model above its ceiling means a leak.

Accounts, built so that bots and humans overlap on every single statistic
(``mm bench social --leakage`` prints each one's AUC):

* IDs are assigned in random order (no ID range is a class).
* Metadata: bots are shifted by ``bot_shift`` standard deviations (in log space) on age,
  followers, following and post count: each alone is weak.
* Humans live in friend groups (2-12 people) and bots in cells (4-12): both follow their mates
  with the same probability, so reciprocal follows look alike.
* Co-reposting within minutes: a ``human_coordination`` share of friend groups repost each
  other's posts within minutes (fan groups); ``active_cells`` of the bot cells amplify the G
  posts with y=1; the other cells only follow each other.  Background reposts from anyone come
  after a log-normal delay (median 4 h).
* What does separate bots is the combination: an account whose *mates* are all shifted too
  (a graph model averages a neighbourhood's metadata), and whose fast reposts land on posts
  that other shifted accounts also amplify.  Text says nothing about bot-ness.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

LABELS = ("reliable", "misinformation")
# several paraphrases per class: the class lives in the meaning, not in one word
CUES = {0: ["verified accurate information", "a reliable and trustworthy source", "accurate facts carefully verified",
            "trustworthy and reliable reporting", "verified by reliable sources", "an accurate well sourced account",
            "credible evidence independently verified", "a careful and credible analysis"],
        1: ["this is fake news", "a hoax they do not want you to know", "the rumor is a false claim",
            "a conspiracy the media hides", "debunked misinformation spreading again", "a fabricated story shared as fact",
            "the viral claim is made up", "misleading propaganda circulating online"]}
XOR_CUES = {0: ["this morning", "at sunrise", "over breakfast", "early today"],
            1: ["this evening", "at sunset", "over dinner", "late tonight"]}
TOPICS = [["election", "ballot", "vote", "senate"], ["vaccine", "health", "clinic", "doctors"],
          ["climate", "carbon", "heatwave", "energy"], ["economy", "jobs", "prices", "wages"],
          ["football", "match", "league", "coach"], ["transit", "bridge", "train", "traffic"],
          ["housing", "rent", "landlord", "zoning"], ["schools", "teachers", "exam", "campus"]]
# where a community lives: community words with no bearing on truthfulness (valenced words such as
# "angry" or "proud" read as a class to a sentence encoder and would drown the class phrase)
STANCE = {0: ["downtown", "riverside", "harbor", "uptown"], 1: ["suburbs", "valley", "hills", "countryside"]}
FILLER = ["the", "a", "people", "about", "this", "new", "update", "our", "they", "said", "week", "local", "more",
          "time", "story", "just", "everyone", "again", "here", "thread", "look", "what"]
GROUPS = ("T", "I", "X", "G", "N")
REVEALS = {"text": {"T"}, "image": {"I"}, "graph": {"G"}, "metadata": set(), "text+image": {"T", "I", "X"},
           "late_fusion": {"T", "I", "G"}, "text+graph": {"T", "G"}, "image+graph": {"I", "G"},
           "all": {"T", "I", "X", "G"}}
START = pd.Timestamp("2024-03-01", tz="UTC")
BURST_S = 1800


@dataclass
class SyntheticConfig:
    n_posts: int = 3000
    n_users: int | None = None          # default: n_posts // 8 (at least 80)
    n_communities: int = 6
    bot_frac: float = 0.1
    cell_size: int = 8                  # mean bot cell size (sizes 4 .. 2 * cell_size - 4)
    frac_text: float = 0.25
    frac_image: float = 0.2
    frac_xor: float = 0.25
    frac_graph: float = 0.15
    label_noise: float = 0.05
    image_missing: float = 0.4          # for posts whose group needs no image
    text_missing: float = 0.3           # for image-group posts
    reply_frac: float = 0.15
    quote_frac: float = 0.05
    bot_shift: float = 0.5              # metadata shift of bots, in standard deviations
    human_coordination: float = 0.6     # share of human friend groups that co-repost within minutes
    active_cells: float = 0.8           # share of bot cells that amplify
    follow_mates: float = 0.8           # P(follow a group/cell mate), the same for humans and bots
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
    user_truth: pd.DataFrame             # user_id, is_bot, cell, group, active, community
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


def _group_sizes(rng: np.random.Generator, total: int, low: int, high: int) -> np.ndarray:
    """Consecutive group ids for ``total`` members in groups of ``low``..``high`` people."""
    out, gid = np.empty(total, int), 0
    pos = 0
    while pos < total:
        size = int(rng.integers(low, high + 1))
        out[pos:pos + size] = gid
        pos += size
        gid += 1
    return out


def _users(cfg: SyntheticConfig, rng: np.random.Generator):
    n_users = cfg.n_users or max(80, cfg.n_posts // 8)
    n_bots = max(4, int(round(n_users * cfg.bot_frac)))
    n_humans = n_users - n_bots
    is_bot = np.r_[np.zeros(n_humans, bool), np.ones(n_bots, bool)]
    cell_high = max(4, 2 * cfg.cell_size - 4)
    cells = _group_sizes(rng, n_bots, min(4, cell_high), cell_high)
    friends = _group_sizes(rng, n_humans, 2, 12)
    cell = np.r_[-np.ones(n_humans, int), cells]
    group = np.r_[friends, friends.max() + 1 + cells]               # friend group or cell, one id space
    n_groups = group.max() + 1
    active_group = rng.random(n_groups) < cfg.human_coordination
    active_group[friends.max() + 1:] = rng.random(cells.max() + 1) < cfg.active_cells
    group_comm = rng.integers(0, cfg.n_communities, n_groups)
    cell_ids = np.arange(friends.max() + 1, n_groups)  # cells spread evenly over communities: none is a bot topic
    group_comm[cell_ids] = (rng.integers(cfg.n_communities) + np.arange(len(cell_ids))) % cfg.n_communities
    community = group_comm[group]
    # metadata: bots shifted by bot_shift standard deviations in log space, so each field is weak alone
    s = cfg.bot_shift * is_bot
    age_days = np.exp(rng.normal(np.log(1500) - 0.8 * s, 0.8))
    followers = np.exp(rng.normal(np.log(300) - 1.2 * s, 1.2)).astype(np.int64)
    following = np.exp(rng.normal(np.log(250) + 1.0 * s, 1.0)).astype(np.int64)
    post_count = np.exp(rng.normal(np.log(2000) + 1.2 * s, 1.2)).astype(np.int64)
    default_profile = rng.random(n_users) < np.where(is_bot, 0.16, 0.1)
    verified = (rng.random(n_users) < 0.03) & ~is_bot
    ids = np.array([f"u{i:05d}" for i in rng.permutation(n_users)])  # no ID range belongs to a class
    perm = rng.permutation(n_users)                                 # nor a range of table rows
    now = START
    users = pd.DataFrame({
        "user_id": ids[perm], "username": [f"user_{u}" for u in ids[perm]],
        "created_at": [now - pd.Timedelta(days=float(age_days[i])) for i in perm],
        "followers": followers[perm], "following": following[perm], "post_count": post_count[perm],
        "verified": verified[perm], "default_profile": default_profile[perm], "description": None,
        "label": np.where(is_bot[perm], "bot", "human"), "source": "synthetic"})
    truth = pd.DataFrame({"user_id": users.user_id, "is_bot": is_bot[perm], "cell": cell[perm], "group": group[perm],
                          "active": active_group[group][perm], "community": community[perm]})
    return users, truth


def _follows(cfg: SyntheticConfig, rng: np.random.Generator, truth: pd.DataFrame) -> list[tuple[str, str]]:
    ids = truth.user_id.to_numpy()
    comm, group = truth.community.to_numpy(), truth.group.to_numpy()
    by_comm = {c: np.flatnonzero(comm == c) for c in range(cfg.n_communities)}
    by_group = pd.Series(np.arange(len(ids))).groupby(group).apply(lambda s: s.to_numpy()).to_dict()
    pairs: set[tuple[int, int]] = set()
    for u in range(len(ids)):
        mates = by_group[group[u]]
        targets = [v for v in mates if rng.random() < cfg.follow_mates]
        local = by_comm[comm[u]]
        targets += list(rng.choice(local, min(len(local), rng.poisson(6)), replace=False))
        targets += list(rng.integers(0, len(ids), rng.poisson(1)))
        pairs.update((u, int(v)) for v in targets if v != u)
    return sorted((ids[u], ids[v]) for u, v in pairs)


def _text(rng, community: int, cue: int | None, mention: str | None, xor_cue: int | None = None) -> str:
    """Topic words, a stance word, filler; a class phrase (``cue``) and/or a time phrase (``xor_cue``)
    kept whole (their meaning is the cue), the chunks in random order."""
    topic, stance = TOPICS[community % len(TOPICS)], STANCE[community % 2]
    r = rng.integers(0, 1 << 30, 12).tolist()  # one draw, many picks: this runs once per post
    chunks = [topic[r[0] % 4], topic[r[1] % 4], stance[r[2] % 4]]
    chunks += [FILLER[x % len(FILLER)] for x in r[3:3 + 1 + r[11] % 3]]
    if cue is not None:
        chunks.append(CUES[cue][r[9] % len(CUES[cue])])
    if xor_cue is not None:
        chunks.append(XOR_CUES[xor_cue][r[10] % len(XOR_CUES[xor_cue])])
    order = rng.permutation(len(chunks))
    words = [chunks[k] for k in order]
    words.append(f"#{topic[0]}")
    if mention:
        words.insert(0, f"@{mention}")
    return " ".join(str(w) for w in words)


def _reposts(cfg, rng, n, seconds, author, y, group_of_post, truth) -> list[tuple[int, int, float]]:
    """(user index, post index, seconds) of every repost: background, fan groups, bot amplification."""
    comm, group = truth.community.to_numpy(), truth.group.to_numpy()
    active, bot = truth.active.to_numpy(), truth.is_bot.to_numpy()
    by_comm = {c: np.flatnonzero(comm == c) for c in range(cfg.n_communities)}
    rate = np.exp(rng.normal(0, 1.0, len(group)))  # how much each account reposts: heavy-tailed, class-free
    pick = {c: rate[m] / rate[m].sum() for c, m in by_comm.items()}
    everyone = rate / rate.sum()
    members = pd.Series(np.arange(len(group))).groupby(group).apply(lambda s: s.to_numpy()).to_dict()
    cells = [g for g in np.unique(group[bot]) if active[members[g][0]]]
    amplified = (group_of_post == "G") & (y == 1)
    out = []
    median_delay = np.log(4 * 3600.0)
    for i in range(n):
        a = author[i]
        for _ in range(rng.poisson(1.2)):  # background: slow, from the author's community or anyone
            c = comm[a]
            u = int(rng.choice(by_comm[c], p=pick[c])) if rng.random() < 0.7 else int(rng.choice(len(group), p=everyone))
            out.append((u, i, seconds[i] + max(30.0, float(np.exp(rng.normal(median_delay, 1.5))))))
        if not bot[a] and active[a] and rng.random() < 0.8:  # a fan group pushes its member's post
            mates = members[group[a]][members[group[a]] != a]
            if len(mates):
                chosen = rng.choice(mates, int(rng.integers(1, len(mates) + 1)), replace=False)
                out += [(int(u), i, seconds[i] + float(d)) for u, d in zip(chosen, rng.uniform(60, BURST_S, len(chosen)))]
        if amplified[i] and cells:
            mates = members[cells[int(rng.integers(len(cells)))]]
            k = int(rng.integers(max(1, len(mates) // 4), max(2, len(mates) // 2) + 1))
            chosen = rng.choice(mates, min(k, len(mates)), replace=False)
            out += [(int(u), i, seconds[i] + float(d)) for u, d in zip(chosen, rng.uniform(60, BURST_S, len(chosen)))]
    return out


def generate(cfg: SyntheticConfig | None = None, **overrides) -> SyntheticData:
    """Build the whole data set in memory (deterministic for a given config)."""
    cfg = cfg or SyntheticConfig(**overrides)
    rng = np.random.default_rng(cfg.seed)
    users, user_truth = _users(cfg, rng)
    follows = _follows(cfg, rng, user_truth)
    n = cfg.n_posts
    uid = user_truth.user_id.to_numpy()
    comm, cell, bot = user_truth.community.to_numpy(), user_truth.cell.to_numpy(), user_truth.is_bot.to_numpy()
    activity = np.exp(rng.normal(0, 0.7, len(uid))) * np.where(bot, 1.2, 1.0)  # overlapping posting rates
    author = rng.choice(len(uid), n, p=activity / activity.sum())
    seconds = np.sort(rng.uniform(0, cfg.days * 86400, n))
    created = START + pd.to_timedelta(seconds, unit="s")
    p = [cfg.frac_text, cfg.frac_image, cfg.frac_xor, cfg.frac_graph]
    group = rng.choice(np.array(GROUPS), n, p=p + [1 - sum(p)])
    y = rng.integers(0, 2, n)
    flipped = rng.random(n) < cfg.label_noise
    text_cue, xor_cue, image_cue = np.full(n, -1), np.full(n, -1), np.full(n, -1)
    text_cue[group == "T"] = y[group == "T"]
    image_cue[group == "I"] = y[group == "I"]
    xor = group == "X"
    xor_cue[xor] = rng.integers(0, 2, xor.sum())
    image_cue[xor] = xor_cue[xor] ^ y[xor]
    # label-free time phrases in posts whose image carries no stripes: noise, not a group marker
    noise_phrase = np.isin(group, ["G", "N"]) & (rng.random(n) < 0.3)
    xor_cue[noise_phrase] = rng.integers(0, 2, noise_phrase.sum())
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
        texts.append(_text(rng, comm[a], None if text_cue[i] < 0 else int(text_cue[i]), mention,
                           None if xor_cue[i] < 0 else int(xor_cue[i])) if has_text[i] else None)
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
    amplified = (group == "G") & (y == 1)
    reposts = _reposts(cfg, rng, n, seconds, author, y, group, user_truth)
    observed = np.where(flipped, 1 - y, y)
    posts = pd.DataFrame({
        "post_id": post_ids, "user_id": uid[author], "created_at": created, "text": texts,
        "image_path": None, "lang": "en", "parent_id": parents, "quote_of": quotes, "thread_id": threads,
        "hashtags": [[t.split("#")[-1]] if t else [] for t in texts], "mentions": mentions, "urls": [[] for _ in range(n)],
        "label": [LABELS[v] for v in observed], "source": "synthetic", "image_index": image_index})
    edge_rows = [("user", a, "follows", "user", b, START) for a, b in follows]
    authors = uid[author]
    edge_rows += [("user", authors[i], "authored", "post", post_ids[i], created[i]) for i in range(n)]
    edge_rows += [("post", post_ids[i], "replies_to", "post", parents[i], created[i]) for i in range(n) if parents[i]]
    edge_rows += [("post", post_ids[i], "quotes", "post", quotes[i], created[i]) for i in range(n) if quotes[i]]
    edge_rows += [("post", post_ids[i], "mentions", "user", m, created[i]) for i in range(n) for m in mentions[i]]
    edge_rows += [("user", uid[u], "reposts", "post", post_ids[i], START + pd.Timedelta(seconds=float(t)))
                  for u, i, t in reposts]
    edges = pd.DataFrame(edge_rows, columns=["src_type", "src_id", "relation", "dst_type", "dst_id", "created_at"])
    truth = pd.DataFrame({"post_id": post_ids, "group": group, "y_true": y, "flipped": flipped,
                          "text_cue": text_cue, "xor_cue": xor_cue, "image_cue": image_cue, "amplified": amplified})
    imgs = np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)
    for frame in (posts, users, edges):  # the canonical tables keep milliseconds
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.floor("ms").astype("datetime64[ms, UTC]")
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


def split_by_time(times) -> np.ndarray:
    """Split by time: the earliest 60% train, the next 20% val, the latest 20% test (rows without a
    time go to train).  Tests a model on posts later than any it trained on."""
    seconds = pd.to_datetime(pd.Series(times), utc=True)
    rank = seconds.rank(method="first", pct=True).fillna(0).to_numpy()
    return np.where(rank <= 0.6, "train", np.where(rank <= 0.8, "val", "test"))
