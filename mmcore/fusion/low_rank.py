"""Low-rank multimodal fusion (LMF): TFN's weight tensor in rank-R factors."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import pooled, prepare
from .tensor import with_one


class LowRankFusion(nn.Module):
    r"""Low-rank multimodal fusion (LMF, Liu et al. 2018): TFN's weight tensor in rank-R factors.

    Paper: Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with Modality-Specific Factors"
    (https://arxiv.org/abs/1806.00064).

    Maths.  TFN computes ``y = W . ([1;x_1] (x) ... (x) [1;x_M])``; LMF factorises ``W`` as
    ``sum_r lambda_r  w_1^(r) (x) ... (x) w_M^(r)`` so that, with no tensor ever built,

        y = sum_{r=1..R} lambda_r * prod_m ( [1; x_m]^T W_m^(r) ) + b          W_m^(r): [D_m + 1, out]

    Every factor ``W_m`` (``[R, D_m + 1, out]``), the rank weights ``lambda`` and ``b`` are
    registered ``nn.Parameter``s, so all of them train (some public implementations keep the
    factors in a plain Python list, where the optimizer never sees them).  A missing modality's
    factor is ``[1; 0]``, i.e. its term reduces to the bias row ``W_m^(r)[0]``: exactly the LMF of
    the present modalities, as in :class:`~mmcore.fusion.tensor.TensorFusion`.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           tokens are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool
    factors[m]      [R, D_m + 1, out]     parameters
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, rank: int = 4, activation: bool = True) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.rank = rank
        self.factors = nn.ParameterDict({
            m: nn.Parameter(torch.empty(rank, d + 1, out_dim)) for m, d in self.in_dims.items()
        })
        self.rank_weights = nn.Parameter(torch.empty(rank))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.act = nn.GELU() if activation else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        for f in self.factors.values():
            nn.init.xavier_normal_(f)
            with torch.no_grad():
                f[:, 0] += 1.0          # start near "product of ones" so many factors do not vanish
        nn.init.normal_(self.rank_weights, std=1.0 / self.rank)
        nn.init.zeros_(self.bias)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        prod = None
        for m in self.in_dims:
            if m in feats:
                term = torch.einsum("bd,rdo->bro", with_one(feats[m], present[m]), self.factors[m])
            else:
                term = self.factors[m][:, 0].unsqueeze(0)        # [1, R, out]: the [1; 0] factor
            prod = term if prod is None else prod * term
        y = torch.einsum("bro,r->bo", prod, self.rank_weights) + self.bias
        return self.act(y)
