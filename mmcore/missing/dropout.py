"""Modality dropout for robustness training, with an optional curriculum.

:class:`ModalityDropout` marks modalities absent at random while training (per sample, with a
rate per modality), never removing the last present modality of a sample, and is the identity
in eval mode.  Dropped rows go through :meth:`MultimodalBatch.drop_modality`, so the model sees
exactly what a genuinely missing modality looks like (mask False, zeroed placeholder).

:class:`DropoutCurriculum` is a trainer callback that ramps the rates from ``start`` to
``end`` times their nominal values over ``warmup_steps`` optimiser steps: learn with everything
first, then learn to cope without.

===================  ===========  =========================================
name                 shape        meaning
===================  ===========  =========================================
``batch.present[m]`` ``[B]``      before: what the data has
drawn ``drop[m]``    ``[B]``      Bernoulli(rate_m · scale) on present rows
output mask          ``[B]``      ``present & ~drop`` (≥ 1 modality kept)
===================  ===========  =========================================
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..data import MultimodalBatch


class ModalityDropout(nn.Module):
    def __init__(self, rates: float | Mapping[str, float], keep_one: bool = True) -> None:
        super().__init__()
        values = rates.values() if isinstance(rates, Mapping) else [rates]
        if any(not 0.0 <= r <= 1.0 for r in values):
            raise ValueError(f"dropout rates must be in [0, 1], got {rates}")
        self.rates = rates
        self.keep_one = keep_one
        self.scale = 1.0

    def rate(self, name: str) -> float:
        r = self.rates.get(name, 0.0) if isinstance(self.rates, Mapping) else self.rates
        return min(1.0, r * self.scale)

    def forward(self, batch: MultimodalBatch, generator: torch.Generator | None = None) -> MultimodalBatch:
        if not self.training:
            return batch
        names = [m for m in batch.modalities if batch.get(m) is not None]
        if not names:
            return batch
        present = torch.stack([batch.mask(m).cpu() for m in names])                     # [M, B]
        rates = torch.tensor([self.rate(m) for m in names]).unsqueeze(1)
        drop = (torch.rand(present.shape, generator=generator) < rates) & present
        if self.keep_one:
            left = present & ~drop
            lost_all = ~left.any(0) & present.any(0)
            if bool(lost_all.any()):
                # give back one of the sample's present modalities, chosen uniformly
                scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
                pick = scores.argmax(0)
                rows = torch.nonzero(lost_all).squeeze(1)
                drop[pick[rows], rows] = False
        for i, m in enumerate(names):
            if bool(drop[i].any()):
                batch = batch.drop_modality(m, drop[i].to(batch.device))
        return batch


class DropoutCurriculum:
    """Trainer callback: ``dropout.scale`` goes linearly from ``start`` to ``end`` over ``warmup_steps``."""

    def __init__(self, dropout: ModalityDropout, warmup_steps: int, start: float = 0.0, end: float = 1.0) -> None:
        if warmup_steps < 1:
            raise ValueError("warmup_steps must be >= 1")
        self.dropout, self.warmup_steps, self.start, self.end = dropout, warmup_steps, start, end
        dropout.scale = start

    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(1.0, step / self.warmup_steps)

    def on_step_end(self, trainer) -> None:
        self.dropout.scale = self.value(int(trainer.step))

    def state_dict(self) -> dict:
        """Where the curriculum is (the trainer checkpoints it, so a resumed run keeps the rates)."""
        return {"scale": float(self.dropout.scale), "warmup_steps": self.warmup_steps, "start": self.start, "end": self.end}

    def load_state_dict(self, state: dict) -> None:
        self.dropout.scale = float(state["scale"])


class DropoutModel(nn.Module):
    """``model`` behind a :class:`ModalityDropout`: drops while training, passes through in eval."""

    def __init__(self, model: nn.Module, dropout: ModalityDropout) -> None:
        super().__init__()
        self.model, self.dropout = model, dropout

    def forward(self, batch: MultimodalBatch):
        return self.model(self.dropout(batch))
