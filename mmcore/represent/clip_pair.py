"""A contrastively trained image–text pair (CLIP-style) for the generated scenes.

    ===========  ==================  ========================================
    name         shape               meaning
    ===========  ==================  ========================================
    images       [B, 3, S, S]        scene images
    captions     list[str] (B)       their captions
    embed_image  [B, D]              unit-norm image embeddings
    embed_text   [B, D]              unit-norm text embeddings
    ===========  ==================  ========================================

``SceneImageEncoder`` is a two-block CNN; the text tower is :class:`.text_encoder.BagOfWordsEncoder`
trained from scratch.  :func:`train_clip_pair` is a plain seeded loop (minibatches of distinct
pairs, AdamW) returning per-epoch losses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .contrastive import ClipLoss
from .text_encoder import BagOfWordsEncoder, Vocabulary


class SceneImageEncoder(nn.Module):
    """conv3×3(16)-ReLU-pool-conv3×3(32)-ReLU-pool-linear: [B, 3, S, S] -> [B, out_dim]."""

    def __init__(self, out_dim: int = 64, size: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(32 * (size // 4) ** 2, out_dim)
        self.out_dim = out_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class ClipPair(nn.Module):
    def __init__(self, vocab: Vocabulary, dim: int = 64, size: int = 16, temperature: float = 0.07) -> None:
        super().__init__()
        self.image_encoder = SceneImageEncoder(dim, size)
        self.text_encoder = BagOfWordsEncoder(vocab, out_dim=dim)
        self.loss_fn = ClipLoss(init_temperature=temperature)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.text_encoder(list(texts)), dim=-1)

    def forward(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return self.loss_fn(self.embed_image(images), self.embed_text(texts))

    @torch.no_grad()
    def zero_shot_logits(self, images: torch.Tensor, class_prompts: Sequence[str]) -> torch.Tensor:
        """[N, C] similarities of images to the prompts of candidate classes."""
        return self.embed_image(images) @ self.embed_text(class_prompts).T


def train_clip_pair(pair: ClipPair, images: torch.Tensor, captions: Sequence[str], epochs: int = 10,
                    batch_size: int = 128, lr: float = 3e-3, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(pair.parameters(), lr=lr, weight_decay=1e-4)
    history = []
    pair.train()
    for _ in range(epochs):
        total, batches = 0.0, 0
        for idx in torch.randperm(len(captions), generator=g).split(batch_size):
            if len(idx) < 2:
                continue
            opt.zero_grad()
            loss = pair(images[idx], [captions[i] for i in idx.tolist()])
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / max(batches, 1))
    pair.eval()
    return history
