"""Redundancy-reduction objectives: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022).

Barlow Twins, for embeddings z1, z2 [B, D] standardised per dimension over the batch:

    C = z̃1ᵀ z̃2 / B                                          [D, D]
    L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²                     (λ = 5e-3)

VICReg, with Cov the sample covariance and std = sqrt(Var + ε):

    invariance  = mean ‖z1 − z2‖² over elements (MSE)
    variance    = mean_j max(0, γ − std_j(z))  for each view     (γ = 1)
    covariance  = Σ_{i≠j} Cov(z)_ij² / D     for each view
    L = λ·inv + μ·(var1 + var2) + ν·(cov1 + cov2)              (λ = μ = 25, ν = 1)

Missing modalities.  Both take ``present``: a ``[B]`` bool mask of the rows that have both
views, or a pair ``(present1, present2)`` of per-view masks (a row counts only where both are
True).  Every statistic (means, standard deviations, C, Cov, the MSE) is then computed over the
kept rows only, by masked indexing: the loss equals the loss of the batch with the other rows
omitted, whatever values they hold, and no gradient reaches them.  Fewer than two kept rows
give 0 (connected to the graph, so a step on such a batch is a no-op, not a crash).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Present = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    return m - torch.diag_embed(m.diagonal())


def _check(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two [B, D] embeddings of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")


def keep_rows(z1: torch.Tensor, z2: torch.Tensor, present: Present) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``z1``, ``z2`` [B, D] where both views are present (all rows if ``present`` is None)."""
    _check(z1, z2)
    if present is None:
        return z1, z2
    masks = present if isinstance(present, (tuple, list)) else (present,)
    keep = torch.ones(z1.shape[0], dtype=torch.bool, device=z1.device)
    for mask in masks:
        if mask.dtype != torch.bool or tuple(mask.shape) != (z1.shape[0],):
            raise ValueError(f"present must be bool of shape ({z1.shape[0]},), got {mask.dtype} {tuple(mask.shape)}")
        keep = keep & mask.to(z1.device)
    return z1[keep], z2[keep]


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float = 5e-3, eps: float = 1e-5,
                      present: Present = None) -> torch.Tensor:
    """Barlow Twins loss of two ``[B, D]`` embeddings over the rows ``present`` keeps: a scalar."""
    kept1, kept2 = keep_rows(z1, z2, present)
    if kept1.shape[0] < 2:
        return z1[:0].sum() + z2[:0].sum()
    z1, z2 = kept1, kept2
    b = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + eps)
    z2 = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + eps)
    c = z1.T @ z2 / b
    on = (1 - c.diagonal()).square().sum()
    off = _off_diagonal(c).square().sum()
    return on + off_diagonal_weight * off


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4,
                 present: Present = None) -> dict[str, torch.Tensor]:
    """The three VICReg terms over the rows ``present`` keeps: scalars ``invariance``, ``variance``, ``covariance``."""
    kept1, kept2 = keep_rows(z1, z2, present)
    if kept1.shape[0] < 2:
        zero = z1[:0].sum() + z2[:0].sum()
        return {"invariance": zero, "variance": zero, "covariance": zero}
    z1, z2 = kept1, kept2
    d = z1.shape[1]
    terms = {"invariance": F.mse_loss(z1, z2)}
    var = cov = 0
    for z in (z1, z2):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + eps)
        var = var + F.relu(gamma - std).mean()
        cov = cov + _off_diagonal(z.T @ z / (z.shape[0] - 1)).square().sum() / d
    terms["variance"], terms["covariance"] = var, cov
    return terms


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float = 25.0, variance_weight: float = 25.0,
                covariance_weight: float = 1.0, present: Present = None) -> torch.Tensor:
    """``λ·inv + μ·var + ν·cov`` over the rows ``present`` keeps: a scalar."""
    t = vicreg_terms(z1, z2, present=present)
    return invariance_weight * t["invariance"] + variance_weight * t["variance"] + covariance_weight * t["covariance"]
