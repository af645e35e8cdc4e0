"""Data order and random per-item work (augmentation) that do not depend on workers, ranks or restarts.

:class:`ResumableSampler` replays a DistributedSampler's epoch permutation from any position.

A DataLoader with ``num_workers >= 1`` seeds each worker from a base seed it draws from the
loader's generator once per epoch, and hands batches to workers round-robin.  A run that resumes
mid-epoch skips the batches already seen, so every remaining batch lands on a different worker
with a different RNG stream: augmentations differ and the resumed run drifts from the one that
never stopped.

:class:`SeededItems` removes that dependence.  Before ``dataset[i]`` it seeds Python's,
NumPy's and torch's global RNGs from ``(seed, epoch, i)`` and afterwards puts them back, so

    augment(item i in epoch e) = f(seed, e, i)

whatever process, worker, batch position or restart produced it, and the caller's own RNG
streams (dropout in the main process) are untouched.  :func:`epoch_seed` gives the loader's
generator a seed per epoch for the same reason (``worker_init_fn`` code that reads
``torch.initial_seed()`` sees the same value after a resume).
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (SplitMix64-style finaliser on each part)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_seed(seed: int, epoch: int) -> int:
    return mix_seed(seed, epoch, 0x10ADE2)


class SeededItems(Dataset):
    """``dataset`` whose ``__getitem__(i)`` runs under global RNGs seeded from ``(seed, epoch, i)``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
        item_seed = mix_seed(self.seed, self.epoch, index)
        torch.default_generator.manual_seed(item_seed)   # CPU only: CUDA streams stay the caller's
        random.seed(item_seed)
        np.random.seed(item_seed % 2**32)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)


class ResumableSampler(Sampler[int]):
    """The per-epoch permutation of a DistributedSampler, starting ``skip`` indices in."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.inner):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)
