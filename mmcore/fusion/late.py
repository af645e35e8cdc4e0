"""Late fusion: per-modality predictions averaged over the present modalities."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ._common import masked_softmax, pooled, prepare, reset_children


class LateFusion(nn.Module):
    r"""Late fusion: per-modality predictions (logits) averaged over the *present* modalities.

    Paper: early vs late fusion, Snoek et al. 2005 (https://doi.org/10.1145/1101149.1101236); taxonomy in
    Baltrušaitis et al. 2019 (https://arxiv.org/abs/1705.09406).

    Maths.  Each modality ``m`` gives a prediction ``y_m`` (its features themselves, or
    ``y_m = H_m x_m`` with a per-modality linear head when ``in_dims`` is given).  With the present
    set ``P(b)`` of sample ``b``,

        mean:      z_b = (1 / |P(b)|) * sum_{m in P(b)} y_{b,m}
        weighted:  z_b = sum_{m in P(b)} softmax_{m in P(b)}(w)_m * y_{b,m}

    ``w`` is one learned logit per modality; the softmax runs over the present modalities only, so
    the weights of the present ones renormalise to 1.  A sample with no modality gets ``z_b = 0``
    (uniform logits).

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           logits, or features when ``in_dims`` builds heads;
                    [B, T_m, D_m]         tokens are mean-pooled over ``token_mask``
    present[m]      [B] bool
    output          [B, out_dim]          ``out_dim`` = the heads' width or the logits' width
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int] | Sequence[str], out_dim: int | None = None,
                 mode: str = "mean") -> None:
        """``in_dims`` a dict with ``out_dim`` builds a linear head per modality; a list of names
        (or ``out_dim=None``) fuses the given logits directly."""
        super().__init__()
        if mode not in ("mean", "weighted"):
            raise ValueError(f"mode must be 'mean' or 'weighted', got '{mode}'")
        self.mode = mode
        self.modalities = list(in_dims)
        if isinstance(in_dims, Mapping) and out_dim is not None:
            self.heads = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in in_dims.items()})
        else:
            self.heads = None
        self.out_dim = out_dim
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities))) if mode == "weighted" else None

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        if self.weight_logits is not None:
            nn.init.zeros_(self.weight_logits)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.modalities, token_mask)
        feats = pooled(features, token_mask)
        names = list(feats)
        preds = torch.stack([self.heads[m](feats[m]) if self.heads is not None else feats[m] for m in names], 1)
        mask = torch.stack([present[m] for m in names], 1)                      # [B, M]
        if self.mode == "weighted":
            index = torch.tensor([self.modalities.index(m) for m in names], device=preds.device)
            scores = self.weight_logits[index].unsqueeze(0).expand(mask.shape)
            weights = masked_softmax(scores, mask, dim=1)
        else:
            weights = mask.to(preds.dtype) / mask.sum(1, keepdim=True).clamp(min=1).to(preds.dtype)
        return (preds * weights.unsqueeze(-1)).sum(1)
