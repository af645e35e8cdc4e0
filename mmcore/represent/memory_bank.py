"""A memory bank of L2-normalised per-instance representations (Wu et al. 2018).

    ===========  =========  ===============================================
    name         shape      meaning
    ===========  =========  ===============================================
    memory       [N, D]     one unit vector per dataset item (a buffer)
    index        [B]        dataset item ids of a batch
    negatives    [B, K, D]  K stored vectors per row, never the row's own
    ===========  =========  ===============================================

Entries are updated by an exponential moving average then renormalised:
m_i ← normalise(μ m_i + (1 − μ) f_i).  The bank is a registered buffer, so it is saved and
restored with the model's state dict (resume keeps it).

:class:`SamplingGenerator` holds the ``torch.Generator`` that draws the negatives and puts its
state into the owning module's ``state_dict`` (as a ``uint8`` tensor, safetensors-compatible), so
a resumed run draws the same negatives as one that never stopped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SamplingGenerator(nn.Module):
    """A CPU ``torch.Generator`` whose state is part of ``state_dict`` (key ``<name>._extra_state``)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.detach().to("cpu", torch.uint8).contiguous())


class MemoryBank(nn.Module):
    def __init__(self, size: int, dim: int, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"a memory bank needs at least 2 entries, got {size}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("memory", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.momentum = momentum

    @property
    def size(self) -> int:
        return self.memory.shape[0]

    def _check_index(self, index: torch.Tensor) -> torch.Tensor:
        index = index.long().to(self.memory.device)
        if index.numel() and (index.min() < 0 or index.max() >= self.size):
            raise IndexError(f"memory bank index out of range [0, {self.size}): {index.min().item()}..{index.max().item()}")
        return index

    def get(self, index: torch.Tensor) -> torch.Tensor:
        return self.memory[self._check_index(index)]

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor) -> None:
        index = self._check_index(index)
        mixed = self.momentum * self.memory[index] + (1 - self.momentum) * F.normalize(features.detach().float(), dim=1)
        self.memory[index] = F.normalize(mixed, dim=1)

    def sample_negatives(self, index: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """K random stored vectors per row, drawn uniformly from the other N − 1 entries."""
        index = self._check_index(index)
        draw = torch.randint(self.size - 1, (index.shape[0], k), generator=generator).to(index.device)
        draw = draw + (draw >= index[:, None]).long()            # skip the row's own entry
        return self.memory[draw]
