"""Sliding-window inference over named modalities.

MONAI's ``sliding_window_inference`` cuts windows out of one channel-first tensor. Here the caller
gives a :class:`~mmcore.data.MultimodalBatch` and a function of a ``MultimodalBatch`` (the windows);
the modalities are stacked into channels only to cut the windows and split back into named
tensors, with each row's present masks, before the function sees them. The function returns a
dict of dense tensors (``[n, C_k, *roi]`` each), stitched per key.

=================  ==============================  ===========================================
argument           shape                           note
=================  ==============================  ===========================================
``batch[m]``       [B, 1, *S]                      placeholder rows where ``present[m]`` is
                                                   False: passed on, never read by the model
``fn(windows)``    ``{key: [n, C_k, *roi]}``       ``windows``: ``MultimodalBatch`` with
                                                   ``[n, 1, *roi]`` per modality
result             ``{key: [B, C_k, *S]}``
=================  ==============================  ===========================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def sliding_window_named(batch, fn: Callable[..., dict[str, torch.Tensor]], roi: Sequence[int], *,
                         modalities: Sequence[str] | None = None, sw_batch_size: int = 1,
                         overlap: float = 0.25) -> dict[str, torch.Tensor]:
    """Run ``fn`` on sliding windows of ``batch`` (one row at a time, so each window carries its row's masks)."""
    from monai.inferers import sliding_window_inference

    from mmcore.data import MultimodalBatch

    names = [m for m in (modalities or batch.modalities) if batch.get(m) is not None]
    if not names:
        raise ValueError(f"no tensor for any of {list(modalities or batch.modalities)} in {batch!r}")
    widths = [int(batch[m].shape[1]) for m in names]
    masks = {m: batch.mask(m) for m in (modalities or batch.modalities)}
    rows: list[dict[str, torch.Tensor]] = []
    for b in range(batch.batch_size):
        row_masks = {m: mask[b:b + 1] for m, mask in masks.items()}

        def predictor(x: torch.Tensor, row_masks=row_masks) -> dict[str, torch.Tensor]:
            parts = torch.split(x, widths, dim=1)
            windows = MultimodalBatch(dict(zip(names, parts)), {m: v.expand(x.shape[0]) for m, v in row_masks.items()})
            return fn(windows)

        stacked = torch.cat([batch[m][b:b + 1] for m in names], dim=1)
        rows.append(sliding_window_inference(stacked, roi_size=tuple(roi), sw_batch_size=sw_batch_size,
                                             predictor=predictor, overlap=overlap))
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
