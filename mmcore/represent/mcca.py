"""CCA for more than two views: multiset CCA (MCCA) and generalised CCA (GCCA, MAXVAR form).

MCCA solves the generalised eigenproblem  C w = λ D w  where C is the covariance of all views
concatenated ([Σp, Σp]) and D = blockdiag(C_11 + rI, …, C_mm + rI).  With Cholesky factor
D = L Lᵀ it is the symmetric problem (L⁻¹ C L⁻ᵀ) v = λ v, w = L⁻ᵀ v.  For two views
λ_k = 1 + ρ_k, so MCCA reduces to CCA; in general λ_k − 1 is an average pairwise agreement.

GCCA (Carroll's MAXVAR) finds a shared representation G [n, k] with GᵀG = I maximising
Σ_i ‖P_i G‖², where P_i projects onto view i's (ridge-regularised, optionally rank-truncated)
column space.  With each view's thin SVD X_i = U_i S_i V_iᵀ kept to ``view_rank`` components and
shrinkage s²/(s²+r), G is the top left singular vectors of [U_1 D_1, …, U_m D_m]; the per-view
weights map new data onto G.  Eigenvalues are Σ_i (squared correlation of view i with g_k).

    ==========  ================  ==================================
    name        shape             meaning
    ==========  ================  ==================================
    views       list of [n, p_i]  one matrix per view, same rows
    weights_    list of [p_i, k]  per-view projections
    transform   list of [n, k]    per-view canonical variates
    G_          [n, k]            GCCA's shared representation
    ==========  ================  ==================================
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .cca import _centre, covariance, robust_cholesky


def _prepare(views: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    if len(views) < 2:
        raise ValueError(f"multiview CCA needs at least 2 views, got {len(views)}")
    views = [torch.as_tensor(v).to(dtype) for v in views]
    n = views[0].shape[0]
    for i, v in enumerate(views):
        if v.dim() != 2:
            raise ValueError(f"view {i} must be [n, p], got shape {tuple(v.shape)}")
        if v.shape[0] != n:
            raise ValueError(f"view {i} has {v.shape[0]} rows, view 0 has {n}")
    return views


class _MultiviewBase:
    def __init__(self, n_components: int = 2, reg: float = 0.0, dtype: torch.dtype = torch.float64) -> None:
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def transform(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if not hasattr(self, "weights_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(views) first")
        if len(views) != len(self.weights_):
            raise ValueError(f"fitted on {len(self.weights_)} views, got {len(views)}")
        return [(torch.as_tensor(v).to(self.dtype) - m) @ w for v, m, w in zip(views, self.means_, self.weights_)]

    def fit_transform(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.fit(views).transform(views)

    def _unit_variance(self, centred: list[torch.Tensor]) -> None:
        """Scale each view's weights so its variates have unit sample variance."""
        for i, (x, w) in enumerate(zip(centred, self.weights_)):
            std = (x @ w).std(dim=0).clamp_min(1e-12)
            self.weights_[i] = w / std


class MCCA(_MultiviewBase):
    """Multiset CCA through the block generalised eigenproblem (sum-of-covariances form)."""

    def fit(self, views: Sequence[torch.Tensor]) -> "MCCA":
        views = _prepare(views, self.dtype)
        centred, self.means_ = zip(*(_centre(v) for v in views))
        centred = list(centred)
        full = covariance(torch.cat(centred, dim=1))
        sizes = [v.shape[1] for v in centred]
        if self.n_components > sum(sizes):
            raise ValueError(f"n_components={self.n_components} exceeds total width {sum(sizes)}")
        factors = []
        start = 0
        for p in sizes:
            block = full[start:start + p, start:start + p] + self.reg * torch.eye(p, dtype=full.dtype)
            factors.append(robust_cholesky(block))
            start += p
        lower = torch.block_diag(*factors)
        left = torch.linalg.solve_triangular(lower, full, upper=False)
        sym = torch.linalg.solve_triangular(lower, left.T, upper=False).T
        evals, evecs = torch.linalg.eigh((sym + sym.T) / 2)
        order = torch.argsort(evals, descending=True)[: self.n_components]
        self.eigenvalues_ = evals[order]
        w = torch.linalg.solve_triangular(lower.T, evecs[:, order], upper=True)
        self.weights_ = list(torch.split(w, sizes, dim=0))
        self._unit_variance(centred)
        return self


class GCCA(_MultiviewBase):
    """Generalised CCA (MAXVAR) with a shared representation and optional per-view rank truncation."""

    def __init__(self, n_components: int = 2, reg: float = 0.0, view_rank: int | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(n_components, reg, dtype)
        self.view_rank = view_rank

    def fit(self, views: Sequence[torch.Tensor]) -> "GCCA":
        views = _prepare(views, self.dtype)
        centred, self.means_ = zip(*(_centre(v) for v in views))
        centred = list(centred)
        n = centred[0].shape[0]
        bases, decomps = [], []
        for x in centred:
            u, s, vh = torch.linalg.svd(x, full_matrices=False)
            keep = s > s.max() * 1e-10
            if self.view_rank is not None:
                keep[self.view_rank:] = False
            u, s, vh = u[:, keep], s[keep], vh[keep]
            shrink = s**2 / (s**2 + self.reg * (n - 1))       # reg acts on the covariance scale
            bases.append(u * shrink.sqrt())
            decomps.append((u, s, vh, shrink))
        stacked = torch.cat(bases, dim=1)
        g, sg, _ = torch.linalg.svd(stacked, full_matrices=False)
        k = self.n_components
        if k > g.shape[1]:
            raise ValueError(f"n_components={k} exceeds the rank of the stacked views ({g.shape[1]})")
        self.G_ = g[:, :k]
        self.eigenvalues_ = sg[:k] ** 2
        # weights with X_i W_i = P_i G:  P_i = U_i diag(shrink) U_iᵀ, X_i⁺ = V_i S_i⁻¹ U_iᵀ
        self.weights_ = [vh.T @ ((shrink / s)[:, None] * (u.T @ self.G_)) for u, s, vh, shrink in decomps]
        self._unit_variance(centred)
        return self
