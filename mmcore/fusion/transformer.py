"""Self-attention fusion: a multimodal transformer over every modality's tokens (early, bottleneck, late)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._blocks import Block
from ._common import as_tokens, masked_mean, prepare, reset_children

MODES = ("early", "bottleneck", "late")


class MultimodalTransformer(nn.Module):
    r"""Self-attention fusion: a multimodal transformer over every modality's tokens.

    Papers: Vaswani et al. 2017 (https://arxiv.org/abs/1706.03762); attention bottlenecks, Nagrani et al.
    2021 (https://arxiv.org/abs/2107.00135).

    Each modality's tokens are projected to width ``D`` and get a learned modality-type embedding
    plus a per-modality position embedding (positions count *within* a modality, so removing one
    modality never shifts another's positions).  Absent modalities and padding tokens are removed
    from every attention through the key-padding mask built from ``present`` and ``token_mask``.
    Three variants (``mode``):

    ``early``       one sequence ``[CLS; tokens_1; ...; tokens_M]`` through ``depth`` blocks;
                    ``z = LN(CLS)`` (``pool="cls"``) or ``z = LN(mean x)``, the mean over CLS and
                    every present token (``pool="mean"``).
    ``bottleneck``  attention bottlenecks (Nagrani et al. 2021): ``fusion_layer`` unimodal blocks per
                    modality over ``[CLS_m; tokens_m]``, then ``depth - fusion_layer`` blocks where
                    each modality attends over ``[CLS_m; tokens_m; B]`` with ``n_bottleneck`` shared
                    tokens ``B``; after each layer ``B`` = mean over the *present* modalities of
                    their updated copies.  ``z = LN(mean over present m of CLS_m)``, or with
                    ``pool="mean"`` of each modality's mean over ``[CLS_m; tokens_m]``.
    ``late``        a separate ``depth``-block transformer per modality over ``[CLS_m; tokens_m]``;
                    ``z = LN(mean over present m of CLS_m)`` (or of token means, as above).

    Where the final LayerNorm sits (``pool_norm``).  ``"after"`` (default) normalises the pooled
    vector once, as timm's ``fc_norm`` does for average pooling.  ``"before"`` normalises every token
    (or every ``CLS_m``) and then averages them, which is how this module worked before.  Averaging
    ``n`` unit-scale vectors shrinks each modality's share of ``z`` by ``1/n``, so the head sees the
    product of two modalities' signals ``n^2`` times weaker.  On the synthetic XOR part, whose label
    is a product of two modalities' bits, that kept the transformers on a plateau at chance for
    thousands of steps.  With ``"after"`` they learn it about as fast as concatenation does.
    Checkpoints saved with the old layout load with ``pool_norm="before"``.

    Maths of one block (pre-norm): ``x <- x + Attn(LN x)``, ``x <- x + MLP(LN x)``, with
    ``Attn = softmax(Q K^T / sqrt(D/H) + mask) V`` and ``mask = -inf`` on absent keys.  Because
    masked keys get exactly zero weight, a masked modality gives the output of the model run
    without its tokens; a sample with no modality gets ``LN(CLS)`` (early) or zeros.

    Shapes.

    ==============  ====================  ====================================================
    argument        shape                 note
    ==============  ====================  ====================================================
    features[m]     [B, T_m, D_m] or      pooled features are one token
                    [B, D_m]
    present[m]      [B] bool
    token_mask[m]   [B, T_m] bool         optional padding mask (True = real token)
    output          [B, out_dim]          ``out_dim`` = D, the model width
    ==============  ====================  ====================================================
    """

    input_kind = "tokens"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 64, mode: str = "early", depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0, n_bottleneck: int = 4,
                 fusion_layer: int = 1, max_tokens: int = 512, pool: str = "cls", pool_norm: str = "after") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
        if mode == "bottleneck" and not 0 <= fusion_layer < depth:
            raise ValueError(f"bottleneck mode needs 0 <= fusion_layer < depth, got {fusion_layer} and {depth}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got '{pool}'")
        if pool_norm not in ("after", "before"):
            raise ValueError(f"pool_norm must be 'after' or 'before', got '{pool_norm}'")
        self.pool = pool
        self.pool_norm = pool_norm
        self.in_dims = dict(in_dims)
        self.modalities = list(self.in_dims)
        self.out_dim = out_dim
        self.mode = mode
        self.depth = depth
        self.fusion_layer = fusion_layer
        self.max_tokens = max_tokens
        d = out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(k, d) for m, k in self.in_dims.items()})
        self.type_emb = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * 0.02) for m in self.modalities})
        self.pos_emb = nn.ParameterDict({m: nn.Parameter(torch.randn(max_tokens, d) * 0.02) for m in self.modalities})
        block = lambda: Block(d, heads, mlp_ratio, dropout)  # noqa: E731
        if mode == "early":
            self.cls = nn.Parameter(torch.randn(d) * 0.02)
            self.blocks = nn.ModuleList(block() for _ in range(depth))
            self.norm = nn.LayerNorm(d)
        else:
            self.cls_m = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * 0.02) for m in self.modalities})
            self.stacks = nn.ModuleDict({m: nn.ModuleList(block() for _ in range(depth)) for m in self.modalities})
            if pool_norm == "before":
                self.norms = nn.ModuleDict({m: nn.LayerNorm(d) for m in self.modalities})
            else:
                self.norm = nn.LayerNorm(d)
            if mode == "bottleneck":
                self.bottleneck = nn.Parameter(torch.randn(n_bottleneck, d) * 0.02)

    def embed(self, name: str, x: Tensor) -> Tensor:
        t = as_tokens(x)
        if t.shape[1] > self.max_tokens:
            raise ValueError(f"modality '{name}' has {t.shape[1]} tokens, more than max_tokens={self.max_tokens}")
        return self.proj[name](t) + self.type_emb[name] + self.pos_emb[name][: t.shape[1]]

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the same distributions as at construction)."""
        reset_children(self)
        for p in self.type_emb.values():
            nn.init.normal_(p, std=0.02)
        for p in self.pos_emb.values():
            nn.init.normal_(p, std=0.02)
        if self.mode == "early":
            nn.init.normal_(self.cls, std=0.02)
        else:
            for p in self.cls_m.values():
                nn.init.normal_(p, std=0.02)
        if self.mode == "bottleneck":
            nn.init.normal_(self.bottleneck, std=0.02)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                token_mask: Mapping[str, Tensor] | None = None) -> Tensor:
        features, present = prepare(features, present, self.in_dims, token_mask)
        token_mask = token_mask or {}
        tokens, valid = {}, {}
        for m, x in features.items():
            tokens[m] = self.embed(m, x)
            tm = token_mask.get(m)
            if tm is None:
                tm = torch.ones(tokens[m].shape[:2], dtype=torch.bool, device=x.device)
            valid[m] = tm & present[m].unsqueeze(1)
        b = next(iter(tokens.values())).shape[0]
        ones = lambda n, like: torch.ones(b, n, dtype=torch.bool, device=like.device)  # noqa: E731
        if self.mode == "early":
            x = torch.cat([self.cls.expand(b, 1, -1), *tokens.values()], 1)
            key_valid = torch.cat([ones(1, x), *valid.values()], 1)
            for blk in self.blocks:
                x = blk(x, key_valid)
            if self.pool == "cls":
                return self.norm(x[:, 0])
            if self.pool_norm == "before":
                return _token_mean(self.norm(x), key_valid)
            return self.norm(_token_mean(x, key_valid))

        seqs = {m: torch.cat([self.cls_m[m].expand(b, 1, -1), tokens[m]], 1) for m in tokens}
        keys = {m: torch.cat([ones(1, tokens[m]), valid[m]], 1) for m in tokens}
        bottleneck = self.bottleneck.expand(b, -1, -1) if self.mode == "bottleneck" else None
        for layer in range(self.depth):
            fused = self.mode == "bottleneck" and layer >= self.fusion_layer
            updated = []
            for m in seqs:
                blk = self.stacks[m][layer]
                if fused:
                    n = seqs[m].shape[1]
                    out = blk(torch.cat([seqs[m], bottleneck], 1), torch.cat([keys[m], ones(bottleneck.shape[1], bottleneck)], 1))
                    seqs[m], copy = out[:, :n], out[:, n:]
                    updated.append(copy)
                else:
                    seqs[m] = blk(seqs[m], keys[m])
            if fused:
                names = list(seqs)
                mean = masked_mean(updated, [present[m] for m in names])
                anyone = torch.stack([present[m] for m in names], 0).any(0).view(-1, 1, 1)
                bottleneck = torch.where(anyone, mean, bottleneck)
        masks = [present[m] for m in seqs]
        if self.pool == "cls" or self.pool_norm == "before":     # "before": exactly the old layout
            summary = {m: seqs[m][:, 0] for m in seqs}
        else:                                   # mean over CLS_m and modality m's valid tokens
            summary = {m: _token_mean(seqs[m], keys[m]) for m in seqs}
        if self.pool_norm == "before":
            return masked_mean([self.norms[m](summary[m]) for m in seqs], masks)
        anyone = torch.stack(masks, 0).any(0).unsqueeze(-1)        # a row with no modality gets zeros
        return self.norm(masked_mean(list(summary.values()), masks)) * anyone


def _token_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``x`` [B, T, D] over the tokens where ``valid`` [B, T] is True."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1)
