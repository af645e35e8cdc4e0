"""Helpers every fusion module shares: input checks, present masks, token pooling, masked means.

The fusion contract:

* ``features``: modality -> ``[B, D_m]`` (pooled) or ``[B, T_m, D_m]`` (tokens).
* ``present``: modality -> ``[B]`` bool, True where the sample has the modality; ``None`` means
  every given modality is present in every row.
* ``token_mask`` (optional): modality -> ``[B, T_m]`` bool, True on real (non-padding) tokens.

A modality that is not a key of ``features`` is *omitted*; a modality whose ``present`` row is
False is *masked*.  Every module gives the same output (up to float rounding) in both cases:
placeholder rows are never read into the result.  :func:`prepare` makes that hold for any
placeholder value, NaN and ±inf included: absent rows and padding tokens are *selected* away
(``torch.where``) before any arithmetic, because multiplying by a zero mask does not remove a
non-finite value (``0 · inf = nan``).  No gradient reaches a placeholder either.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

Features = Mapping[str, Tensor]
Masks = Mapping[str, Tensor]


def batch_size_of(features: Features) -> int:
    sizes = {name: int(x.shape[0]) for name, x in features.items()}
    if not sizes:
        raise ValueError("fusion got no modality features at all; pass at least one modality (masked rows are fine)")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"modalities disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def check_inputs(
    features: Features,
    present: Masks | None,
    known: Iterable[str],
    token_mask: Masks | None = None,
) -> dict[str, Tensor]:
    """Validate the inputs and return a full ``present`` dict for the modalities in ``features``.

    Raises ``KeyError`` for a modality the module was not built for and ``ValueError`` for a
    mask of the wrong shape or dtype, naming the modality.
    """
    known = list(known)
    unknown = [m for m in features if m not in known]
    if unknown:
        raise KeyError(f"fusion was built for modalities {known}, got unknown {unknown}")
    b = batch_size_of(features)
    out: dict[str, Tensor] = {}
    for name, x in features.items():
        if present is None or name not in present:
            if present is not None:
                raise KeyError(f"modality '{name}' has features but no present mask")
            mask = torch.ones(b, dtype=torch.bool, device=x.device)
        else:
            mask = present[name]
            if mask.dtype != torch.bool or tuple(mask.shape) != (b,):
                raise ValueError(
                    f"present mask of '{name}' must be bool of shape ({b},), got {mask.dtype} {tuple(mask.shape)}"
                )
        out[name] = mask.to(x.device)
        if token_mask is not None and name in token_mask:
            tm = token_mask[name]
            if x.dim() != 3 or tuple(tm.shape) != tuple(x.shape[:2]) or tm.dtype != torch.bool:
                raise ValueError(
                    f"token_mask of '{name}' must be bool [B, T] matching features {tuple(x.shape)}, "
                    f"got {tm.dtype} {tuple(tm.shape)}"
                )
    return out


def select_present(features: Features, present: Masks, token_mask: Masks | None = None) -> dict[str, Tensor]:
    """``features`` with every absent row, and every padding token, replaced by 0 via ``torch.where``.

    Modules still exclude those rows by their masks; this only guarantees that what sits in a
    placeholder (NaN, ±inf, garbage) cannot reach the output or the gradients.
    """
    token_mask = token_mask or {}
    out = {}
    for name, x in features.items():
        keep = present[name].view(-1, *([1] * (x.dim() - 1)))
        if name in token_mask and x.dim() == 3:
            keep = keep & token_mask[name].unsqueeze(-1)
        out[name] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return out


def prepare(
    features: Features,
    present: Masks | None,
    known: Iterable[str],
    token_mask: Masks | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """:func:`check_inputs` then :func:`select_present`: ``(clean features, full present masks)``."""
    masks = check_inputs(features, present, known, token_mask)
    return select_present(features, masks, token_mask), masks


def as_tokens(x: Tensor) -> Tensor:
    """``[B, D]`` -> ``[B, 1, D]``; ``[B, T, D]`` unchanged."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3:
        return x
    raise ValueError(f"features must be [B, D] or [B, T, D], got shape {tuple(x.shape)}")


def pool_tokens(x: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """Mean over the real tokens: ``[B, T, D]`` -> ``[B, D]``; ``[B, D]`` is returned as is."""
    if x.dim() == 2:
        return x
    if x.dim() != 3:
        raise ValueError(f"features must be [B, D] or [B, T, D], got shape {tuple(x.shape)}")
    if token_mask is None:
        return x.mean(dim=1)
    keep = token_mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)


def pooled(features: Features, token_mask: Masks | None) -> dict[str, Tensor]:
    token_mask = token_mask or {}
    return {m: pool_tokens(x, token_mask.get(m)) for m, x in features.items()}


def masked_mean(values: list[Tensor], weights: list[Tensor]) -> Tensor:
    """``sum_m w_m v_m / sum_m w_m`` per row; rows with no weight give zeros.

    ``values``: ``[B, ...]`` each; ``weights``: ``[B]`` each (0/1 present masks or probabilities).
    A row of zero weight is selected away (not multiplied by 0), so it adds exactly 0 whatever
    its value, NaN and inf included.
    """
    total = None
    count = None
    for v, w in zip(values, weights):
        w = w.to(v.dtype).view(-1, *([1] * (v.dim() - 1)))
        term = torch.where(w != 0, v * w, torch.zeros((), dtype=v.dtype, device=v.device))
        total = term if total is None else total + term
        count = w if count is None else count + w
    if total is None:
        raise ValueError("masked_mean of no values")
    return torch.where(count > 0, total / count.clamp(min=1e-12), torch.zeros((), dtype=total.dtype, device=total.device))


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the True entries of ``mask`` only; all-False slices give all zeros (not NaN)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    any_valid = mask.any(dim=dim, keepdim=True)
    scores = torch.where(any_valid, scores, torch.zeros_like(scores))
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


def reset_children(module: nn.Module) -> None:
    """Call ``reset_parameters()`` on every submodule that has one, descending only into those
    that do not (containers, plain blocks), so each layer is re-initialised exactly once."""
    for child in module.children():
        if callable(getattr(child, "reset_parameters", None)):
            child.reset_parameters()
        else:
            reset_children(child)
