"""Everything a model reads, as tensors aligned with the graph's node order, and the collate that
turns a list of seed nodes into a sampled-subgraph batch.

| tensor          | shape          | meaning                                             |
|-----------------|----------------|-----------------------------------------------------|
| text            | [P, D_t]       | text features (hashed BoW or MiniLM)                |
| text_present    | [P] bool       | the post has text                                   |
| pixels          | [P, 32, 32, 3] | uint8 images                                        |
| image_present   | [P] bool       | the post has a readable image                       |
| image_feat      | [P, D_i]       | frozen CNN features (after the image model trained) |
| stats           | [P, 4]         | post graph statistics                               |
| meta            | [U, 8]         | standardised user metadata; meta_present [U]        |
| user_text       | [U, D_t]       | mean text features of the user's posts              |
| post_label      | [P] long       | class index, -1 unknown; user_label likewise        |

A :class:`SocialBatch` keeps mmcore's contract: modality tensors with ``present`` masks
(missing rows are never read), ``fields["label"]`` for the seeds, ``batch_size`` and ``.to()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .features import post_graph_stats, standardise, user_metadata
from .graph import SocialGraph, build_graph
from .sampler import SampledGraph, make_sampler, sampler_backend
from .synthetic import split_of
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
    text: torch.Tensor
    text_present: torch.Tensor
    pixels: torch.Tensor
    image_present: torch.Tensor
    stats: torch.Tensor
    meta: torch.Tensor
    meta_present: torch.Tensor
    user_text: torch.Tensor
    post_label: torch.Tensor
    post_classes: list
    user_label: torch.Tensor
    user_classes: list
    post_split: np.ndarray
    user_split: np.ndarray
    image_feat: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def seeds(self, task: str, split: str) -> torch.Tensor:
        labels, splits = (self.post_label, self.post_split) if task == "post" else (self.user_label, self.user_split)
        return torch.as_tensor(np.flatnonzero((splits == split) & (labels.numpy() >= 0)))


def build_tensors(tables: dict, text_encoder: str = "hashed", cache_dir=None, text_dim: int = 512,
                  progress: bool = False, text_features: tuple | None = None) -> SocialTensors:
    """``text_features``: (features [P, D], present [P]) already encoded (e.g. timed on their own)."""
    posts, users, edges = tables["posts"].reset_index(drop=True), tables["users"], tables["edges"]
    g = build_graph(posts, users, edges)
    if text_features is None:
        text_features = encode_texts(posts.text.tolist(), text_encoder, cache_dir, text_dim, progress)
    text, text_present = text_features
    pixels, image_present = image_array(posts.image_path.tolist())
    meta, meta_present = user_metadata(users, g, pd.to_datetime(posts.created_at, utc=True).max())
    user_split = split_of(g.user_ids)
    meta = standardise(meta, (user_split == "train") & meta_present)
    # mean text features of each user's posts (the text-only view of an account)
    authored = g.edge_index[("user", "authored", "post")]
    sums = torch.zeros(len(g.user_ids), text.shape[1])
    weight = torch.as_tensor(text_present, dtype=torch.float32)[authored[1]]
    sums.index_add_(0, authored[0], torch.as_tensor(text)[authored[1]] * weight[:, None])
    count = torch.zeros(len(g.user_ids)).index_add_(0, authored[0], weight)
    user_text = sums / count.clamp(min=1)[:, None]
    post_label, post_classes = _labels(posts.label)
    user_frame = users.set_index(users.user_id.astype(str)).reindex([str(u) for u in g.user_ids])
    user_label, user_classes = _labels(user_frame.label)
    return SocialTensors(
        posts, users, g, torch.as_tensor(text), torch.as_tensor(text_present), torch.as_tensor(pixels),
        torch.as_tensor(image_present), torch.as_tensor(post_graph_stats(g, posts)), torch.as_tensor(meta),
        torch.as_tensor(meta_present), user_text, post_label, post_classes, user_label, user_classes,
        split_of(posts.post_id), user_split,
        info={"text_encoder": text_encoder, "users_with_posts": int((count > 0).sum()), "stub_users": g.n_stub_users,
              "dangling_edges": g.dangling})


@dataclass
class SocialBatch:
    graph: SampledGraph
    post: dict                 # modality tensors for the subgraph's posts (+ "<name>_present" masks)
    user: dict                 # same for users
    fields: dict
    batch_size: int

    def to(self, device, non_blocking: bool = False) -> "SocialBatch":
        move = lambda d: {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}  # noqa: E731
        return SocialBatch(self.graph.to(device), move(self.post), move(self.user), move(self.fields), self.batch_size)


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
        post = {"text": s.text[p], "text_present": s.text_present[p], "image_present": s.image_present[p],
                "stats": s.stats[p]}
        if self.use_pixels or s.image_feat is None:
            post["pixels"] = s.pixels[p]
        if s.image_feat is not None:
            post["image"] = s.image_feat[p]
        user = {"meta": s.meta[u], "meta_present": s.meta_present[u], "text": s.user_text[u]}
        seeds = graph.n_id[self.seed_type][:graph.batch_size]
        label = (s.post_label if self.task == "post" else s.user_label)[seeds]
        return SocialBatch(graph, post, user, {"label": label, "index": seeds}, graph.batch_size)

    def __call__(self, items) -> SocialBatch:
        seeds = torch.stack([torch.as_tensor(i) for i in items]).long()
        return self.gather(self.sampler.sample(self.seed_type, seeds))

    def full(self) -> SocialBatch:
        return self.gather(self.sampler.full(self.seed_type, self.store.graph.edge_index))
