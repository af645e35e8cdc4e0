"""Linear canonical correlation analysis for two views, in torch, batched, with ridge regularisation.

Given centred views X [n, p] and Y [n, q], CCA finds directions a_k, b_k maximising
corr(X a_k, Y b_k) subject to the canonical variates being uncorrelated with earlier ones.
With C_xx = XᵀX/(n−1) + r_x I, C_yy likewise and C_xy = XᵀY/(n−1), write the Cholesky factors
C_xx = L_x L_xᵀ, C_yy = L_y L_yᵀ and the whitened cross-covariance

    T = L_x⁻¹ C_xy L_y⁻ᵀ            (p × q)

Its singular values are the canonical correlations ρ_1 ≥ ρ_2 ≥ … and, with T = U S Vᵀ, the
weights are A = L_x⁻ᵀ U, B = L_y⁻ᵀ V.  (L_x⁻¹ differs from C_xx^{-1/2} by an orthogonal factor,
so the singular values are those of the symmetric-square-root form; Cholesky and triangular
solves are cheaper and better conditioned than an eigendecomposition.)

Shapes (``...`` are optional leading batch dimensions, shared by both views):

    ============  ===============  =========================================
    name          shape            meaning
    ============  ===============  =========================================
    X, Y          [..., n, p/q]    samples × features
    correlations  [..., k]         canonical correlations, descending
    x_weights_    [..., p, k]      A, so X_c A has identity covariance (r=0)
    transform     [..., n, k]      canonical variates of each view
    ============  ===============  =========================================
"""
from __future__ import annotations

import torch


def _centre(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=-2, keepdim=True)
    return x - mean, mean


def covariance(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Sample (cross-)covariance of already-centred data, [..., n, p] × [..., n, q] -> [..., p, q]."""
    y = x if y is None else y
    n = x.shape[-2]
    if n < 2:
        raise ValueError(f"covariance needs at least 2 samples, got n={n}")
    return x.transpose(-1, -2) @ y / (n - 1)


def _ridge(c: torch.Tensor, reg: float) -> torch.Tensor:
    if reg:
        c = c + reg * torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
    return c


def robust_cholesky(c: torch.Tensor, jitter: float = 1e-10, max_tries: int = 8) -> torch.Tensor:
    """Cholesky factor of a symmetric PSD matrix, adding growing diagonal jitter if it is singular.

    Jitter is scaled by the mean diagonal so it means the same thing for any feature scale.
    """
    factor, info = torch.linalg.cholesky_ex(c)
    if not bool((info > 0).any()):
        return factor
    scale = c.diagonal(dim1=-2, dim2=-1).mean(dim=-1).abs().clamp_min(1e-12)[..., None, None]
    eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
    for attempt in range(max_tries):
        factor, info = torch.linalg.cholesky_ex(c + (jitter * 10**attempt) * scale * eye)
        if not bool((info > 0).any()):
            return factor
    raise torch.linalg.LinAlgError("covariance is not positive definite even with jitter; raise `reg`")


def whitened_cross_covariance(x: torch.Tensor, y: torch.Tensor, reg_x: float = 0.0, reg_y: float = 0.0):
    """T = L_x⁻¹ C_xy L_y⁻ᵀ for centred views, plus the two Cholesky factors."""
    lx = robust_cholesky(_ridge(covariance(x), reg_x))
    ly = robust_cholesky(_ridge(covariance(y), reg_y))
    cxy = covariance(x, y)
    left = torch.linalg.solve_triangular(lx, cxy, upper=False)                     # L_x⁻¹ C_xy
    t = torch.linalg.solve_triangular(ly, left.transpose(-1, -2), upper=False).transpose(-1, -2)
    return t, lx, ly


def canonical_correlations(x: torch.Tensor, y: torch.Tensor, reg: float = 0.0, k: int | None = None) -> torch.Tensor:
    """The top-k sample canonical correlations of two views ([..., n, p], [..., n, q]) -> [..., k]."""
    x, _ = _centre(x)
    y, _ = _centre(y)
    t, _, _ = whitened_cross_covariance(x, y, reg, reg)
    s = torch.linalg.svdvals(t)
    return s if k is None else s[..., :k]


class LinearCCA:
    """Two-view linear CCA with a scikit-learn-like ``fit``/``transform``.

    ``reg`` adds ``reg·I`` to each view's covariance (ridge CCA).  Everything is computed in
    ``dtype`` (float64 by default) and works on batched inputs [..., n, p].
    """

    def __init__(self, n_components: int = 2, reg: float = 0.0, dtype: torch.dtype = torch.float64) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "LinearCCA":
        x = torch.as_tensor(x).to(self.dtype)
        y = torch.as_tensor(y).to(self.dtype)
        if x.shape[-2] != y.shape[-2]:
            raise ValueError(f"views disagree on the number of samples: {x.shape[-2]} vs {y.shape[-2]}")
        k = min(self.n_components, x.shape[-1], y.shape[-1])
        if k < self.n_components:
            raise ValueError(f"n_components={self.n_components} exceeds the smaller view width {k}")
        xc, self.x_mean_ = _centre(x)
        yc, self.y_mean_ = _centre(y)
        t, lx, ly = whitened_cross_covariance(xc, yc, self.reg, self.reg)
        u, s, vh = torch.linalg.svd(t, full_matrices=False)
        u, s, v = u[..., :k], s[..., :k], vh.transpose(-1, -2)[..., :k]
        self.x_weights_ = torch.linalg.solve_triangular(lx.transpose(-1, -2), u, upper=True)
        self.y_weights_ = torch.linalg.solve_triangular(ly.transpose(-1, -2), v, upper=True)
        self.correlations_ = s
        return self

    def _check(self) -> None:
        if not hasattr(self, "x_weights_"):
            raise RuntimeError("LinearCCA is not fitted; call fit(x, y) first")

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Canonical variates: [..., n, k] for x (and y when given)."""
        self._check()
        zx = (torch.as_tensor(x).to(self.dtype) - self.x_mean_) @ self.x_weights_
        if y is None:
            return zx
        zy = (torch.as_tensor(y).to(self.dtype) - self.y_mean_) @ self.y_weights_
        return zx, zy

    def fit_transform(self, x: torch.Tensor, y: torch.Tensor):
        return self.fit(x, y).transform(x, y)

    def score(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-component Pearson correlation of the variates on (possibly new) data, [..., k]."""
        zx, zy = self.transform(x, y)
        zx, _ = _centre(zx)
        zy, _ = _centre(zy)
        return (zx * zy).sum(-2) / (zx.norm(dim=-2) * zy.norm(dim=-2)).clamp_min(1e-12)


def population_canonical_correlations(cxx: torch.Tensor, cyy: torch.Tensor, cxy: torch.Tensor) -> torch.Tensor:
    """Canonical correlations from known covariances (e.g. a generator's), descending."""
    lx = robust_cholesky(cxx.to(torch.float64))
    ly = robust_cholesky(cyy.to(torch.float64))
    left = torch.linalg.solve_triangular(lx, cxy.to(torch.float64), upper=False)
    t = torch.linalg.solve_triangular(ly, left.transpose(-1, -2), upper=False).transpose(-1, -2)
    return torch.linalg.svdvals(t)
