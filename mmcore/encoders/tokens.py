"""Token encoder: turns a feature vector into a short token sequence, or encodes tokens.

    vector input:  tokens = reshape( W2 GELU(W1 x) , [T, D] ) + LN       [B, D_in] -> [B, T, D]
    token input:   tokens_t = MLP(x_t)                                    [B, T, D_in] -> [B, T, D]

Vector modalities (tabular rows, pooled embeddings) get a few tokens so the attention-based
fusions (transformer, cross-modal attention) have something to attend over.
"""
from __future__ import annotations

from torch import Tensor, nn


class TokenEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 4, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = hidden or max(in_dim, out_dim)
        self.in_dim, self.out_dim, self.num_tokens = in_dim, out_dim, num_tokens
        self.split = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, num_tokens * out_dim))
        self.per_token = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        self.norm = nn.LayerNorm(out_dim)
        self.output_kind = "tokens"

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"TokenEncoder expects last dimension {self.in_dim}, got shape {tuple(x.shape)}")
        if x.dim() == 2:
            return self.norm(self.split(x).view(x.shape[0], self.num_tokens, self.out_dim))
        if x.dim() == 3:
            return self.norm(self.per_token(x))
        raise ValueError(f"TokenEncoder takes [B, D] or [B, T, D], got shape {tuple(x.shape)}")
