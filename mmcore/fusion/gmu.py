"""Gated multimodal unit (GMU) for any number of modalities."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import masked_softmax, pooled, prepare, reset_children


class GMUFusion(nn.Module):
    r"""Gated multimodal unit (GMU, Arevalo et al. 2017), for any number of modalities.

    Paper: Arevalo et al. 2017, "Gated Multimodal Units for Information Fusion"
    (https://arxiv.org/abs/1702.01992).

    Maths.  Every modality proposes a candidate ``h_m``; gates computed from all present inputs
    decide, feature by feature, how much of each candidate to keep:

        h_m = tanh(W_m x_m)                                       [B, D]
        g_m = sum_{k in P(b)} U_{m,k} x_k + c_m                   [B, D] gate logits
        a_m = softmax over m in P(b) of g_m   (per feature)
        z   = sum_{m in P(b)} a_m * h_m

    With two modalities the softmax is the bimodal GMU's ``sigma(g_1 - g_2)`` and ``1 - sigma``.
    The gate input is the concatenation of the *present* inputs (absent blocks dropped from the
    sum, as in :class:`~mmcore.fusion.early.EarlyFusion`), and the softmax runs over the present
    modalities only.  A sample with no modality gets ``z = 0``.

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

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.modalities = list(self.in_dims)
        self.out_dim = out_dim
        n = len(self.modalities)
        self.candidate = nn.ModuleDict({m: nn.Linear(d, out_dim, bias=False) for m, d in self.in_dims.items()})
        # one block per input modality, producing the gate logits of all n modalities at once
        self.gate_blocks = nn.ModuleDict({m: nn.Linear(d, n * out_dim, bias=False) for m, d in self.in_dims.items()})
        self.gate_bias = nn.Parameter(torch.zeros(n, out_dim))

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        nn.init.zeros_(self.gate_bias)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        feats = pooled(features, token_mask)
        names = list(feats)
        b = next(iter(feats.values())).shape[0]
        gate = self.gate_bias.expand(b, -1, -1)
        for m in names:
            keep = present[m].to(feats[m].dtype).view(-1, 1, 1)
            gate = gate + self.gate_blocks[m](feats[m]).view(b, -1, self.out_dim) * keep
        index = torch.tensor([self.modalities.index(m) for m in names], device=gate.device)
        gate = gate.index_select(1, index)                                          # [B, M, D]
        cand = torch.stack([torch.tanh(self.candidate[m](feats[m])) for m in names], 1)
        mask = torch.stack([present[m] for m in names], 1).unsqueeze(-1).expand_as(gate)
        weights = masked_softmax(gate, mask, dim=1)
        return (weights * cand).sum(1)
