"""Deep CCA objectives, each named for what it computes (all are losses: lower is better).

Libraries disagree on what "the DCCA loss" is; here each has its own name.  For batch outputs
H_1 [n, o_1], H_2 [n, o_2] (centred inside), with C_11 = H_1ᵀH_1/(n−1) + r I etc. and the
whitened cross-covariance T = L_1⁻¹ C_12 L_2⁻ᵀ (Cholesky factors, see :mod:`.cca`):

    ===============  ====================================  ===============================
    name             loss                                  decomposition
    ===============  ====================================  ===============================
    corr_sum         −Σ_k ρ_k = −‖T‖_*  (Andrew 2013)      Cholesky + singular values
    corr_topk        −Σ_{k≤K} ρ_k                          Cholesky + singular values
    corr_sq_sum      −Σ_k ρ_k² = −‖T‖_F²                   Cholesky only (no eig/SVD)
    ey               −2 tr(A) + tr(B_a B_b)  (Eckart–Young) none (matrix products only)
    ===============  ====================================  ===============================

Gradients: ``corr_sum``/``corr_topk`` differentiate singular values (dσ = u vᵀ), which stays
finite at repeated values, unlike an eigendecomposition of TᵀT followed by an elementwise square
root.  Cholesky uses jitter when a covariance is singular (rank-deficient batches), so gradients
stay finite.  ``ey`` (Chapman et al. 2023) is the generalised eigenproblem A u = λ B u with
A = Var(Z_1 + Z_2) and B = (C_11 + r I) + (C_22 + r I), the same ridge ``reg`` = r as the other
objectives; with r = 0 its minimum over linear maps is −Σ_k (1+ρ_k)².  With ``unbiased=True``
the quadratic term tr(B B) becomes tr(B' B'') with B', B'' from two disjoint halves of the batch,
so minibatch gradients are unbiased.  ``unbiased`` belongs to ``ey`` only: :func:`dcca_objective`
refuses it for the other objectives rather than ignore it.
"""
from __future__ import annotations

import warnings

import torch

from .cca import covariance, robust_cholesky

OBJECTIVES = ("corr_sum", "corr_topk", "corr_sq_sum", "ey")


def _check_pair(h1: torch.Tensor, h2: torch.Tensor) -> None:
    if h1.dim() != 2 or h2.dim() != 2:
        raise ValueError(f"expected [n, o] outputs, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    if h1.shape[0] != h2.shape[0]:
        raise ValueError(f"views disagree on batch size: {h1.shape[0]} vs {h2.shape[0]}")
    n, width = h1.shape[0], max(h1.shape[1], h2.shape[1])
    if n <= width:
        warnings.warn(
            f"DCCA batch of {n} samples is not larger than the latent width {width}: the batch covariance is "
            "rank-deficient and sample correlations are biased towards 1. Use batches several times the width.",
            RuntimeWarning, stacklevel=3,
        )


def whitened_cross_covariance(h1: torch.Tensor, h2: torch.Tensor, reg: float = 1e-5) -> torch.Tensor:
    """T for a batch of two views' outputs (centred here); ``reg`` is added to both covariances."""
    h1 = h1 - h1.mean(0, keepdim=True)
    h2 = h2 - h2.mean(0, keepdim=True)
    eye1 = torch.eye(h1.shape[1], dtype=h1.dtype, device=h1.device)
    eye2 = torch.eye(h2.shape[1], dtype=h2.dtype, device=h2.device)
    l1 = robust_cholesky(covariance(h1) + reg * eye1)
    l2 = robust_cholesky(covariance(h2) + reg * eye2)
    left = torch.linalg.solve_triangular(l1, covariance(h1, h2), upper=False)
    return torch.linalg.solve_triangular(l2, left.T, upper=False).T


def corr_sum(h1: torch.Tensor, h2: torch.Tensor, reg: float = 1e-5) -> torch.Tensor:
    """−(sum of all canonical correlations), the trace-norm objective of Andrew et al. (2013)."""
    _check_pair(h1, h2)
    return -torch.linalg.svdvals(whitened_cross_covariance(h1, h2, reg)).sum()


def corr_topk(h1: torch.Tensor, h2: torch.Tensor, k: int, reg: float = 1e-5) -> torch.Tensor:
    """−(sum of the k largest canonical correlations)."""
    _check_pair(h1, h2)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return -torch.linalg.svdvals(whitened_cross_covariance(h1, h2, reg))[:k].sum()


def corr_sq_sum(h1: torch.Tensor, h2: torch.Tensor, reg: float = 1e-5) -> torch.Tensor:
    """−(sum of squared canonical correlations) = −‖T‖_F², with Cholesky whitening only."""
    _check_pair(h1, h2)
    return -whitened_cross_covariance(h1, h2, reg).square().sum()


def ey(z1: torch.Tensor, z2: torch.Tensor, unbiased: bool = False, reg: float = 0.0) -> torch.Tensor:
    """Decomposition-free Eckart–Young CCA objective ``−2 tr(A) + tr(B B)``.

    ``reg`` adds ``reg · I`` to each view's covariance in B (ridge, as in the other objectives);
    with ``reg = 0`` the minimum over linear maps is −Σ(1+ρ_k)².  ``unbiased=True`` takes the
    quadratic term from two disjoint halves of the batch (needs at least 4 samples).
    """
    _check_pair(z1, z2)
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    z1 = z1 - z1.mean(0, keepdim=True)
    z2 = z2 - z2.mean(0, keepdim=True)
    a = covariance(z1 + z2)
    ridge = 2 * reg * torch.eye(z1.shape[1], dtype=z1.dtype, device=z1.device)

    def b_of(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return covariance(x1) + covariance(x2) + ridge

    if unbiased:
        if z1.shape[0] < 4:
            raise ValueError(f"ey(unbiased=True) splits the batch in two halves of >= 2 samples; got n={z1.shape[0]}")
        half = z1.shape[0] // 2
        return -2 * torch.trace(a) + (b_of(z1[:half], z2[:half]) * b_of(z1[half:], z2[half:])).sum()
    b = b_of(z1, z2)
    return -2 * torch.trace(a) + (b * b).sum()


def dcca_objective(name: str, h1: torch.Tensor, h2: torch.Tensor, *, k: int | None = None, reg: float = 1e-5,
                   unbiased: bool = False) -> torch.Tensor:
    """Dispatch by name (one of :data:`OBJECTIVES`); ``reg`` reaches every objective, ``unbiased``
    only ``ey`` (refused for the others)."""
    if unbiased and name != "ey":
        raise ValueError(f"unbiased=True applies to the 'ey' objective only, not {name!r}")
    if name == "corr_sum":
        return corr_sum(h1, h2, reg)
    if name == "corr_topk":
        if k is None:
            raise ValueError("corr_topk needs k")
        return corr_topk(h1, h2, k, reg)
    if name == "corr_sq_sum":
        return corr_sq_sum(h1, h2, reg)
    if name == "ey":
        return ey(h1, h2, unbiased=unbiased, reg=reg)
    raise ValueError(f"unknown DCCA objective {name!r}; choose from {', '.join(OBJECTIVES)}")
