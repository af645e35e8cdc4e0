"""Domain alignment losses and gradient reversal.

* :func:`coral_loss` (Sun & Saenko 2016): ``||C_s - C_t||_F^2 / (4 d^2)`` with ``C`` the
  feature covariances (unbiased, ``1/(n-1)``).
* :func:`mmd_loss`: the biased (V-statistic) squared MMD with a sum of Gaussian kernels
  ``k(a, b) = sum_s exp(-||a - b||^2 / (2 s^2))`` over ``bandwidths`` (default: the median
  pairwise distance times 0.5, 1, 2)::

      MMD^2 = mean k(S, S) + mean k(T, T) - 2 mean k(S, T)

* :class:`GradientReversal`: identity forward, ``-lambda * grad`` backward (Ganin & Lempitsky
  2015), and :class:`DomainClassifier` (GRL -> MLP -> one logit: source vs target).

``x``: ``[N, d]`` source features, ``y``: ``[M, d]`` target features.  Use these to align the
features a translator/hallucination net produces with those of the real modality, or a model's
features across domains (see :mod:`mmcore.missing.adapt`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _covariance(x: Tensor) -> Tensor:
    x = x - x.mean(0, keepdim=True)
    return x.T @ x / max(1, x.shape[0] - 1)


def coral_loss(x: Tensor, y: Tensor) -> Tensor:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"CORAL needs [N, d] and [M, d] features, got {tuple(x.shape)} and {tuple(y.shape)}")
    d = x.shape[1]
    return ((_covariance(x) - _covariance(y)) ** 2).sum() / (4 * d * d)


def mmd_loss(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None) -> Tensor:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD needs [N, d] and [M, d] features, got {tuple(x.shape)} and {tuple(y.shape)}")
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    if bandwidths is None:
        with torch.no_grad():
            med = d2[d2 > 0].median().sqrt() if bool((d2 > 0).any()) else torch.tensor(1.0)
        bandwidths = [float(med) * s for s in (0.5, 1.0, 2.0)]
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lambd * grad, None


class GradientReversal(nn.Module):
    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return _Reverse.apply(x, self.lambd)


class DomainClassifier(nn.Module):
    """GRL -> MLP -> logit (target = 1).  Minimising its BCE trains it to tell the domains apart
    and, through the reversed gradient, the feature extractor to make them indistinguishable."""

    def __init__(self, dim: int, hidden: int = 64, lambd: float = 1.0) -> None:
        super().__init__()
        self.grl = GradientReversal(lambd)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(self.grl(features)).squeeze(-1)
