"""Non-local gate (NL-gate): a primary modality queries the others."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import as_tokens, masked_mean, masked_softmax, pool_tokens, prepare, reset_children


class NLGateFusion(nn.Module):
    r"""Non-local gate (NL-gate, Wang et al. 2020 "What makes training multi-modal classification
    networks hard?"): a primary modality queries the others and adds what it reads to itself.

    Paper: Wang, Tran & Feiszli 2020, "What Makes Training Multi-modal Classification Networks Hard?"
    (https://arxiv.org/abs/1905.12681).

    Maths.  With the primary modality ``p``'s projected tokens ``h_p`` and the tokens of the other
    *present* modalities stacked as ``S`` (absent modalities and padding excluded from the keys):

        q = W_q h_p,   k = W_k S,   v = W_v S
        a = softmax_{keys present}(q k^T / sqrt(D))          (rows with no key: a = 0)
        z_tokens = h_p + W_o (a v)
        z = mean over h_p's real tokens of z_tokens

    so the other modalities *gate* information into the primary stream.  When the primary modality
    itself is missing, ``z`` is the mean over the present other modalities of their pooled
    projections; with nothing present ``z = 0``.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, D_m] or           pooled features act as a single token
                    [B, T_m, D_m]
    present[m]      [B] bool
    token_mask[m]   [B, T_m] bool         optional padding mask
    output          [B, out_dim]
    ==============  ====================  ====================================================
    """

    input_kind = "any"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, primary: str | None = None) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.primary = primary or next(iter(self.in_dims))
        if self.primary not in self.in_dims:
            raise ValueError(f"primary modality '{self.primary}' is not one of {list(self.in_dims)}")
        self.out_dim = out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.q = nn.Linear(out_dim, out_dim, bias=False)
        self.k = nn.Linear(out_dim, out_dim, bias=False)
        self.v = nn.Linear(out_dim, out_dim, bias=False)
        self.o = nn.Linear(out_dim, out_dim)

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        token_mask = token_mask or {}
        tokens, valid = {}, {}
        for m, x in features.items():
            t = as_tokens(x)
            tokens[m] = self.proj[m](t)
            tm = token_mask.get(m, torch.ones(t.shape[:2], dtype=torch.bool, device=t.device))
            valid[m] = tm & present[m].unsqueeze(1)
        others = [m for m in features if m != self.primary]
        fallback = masked_mean([pool_tokens(tokens[m], token_mask.get(m)) for m in others],
                               [present[m] for m in others]) if others else None
        if self.primary not in features:
            if fallback is None:
                raise ValueError("NLGateFusion got no modality")
            return fallback
        hp = tokens[self.primary]
        if others:
            s = torch.cat([tokens[m] for m in others], 1)
            s_valid = torch.cat([valid[m] for m in others], 1)                      # [B, S]
            scores = self.q(hp) @ self.k(s).transpose(1, 2) / math.sqrt(self.out_dim)  # [B, T_p, S]
            attn = masked_softmax(scores, s_valid.unsqueeze(1).expand_as(scores), dim=-1)
            hp = hp + self.o(attn @ self.v(s))
        z = pool_tokens(hp, token_mask.get(self.primary))
        if fallback is None:
            return z
        return torch.where(present[self.primary].unsqueeze(-1), z, fallback)
