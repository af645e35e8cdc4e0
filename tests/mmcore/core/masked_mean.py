"""A minimal mask-aware model the trainer tests train: per-modality MLPs, mean over present ones."""
from __future__ import annotations

import torch
from torch import nn

from mmcore.data import MultimodalBatch


class MaskedMeanClassifier(nn.Module):
    """Per-modality MLP encoders, mean over the *present* modalities, linear head."""

    def __init__(self, dims: dict[str, int], hidden: int, num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, hidden), nn.GELU()) for m, d in dims.items()})
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, batch: MultimodalBatch) -> torch.Tensor:
        total, count = 0.0, 0.0
        for name, encoder in self.encoders.items():
            if batch.get(name) is None:
                continue
            w = batch.mask(name).unsqueeze(-1).float()
            total = total + encoder(batch[name]) * w
            count = count + w
        return self.head(total / count.clamp(min=1.0))
