"""Attention building blocks on ``F.scaled_dot_product_attention`` (fused kernels, no
materialised attention weights), shared by the transformer and cross-modal fusions.

``key_valid`` is a ``[B, S]`` bool mask, True on keys that may be attended to.  Callers keep at
least one valid key per row (a CLS or bottleneck token, or a row whose output they discard);
a query row with no valid key would give NaN.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(x: Tensor, heads: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)          # [B, H, T, D/H]


def merge_heads(x: Tensor) -> Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class Attention(nn.Module):
    """Multi-head attention: ``softmax(Q K^T / sqrt(D/H)) V`` per head, then an output projection.

    ==========  ===============  ==========================================
    x           [B, T, D]        queries' source
    context     [B, S, D]        keys/values' source (``x`` for self-attn.)
    key_valid   [B, S] bool      optional
    output      [B, T, D]
    ==========  ===============  ==========================================
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, key_valid: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        q = split_heads(self.q(x), self.heads)
        k, v = (split_heads(t, self.heads) for t in self.kv(context).chunk(2, dim=-1))
        mask = None if key_valid is None else key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o(merge_heads(out))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, key_valid=key_valid)
        return x + self.mlp(self.norm2(x))
