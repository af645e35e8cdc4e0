"""Zero-shot classification through a semantic space (DeViSE-style).

An image encoder f and a linear map W send an input into the space of class-name embeddings
s_c (from a text encoder: all-MiniLM-L6-v2 when installed, else a trained text tower).  With
unit vectors and a scale t the compatibility is

    logits_c(x) = t · cos(W f(x), s_c)            [N, C]

Training uses cross-entropy over the *seen* classes only; prediction takes the arg-max over
whichever candidate classes are given — at test time the unseen ones, whose names the model has
never been trained against.  Chance is 1 / (number of candidates).

    ================  ===========  ==============================
    name              shape        meaning
    ================  ===========  ==============================
    x                 [N, ...]     encoder inputs
    class_embeddings  [C, E]       semantic vectors of class names
    labels            [N]          indices into class_embeddings
    ================  ===========  ==============================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SemanticZeroShot(nn.Module):
    def __init__(self, encoder: nn.Module, feature_dim: int, semantic_dim: int, scale: float = 10.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.project = nn.Linear(feature_dim, semantic_dim)
        self.scale = scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.encoder(x)), dim=-1)

    def logits(self, x: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embed(x) @ F.normalize(class_embeddings, dim=-1).T

    @torch.no_grad()
    def predict(self, x: torch.Tensor, class_embeddings: torch.Tensor, candidates: list[int]) -> torch.Tensor:
        """Predicted class indices (into class_embeddings), restricted to ``candidates``."""
        cand = torch.tensor(candidates)
        return cand[self.logits(x, class_embeddings[cand]).argmax(1)]


def train_semantic_zero_shot(model: SemanticZeroShot, x: torch.Tensor, labels: torch.Tensor,
                             class_embeddings: torch.Tensor, seen: list[int], epochs: int = 10,
                             batch_size: int = 128, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Fit on examples of ``seen`` classes only; returns per-epoch mean losses."""
    seen_t = torch.tensor(seen)
    to_seen = torch.full((class_embeddings.shape[0],), -1, dtype=torch.long)
    to_seen[seen_t] = torch.arange(len(seen))
    targets = to_seen[labels]
    if (targets < 0).any():
        bad = labels[targets < 0].unique().tolist()
        raise ValueError(f"training labels include classes not in `seen`: {bad}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    seen_embeddings = class_embeddings[seen_t]
    history = []
    model.train()
    for _ in range(epochs):
        total, batches = 0.0, 0
        for idx in torch.randperm(len(labels), generator=g).split(batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(model.logits(x[idx], seen_embeddings), targets[idx])
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / batches)
    model.eval()
    return history


def zero_shot_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item()
