"""Tensor fusion network (TFN): the outer product of the modalities, each with a 1 appended."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import pooled, prepare, reset_children

MAX_TENSOR_SIZE = 2_000_000


def with_one(x: Tensor, keep: Tensor) -> Tensor:
    """``[1; x]`` on present rows, ``[1; 0]`` on absent ones."""
    x = x * keep.to(x.dtype).unsqueeze(-1)
    return torch.cat([torch.ones_like(x[:, :1]), x], dim=-1)


class TensorFusion(nn.Module):
    r"""Tensor fusion (TFN, Zadeh et al. 2017): the outer product of the modalities, each with a 1
    appended, so that unimodal, bimodal and all higher-order interaction terms appear explicitly.

    Paper: Zadeh et al. 2017, "Tensor Fusion Network for Multimodal Sentiment Analysis"
    (https://arxiv.org/abs/1707.07250).

    Maths.

        z = vec( [1; x_1] (x) [1; x_2] (x) ... (x) [1; x_M] )          size prod_m (D_m + 1)
        y = act( W z + b )

    The appended 1 is what makes exclusion exact: for a missing modality the factor is ``[1; 0]``,
    which removes every term involving that modality and leaves precisely the tensor product of the
    present modalities (embedded at the same coordinates), not an imputed input.  Keep ``D_m``
    small (project first): the tensor has ``prod_m (D_m + 1)`` entries.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    z               [B, prod(D_m + 1)]    internal
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, dropout: float = 0.0, activation: bool = True) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        size = math.prod(d + 1 for d in self.in_dims.values())
        if size > MAX_TENSOR_SIZE:
            raise ValueError(
                f"TFN tensor would have {size} entries per sample (dims {self.in_dims}); project the modalities "
                f"to smaller widths first, or use LowRankFusion"
            )
        self.tensor_size = size
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(size, out_dim)
        self.act = nn.GELU() if activation else nn.Identity()

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        b = next(iter(feats.values())).shape[0]
        ref = next(iter(feats.values()))
        z = torch.ones(b, 1, dtype=ref.dtype, device=ref.device)
        for m, d in self.in_dims.items():        # fixed order: the coordinates of z never move
            if m in feats:
                factor = with_one(feats[m], present[m])
            else:
                factor = torch.zeros(b, d + 1, dtype=ref.dtype, device=ref.device)
                factor[:, 0] = 1.0
            z = torch.einsum("bi,bj->bij", z, factor).reshape(b, -1)
        return self.act(self.out(self.dropout(z)))
