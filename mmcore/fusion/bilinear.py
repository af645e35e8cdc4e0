"""Multimodal factorized bilinear pooling (MFB / MLB) for any number of modalities."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import pooled, prepare, reset_children


class MFBFusion(nn.Module):
    r"""Multimodal factorized bilinear pooling (MFB, Yu et al. 2017), for any number of modalities.

    Papers: Yu et al. 2017, MFB (https://arxiv.org/abs/1708.01471); Kim et al. 2017, MLB
    (https://arxiv.org/abs/1610.04325).

    Maths.  Each modality is projected to ``k * o`` dimensions; the projections of the *present*
    modalities are multiplied elementwise (the factorised bilinear / multilinear form), sum-pooled
    over windows of ``k``, then power- and L2-normalised:

        p_m = U_m x_m                                      [B, k*o]
        e   = prod_{m in P(b)} p_m                         (elementwise)
        s   = SumPool_k(e)                                 [B, o]
        z   = normalize( sign(s) * sqrt(|s| + eps) )

    With two modalities and ``k = 1`` plus ``tanh`` on the projections this is MLB (Kim et al.
    2017; ``mlb=True``).  A missing modality is left out of the product (not multiplied in as a
    zero vector, which would zero the whole output); with one modality present ``e = p_m``; with
    none, ``z = 0``.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    output          [B, out_dim]          ``out_dim`` = o
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, factor: int = 4, dropout: float = 0.0,
                 mlb: bool = False) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.factor = 1 if mlb else factor
        self.mlb = mlb
        self.proj = nn.ModuleDict({m: nn.Linear(d, self.factor * out_dim) for m, d in self.in_dims.items()})
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        e = None
        any_present = None
        for m, x in feats.items():
            p = self.proj[m](x)
            if self.mlb:
                p = torch.tanh(p)
            keep = present[m].unsqueeze(-1)
            p = torch.where(keep, p, torch.ones_like(p))           # an absent factor is the identity 1
            e = p if e is None else e * p
            any_present = present[m] if any_present is None else any_present | present[m]
        e = self.dropout(e)
        s = e.view(e.shape[0], self.out_dim, self.factor).sum(-1)
        s = torch.sign(s) * torch.sqrt(s.abs() + 1e-8)
        z = F.normalize(s, dim=-1)
        return z * any_present.to(z.dtype).unsqueeze(-1)
