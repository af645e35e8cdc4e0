"""Learned missing-modality tokens.

Instead of excluding an absent modality, a model may put a *learned* vector in its place: one
trainable token per modality, in the modality's feature space, used on exactly the rows where
it is missing.  Trained together with modality dropout, the token learns to be the most useful
stand-in for the modality (not zeros, which the model never saw).

:class:`MissingTokens` fills a feature dict; :class:`MissingTokenModel` wraps a
:class:`mmcore.models.MultimodalModel`-shaped module (``encoders``, ``fusion``, ``head``) so its
fusion receives every modality as present, with tokens on the missing rows.

=================  =============  ===========================================
name               shape          meaning
=================  =============  ===========================================
``features[m]``    ``[B, D_m]``   encoder outputs (placeholder rows allowed)
``present[m]``     ``[B]``        True where m exists
``tokens[m]``      ``[D_m]``      the learned stand-in
output ``[m]``     ``[B, D_m]``   ``where(present, features, token)``
=================  =============  ===========================================
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..data import MultimodalBatch


class MissingTokens(nn.Module):
    def __init__(self, dims: Mapping[str, int], init_std: float = 0.02) -> None:
        super().__init__()
        self.tokens = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * init_std) for m, d in dims.items()})

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for m, x in features.items():
            if m not in self.tokens:
                out[m] = x
                continue
            keep = present[m].to(x.device).view(-1, *([1] * (x.dim() - 1)))
            out[m] = torch.where(keep, x, self.tokens[m].to(x.dtype).expand_as(x))
        return out


class MissingTokenModel(nn.Module):
    """Encoders on present rows, learned tokens on missing rows, then fusion (all present) and head."""

    def __init__(self, model: nn.Module, feature_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.model = model
        self.missing = MissingTokens(feature_dims)

    def forward(self, batch: MultimodalBatch) -> Tensor:
        feats, everyone = {}, {}
        B = batch.batch_size
        for m, enc in self.model.encoders.items():
            x = batch.get(m)
            present = batch.mask(m)
            if x is None:
                feats[m] = self.missing.tokens[m].expand(B, -1)
            else:
                feats[m] = enc(x)
            everyone[m] = torch.ones(B, dtype=torch.bool, device=present.device)
            feats[m] = self.missing({m: feats[m]}, {m: present})[m]
        return self.model.head(self.model.fusion(feats, everyone))
