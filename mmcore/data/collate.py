"""Build a :class:`MultimodalBatch` from samples in which any modality may be ``None``.

A sample is a mapping.  Keys named in ``modalities`` are modalities: a tensor (or array-like)
when present, ``None`` or missing when absent.  Every other key is a field (label, id, ...)
collated with :func:`torch.utils.data.default_collate`.

Shape rules, per modality, over the samples that have it:

* all equal -> stacked to ``[B, *shape]``; absent rows are zeros.
* first dimension varies and the modality is listed in ``pad`` -> padded to ``[B, T_max, ...]``
  with ``token_mask[name]`` ``[B, T_max]`` True on real tokens.
* anything else -> :class:`CollateError` naming the modality, the sample and both shapes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from .batch import MultimodalBatch


class CollateError(ValueError):
    """A sample cannot join the batch; the message names the modality and the sample index."""


def _as_tensor(value: Any, name: str, index: int) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except Exception as exc:  # numpy object arrays, strings, ...
        raise CollateError(
            f"modality '{name}' of sample {index}: cannot convert {type(value).__name__} to a tensor ({exc})"
        ) from None


def collate_multimodal(
    samples: Sequence[Mapping[str, Any]],
    modalities: Iterable[str],
    shapes: Mapping[str, Sequence[int]] | None = None,
    pad: Iterable[str] = (),
    pad_value: float = 0.0,
) -> MultimodalBatch:
    """Collate ``samples`` into one batch.

    Args:
        samples: the samples; may be empty (gives a batch of size 0).
        modalities: names of the keys that are modalities.
        shapes: optional per-sample shape of a modality, used to build placeholders when no
            sample of the batch has it and to check the samples that do.
        pad: modalities whose first dimension (tokens) may differ between samples.
        pad_value: value of padded token positions.
    """
    modalities = list(modalities)
    shapes = dict(shapes or {})
    pad = set(pad)
    n = len(samples)
    tensors: dict[str, Tensor] = {}
    present: dict[str, Tensor] = {}
    token_mask: dict[str, Tensor] = {}

    for name in modalities:
        values = []
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping):
                raise CollateError(f"sample {i} is a {type(sample).__name__}, expected a mapping of modality -> tensor")
            v = sample.get(name)
            values.append(None if v is None else _as_tensor(v, name, i))
        mask = torch.tensor([v is not None for v in values], dtype=torch.bool)
        present[name] = mask
        have = [(i, v) for i, v in enumerate(values) if v is not None]
        expected = tuple(shapes[name]) if name in shapes else None

        if not have:
            if expected is not None:
                tensors[name] = torch.zeros((n, *expected))
            continue

        ref_index, ref = have[0]
        if expected is None:
            expected = tuple(ref.shape)
            source = f"sample {ref_index}"
        else:
            source = "the declared shape"
        dtype = ref.dtype
        for i, v in have:
            if v.dtype.is_floating_point != dtype.is_floating_point:
                raise CollateError(
                    f"modality '{name}' of sample {i}: dtype {v.dtype} does not match {dtype} of sample {ref_index}"
                )
            same = tuple(v.shape) == expected
            padded_ok = name in pad and v.dim() == len(expected) and tuple(v.shape[1:]) == expected[1:]
            if not (same or padded_ok):
                hint = "" if name in pad else " (pass pad=[...] for variable-length token modalities)"
                raise CollateError(
                    f"modality '{name}' of sample {i} has shape {tuple(v.shape)}, expected {expected} as in {source}{hint}"
                )

        if name in pad:
            length = max(int(v.shape[0]) for _, v in have)
            out = torch.full((n, length, *expected[1:]), pad_value, dtype=dtype)
            tmask = torch.zeros((n, length), dtype=torch.bool)
            for i, v in have:
                out[i, : v.shape[0]] = v
                tmask[i, : v.shape[0]] = True
            tensors[name] = out
            token_mask[name] = tmask
        else:
            out = torch.zeros((n, *expected), dtype=dtype)
            for i, v in have:
                out[i] = v
            tensors[name] = out

    field_names: list[str] = []
    for sample in samples:
        for key in sample:
            if key not in present and key not in field_names:
                field_names.append(key)
    fields: dict[str, Any] = {}
    for key in field_names:
        column = []
        for i, sample in enumerate(samples):
            if key not in sample or sample[key] is None:
                raise CollateError(f"field '{key}' is missing in sample {i}; only modalities may be absent")
            column.append(sample[key])
        try:
            fields[key] = default_collate(column)
        except Exception as exc:
            raise CollateError(f"field '{key}': samples cannot be collated ({exc})") from None
    return MultimodalBatch(tensors=tensors, present=present, fields=fields, token_mask=token_mask)


class MultimodalCollator:
    """A picklable ``collate_fn`` for ``DataLoader`` (works with worker processes)."""

    def __init__(
        self,
        modalities: Iterable[str],
        shapes: Mapping[str, Sequence[int]] | None = None,
        pad: Iterable[str] = (),
        pad_value: float = 0.0,
    ) -> None:
        self.modalities = list(modalities)
        self.shapes = dict(shapes or {})
        self.pad = list(pad)
        self.pad_value = pad_value

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> MultimodalBatch:
        return collate_multimodal(samples, self.modalities, self.shapes, self.pad, self.pad_value)

    def __repr__(self) -> str:
        return f"MultimodalCollator(modalities={self.modalities}, pad={self.pad})"
