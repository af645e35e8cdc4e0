"""Everything a model reads, as mmcore :class:`~mmcore.data.MultimodalBatch` es aligned with the
graph's node order, and the collate that turns a list of seed nodes into a sampled-subgraph batch.

``SocialTensors.post`` (one row per post) and ``SocialTensors.user`` (one row per account) carry
mmcore's one contract: ``tensors`` + a ``present`` mask per modality (absent rows hold zeros that
nothing reads).

| node  | modality | shape          | present where                                        |
|-------|----------|----------------|------------------------------------------------------|
| post  | text     | [P, D_t]       | the post has text (hashed BoW or MiniLM features)     |
| post  | pixels   | [P, 32, 32, 3] | the post has a readable image (uint8)                |
| post  | image    | [P, D_i]       | same; frozen CNN features, added after the image model trained |
| post  | stats    | [P, 4]         | always (post graph statistics)                       |
| user  | meta     | [U, 8]         | the account's metadata is known (stub users: absent) |
| user  | text     | [U, D_t]       | the account has a post with text (mean of their features) |

Labels: ``post_label`` [P] / ``user_label`` [U] long, -1 unknown.  A :class:`SocialBatch` holds the
sampled subgraph, the two node batches (``post``/``user``: ``MultimodalBatch``) and
``fields["label"]`` for the seeds, with ``batch_size`` and ``.to()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmcore.data import MultimodalBatch

from .features import post_graph_stats, standardise, user_metadata
from .graph import SocialGraph, build_graph
from .sampler import SampledGraph, make_sampler, sampler_backend
from .synthetic import split_by_time, split_of
from .synthetic_io import image_array
from .text import encode_texts


def load_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    path = Path(path)
    if (path / "canonical").is_dir() and not (path / "posts.parquet").exists():
        path = path / "canonical"
    missing = [t for t in ("posts", "users", "edges") if not (path / f"{t}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"{path}: not a canonical data folder (missing {', '.join(m + '.parquet' for m in missing)})")
    tables = {t: pd.read_parquet(path / f"{t}.parquet") for t in ("posts", "users", "edges")}
    for t in ("posts", "edges"):  # a table partitioned by day (ingest --partition-by day): same columns
        if (path / f"{t}.parquet").is_dir():
            tables[t] = tables[t].drop(columns="day", errors="ignore")
    if "kind" in tables["posts"]:  # a repost row is its reposts edge in the graph: no content node of its own
        tables["posts"] = tables["posts"][tables["posts"].kind.ne("repost")].reset_index(drop=True)
    return tables | {"dir": path}


def _labels(values: pd.Series) -> tuple[torch.Tensor, list[str]]:
    classes = sorted(v for v in values.dropna().unique())
    lookup = {c: i for i, c in enumerate(classes)}
    return torch.tensor([lookup.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=torch.long), classes


@dataclass
class SocialTensors:
    posts: pd.DataFrame
    users: pd.DataFrame
    graph: SocialGraph
    post: MultimodalBatch
    user: MultimodalBatch
    post_label: torch.Tensor
    post_classes: list
    user_label: torch.Tensor
    user_classes: list
    post_split: np.ndarray
    user_split: np.ndarray
    info: dict = field(default_factory=dict)

    def seeds(self, task: str, split: str) -> torch.Tensor:
        labels, splits = (self.post_label, self.post_split) if task == "post" else (self.user_label, self.user_split)
        return torch.as_tensor(np.flatnonzero((splits == split) & (labels.numpy() >= 0)))

    def add_post_modality(self, name: str, tensor: torch.Tensor, present: torch.Tensor) -> None:
        """Add (or replace) a post modality, e.g. frozen image features once the CNN has trained."""
        self.post = MultimodalBatch({**self.post.tensors, name: tensor}, {**self.post.present, name: present},
                                    dict(self.post.fields))


def build_tensors(tables: dict, text_encoder: str = "hashed", cache_dir=None, text_dim: int = 512,
                  progress: bool = False, text_features: tuple | None = None, split: str = "hash",
                  text_backend: str = "torch") -> SocialTensors:
    """``text_features``: (features [P, D], present [P]) already encoded (e.g. timed on their own).
    ``text_backend``: the MiniLM weights (torch = fp32, torch-int8, onnx-int8) when ``text_encoder='minilm'``.
    ``split``: posts split by a hash of their ID (``hash``) or by time (``time``: the latest 20% are
    the test posts); accounts are always split by ID hash."""
    if split not in ("hash", "time"):
        raise ValueError(f"unknown split '{split}' (hash, time)")
    posts, users, edges = tables["posts"].reset_index(drop=True), tables["users"], tables["edges"]
    g = build_graph(posts, users, edges)
    if text_features is None:
        text_features = encode_texts(posts.text.tolist(), text_encoder, cache_dir, text_dim, progress, text_backend)
    text, text_present = (torch.as_tensor(v) for v in text_features)
    pixels, image_present = image_array(posts.image_path.tolist())
    meta, meta_present = user_metadata(users, g, pd.to_datetime(posts.created_at, utc=True).max())
    user_split = split_of(g.user_ids)
    meta = standardise(meta, (user_split == "train") & meta_present)
    # mean text features of each user's posts (the text-only view of an account)
    authored = g.edge_index[("user", "authored", "post")]
    sums = torch.zeros(len(g.user_ids), text.shape[1])
    weight = text_present.to(torch.float32)[authored[1]]
    sums.index_add_(0, authored[0], text[authored[1]] * weight[:, None])
    count = torch.zeros(len(g.user_ids)).index_add_(0, authored[0], weight)
    user_text = sums / count.clamp(min=1)[:, None]
    post_label, post_classes = _labels(posts.label)
    user_frame = users.set_index(users.user_id.astype(str)).reindex([str(u) for u in g.user_ids])
    user_label, user_classes = _labels(user_frame.label)
    n_posts = len(posts)
    post = MultimodalBatch({"text": text, "pixels": torch.as_tensor(pixels), "stats": torch.as_tensor(post_graph_stats(g, posts))},
                           {"text": text_present.bool(), "pixels": torch.as_tensor(image_present),
                            "stats": torch.ones(n_posts, dtype=torch.bool)})
    user = MultimodalBatch({"meta": torch.as_tensor(meta), "text": user_text},
                           {"meta": torch.as_tensor(meta_present), "text": count > 0})
    return SocialTensors(
        posts, users, g, post, user, post_label, post_classes, user_label, user_classes,
        split_of(posts.post_id) if split == "hash" else split_by_time(posts.created_at), user_split,
        info={"text_encoder": text_encoder, "text_backend": text_backend if text_encoder == "minilm" else None,
              "users_with_posts": int((count > 0).sum()), "stub_users": g.n_stub_users,
              "dangling_edges": g.dangling, "split": split})


def _rows(batch: MultimodalBatch, names, index: torch.Tensor) -> MultimodalBatch:
    """Rows ``index`` of the modalities ``names`` only (the others are not gathered at all)."""
    names = [n for n in names if n in batch.tensors]
    return MultimodalBatch({n: batch.tensors[n][index] for n in names}, {n: batch.present[n][index] for n in names})


@dataclass
class SocialBatch:
    graph: SampledGraph
    post: MultimodalBatch      # the subgraph's posts (sampled order; seeds first for the post task)
    user: MultimodalBatch      # the subgraph's users
    fields: dict
    batch_size: int

    def to(self, device, non_blocking: bool = False) -> "SocialBatch":
        return SocialBatch(self.graph.to(device), self.post.to(device, non_blocking), self.user.to(device, non_blocking),
                           {k: v.to(device, non_blocking=non_blocking) for k, v in self.fields.items()}, self.batch_size)


class SubgraphCollator:
    """collate_fn: seed indices -> :class:`SocialBatch` over their sampled neighbourhood."""

    def __init__(self, store: SocialTensors, task: str = "post", fanouts: list[int] | None = None,
                 use_pixels: bool = False, sampler: str = "auto") -> None:
        self.store, self.task = store, task
        self.seed_type = "post" if task == "post" else "user"
        self.sampler = make_sampler(store.graph.edge_index, store.graph.num_nodes, fanouts or [], sampler)
        self.sampler_backend = sampler_backend(self.sampler)
        self.use_pixels = use_pixels

    def gather(self, graph: SampledGraph) -> SocialBatch:
        s = self.store
        p, u = graph.n_id["post"], graph.n_id["user"]
        names = ["text", "stats"]
        if "image" in s.post.tensors:
            names.append("image")
        if self.use_pixels or "image" not in s.post.tensors:
            names.append("pixels")
        seeds = graph.n_id[self.seed_type][:graph.batch_size]
        label = (s.post_label if self.task == "post" else s.user_label)[seeds]
        return SocialBatch(graph, _rows(s.post, names, p), _rows(s.user, ["meta", "text"], u),
                           {"label": label, "index": seeds}, graph.batch_size)

    def __call__(self, items) -> SocialBatch:
        seeds = torch.stack([torch.as_tensor(i) for i in items]).long()
        return self.gather(self.sampler.sample(self.seed_type, seeds))

    def full(self) -> SocialBatch:
        return self.gather(self.sampler.full(self.seed_type, self.store.graph.edge_index))
