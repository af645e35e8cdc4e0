"""PIRL: pretext-invariant representation learning with a memory bank (Misra & van der Maaten 2020).

For item I with image feature f = f(v_I), transformed-view feature g = g(v_{I^t}) and memory
entry m_I (all unit vectors), s(u, v) = uᵀv / τ, the NCE posterior of "u and v match" against K
noise samples from the bank (noise prior 1/N each) is  h(u, v) = P(u, v) / (P(u, v) + K/N) with the
non-parametric softmax P = exp(s)/Z, Z ≈ N · mean exp(s) estimated once from the first batch and then
kept fixed (Wu et al. 2018), and

    L_NCE(m_I, u) = −log h(m_I, u) − Σ_{m' ∈ negatives} log(1 − h(m', u))
    L_PIRL        = λ L_NCE(m_I, g) + (1 − λ) L_NCE(m_I, f)        (λ = 0.5 in the paper)

After each step the bank takes m_I ← normalise(μ m_I + (1 − μ) f).
Shapes: f, g [B, D]; index [B]; loss scalar.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .memory_bank import MemoryBank, SamplingGenerator


def nce_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float,
             noise_ratio: float, log_z: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Per-row binary NCE. anchor/positive [B, D] unit vectors, negatives [B, K, D] -> [B].

    ``noise_ratio`` = K/N; ``log_z`` is the log normaliser of P = exp(s)/Z.
    """
    log_k = math.log(noise_ratio)
    pos = (anchor * positive).sum(-1) / temperature - log_z
    neg = torch.einsum("bd,bkd->bk", positive, negatives) / temperature - log_z
    # log h = s - logaddexp(s, log(K/N)); log(1 - h) = log(K/N) - logaddexp(s, log(K/N))
    log_h_pos = pos - torch.logaddexp(pos, torch.full_like(pos, log_k))
    log_not_h_neg = log_k - torch.logaddexp(neg, torch.full_like(neg, log_k))
    return -(log_h_pos + log_not_h_neg.sum(-1))


class PIRLLoss(nn.Module):
    def __init__(self, dataset_size: int, dim: int, num_negatives: int = 256, temperature: float = 0.07,
                 weight: float = 0.5, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if num_negatives >= dataset_size:
            raise ValueError(f"num_negatives={num_negatives} must be below dataset_size={dataset_size}")
        self.bank = MemoryBank(dataset_size, dim, momentum, seed)
        self.num_negatives, self.temperature, self.weight = num_negatives, temperature, weight
        self.sampler = SamplingGenerator(seed)   # negatives' draws, saved with the state dict
        self.register_buffer("log_z", torch.tensor(float("nan")))

    @property
    def generator(self) -> torch.Generator:
        """The generator the negatives are drawn from (its state is in ``state_dict``)."""
        return self.sampler.generator

    def forward(self, image_features: torch.Tensor, transformed_features: torch.Tensor, index: torch.Tensor,
                update: bool = True) -> torch.Tensor:
        f = F.normalize(image_features, dim=1)
        g = F.normalize(transformed_features, dim=1)
        memory = self.bank.get(index)
        negatives = self.bank.sample_negatives(index, self.num_negatives, self.sampler.generator)
        ratio = self.num_negatives / self.bank.size
        if torch.isnan(self.log_z):
            with torch.no_grad():  # Z = N * E[exp(s)] over noise pairs, fixed after the first batch
                scores = torch.einsum("bd,bkd->bk", g, negatives) / self.temperature
                self.log_z.fill_(math.log(self.bank.size) + (torch.logsumexp(scores.flatten(), 0) - math.log(scores.numel())).item())
        loss_t = nce_loss(memory, g, negatives, self.temperature, ratio, self.log_z)
        loss_f = nce_loss(memory, f, negatives, self.temperature, ratio, self.log_z)
        loss = (self.weight * loss_t + (1 - self.weight) * loss_f).mean()
        if update and self.training:
            self.bank.update(index, f)
        return loss
