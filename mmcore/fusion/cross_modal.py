"""Cross-modal attention (MulT-style) for any number of modalities."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._blocks import merge_heads, split_heads
from ._common import as_tokens, masked_mean, pool_tokens, prepare, reset_children


class CrossModalLayer(nn.Module):
    def __init__(self, modalities: list[str], dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        hidden = int(dim * mlp_ratio)
        per = lambda make: nn.ModuleDict({m: make() for m in modalities})  # noqa: E731
        self.has_mlp = hidden > 0
        self.norm_q = per(lambda: nn.LayerNorm(dim))
        self.norm_kv = per(lambda: nn.LayerNorm(dim))
        self.q = per(lambda: nn.Linear(dim, dim))
        self.kv = per(lambda: nn.Linear(dim, 2 * dim))
        self.o = per(lambda: nn.Linear(dim, dim))
        if self.has_mlp:   # mlp_ratio=0 leaves the attention sublayer alone
            self.norm_mlp = per(lambda: nn.LayerNorm(dim))
            self.mlp = per(lambda: nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)))

    def forward(self, h: dict[str, Tensor], present: dict[str, Tensor], key_valid: dict[str, Tensor | None]) -> dict[str, Tensor]:
        kv = {}
        for s, x in h.items():
            k, v = self.kv[s](self.norm_kv[s](x)).chunk(2, dim=-1)
            kv[s] = (split_heads(k, self.heads), split_heads(v, self.heads))
        p = self.dropout if self.training else 0.0
        out = {}
        for t, x in h.items():
            sources = [s for s in h if s != t]
            if sources:
                q = split_heads(self.q[t](self.norm_q[t](x)), self.heads)
                streams = []
                for s in sources:
                    mask = key_valid[s]
                    mask = None if mask is None else mask[:, None, None, :]
                    streams.append(F.scaled_dot_product_attention(q, *kv[s], attn_mask=mask, dropout_p=p))
                mixed = masked_mean(streams, [present[s] for s in sources])
                reached = torch.stack([present[s] for s in sources]).any(0)
                x = x + self.o[t](merge_heads(mixed)) * reached.to(x.dtype).view(-1, 1, 1)
            out[t] = x + self.mlp[t](self.norm_mlp[t](x)) if self.has_mlp else x
        return out


class CrossModalAttention(nn.Module):
    r"""Cross-modal attention (MulT-style, Tsai et al. 2019) for any number of modalities.

    Paper: Tsai et al. 2019, "Multimodal Transformer for Unaligned Multimodal Language Sequences"
    (https://arxiv.org/abs/1906.00295).

    Every target modality ``t`` attends to every other modality ``s`` (queries from ``t``, keys
    and values from ``s``), on ``F.scaled_dot_product_attention``: no attention matrix is
    materialised and no head-averaged weights are computed.  One layer:

        q_t = W_q^t LN_q^t(h_t)                 k_s, v_s = W_kv^s LN_kv^s(h_s)   (once per source)
        a_{t<-s} = softmax(q_t k_s^T / sqrt(D/H)) v_s                          per head, per pair
        h_t <- h_t + [any s present] * W_o^t( mean_{s in P(b), s != t} a_{t<-s} )
        h_t <- h_t + MLP^t(LN^t(h_t))

    The keys/values of a source are projected once and read by every target (MulT projects them
    again for each ordered pair), which is what makes N modalities cheap.  MulT concatenates the
    ``N - 1`` streams of a target; concatenation cannot drop a missing source without zero-filling,
    so the streams are averaged over the *present* sources instead (weights 0/1 from ``present``).
    A target with no present source passes through the attention unchanged.  The fused output is

        z = mean_{t in P(b)} mean_{real tokens} LN^t(h_t)          (zeros if nothing is present)

    and :meth:`forward_tokens` returns the per-target token states for models that need tokens.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, T_m, D_m] or      pooled features are one token
                    [B, D_m]
    present[m]      [B] bool
    token_mask[m]   [B, T_m] bool         optional padding mask (True = real token)
    q_t, k_s, v_s   [B, H, T, D/H]        internal
    output          [B, out_dim]          ``out_dim`` = D, the model width
    ==============  ====================  ====================================================
    """

    input_kind = "tokens"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 64, heads: int = 4, depth: int = 1,
                 mlp_ratio: float = 2.0, dropout: float = 0.0, max_tokens: int = 512) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.modalities = list(self.in_dims)
        self.out_dim = out_dim
        self.max_tokens = max_tokens
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        self.pos_emb = nn.ParameterDict({m: nn.Parameter(torch.randn(max_tokens, out_dim) * 0.02) for m in self.modalities})
        self.layers = nn.ModuleList(CrossModalLayer(self.modalities, out_dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.ModuleDict({m: nn.LayerNorm(out_dim) for m in self.modalities})

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        for p in self.pos_emb.values():
            nn.init.normal_(p, std=0.02)

    def forward_tokens(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                       token_mask: Mapping[str, Tensor] | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-target token states ``{m: [B, T_m, D]}`` and the effective present masks."""
        features, present = prepare(features, present, self.in_dims, token_mask)
        token_mask = token_mask or {}
        h, key_valid = {}, {}
        for m, x in features.items():
            t = as_tokens(x)
            if t.shape[1] > self.max_tokens:
                raise ValueError(f"modality '{m}' has {t.shape[1]} tokens, more than max_tokens={self.max_tokens}")
            h[m] = self.proj[m](t) + self.pos_emb[m][: t.shape[1]]
            tm = token_mask.get(m)
            if tm is not None:
                has_token = tm.any(1)
                present[m] = present[m] & has_token          # a row with no real token is absent
                tm = tm | ~has_token.unsqueeze(1)            # keep its keys finite; its weight is 0
            key_valid[m] = tm
        for layer in self.layers:
            h = layer(h, present, key_valid)
        return {m: self.norm[m](x) for m, x in h.items()}, present

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        h, present = self.forward_tokens(features, present, token_mask)
        token_mask = token_mask or {}
        pooled = [pool_tokens(x, token_mask.get(m)) for m, x in h.items()]
        return masked_mean(pooled, [present[m] for m in h])
