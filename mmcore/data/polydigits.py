"""PolyDigits: a PolyMNIST-like multi-view set built offline from scikit-learn's bundled digits.

Every sample has one label (the digit class) and ``num_views`` modalities ``"m0"``, ``"m1"``, ...
Like PolyMNIST, the views share *only the content*: each view shows a **different** handwritten
instance of the same digit, rendered in that view's own style (background texture, contrast,
inversion, jitter).  A model can therefore only learn what the views have in common — the class —
which is exactly what cross-modal coherence measures.

==============  ===========================  =============================================
item            shape / type                 meaning
==============  ===========================  =============================================
``sample[m]``   ``float32 [64]`` or ``None`` an 8x8 image flattened, values in [0, 1]
``"label"``     ``int64 []``                 the digit class, 0..9
``"index"``     ``int64 []``                 the sample's index in the data set
==============  ===========================  =============================================

The 1,797 source digits are split once (seeded) into disjoint train / val / test pools of
instances, so no handwritten digit of the test split appears in training.

``domain="target"`` renders every view in a second style (blurred strokes, reduced contrast, a
bright gradient background): the "new scanner / platform / renderer" of domain adaptation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SHAPE = (8, 8)
NUM_CLASSES = 10
SPLITS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
DOMAINS = ("source", "target")


def _digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 8, 8]`` in [0, 1] and labels of the instances in ``split``."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    digits = load_digits()
    order = np.random.default_rng(1234).permutation(len(digits.target))
    lo, hi = SPLITS[split]
    take = order[int(lo * len(order)): int(hi * len(order))]
    return (digits.images[take] / 16.0).astype(np.float32), digits.target[take].astype(np.int64)


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


def _texture(view: int, rng: np.random.Generator) -> np.ndarray:
    """A view-specific background: a grating whose orientation and frequency belong to the view."""
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    angle = np.pi * view / 3.0 + 0.2
    freq = 0.9 + 0.35 * view
    phase = rng.integers(0, 4) * np.pi / 2  # a few phases: style, not noise
    return 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)


def _blur(img: np.ndarray) -> np.ndarray:
    padded = np.pad(img, 1, mode="edge")
    out = np.zeros_like(img)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out += padded[dy: dy + 8, dx: dx + 8]
    return out / 9.0


def render(digit: np.ndarray, view: int, rng: np.random.Generator, domain: str = "source") -> np.ndarray:
    """One 8x8 digit in the style of ``view`` (and ``domain``); values in [0, 1]."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain '{domain}'; choose one of {', '.join(DOMAINS)}")
    img = digit if rng.random() < 0.7 else _shift(digit, *rng.integers(-1, 2, size=2))
    if domain == "target":
        img = np.clip(1.6 * _blur(img), 0, 1)
    background = _texture(view, rng)
    style = view % 4
    if style == 0:                       # plain strokes on faint texture
        out = np.maximum(img, 0.15 * background)
    elif style == 1:                     # strokes over a strong grating
        out = np.maximum(img, 0.3 * background)
    elif style == 2:                     # inverted: dark strokes on a bright textured page
        out = (1.0 - img) * (0.8 + 0.2 * background)
    else:                                # half-contrast strokes on mid-grey texture
        out = 0.3 + 0.7 * img * (0.6 + 0.4 * background)
    if domain == "target":
        yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
        gradient = (xx + yy) / 14.0
        out = 0.25 + 0.5 * out + 0.25 * gradient
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class PolyDigits(Dataset):
    """``n`` seeded samples of ``num_views`` views of the same digit class.

    Args:
        n: number of samples.
        split: ``train`` | ``val`` | ``test`` (disjoint pools of handwritten instances).
        num_views: number of modalities (``m0`` .. ``m{k-1}``), at most 8.
        missing_rate: probability that a view is absent (``None``); never all of a sample's views.
        domain: ``source`` or ``target`` rendering (domain adaptation).
        seed: everything (labels, instances, styles, missingness) follows from it.
    """

    def __init__(self, n: int = 2000, split: str = "train", num_views: int = 3, missing_rate: float = 0.0,
                 domain: str = "source", seed: int = 0) -> None:
        if not 1 <= num_views <= 8:
            raise ValueError(f"num_views must be 1..8, got {num_views}")
        if not 0.0 <= missing_rate < 1.0:
            raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
        images, labels = _digit_pool(split)
        rng = np.random.default_rng(seed * 7919 + sum(map(ord, split + domain)))
        by_class = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
        self.modalities = [f"m{v}" for v in range(num_views)]
        self.labels = torch.from_numpy(rng.integers(0, NUM_CLASSES, size=n).astype(np.int64))
        views = np.zeros((num_views, n, 64), dtype=np.float32)
        self.instance = np.zeros((num_views, n), dtype=np.int64)
        for i, y in enumerate(self.labels.tolist()):
            for v in range(num_views):
                k = rng.choice(by_class[y])
                self.instance[v, i] = k
                views[v, i] = render(images[k], v, rng, domain).reshape(-1)
        self.data = {m: torch.from_numpy(views[v]) for v, m in enumerate(self.modalities)}
        keep = rng.random((n, num_views)) >= missing_rate
        none_left = ~keep.any(axis=1)
        keep[none_left, rng.integers(0, num_views, size=int(none_left.sum()))] = True
        self.keep = torch.from_numpy(keep)
        self.split, self.domain, self.num_views = split, domain, num_views

    @property
    def shapes(self) -> dict[str, tuple[int]]:
        return {m: (64,) for m in self.modalities}

    def collator(self):
        from .collate import MultimodalCollator

        return MultimodalCollator(self.modalities, shapes=self.shapes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        sample = {m: (self.data[m][i] if self.keep[i, v] else None) for v, m in enumerate(self.modalities)}
        sample["label"] = self.labels[i]
        sample["index"] = torch.tensor(i)
        return sample

    def full_batch(self):
        """The whole set as one :class:`MultimodalBatch` (small enough to hold in memory)."""
        return self.collator()([self[i] for i in range(len(self))])
