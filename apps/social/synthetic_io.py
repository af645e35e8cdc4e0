"""Write a :class:`SyntheticData` to disk: canonical Parquet, PNG media, and the real raw formats
(twarc2 raw pages and flattened lines, Reddit NDJSON(.zst), generic JSONL + labels CSV), so the
adapters are exercised end to end on data whose truth is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmcore.utils.io import atomic_path, atomic_write_bytes, atomic_write_json

from .schema import TABLES, post_kind
from .synthetic import SyntheticData


def _s(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_media(data: SyntheticData, out_dir: Path) -> list:
    from PIL import Image

    media = out_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, idx in zip(data.posts.post_id, data.posts.image_index):
        if idx < 0:
            paths.append(None)
            continue
        path = media / f"{pid}.png"
        if not path.exists():
            Image.fromarray(data.images[idx]).save(path, compress_level=1)
        paths.append(str(path.resolve()))
    return paths


def write_canonical(data: SyntheticData, out_dir: str | Path, image_paths: list | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    posts = data.posts.drop(columns=["image_index"]).copy()
    posts["image_path"] = image_paths if image_paths is not None else write_media(data, out_dir)
    posts["kind"] = [post_kind(p, q) for p, q in zip(posts.parent_id, posts.quote_of)]
    posts["repost_of"], posts["collection"], posts["status"] = None, "collected", "ok"
    media = posts.loc[posts.image_path.notna(), ["post_id", "image_path"]].rename(columns={"image_path": "path"})
    media.insert(0, "media_id", media.post_id)
    media["kind"], media["status"] = "photo", "ok"
    for name, frame in (("posts", posts), ("users", data.users), ("media", media), ("edges", data.edges)):
        table = pa.Table.from_pandas(frame[TABLES[name].names], schema=TABLES[name], preserve_index=False)
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp)
    for name, frame in (("truth_posts", data.truth), ("truth_users", data.user_truth)):
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    atomic_write_json(out_dir / "synthetic_config.json", data.config)
    return out_dir


def _tweets(data: SyntheticData):
    posts, edges = data.posts, data.edges
    users = data.users.set_index("user_id")
    for row in posts.itertuples(index=False):
        refs = [{"type": "replied_to", "id": row.parent_id}] if _s(row.parent_id) else []
        refs += [{"type": "quoted", "id": row.quote_of}] if _s(row.quote_of) else []
        tweet = {"id": row.post_id, "author_id": row.user_id, "created_at": _iso(row.created_at),
                 "text": row.text or "", "conversation_id": row.thread_id, "lang": row.lang,
                 "entities": {"hashtags": [{"tag": h} for h in row.hashtags],
                              "mentions": [{"username": users.username.get(m, m), "id": m} for m in row.mentions]}}
        if refs:
            tweet["referenced_tweets"] = refs
        if row.image_index >= 0:
            tweet["attachments"] = {"media_keys": [row.post_id]}
        yield tweet
    reposts = edges[edges.relation == "reposts"].reset_index(drop=True)
    for i, e in enumerate(reposts.itertuples(index=False)):
        yield {"id": f"rt{i:08d}", "author_id": e.src_id, "created_at": _iso(e.created_at), "text": "RT",
               "referenced_tweets": [{"type": "retweeted", "id": e.dst_id}]}


def _user_obj(users: pd.DataFrame, uid: str) -> dict:
    u = users.loc[uid]
    picture = "https://abs.twimg.com/sticky/default_profile_images/default_profile_normal.png" if u.default_profile \
        else f"https://pbs.twimg.com/profile_images/{uid}.jpg"
    return {"id": uid, "username": u.username, "created_at": _iso(u.created_at), "verified": bool(u.verified),
            "profile_image_url": picture,
            "public_metrics": {"followers_count": int(u.followers), "following_count": int(u.following),
                               "tweet_count": int(u.post_count)}}


def write_twitter(data: SyntheticData, out_dir: Path, page_size: int = 100) -> tuple[Path, Path]:
    """twarc2-style raw pages (``tweets_raw.jsonl``) and flattened tweets (``tweets_flat.jsonl``)."""
    users = data.users.set_index("user_id")
    tweets = list(_tweets(data))
    raw, flat = out_dir / "tweets_raw.jsonl", out_dir / "tweets_flat.jsonl"
    with open(raw, "w") as fr, open(flat, "w") as ff:
        for start in range(0, len(tweets), page_size):
            page = tweets[start:start + page_size]
            authors = sorted({t["author_id"] for t in page})
            media = [{"media_key": k, "type": "photo"} for t in page for k in t.get("attachments", {}).get("media_keys", [])]
            fr.write(json.dumps({"data": page, "includes": {"users": [_user_obj(users, a) for a in authors],
                                                             "media": media}}) + "\n")
            for t in page:  # twarc2 flatten expands the media objects in place
                flat_t = {**t, "author": _user_obj(users, t["author_id"]), "__twarc": {"version": "2.14.0"}}
                if "attachments" in t:
                    keys = t["attachments"]["media_keys"]
                    flat_t["attachments"] = {"media_keys": keys, "media": [{"media_key": k, "type": "photo"} for k in keys]}
                ff.write(json.dumps(flat_t) + "\n")
    return raw, flat


def write_reddit(data: SyntheticData, out_dir: Path, compress: bool = True) -> Path:
    """Submissions for thread roots, comments for replies (quotes and reposts have no Reddit form)."""
    lines = []
    for row in data.posts.itertuples(index=False):
        created = int(pd.Timestamp(row.created_at).timestamp())
        if _s(row.parent_id) is None:
            obj = {"id": row.post_id, "name": f"t3_{row.post_id}", "author": row.user_id, "created_utc": created,
                   "subreddit": row.hashtags[0] if row.hashtags else "synthetic", "title": row.text or "",
                   "selftext": ""}
            if row.image_index >= 0:
                obj["url"] = f"https://i.redd.it/{row.post_id}.png"
        else:
            parent_is_root = _s(data.posts.parent_id.iat[int(row.parent_id[1:])]) is None
            obj = {"id": row.post_id, "author": row.user_id, "created_utc": created, "body": row.text or "[removed]",
                   "parent_id": f"{'t3' if parent_is_root else 't1'}_{row.parent_id}", "link_id": f"t3_{row.thread_id}"}
        lines.append(json.dumps(obj))
    text = ("\n".join(lines) + "\n").encode()
    if compress:
        import zstandard

        path = out_dir / "reddit.ndjson.zst"
        atomic_write_bytes(path, zstandard.ZstdCompressor(level=3).compress(text))
    else:
        path = out_dir / "reddit.ndjson"
        atomic_write_bytes(path, text)
    return path


def write_generic(data: SyntheticData, out_dir: Path) -> tuple[Path, Path]:
    """Generic JSONL posts (with labels) and a labels CSV for users and posts."""
    path = out_dir / "posts.jsonl"
    with open(path, "w") as fh:
        for row in data.posts.itertuples(index=False):
            fh.write(json.dumps({"id": row.post_id, "author": row.user_id, "time": _iso(row.created_at),
                                 "body": row.text, "img": f"media/{row.post_id}.png" if row.image_index >= 0 else None,
                                 "reply_to": _s(row.parent_id), "quote_of": _s(row.quote_of), "label": row.label}) + "\n")
    labels = out_dir / "labels.csv"
    frame = pd.concat([data.posts[["post_id", "label"]].set_axis(["id", "label"], axis=1),
                       data.users[["user_id", "label"]].set_axis(["id", "label"], axis=1)])
    frame.to_csv(labels, index=False)
    return path, labels


def write_follows(data: SyntheticData, out_dir: Path) -> Path:
    """The follow graph as a generic edges CSV (twarc2 pages carry no follows)."""
    path = out_dir / "follows.csv"
    follows = data.edges[data.edges.relation == "follows"][["src_id", "relation", "dst_id", "created_at"]].copy()
    follows["created_at"] = follows.created_at.map(_iso)
    follows.to_csv(path, index=False)
    return path


GENERIC_MAPPING = {"post_id": "id", "user_id": "author", "created_at": "time", "text": "body",
                   "image_path": "img", "parent_id": "reply_to"}


def write_all(data: SyntheticData, out_dir: str | Path, raw_formats: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_media(data, out_dir)
    written = {"canonical": write_canonical(data, out_dir / "canonical", paths), "media": out_dir / "media"}
    if raw_formats:
        written["twitter_raw"], written["twitter_flat"] = write_twitter(data, out_dir)
        written["reddit"] = write_reddit(data, out_dir)
        written["generic"], written["labels"] = write_generic(data, out_dir)
        written["follows"] = write_follows(data, out_dir)
    return written


def image_array(paths, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Decode images ([N, size, size, 3] uint8) and a present mask; unreadable ones are absent."""
    from PIL import Image

    out = np.zeros((len(paths), size, size, 3), np.uint8)  # zero pages cost no memory until written
    present = np.zeros(len(paths), bool)
    for i, p in enumerate(paths):
        if p is None or (isinstance(p, float) and p != p):
            continue
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size, size)))
            present[i] = True
        except Exception:  # noqa: BLE001 - an image that will not decode is a missing modality
            continue
    return out, present
