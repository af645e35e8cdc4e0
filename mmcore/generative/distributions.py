"""The two posterior shapes every multimodal VAE here returns: one diagonal Gaussian, or a
uniform mixture of diagonal Gaussians with a per-sample mask of which components exist.

Both offer ``rsample(K) -> [K, B, D]``, ``log_prob(z [K, B, D]) -> [K, B]`` and
``mean() -> [B, D]`` (the posterior mean: ``mu`` for a Gaussian, the average of the present
components' means for a uniform mixture; deterministic for both), so ELBOs, importance-sampled
likelihoods and cross-generation are written once for all models.

A sample with no modality at all has the prior as its posterior: :func:`prior_where_empty`
adds a standard-normal component that exists only for such samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .experts import gaussian_log_prob, mixture_log_prob, reparameterize


@dataclass
class DiagGaussian:
    mu: Tensor        # [B, D]
    logvar: Tensor    # [B, D]

    def rsample(self, samples: int = 1) -> Tensor:
        return reparameterize(self.mu, self.logvar, samples)

    def log_prob(self, z: Tensor) -> Tensor:
        return gaussian_log_prob(z, self.mu, self.logvar)

    def mean(self) -> Tensor:
        return self.mu


@dataclass
class GaussianMixture:
    mu: Tensor        # [E, B, D]
    logvar: Tensor    # [E, B, D]
    mask: Tensor      # [E, B] bool; every sample needs at least one component

    def __post_init__(self) -> None:
        if not bool(self.mask.any(0).all()):
            raise ValueError("every sample of a mixture posterior needs at least one present component")

    def _pick(self, samples: int) -> Tensor:
        """Component index per draw and sample, uniform over the present ones: ``[K, B]``."""
        weights = self.mask.T.float()                                   # [B, E]
        idx = torch.multinomial(weights, samples, replacement=True)     # [B, K]
        return idx.T

    def rsample(self, samples: int = 1) -> Tensor:
        idx = self._pick(samples)                                       # [K, B]
        b = torch.arange(self.mu.shape[1], device=self.mu.device)
        mu, logvar = self.mu[idx, b], self.logvar[idx, b]               # [K, B, D]
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def log_prob(self, z: Tensor) -> Tensor:
        return mixture_log_prob(z, self.mu, self.logvar, self.mask)

    def mean(self) -> Tensor:
        """``E[z] = 1/|P(b)| · sum_{e in P(b)} mu_e``: ``[B, D]`` (absent components selected away)."""
        keep = self.mask.unsqueeze(-1)
        total = torch.where(keep, self.mu, torch.zeros((), dtype=self.mu.dtype, device=self.mu.device)).sum(0)
        return total / self.mask.sum(0).clamp(min=1).unsqueeze(-1).to(total.dtype)


def prior_where_empty(mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Components ``[E, B, D]`` + mask ``[E, B]`` with one more component, N(0, I), present only in
    the samples where no other component is: those get the prior, the others are unchanged."""
    empty = ~mask.any(0, keepdim=True)                                  # [1, B]
    zeros = torch.zeros_like(mu[:1])
    return torch.cat([mu, zeros]), torch.cat([logvar, zeros]), torch.cat([mask, empty])
