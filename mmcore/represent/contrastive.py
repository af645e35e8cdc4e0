"""CLIP's symmetric InfoNCE and SigLIP's sigmoid loss, with an optional cross-rank gather.

CLIP (Radford et al. 2021).  For embeddings a [B, d], b [B, d] (L2-normalised unless
``normalize=False``) and s = exp(logit_scale) clamped to ``max_scale``:

    logits = s · a bᵀ                                  [B, B]
    loss   = ½ (CE(logits, diag) + CE(logitsᵀ, diag))   mean over rows, averaged over directions

With ``torch.manual_seed(1234); a, b = torch.randn(3, 5), torch.randn(3, 5)`` and
logit_scale = ln(1/0.07), no normalisation, the loss is 9.8753 (10.2524 with label smoothing
0.1): the two directions are *averaged*, not summed.  Label smoothing spreads ε over the row's
valid columns.  ``pair_mask`` [B, B] (True = the pair takes part) removes known false negatives
from the softmax; the diagonal must stay True.  ``present`` [B] drops rows with an absent modality
from rows *and* columns.

SigLIP (Zhai et al. 2023): with t = exp(t'), bias β and z_ij = +1 on the diagonal, −1 elsewhere,
loss = −(1/B) Σ_ij log σ(z_ij (t a_i·b_j + β)).

Distributed mode (``gather=True`` under torchrun).  Each rank gathers every rank's embeddings with
an autograd-aware all-gather (backward all-reduces and keeps its own slice) and computes the loss
of its *local rows* against *all* columns, normalised so the mean of the ranks' losses equals the
single-process loss on the whole batch; DDP's gradient averaging then reproduces the whole-batch
gradients exactly.  (Per rank, ∂loss_r/∂(local embeddings) summed over ranks = world × the
single-process gradient, which DDP's 1/world cancels.)
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = torch.tensor([x.shape[0]], device=x.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
        dist.all_gather(all_sizes, sizes)
        all_sizes = [int(s) for s in all_sizes]
        if len(set(all_sizes)) != 1:
            raise ValueError(f"contrastive gather needs equal per-rank batch sizes, got {all_sizes}")
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.size = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def distributed_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(all ranks' rows concatenated in rank order, offset of this rank's rows)."""
    if not distributed_ready():
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


def _gather_plain(x: torch.Tensor) -> torch.Tensor:
    if not distributed_ready():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def _world() -> int:
    return dist.get_world_size() if distributed_ready() else 1


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"expected two [B, d] embeddings of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _smoothed_ce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-row cross-entropy with label smoothing over each row's valid columns. [R, C] -> [R]."""
    logits = logits.masked_fill(~valid, float("-inf"))
    logp = logits.log_softmax(dim=1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    if eps == 0:
        return nll
    uniform = -(logp.masked_fill(~valid, 0).sum(1)) / valid.sum(1).clamp_min(1)
    return (1 - eps) * nll + eps * uniform


def _row_mean(per_row: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Σ over kept local rows × world / (kept rows over all ranks): ranks' mean = global mean."""
    total = keep.sum().to(per_row.dtype)
    if distributed_ready():
        total = total.detach().clone()
        dist.all_reduce(total)
    return per_row[keep].sum() * _world() / total.clamp_min(1)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE with a learnable temperature (``logit_scale`` = ln(1/τ), clamped)."""

    def __init__(self, init_temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0,
                 label_smoothing: float = 0.0, normalize: bool = True, gather: bool = True) -> None:
        super().__init__()
        value = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)
        self.max_log_scale = math.log(max_scale)
        self.label_smoothing, self.normalize, self.gather = label_smoothing, normalize, gather

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return self.scale * a @ b.T

    def forward(self, a: torch.Tensor, b: torch.Tensor, pair_mask: torch.Tensor | None = None,
                present: torch.Tensor | None = None) -> torch.Tensor:
        """a, b: [B, d] (local rows); pair_mask: [B, B_global]; present: [B] -> scalar loss."""
        _check(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        n = a.shape[0]
        keep = torch.ones(n, dtype=torch.bool, device=a.device) if present is None else present.to(a.device).bool()
        if self.gather:
            all_a, offset = gather_with_grad(a)
            all_b, _ = gather_with_grad(b)
            all_keep = _gather_plain(keep)
        else:
            all_a, all_b, offset, all_keep = a, b, 0, keep
        target = torch.arange(n, device=a.device) + offset
        valid = all_keep[None, :].expand(n, -1).clone()
        if pair_mask is not None:
            if pair_mask.shape != valid.shape:
                raise ValueError(f"pair_mask must be [{n}, {valid.shape[1]}], got {tuple(pair_mask.shape)}")
            if not bool(pair_mask[torch.arange(n), target].all()):
                raise ValueError("pair_mask must keep every positive pair (the diagonal) True")
            valid &= pair_mask.to(a.device).bool()
        s = self.scale
        # only kept rows enter the softmax: an absent row's own column is masked, and a row of
        # all -inf would give NaN gradients even if its loss were discarded afterwards
        a_rows, b_rows, target, valid = a[keep], b[keep], target[keep], valid[keep]
        per_row_ab = _smoothed_ce(s * a_rows @ all_b.T, target, valid, self.label_smoothing)
        per_row_ba = _smoothed_ce(s * b_rows @ all_a.T, target, valid, self.label_smoothing)
        everyone = torch.ones_like(per_row_ab, dtype=torch.bool)
        return 0.5 * (_row_mean(per_row_ab, everyone) + _row_mean(per_row_ba, everyone))


class SigLipLoss(nn.Module):
    """Pairwise sigmoid loss with learnable temperature and bias (init t' = ln 10, β = −10)."""

    def __init__(self, init_log_scale: float = math.log(10.0), init_bias: float = -10.0,
                 normalize: bool = True, gather: bool = True) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init_log_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.normalize, self.gather = normalize, gather

    def forward(self, a: torch.Tensor, b: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        _check(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        n = a.shape[0]
        keep = torch.ones(n, dtype=torch.bool, device=a.device) if present is None else present.to(a.device).bool()
        if self.gather:
            all_b, offset = gather_with_grad(b)
            all_keep = _gather_plain(keep)
        else:
            all_b, offset, all_keep = b, 0, keep
        logits = self.log_scale.exp() * a @ all_b.T + self.bias
        labels = -torch.ones_like(logits)
        labels[torch.arange(n), torch.arange(n) + offset] = 1.0
        per_pair = -F.logsigmoid(labels * logits) * all_keep[None, :]
        return _row_mean(per_pair.sum(1), keep)


def infonce_mi_estimate(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE lower bound on I(X; Y) from a critic matrix scores[i, j] = f(x_i, y_j), positives on the diagonal.

    I_NCE = ln B − CE(scores, diag) ≤ ln B: it can never exceed the log batch size.
    """
    b = scores.shape[0]
    return math.log(b) - F.cross_entropy(scores, torch.arange(b, device=scores.device))
