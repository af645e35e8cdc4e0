"""Gaussian experts and their masked combinations: product (PoE), mixture (MoE) and subsets.

An expert is a diagonal Gaussian ``N(mu, exp(logvar))``.  Experts are stacked along a leading
axis with a boolean mask telling which ones exist for each sample:

=============  ===============  ===============================================
tensor         shape            meaning
=============  ===============  ===============================================
``mu``         ``[E, B, D]``    means of E experts (placeholder rows allowed)
``logvar``     ``[E, B, D]``    log-variances (the log of sigma^2, never sigma)
``mask``       ``[E, B]``       True where expert e exists for sample b
output         ``[B, D]``       the combined Gaussian's mu and logvar
=============  ===============  ===============================================

Product of experts, with precisions ``T_e = exp(-logvar_e)`` (and the prior N(0, I), T_0 = 1)::

    T = sum_e T_e            mu = sum_e (T_e / T) mu_e          logvar = -log T

computed entirely in log space: ``-logvar_e`` of a masked expert is set to ``-inf``, so
``logvar = -logsumexp(-logvar_e)`` and the weights ``T_e / T = softmax(-logvar_e)`` never
overflow, whatever the log-variances, and a masked expert gets a weight of exactly zero (it is
the same as leaving it out).  Placeholder values of masked experts are never read.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def product_of_experts(mu: Tensor, logvar: Tensor, mask: Tensor | None = None, prior: bool = True) -> tuple[Tensor, Tensor]:
    """Masked, log-space product of Gaussian experts (see the module docstring for shapes).

    With ``prior=True`` a standard-normal expert joins every product, so a sample with no
    expert gets the prior.  With ``prior=False`` such a sample also gets N(0, I): there is
    nothing else to give it, and NaNs must never leave this function.
    """
    if mu.shape != logvar.shape or mu.dim() != 3:
        raise ValueError(f"mu and logvar must both be [E, B, D]; got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    E, B, D = mu.shape
    if mask is None:
        mask = torch.ones(E, B, dtype=torch.bool, device=mu.device)
    if mask.shape != (E, B):
        raise ValueError(f"mask must be [E, B] = {(E, B)}, got {tuple(mask.shape)}")
    m = mask.unsqueeze(-1)
    neg_inf = torch.tensor(float("-inf"), dtype=logvar.dtype, device=logvar.device)
    log_precision = torch.where(m, -logvar, neg_inf)                 # [E, B, D]
    means = torch.where(m, mu, torch.zeros((), dtype=mu.dtype, device=mu.device))
    if prior:
        log_precision = torch.cat([torch.zeros_like(log_precision[:1]), log_precision], 0)
        means = torch.cat([torch.zeros_like(means[:1]), means], 0)
    else:
        empty = ~mask.any(0)                                          # [B]: no expert at all
        if bool(empty.any()):
            fill = torch.where(empty.view(1, B, 1), torch.zeros((), dtype=logvar.dtype, device=logvar.device), neg_inf)
            log_precision = torch.cat([fill.expand(1, B, D), log_precision], 0)
            means = torch.cat([torch.zeros_like(means[:1]), means], 0)
    log_total = torch.logsumexp(log_precision, dim=0)                 # log T
    weights = torch.exp(log_precision - log_total)                   # T_e / T, exactly 0 when masked
    return (weights * means).sum(0), -log_total


def subsets(num_experts: int) -> list[tuple[int, ...]]:
    """All non-empty subsets of ``range(num_experts)``, smallest first (MoPoE's components)."""
    return [s for k in range(1, num_experts + 1) for s in itertools.combinations(range(num_experts), k)]


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) summed over the last axis (broadcasts)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + z ** 2).sum(-1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last axis."""
    return 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, samples: int | None = None) -> Tensor:
    """``mu + sigma * eps``; with ``samples=K`` a leading axis of K draws."""
    std = torch.exp(0.5 * logvar)
    if samples is None:
        return mu + std * torch.randn_like(std)
    eps = torch.randn((samples, *mu.shape), dtype=mu.dtype, device=mu.device)
    return mu + std * eps


def mixture_log_prob(z: Tensor, mu: Tensor, logvar: Tensor, mask: Tensor) -> Tensor:
    """log of the uniform mixture of the *present* experts, evaluated at ``z``.

    ``z``: ``[..., B, D]``; ``mu``/``logvar``: ``[E, B, D]``; ``mask``: ``[E, B]``.
    Returns ``[..., B]``.  Each sample's mixture weights are ``1 / (number of present experts)``.
    A sample with no present expert has no mixture: its value is 0 and no gradient flows from
    it (a logsumexp over nothing but ``-inf`` would be ``-inf`` with a NaN gradient, and that NaN
    would reach every weight through the shared encoders).
    """
    comp = gaussian_log_prob(z.unsqueeze(-3), mu, logvar)            # [..., E, B]
    empty = ~mask.any(0)                                              # [B]
    usable = mask | empty                                             # any finite stand-in for empty rows
    comp = torch.where(usable, comp, torch.tensor(float("-inf"), dtype=comp.dtype, device=comp.device))
    count = mask.sum(0).clamp(min=1).to(comp.dtype)                  # [B]
    value = torch.logsumexp(comp, dim=-2) - torch.log(count)
    return torch.where(empty, torch.zeros((), dtype=value.dtype, device=value.device), value)
