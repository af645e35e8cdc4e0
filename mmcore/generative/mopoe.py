"""MoPoE-VAE (Sutter et al. 2021): a mixture over all subsets of the present modalities, each
subset's posterior a product of experts (with the prior expert).

For the present set X of a sample, with the valid subsets ``S ⊆ X, S ≠ ∅``::

    q(z | X) = 1/|S(X)| · sum_{S} PoE({q(z | x_m)}_{m in S} ∪ {p(z)})

Objective (stratified over the mixture's components, the usual MoPoE estimator)::

    1/|S(X)| · sum_S ( E_{q_S}[log p(X | z)] - beta · KL(q_S || p) )

With M modalities there are ``2^M - 1`` subsets (7 for M = 3): fine for a handful of modalities.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data import MultimodalBatch
from .base import MultimodalVAE, VAEOutput
from .distributions import DiagGaussian, GaussianMixture, prior_where_empty
from .experts import product_of_experts, subsets


class MoPoE(MultimodalVAE):
    def __init__(self, dims, latent_dim: int = 16, hidden: int = 128, **kw) -> None:
        super().__init__(dims, latent_dim, hidden, **kw)
        if len(self.dims) > 10:
            raise ValueError("MoPoE enumerates 2^M - 1 subsets; use at most 10 modalities")
        self.subset_list = subsets(len(self.modalities))

    def _components(self, mu, logvar, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subset PoEs ``[S, B, Z]`` and their validity ``[S, B]`` (every member present)."""
        mus, lvs, valid = [], [], []
        for members in self.subset_list:
            pick = torch.zeros_like(mask)
            pick[list(members)] = True
            sub = mask & pick
            m, lv = product_of_experts(mu, logvar, sub, prior=True)
            mus.append(m)
            lvs.append(lv)
            valid.append(mask[list(members)].all(0))
        return torch.stack(mus), torch.stack(lvs), torch.stack(valid)

    def posterior(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> GaussianMixture:
        """Mixture of the valid subsets' PoEs; the prior for a sample with no modality."""
        mu, logvar, _, _ = self.experts(batch)
        return GaussianMixture(*prior_where_empty(*self._components(mu, logvar, self.mask(batch, source))))

    def loss(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        beta = self.beta if beta is None else beta
        mu, logvar, _, _ = self.experts(batch)
        present = self.mask(batch)
        cond = self.condition(batch)
        cmu, clv, valid = self._components(mu, logvar, present)
        count = valid.sum(0).clamp(min=1).float()
        rec_sum, kl_sum = 0.0, 0.0
        for s in range(len(self.subset_list)):
            if not bool(valid[s].any()):
                continue
            rec, kl = self.gaussian_elbo(batch, DiagGaussian(cmu[s], clv[s]), present, beta, cond)
            w = valid[s].float() / count
            rec_sum, kl_sum = rec_sum + w * rec, kl_sum + w * kl
        objective = rec_sum - beta * kl_sum
        return VAEOutput(-objective.mean(), rec_sum - kl_sum, rec_sum, kl_sum)
