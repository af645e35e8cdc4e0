"""PNG grids: cross-generation and latent traversals (Pillow, no display needed).

``save_grid(images [R, C, H, W] in [0, 1], path, scale)`` writes one image with a 1-pixel gap
between cells, atomically.  The two helpers build the arrays:

* :func:`cross_generation_grid` — for each source modality a block of rows: the real inputs of
  ``n`` samples on top, then every modality generated from that source alone.
* :func:`traversal_grid` — one row per latent dimension, columns sweep it from -span to +span
  around a base code (the posterior mean of a sample), every other dimension fixed.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import MultimodalBatch
from ..train import atomic_write_bytes
from .base import MultimodalVAE, evaluating


def save_grid(images, path: str | Path, scale: int = 4, gap: int = 1) -> Path:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"a grid needs [rows, cols, H, W] images, got shape {arr.shape}")
    R, C, H, W = arr.shape
    canvas = np.ones((R * (H + gap) + gap, C * (W + gap) + gap), dtype=np.float32) * 0.5
    for r in range(R):
        for c in range(C):
            y, x = gap + r * (H + gap), gap + c * (W + gap)
            canvas[y: y + H, x: x + W] = np.clip(arr[r, c], 0, 1)
    img = Image.fromarray((canvas * 255).round().astype(np.uint8), mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


@torch.no_grad()
def cross_generation_grid(model: MultimodalVAE, batch: MultimodalBatch, image_shape: Sequence[int], n: int = 10) -> torch.Tensor:
    """Rows: for each source s: [real s] + [generated m from s for every m]; ``n`` columns.

    Decoded in eval mode; the model's training mode is restored afterwards."""
    sub = batch.select(torch.arange(min(n, batch.batch_size)))
    rows = []
    with evaluating(model):
        for s in model.modalities:
            rows.append(sub[s].reshape(-1, *image_shape).cpu())
            gen = model.generate(sub.only([s]), [s])
            rows += [gen[m].reshape(-1, *image_shape).cpu() for m in model.modalities]
    return torch.stack(rows)


@torch.no_grad()
def traversal_grid(model: MultimodalVAE, batch: MultimodalBatch, modality: str, image_shape: Sequence[int],
                   dims: Sequence[int] | None = None, steps: int = 9, span: float = 2.5) -> torch.Tensor:
    """Rows: latent dimensions; columns: values from -span to +span; decoded ``modality``.

    Decoded in eval mode; the model's training mode is restored afterwards."""
    with evaluating(model):
        return _traversal(model, batch, modality, image_shape, dims, steps, span)


def _traversal(model, batch, modality, image_shape, dims, steps, span) -> torch.Tensor:
    one = batch.select(torch.arange(1))
    base = model.posterior(one).mean()[0]                       # [Z_total]
    dims = list(dims) if dims is not None else list(range(min(model.total_latent, 8)))
    values = torch.linspace(-span, span, steps, device=base.device)
    z = base.repeat(len(dims), steps, 1)
    for r, d in enumerate(dims):
        z[r, :, d] = values
    cond = model.condition(one)
    out = model.mean(model.decode(z.reshape(-1, z.shape[-1]), None if cond is None else cond.expand(z.shape[0] * steps, -1)))
    return out[modality].reshape(len(dims), steps, *image_shape).cpu()
