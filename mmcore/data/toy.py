"""A tiny seeded multimodal classification set for tests, demos and smoke runs.

Each class has a mean vector per modality; a sample draws Gaussian noise around its class mean
in every modality, and each modality is dropped (``None``) with probability ``missing_rate``
(never all of them).  Any single present modality carries the label, so a mask-aware model
should stay accurate when modalities go missing.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset


class ToyMultimodalDataset(Dataset):
    def __init__(
        self,
        n: int = 512,
        dims: Mapping[str, int] | None = None,
        num_classes: int = 3,
        noise: float = 1.0,
        missing_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.dims = dict(dims or {"image": 16, "text": 8})
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(seed)
        class_g = torch.Generator().manual_seed(10_000 + num_classes)  # same class means in every split
        self.labels = torch.randint(num_classes, (n,), generator=g)
        self.data: dict[str, torch.Tensor] = {}
        for name, d in self.dims.items():
            means = torch.randn(num_classes, d, generator=class_g) * 1.5
            self.data[name] = means[self.labels] + noise * torch.randn(n, d, generator=g)
        names = list(self.dims)
        keep = torch.rand(n, len(names), generator=g) >= missing_rate
        none_left = ~keep.any(dim=1)
        keep[none_left, torch.randint(len(names), (int(none_left.sum()),), generator=g)] = True
        self.keep = keep
        self.modalities = names

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        sample = {name: (self.data[name][i] if self.keep[i, j] else None) for j, name in enumerate(self.modalities)}
        sample["label"] = self.labels[i]
        return sample
