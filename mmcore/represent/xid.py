"""Multimodal instance discrimination with memory banks (xID; Morgado, Vasconcelos & Misra 2021).

Each modality m has an encoder output v^m_i and a memory bank M^m.  With τ a temperature and K
negatives drawn from a bank, the instance-discrimination term for a query q against bank M is

    ℓ(q, M, i) = −log  exp(qᵀM_i/τ) / (exp(qᵀM_i/τ) + Σ_k exp(qᵀM_{n_k}/τ))

``cross``  (xID):     ℓ(v^a_i, M^b, i) + ℓ(v^b_i, M^a, i)   — a video is matched to its audio
``within`` (self-ID): ℓ(v^a_i, M^a, i) + ℓ(v^b_i, M^b, i)
``both``:             the sum of the two (joint).

A row with an absent modality drops every term that needs it (a missing modality contributes
nothing); banks are updated only from present rows.  Shapes: features [B, D] per modality,
present [B] bool, index [B].
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .memory_bank import MemoryBank, SamplingGenerator

MODES = ("cross", "within", "both")


def memory_infonce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row softmax loss of the positive against K negatives. [B, D], [B, D], [B, K, D] -> [B]."""
    pos = (query * positive).sum(-1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", query, negatives)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


class XIDLoss(nn.Module):
    def __init__(self, dataset_size: int, dim: int, modalities: tuple[str, str] = ("video", "audio"),
                 mode: str = "cross", num_negatives: int = 256, temperature: float = 0.07,
                 momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown xID mode {mode!r}; choose from {', '.join(MODES)}")
        if len(modalities) != 2:
            raise ValueError("xID pairs exactly two modalities")
        self.modalities, self.mode = tuple(modalities), mode
        self.banks = nn.ModuleDict({m: MemoryBank(dataset_size, dim, momentum, seed + i) for i, m in enumerate(modalities)})
        self.num_negatives, self.temperature = num_negatives, temperature
        self.sampler = SamplingGenerator(seed)   # negatives' draws, saved with the state dict

    def _pairs(self) -> list[tuple[str, str]]:
        a, b = self.modalities
        cross, within = [(a, b), (b, a)], [(a, a), (b, b)]
        return {"cross": cross, "within": within, "both": cross + within}[self.mode]

    @property
    def generator(self) -> torch.Generator:
        """The generator the negatives are drawn from (its state is in ``state_dict``)."""
        return self.sampler.generator

    def forward(self, features: Mapping[str, torch.Tensor], index: torch.Tensor,
                present: Mapping[str, torch.Tensor] | None = None, update: bool = True) -> torch.Tensor:
        feats = {m: F.normalize(features[m], dim=1) for m in self.modalities}
        n = index.shape[0]
        here = {m: (present[m].bool() if present is not None and m in present
                    else torch.ones(n, dtype=torch.bool, device=index.device)) for m in self.modalities}
        total, count = feats[self.modalities[0]].sum() * 0, 0
        for query_mod, bank_mod in self._pairs():
            rows = here[query_mod] & here[bank_mod]
            if not rows.any():
                continue
            bank = self.banks[bank_mod]
            negatives = bank.sample_negatives(index[rows], self.num_negatives, self.sampler.generator)
            per_row = memory_infonce(feats[query_mod][rows], bank.get(index[rows]), negatives, self.temperature)
            total = total + per_row.sum()
            count += int(rows.sum())
        if update and self.training:
            for m in self.modalities:
                if here[m].any():
                    self.banks[m].update(index[here[m]], feats[m][here[m]])
        return total / max(count, 1)
