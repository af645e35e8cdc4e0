"""The one data contract of mmcore: a multimodal batch with a ``present`` mask per modality.

A :class:`MultimodalBatch` maps modality names to batched tensors and carries, for every
modality, a boolean ``present`` mask of shape ``[B]``.  Rows whose mask is ``False`` hold
placeholder zeros written by the collate function; consumers (fusions, losses, metrics)
must read the mask and never the placeholder.  That way a missing modality is a value of
the mask, not a special case in the code.

==================  =========================  ==========================================
attribute           type                       meaning
==================  =========================  ==========================================
``tensors``         ``dict[str, Tensor]``      modality -> ``[B, ...]`` (placeholder rows
                                               where absent)
``present``         ``dict[str, BoolTensor]``  modality -> ``[B]``; True where the sample
                                               has the modality
``token_mask``      ``dict[str, BoolTensor]``  only for variable-length modalities collated
                                               with padding: ``[B, T]``, True on real tokens
``fields``          ``dict[str, Any]``         everything that is not a modality (labels,
                                               ids), collated with torch's default rules
==================  =========================  ==========================================

A modality absent from *every* sample of a batch, whose shape the collate function was
not told, has a ``present`` entry (all False) but no tensor: ``batch.get(name)`` returns
``None`` and fusions treat it as absent everywhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def _move(value: Any, fn) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _move(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_move(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(_move(v, fn) for v in value)
    return value


@dataclass
class MultimodalBatch(Mapping):
    """Batched modalities plus their availability masks; a read-only mapping over modalities."""

    tensors: dict[str, Tensor]
    present: dict[str, Tensor]
    fields: dict[str, Any] = field(default_factory=dict)
    token_mask: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, tensor in self.tensors.items():
            if name not in self.present:
                raise ValueError(f"modality '{name}' has a tensor but no present mask")
            mask = self.present[name]
            if mask.dtype != torch.bool or mask.dim() != 1:
                raise ValueError(f"present mask of '{name}' must be a 1-D bool tensor, got {mask.dtype} {tuple(mask.shape)}")
            if tensor.shape[0] != mask.shape[0]:
                raise ValueError(
                    f"modality '{name}': tensor batch size {tensor.shape[0]} != mask size {mask.shape[0]}"
                )

    # Mapping interface: over modalities that hold a tensor.
    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            known = ", ".join(sorted(self.present)) or "none"
            raise KeyError(f"no tensor for modality '{name}' in this batch (modalities: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def modalities(self) -> list[str]:
        """All modality names, including ones absent from every sample."""
        return list(self.present)

    @property
    def batch_size(self) -> int:
        for mask in self.present.values():
            return int(mask.shape[0])
        for value in self.fields.values():
            if isinstance(value, Tensor) and value.dim() > 0:
                return int(value.shape[0])
        return 0

    def mask(self, name: str) -> Tensor:
        """The present mask of ``name``; all False if the batch does not know the modality."""
        if name in self.present:
            return self.present[name]
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)

    @property
    def device(self) -> torch.device:
        for t in list(self.tensors.values()) + list(self.present.values()):
            return t.device
        return torch.device("cpu")

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MultimodalBatch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return MultimodalBatch(
            tensors=_move(self.tensors, move),
            present=_move(self.present, move),
            fields=_move(self.fields, move),
            token_mask=_move(self.token_mask, move),
        )

    def pin_memory(self) -> "MultimodalBatch":
        """Called by ``DataLoader(pin_memory=True)``."""
        pin = lambda t: t.pin_memory()  # noqa: E731
        return MultimodalBatch(
            tensors=_move(self.tensors, pin),
            present=_move(self.present, pin),
            fields=_move(self.fields, pin),
            token_mask=_move(self.token_mask, pin),
        )

    def drop_modality(self, name: str, rows: Tensor | None = None) -> "MultimodalBatch":
        """A copy where ``name`` is marked absent (in ``rows`` only, a bool ``[B]`` mask, if given).

        Placeholder rows are zeroed so nothing downstream can read the dropped values even by
        mistake.
        """
        if name not in self.present:
            return self
        drop = torch.ones_like(self.present[name]) if rows is None else rows.to(self.present[name].device).bool()
        present = dict(self.present)
        present[name] = self.present[name] & ~drop
        tensors = dict(self.tensors)
        if name in tensors:
            keep = present[name].view(-1, *([1] * (tensors[name].dim() - 1)))
            tensors[name] = tensors[name] * keep.to(tensors[name].dtype) if tensors[name].is_floating_point() \
                else torch.where(keep, tensors[name], torch.zeros_like(tensors[name]))
        return MultimodalBatch(tensors, present, dict(self.fields), dict(self.token_mask))

    def only(self, names: Iterable[str]) -> "MultimodalBatch":
        """A copy where every modality not in ``names`` is marked absent for all samples."""
        keep = set(names)
        batch = self
        for name in self.modalities:
            if name not in keep:
                batch = batch.drop_modality(name)
        return batch

    def select(self, index: Tensor | slice) -> "MultimodalBatch":
        """Rows ``index`` of every tensor, mask and tensor field."""
        take = lambda t: t[index] if t.dim() > 0 else t  # noqa: E731
        fields = {
            k: take(v) if isinstance(v, Tensor) else v for k, v in self.fields.items()
        }
        return MultimodalBatch(
            tensors={k: take(v) for k, v in self.tensors.items()},
            present={k: take(v) for k, v in self.present.items()},
            fields=fields,
            token_mask={k: take(v) for k, v in self.token_mask.items()},
        )

    def __repr__(self) -> str:
        parts = []
        for name in self.present:
            n = int(self.present[name].sum())
            shape = tuple(self.tensors[name].shape) if name in self.tensors else None
            parts.append(f"{name}: {shape} present {n}/{self.batch_size}")
        fields = ", ".join(self.fields)
        return f"MultimodalBatch({'; '.join(parts)}; fields: {fields})"
