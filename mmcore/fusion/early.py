"""Early fusion: the modalities' features concatenated (present ones only) and projected."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import pooled, prepare, reset_children


class EarlyFusion(nn.Module):
    r"""Early fusion: concatenate the modalities' features and project them.

    Paper: early vs late fusion, Snoek et al. 2005 (https://doi.org/10.1145/1101149.1101236); taxonomy in
    Baltrušaitis et al. 2019 (https://arxiv.org/abs/1705.09406).

    Maths.  With per-modality blocks ``W_m`` of one linear map ``W = [W_1 | ... | W_M]``,

        z = act( W [x_1; ...; x_M] + b ) = act( sum_m W_m x_m + b )

    and a missing modality is *excluded*: its block is dropped from the sum, i.e. the output is
    exactly the projection of the concatenation of the present modalities only (never a
    concatenation with zeros standing in for the absent ones, which would let placeholder values and
    the bias of a zero input leak in through normalisation layers downstream).

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           token features are mean-pooled over ``token_mask``
                    [B, T_m, D_m]
    present[m]      [B] bool              False rows add nothing
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "pooled"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, activation: str = "gelu") -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim
        self.blocks = nn.ModuleDict({m: nn.Linear(d, out_dim, bias=False) for m, d in self.in_dims.items()})
        self.bias = nn.Parameter(torch.zeros(out_dim))
        if activation not in ("gelu", "relu", "none"):
            raise ValueError(f"activation must be gelu, relu or none, got '{activation}'")
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), "none": nn.Identity()}[activation]

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        nn.init.zeros_(self.bias)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        z = self.bias
        for name, x in feats.items():
            keep = present[name].to(x.dtype).unsqueeze(-1)
            z = z + self.blocks[name](x) * keep
        return self.act(z)
