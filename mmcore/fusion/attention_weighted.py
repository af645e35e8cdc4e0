"""Attention-weighted modality fusion: a learned score per modality, softmax over the present ones."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import masked_softmax, pooled, prepare, reset_children


class AttentionWeightedFusion(nn.Module):
    r"""Attention-weighted modality fusion: a learned score per modality, softmax over the present ones.

    Paper: modality attention as in Hori et al. 2017, "Attention-Based Multimodal Fusion for Video
    Description" (https://arxiv.org/abs/1701.03126).

    Maths.  Each modality is projected to a common width, scored, and the scores are normalised
    over the present set ``P(b)`` only:

        h_m = W_m x_m + c_m                              (per-modality projection)
        s_m = v^T tanh(U h_m + e)                        (shared scorer)
        a_{b,m} = exp(s_{b,m}) / sum_{k in P(b)} exp(s_{b,k})   for m in P(b), 0 otherwise
        z_b = sum_{m in P(b)} a_{b,m} h_{b,m}

    so dropping a modality renormalises the others' weights instead of diluting them with a zero
    vector.  A sample with no modality gets ``z_b = 0``.  ``return_weights=True`` also returns
    ``a`` (``[B, M]``, columns in the order of ``features``) for inspection.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, score_dim: int | None = None) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.scorer = nn.Sequential(nn.Linear(out_dim, score_dim or out_dim), nn.Tanh(),
                                    nn.Linear(score_dim or out_dim, 1, bias=False))

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None, return_weights: bool = False):
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        names = list(feats)
        h = torch.stack([self.proj[m](feats[m]) for m in names], 1)            # [B, M, D]
        mask = torch.stack([present[m] for m in names], 1)                     # [B, M]
        weights = masked_softmax(self.scorer(h).squeeze(-1), mask, dim=1)     # [B, M]
        z = (h * weights.unsqueeze(-1)).sum(1)
        return (z, weights) if return_weights else z
