"""``MultimodalModel(encoders, fusion, head)``: named per-modality encoders, any mask-aware
fusion, and a head, reading the :class:`~mmcore.data.MultimodalBatch` contract.

    features_m = encoder_m(batch[m])           on the rows where m is present only
    z          = fusion(features, present, token_mask=...)
    logits     = head(z)

Encoders see only present rows (absent rows are scattered back as zeros that the fusion never
reads), so an encoder with batch statistics is not fed placeholders.  A modality with no present
row in the batch, or no tensor at all, is left out of ``features`` (same output as masked).

==============  ====================  ====================================================
batch[m]        [B, ...]              whatever encoder_m takes
present[m]      [B] bool
features[m]     [B, D_m] or [B, T, D]
output          [B, num_classes]
==============  ====================  ====================================================
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..encoders import build_encoder
from ..fusion import build_fusion
from .config import ModelConfig


class MultimodalModel(nn.Module):
    def __init__(self, encoders: Mapping[str, nn.Module], fusion: nn.Module, head: nn.Module,
                 config: ModelConfig | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head
        self.config = config

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    @classmethod
    def from_config(cls, config: ModelConfig | dict) -> "MultimodalModel":
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        encoders = {}
        for m, e in config.modalities.items():
            encoders[m] = build_encoder(e.kind, e.in_dim, e.out_dim, **e.options)
        dims = {m: e.feature_dim() for m, e in config.modalities.items()}
        f, h = config.fusion, config.head
        if f.name == "late":
            # late fusion owns the per-modality classifiers; the head is the identity
            fusion = build_fusion("late", dims, h.num_classes, **f.options)
            head: nn.Module = nn.Identity()
        else:
            fusion = build_fusion(f.name, dims, f.out_dim, **f.options)
            head = build_head(f.out_dim, h.num_classes, h.hidden, h.dropout)
        return cls(encoders, fusion, head, config)

    def encode(self, batch) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Per-modality features (present rows encoded), present masks and token masks."""
        get = batch.get if hasattr(batch, "get") else lambda k: None
        present_all = getattr(batch, "present", None)
        token_masks = dict(getattr(batch, "token_mask", {}) or {})
        features, present, token_mask = {}, {}, {}
        candidates = []
        for m, encoder in self.encoders.items():
            x = get(m)
            if x is None:
                continue
            mask = present_all[m] if present_all is not None and m in present_all else \
                torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            candidates.append((m, encoder, x, mask))
        if not candidates:
            raise ValueError(f"batch has none of the model's modalities {self.modalities}")
        any_rows = [c for c in candidates if c[3].any()]
        for m, encoder, x, mask in (any_rows or candidates):
            if bool(mask.all()) or not any_rows:
                out = encoder(x)
            else:
                rows = mask.nonzero(as_tuple=True)[0]
                enc = encoder(x[rows])
                out = enc.new_zeros((x.shape[0], *enc.shape[1:])).index_copy(0, rows, enc)
            features[m] = out
            present[m] = mask
            tm = token_masks.get(m)
            if tm is not None and out.dim() == 3 and tuple(tm.shape) == tuple(out.shape[:2]):
                token_mask[m] = tm
        return features, present, token_mask

    def fuse(self, batch) -> Tensor:
        features, present, token_mask = self.encode(batch)
        return self.fusion(features, present, token_mask=token_mask or None)

    def forward(self, batch) -> Tensor:
        return self.head(self.fuse(batch))


def build_head(in_dim: int, num_classes: int, hidden: int | None = 32, dropout: float = 0.0) -> nn.Module:
    if hidden is None:
        return nn.Linear(in_dim, num_classes)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

