"""A small MLP encoder for vector (or per-token) features.

    h = Linear -> GELU -> Dropout -> ... -> Linear -> LayerNorm

==============  ====================  ====================================================
input           [B, D_in] or          a token input is encoded token by token
                [B, T, D_in]
output          [B, out_dim] or
                [B, T, out_dim]
==============  ====================  ====================================================

LayerNorm (not BatchNorm) keeps a sample's encoding independent of the other rows, so
placeholder rows of absent modalities can never shift anyone's statistics.
"""
from __future__ import annotations

from torch import Tensor, nn


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("an MLP encoder needs at least one layer")
        hidden = hidden or max(out_dim, in_dim)
        widths = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        parts: list[nn.Module] = []
        for i in range(layers):
            parts.append(nn.Linear(widths[i], widths[i + 1]))
            if i < layers - 1:
                parts += [nn.GELU(), nn.Dropout(dropout)]
        parts.append(nn.LayerNorm(out_dim))
        self.net = nn.Sequential(*parts)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.output_kind = "same"

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"MLPEncoder expects last dimension {self.in_dim}, got shape {tuple(x.shape)}")
        return self.net(x)
