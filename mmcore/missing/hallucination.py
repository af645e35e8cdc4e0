"""Modality hallucination (Hoffman, Gupta & Darrell 2016): learning with side information.

A *teacher* encoder sees modality B (available in training only).  A *hallucination* network
sees modality A and learns to produce the teacher's features of B; at test time, with B
missing, its output stands in for them::

    f_B = teacher(x_B)        (frozen)           [B, H]
    ĥ   = halluc(x_A)                            [B, H]
    L   = MSE(ĥ, f_B) + λ_task · CE(head(ĥ), y) + λ_align · A(ĥ, f_B)

``A`` (CORAL or MMD) aligns the distribution of hallucinated features with the real ones, which
matters where the head is shared with the teacher: it was trained on real features.
Only rows with both A and B count in the mimic and alignment terms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import MultimodalBatch
from ._fit import fit_on_random_rows
from .domain import coral_loss, mmd_loss


class HallucinationNet(nn.Module):
    def __init__(self, source: str, target: str, source_dim: int, teacher: nn.Module, feature_dim: int,
                 hidden: int = 128, head: nn.Module | None = None, task_weight: float = 1.0,
                 align: str | None = None, align_weight: float = 1.0) -> None:
        super().__init__()
        if align not in (None, "coral", "mmd"):
            raise ValueError(f"align must be None, 'coral' or 'mmd', got '{align}'")
        self.source, self.target = source, target
        self.teacher = teacher.requires_grad_(False).eval()
        self.net = nn.Sequential(nn.Linear(source_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, feature_dim))
        self.head = head
        self.task_weight, self.align, self.align_weight = task_weight, align, align_weight

    def forward(self, x_source: Tensor) -> Tensor:
        return self.net(x_source.reshape(x_source.shape[0], -1).float())

    def loss(self, batch: MultimodalBatch, label_key: str = "label") -> Tensor:
        both = batch.mask(self.source) & batch.mask(self.target)
        if not bool(both.any()):
            raise ValueError(f"no row has both '{self.source}' and '{self.target}' to learn from")
        b = batch.select(torch.nonzero(both).squeeze(1))
        with torch.no_grad():
            real = self.teacher(b[self.target].reshape(b.batch_size, -1).float())
        fake = self(b[self.source])
        loss = F.mse_loss(fake, real)
        if self.align == "coral":
            loss = loss + self.align_weight * coral_loss(fake, real)
        elif self.align == "mmd":
            loss = loss + self.align_weight * mmd_loss(fake, real)
        if self.head is not None and label_key in b.fields:
            loss = loss + self.task_weight * F.cross_entropy(self.head(fake), b.fields[label_key].long())
        return loss

    def fit(self, batch: MultimodalBatch, steps: int = 500, batch_size: int = 128, lr: float = 2e-3, seed: int = 0):
        params = [p for p in self.net.parameters()]
        if self.head is not None:
            params += [p for p in self.head.parameters() if p.requires_grad]
        self.net.train()
        fit_on_random_rows(params, self.loss, batch, steps, batch_size, lr, seed)
        self.eval()
        return self

    @torch.no_grad()
    def features(self, batch: MultimodalBatch) -> Tensor:
        """Real teacher features of ``target`` where present, hallucinated from ``source`` elsewhere."""
        have = batch.mask(self.target).unsqueeze(-1)
        fake = self(batch[self.source])
        t = batch.get(self.target)
        if t is None:
            return fake
        return torch.where(have, self.teacher(t.reshape(t.shape[0], -1).float()), fake)
