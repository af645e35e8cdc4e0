"""The small Adam loop shared by the translator and the hallucination net."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ..data import MultimodalBatch


def fit_on_random_rows(params: Iterable[torch.nn.Parameter], loss_fn: Callable[[MultimodalBatch], Tensor],
                       batch: MultimodalBatch, steps: int, batch_size: int, lr: float, seed: int) -> None:
    """``steps`` Adam steps, each on ``batch_size`` rows of ``batch`` drawn with replacement (seeded)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(list(params), lr=lr)
    for _ in range(steps):
        idx = torch.randint(batch.batch_size, (batch_size,), generator=g).to(batch.device)
        loss = loss_fn(batch.select(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()
