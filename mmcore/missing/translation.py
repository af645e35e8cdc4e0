"""Cross-modal translation with cycle consistency (MCTN, Pham et al. 2019, with MLPs).

A source modality is encoded to a joint representation, decoded into the target modality, and
the translation is translated back::

    h      = enc(x_s)                  [B, H]   the joint representation
    x̂_t   = dec_t(h)                  [B, F_t] the translation
    x̂_s   = back(enc_t(x̂_t))         [B, F_s] the cycle
    L = MSE(x̂_t, x_t) + λ_cycle · MSE(x̂_s, x_s) + λ_pred · CE(head(h), y) + λ_align · A(x̂_t, x_t)

``A`` is CORAL or MMD between translated and real target features: it pulls the translation's
*distribution* onto the real modality's.  At test time only the source is needed: ``translate``
fills the target, and ``head(h)`` predicts from the joint representation alone (MCTN's point:
the target modality helps in training, not at inference).  Rows where the target is absent
contribute no translation or alignment term; the cycle term only needs the source.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import MultimodalBatch
from ._fit import fit_on_random_rows
from .domain import coral_loss, mmd_loss
from .imputers import fill


def _mlp(a: int, h: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, b))


class CycleTranslator(nn.Module):
    def __init__(self, source: str, target: str, source_dim: int, target_dim: int, hidden: int = 128,
                 num_classes: int = 0, cycle_weight: float = 0.5, pred_weight: float = 1.0,
                 align: str | None = None, align_weight: float = 1.0) -> None:
        super().__init__()
        if align not in (None, "coral", "mmd"):
            raise ValueError(f"align must be None, 'coral' or 'mmd', got '{align}'")
        self.source, self.target = source, target
        self.encoder = _mlp(source_dim, hidden, hidden)
        self.decoder = _mlp(hidden, hidden, target_dim)
        self.back_encoder = _mlp(target_dim, hidden, hidden)
        self.back_decoder = _mlp(hidden, hidden, source_dim)
        self.head = nn.Linear(hidden, num_classes) if num_classes else None
        self.cycle_weight, self.pred_weight, self.align, self.align_weight = cycle_weight, pred_weight, align, align_weight

    def forward(self, x_source: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(h, translation, cycle)``."""
        h = self.encoder(x_source)
        translated = self.decoder(h)
        cycled = self.back_decoder(self.back_encoder(translated))
        return h, translated, cycled

    def loss(self, batch: MultimodalBatch, label_key: str = "label") -> Tensor:
        rows = batch.mask(self.source)
        if not bool(rows.any()):
            raise ValueError(f"no row of the batch has the source modality '{self.source}'")
        b = batch.select(torch.nonzero(rows).squeeze(1))
        xs = b[self.source].reshape(b.batch_size, -1).float()
        h, translated, cycled = self(xs)
        loss = self.cycle_weight * F.mse_loss(cycled, xs)
        has_t = b.mask(self.target)
        if b.get(self.target) is not None and bool(has_t.any()):
            xt = b[self.target].reshape(b.batch_size, -1).float()[has_t]
            loss = loss + F.mse_loss(translated[has_t], xt)
            if self.align == "coral":
                loss = loss + self.align_weight * coral_loss(translated[has_t], xt)
            elif self.align == "mmd":
                loss = loss + self.align_weight * mmd_loss(translated[has_t], xt)
        if self.head is not None and label_key in b.fields:
            loss = loss + self.pred_weight * F.cross_entropy(self.head(h), b.fields[label_key].long())
        return loss

    def fit(self, batch: MultimodalBatch, steps: int = 500, batch_size: int = 128, lr: float = 2e-3, seed: int = 0):
        self.train()
        fit_on_random_rows(self.parameters(), self.loss, batch, steps, batch_size, lr, seed)
        self.eval()
        return self

    @torch.no_grad()
    def translate(self, x_source: Tensor) -> Tensor:
        return self(x_source.reshape(x_source.shape[0], -1).float())[1]

    @torch.no_grad()
    def predict(self, x_source: Tensor) -> Tensor:
        if self.head is None:
            raise RuntimeError("this translator was built without a prediction head (num_classes=0)")
        return self.head(self.encoder(x_source.reshape(x_source.shape[0], -1).float()))

    @torch.no_grad()
    def impute(self, batch: MultimodalBatch) -> MultimodalBatch:
        """Fill the target where it is absent and the source present."""
        x = batch.get(self.source)
        if x is None:
            return batch
        need = ~batch.mask(self.target) & batch.mask(self.source)
        if not bool(need.any()):
            return batch
        values = self.translate(x)
        t = batch.get(self.target)
        if t is not None:
            values = values.reshape(t.shape).to(t.dtype)
        out = fill(batch, self.target, values)
        # rows with neither modality stay absent
        present = dict(out.present)
        present[self.target] = batch.mask(self.target) | need
        return MultimodalBatch(out.tensors, present, out.fields, out.token_mask)
