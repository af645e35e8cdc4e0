"""MMVAE (Shi et al. 2019): a uniform mixture of the unimodal experts, trained with a
stratified importance-weighted bound (IWAE) or its doubly-reparameterised gradient (DReG).

For the present modalities X of a sample (|X| = n)::

    q(z | X) = 1/n · sum_{m in X} q(z | x_m)
    L = 1/n · sum_{m in X} E_{z_1..K ~ q(z|x_m)} [ log 1/K · sum_k  p(z_k) p(X | z_k) / q(z_k | X) ]

Every z drawn from one modality's expert is asked to reconstruct *all* present modalities,
which is what makes MMVAE cross-generate.  DReG evaluates ``log q`` with stopped-gradient
encoder parameters and scales the gradient reaching each z by its normalised importance
weight; the surrogate ``sum_k w_k log w_k`` then gives the encoder ``w_k^2``-weighted and the
decoder the plain IWAE gradients (Tucker et al. 2019).

``loss(batch, beta)`` returns ``elbo = recon - kl`` (the stratified one-sample ELBO at β = 1,
the same meaning as every other model's) and ``iw_bound``, the stratified K-sample
importance-weighted bound at β = 1 (≥ the ELBO in expectation); only ``loss`` depends on β,
through ``log w = log p(X | z) + β (log p(z) − log q(z | X))``.

A sample with no modality has no expert: it adds nothing to the loss (value and gradient 0),
and its posterior is the prior.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..data import MultimodalBatch
from .base import MultimodalVAE, VAEOutput
from .distributions import GaussianMixture, prior_where_empty
from .experts import mixture_log_prob, reparameterize, standard_normal_log_prob


class MMVAE(MultimodalVAE):
    def __init__(self, dims, latent_dim: int = 16, hidden: int = 128, *, samples: int = 4,
                 estimator: str = "dreg", **kw) -> None:
        super().__init__(dims, latent_dim, hidden, **kw)
        if estimator not in ("iwae", "dreg", "elbo"):
            raise ValueError(f"unknown estimator '{estimator}' (iwae, dreg, elbo)")
        self.samples, self.estimator = samples, estimator

    def posterior(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> GaussianMixture:
        """Mixture of the present experts; the prior for a sample with none."""
        mu, logvar, _, _ = self.experts(batch)
        return GaussianMixture(*prior_where_empty(mu, logvar, self.mask(batch, source)))

    def loss(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        beta = self.beta if beta is None else beta
        K = 1 if self.estimator == "elbo" else self.samples
        mu, logvar, _, _ = self.experts(batch)
        present = self.mask(batch)                                           # [M, B]
        count = present.sum(0).clamp(min=1).float()
        z = reparameterize(mu, logvar, K)                                    # [K, M, B, Z]
        if self.estimator == "dreg":
            lqz = mixture_log_prob(z, mu.detach(), logvar.detach(), present)  # [K, M, B]
        else:
            lqz = mixture_log_prob(z, mu, logvar, present)
        lpz = standard_normal_log_prob(z)
        lpx = self.log_likelihood(batch, self.decode(z, self.condition(batch)), present)
        lw = lpx + beta * (lpz - lqz)
        zero = torch.zeros((), device=lw.device)
        per_expert = torch.logsumexp(lw, 0) - math.log(K)                   # [M, B]
        bound = torch.where(present, per_expert, zero).sum(0) / count
        if self.estimator == "dreg" and z.requires_grad:
            with torch.no_grad():
                w = torch.softmax(lw, 0)
            z.register_hook(lambda grad: w.unsqueeze(-1) * grad)
            surrogate = torch.where(present, (w * lw).sum(0), zero).sum(0) / count
        else:
            surrogate = bound
        mean_over = lambda t: torch.where(present, t.mean(0), zero).sum(0) / count  # noqa: E731
        recon, kl = mean_over(lpx), mean_over(lqz - lpz)
        if beta == 1:
            iw_bound = bound.detach()
        else:   # the bound the loss optimises is a β-weighted one: report the β = 1 bound instead
            lw1 = (lpx + lpz - lqz).detach()
            iw_bound = torch.where(present, torch.logsumexp(lw1, 0) - math.log(K), zero).sum(0) / count
        return VAEOutput(-surrogate.mean(), recon - kl, recon, kl, iw_bound)
