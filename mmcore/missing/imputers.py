"""Completing missing modalities at inference time.

Every imputer has ``fit(batch)`` (on training data) and ``impute(batch) -> batch``: absent rows
of each modality are replaced by an estimate and marked present; present rows are untouched.
:class:`Imputed` puts an imputer (or any ``batch -> batch`` callable, such as a multimodal VAE's
``complete``) in front of a model trained on complete data.

* :class:`MeanImputer` — the modality's mean over the rows where it was present.
* :class:`NearestNeighbourImputer` — the average of the missing modality over the ``k`` complete
  training samples nearest to the query in a shared space: by default the concatenated features
  of the modalities the query has (what scikit-learn's ``KNNImputer`` does with complete donors);
  or any ``embed(batch, modalities) -> [B, E]`` (e.g. a VAE's posterior mean, a CCA projection).
* :class:`LearnedImputer` — one MLP per modality regressing it from the others (zero-filled
  inputs plus their presence bits), trained with random masking so it works from any subset.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import MultimodalBatch


def fill(batch: MultimodalBatch, name: str, values: Tensor) -> MultimodalBatch:
    """``batch`` with the absent rows of ``name`` set from ``values`` ``[B, ...]`` and marked present."""
    have = batch.mask(name)
    x = batch.get(name)
    if x is None:
        x = torch.zeros_like(values)
    keep = have.view(-1, *([1] * (x.dim() - 1)))
    tensors, present = dict(batch.tensors), dict(batch.present)
    tensors[name] = torch.where(keep, x, values.to(x.dtype))
    present[name] = torch.ones_like(have)
    return MultimodalBatch(tensors, present, dict(batch.fields), dict(batch.token_mask))


def _modalities(batch: MultimodalBatch, names: Sequence[str] | None) -> list[str]:
    return list(names) if names is not None else [m for m in batch.modalities if batch.get(m) is not None]


class MeanImputer:
    def __init__(self, modalities: Sequence[str] | None = None) -> None:
        self.modalities = modalities
        self.means: dict[str, Tensor] = {}

    def fit(self, batch: MultimodalBatch) -> "MeanImputer":
        for m in _modalities(batch, self.modalities):
            rows = batch.mask(m)
            if not bool(rows.any()):
                raise ValueError(f"cannot fit a mean for modality '{m}': it is absent from every training row")
            self.means[m] = batch[m][rows].float().mean(0)
        return self

    def impute(self, batch: MultimodalBatch) -> MultimodalBatch:
        if not self.means:
            raise RuntimeError("MeanImputer.impute called before fit")
        for m, mean in self.means.items():
            batch = fill(batch, m, mean.to(batch.device).expand(batch.batch_size, *mean.shape))
        return batch

    __call__ = impute


class NearestNeighbourImputer:
    def __init__(self, k: int = 5, modalities: Sequence[str] | None = None,
                 embed: Callable[[MultimodalBatch, Sequence[str]], Tensor] | None = None) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k, self.modalities, self.embed = k, modalities, embed
        self.donors: MultimodalBatch | None = None

    def fit(self, batch: MultimodalBatch) -> "NearestNeighbourImputer":
        names = _modalities(batch, self.modalities)
        complete = torch.stack([batch.mask(m) for m in names]).all(0)
        if int(complete.sum()) < self.k:
            raise ValueError(f"need at least k={self.k} complete training samples, found {int(complete.sum())}")
        self.modalities = names
        self.donors = batch.select(torch.nonzero(complete).squeeze(1))
        return self

    def _space(self, batch: MultimodalBatch, names: Sequence[str]) -> Tensor:
        if self.embed is not None:
            return self.embed(batch, names)
        return torch.cat([batch[m].reshape(batch.batch_size, -1).float() for m in names], -1)

    @torch.no_grad()
    def impute(self, batch: MultimodalBatch) -> MultimodalBatch:
        if self.donors is None:
            raise RuntimeError("NearestNeighbourImputer.impute called before fit")
        names = self.modalities
        pattern = torch.stack([batch.mask(m).cpu() for m in names], 1)           # [B, M]
        out = {m: torch.zeros_like(batch[m]) if batch.get(m) is not None else None for m in names}
        for key in torch.unique(pattern, dim=0):
            have = [m for m, p in zip(names, key.tolist()) if p]
            lack = [m for m, p in zip(names, key.tolist()) if not p]
            if not lack:
                continue
            if not have:
                raise ValueError("a sample has none of the modalities; nothing to find neighbours with")
            rows = torch.nonzero((pattern == key).all(1)).squeeze(1).to(batch.device)
            query = self._space(batch.select(rows), have)
            donors = self._space(self.donors.only(have), have).to(query.device)
            idx = torch.cdist(query, donors).topk(self.k, largest=False).indices   # [R, k]
            for m in lack:
                values = self.donors[m].to(query.device)[idx].float().mean(1)
                if out[m] is None:
                    out[m] = torch.zeros(batch.batch_size, *values.shape[1:], device=values.device)
                out[m][rows] = values.to(out[m].dtype)
        for m in names:
            if out[m] is not None:
                batch = fill(batch, m, out[m])
        return batch

    __call__ = impute


class LearnedImputer(nn.Module):
    """Per modality m: ``x_m ≈ f_m([x_n · present_n, present_n for n ≠ m])`` (MSE, masked)."""

    def __init__(self, dims: dict[str, int], hidden: int = 128) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.nets = nn.ModuleDict()
        for m, d in self.dims.items():
            others = sum(self.dims[n] + 1 for n in self.dims if n != m)
            self.nets[m] = nn.Sequential(nn.Linear(others, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                         nn.Linear(hidden, d))

    def _inputs(self, batch: MultimodalBatch, target: str, keep: dict[str, Tensor]) -> Tensor:
        parts = []
        for n in self.dims:
            if n == target:
                continue
            k = keep[n].float().unsqueeze(-1)
            x = batch.get(n)
            x = torch.zeros(batch.batch_size, self.dims[n], device=k.device) if x is None else x.reshape(batch.batch_size, -1).float()
            parts += [x * k, k]
        return torch.cat(parts, -1)

    def predict(self, batch: MultimodalBatch, target: str, keep: dict[str, Tensor] | None = None) -> Tensor:
        keep = keep or {n: batch.mask(n) for n in self.dims}
        return self.nets[target](self._inputs(batch, target, keep))

    def fit(self, batch: MultimodalBatch, steps: int = 600, batch_size: int = 128, lr: float = 2e-3,
            keep_rate: float = 0.6, seed: int = 0) -> "LearnedImputer":
        """Regress each modality from a random subset of the others (each kept with ``keep_rate``)."""
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.train()
        for _ in range(steps):
            idx = torch.randint(batch.batch_size, (batch_size,), generator=g)
            b = batch.select(idx.to(batch.device))
            keep = {n: b.mask(n) & (torch.rand(batch_size, generator=g) < keep_rate).to(b.device) for n in self.dims}
            loss = 0.0
            for m in self.dims:
                rows = b.mask(m)
                if not bool(rows.any()):
                    continue
                pred = self.predict(b, m, keep)
                loss = loss + F.mse_loss(pred[rows], b[m].reshape(batch_size, -1)[rows].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.eval()
        return self

    @torch.no_grad()
    def impute(self, batch: MultimodalBatch) -> MultimodalBatch:
        keep = {n: batch.mask(n) for n in self.dims}
        out = batch
        for m in self.dims:
            if not bool(batch.mask(m).all()):
                shape = (batch.batch_size, *batch[m].shape[1:]) if batch.get(m) is not None else (batch.batch_size, self.dims[m])
                out = fill(out, m, self.predict(batch, m, keep).reshape(shape))
        return out

    __call__ = impute


class Imputed(nn.Module):
    """``model(imputer(batch))``: a model trained on complete data, fed completed batches."""

    def __init__(self, model: nn.Module, imputer: Callable[[MultimodalBatch], MultimodalBatch]) -> None:
        super().__init__()
        self.model = model
        self.imputer = imputer

    def forward(self, batch: MultimodalBatch) -> Tensor:
        return self.model(self.imputer(batch))


class ZeroFilled(nn.Module):
    """The naive baseline: absent modalities become zeros *marked present* (what a mask-unaware
    model sees), so the model reads the placeholders as if they were data."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: MultimodalBatch) -> Tensor:
        present = {m: torch.ones_like(v) for m, v in batch.present.items()}
        tensors = {m: batch.drop_modality(m, ~batch.mask(m))[m] for m in batch.tensors}
        return self.model(MultimodalBatch(tensors, present, dict(batch.fields), dict(batch.token_mask)))
