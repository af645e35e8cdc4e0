"""The two posterior shapes every multimodal VAE here returns: one diagonal Gaussian, or a
uniform mixture of diagonal Gaussians with a per-sample mask of which components exist.

Both offer ``rsample(K) -> [K, B, D]``, ``log_prob(z [K, B, D]) -> [K, B]`` and
``representative() -> [B, D]`` (the mean for a Gaussian; the mean of one present component,
drawn uniformly per sample, for a mixture), so ELBOs, importance-sampled likelihoods and
cross-generation are written once for all models.
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

    def representative(self) -> Tensor:
        return self.mu

    def detach(self) -> "DiagGaussian":
        return DiagGaussian(self.mu.detach(), self.logvar.detach())


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

    def representative(self) -> Tensor:
        idx = self._pick(1)[0]
        return self.mu[idx, torch.arange(self.mu.shape[1], device=self.mu.device)]

    def detach(self) -> "GaussianMixture":
        return GaussianMixture(self.mu.detach(), self.logvar.detach(), self.mask)
