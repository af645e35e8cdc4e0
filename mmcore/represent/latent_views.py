"""A latent-variable multi-view generator with known population covariances.

    Z ~ N(0, I_d)      [n, d]
    X_i = Z W_iᵀ + σ_i E_i,   E_i ~ N(0, I),   W_i [p_i, d]

so Cov(X_i) = W_i W_iᵀ + σ_i² I and Cov(X_i, X_j) = W_i W_jᵀ: the population canonical
correlations of any pair follow in closed form (:func:`LatentViews.population_correlations`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .cca import population_canonical_correlations


@dataclass
class LatentViews:
    loadings: list[torch.Tensor]   # W_i, [p_i, d]
    noise: list[float]             # σ_i

    @classmethod
    def random(cls, dims: Sequence[int] = (8, 6), latent: int = 3, noise: float | Sequence[float] = 1.0,
               seed: int = 0) -> "LatentViews":
        g = torch.Generator().manual_seed(seed)
        noise = [float(noise)] * len(dims) if isinstance(noise, (int, float)) else [float(s) for s in noise]
        loadings = [torch.randn(p, latent, generator=g, dtype=torch.float64) for p in dims]
        return cls(loadings, noise)

    @property
    def latent(self) -> int:
        return self.loadings[0].shape[1]

    def sample(self, n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent, generator=g, dtype=torch.float64)
        views = [z @ w.T + s * torch.randn(n, w.shape[0], generator=g, dtype=torch.float64)
                 for w, s in zip(self.loadings, self.noise)]
        return [v.to(dtype) for v in views]

    def covariance(self, i: int, j: int) -> torch.Tensor:
        c = self.loadings[i] @ self.loadings[j].T
        if i == j:
            c = c + self.noise[i] ** 2 * torch.eye(c.shape[0], dtype=c.dtype)
        return c

    def population_correlations(self, i: int = 0, j: int = 1) -> torch.Tensor:
        """The population canonical correlations of views i and j (at most ``latent`` non-zero)."""
        return population_canonical_correlations(self.covariance(i, i), self.covariance(j, j), self.covariance(i, j))
