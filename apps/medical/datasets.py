"""Training data: MONAI datalists -> preprocessed cases (cached on disk as safetensors) -> batches.

``prepare_cases`` runs the deterministic pipeline (:func:`apps.medical.transforms.preprocess`,
registration included) once per study and stores ``<cache>/<id>.safetensors`` (one tensor per
*present* modality, ``mr``/``ct`` [1, *ROI], plus ``mask``) + ``.json``; it resumes where it
stopped. Training then uses a MONAI ``CacheDataset`` (cases in RAM, random flips and crops per
epoch, applied to the stacked modalities by :func:`~apps.medical.transforms.on_stack`) and
:func:`collate_studies`, which builds the mmcore ``MultimodalBatch``: an absent modality is
``None`` in the sample and ``False`` in its present mask, never a zero volume the model reads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .transforms import MODALITIES

log = logging.getLogger(__name__)


def prepare_cases(entries: list[dict], cache_dir: Path, *, register: bool = True, progress: bool = True) -> list[dict]:
    """Preprocess each datalist entry once; returns items ``{"cache", "label", "id", ...}``; bad studies are reported."""
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    from .intake import intake_cause, read_study
    from .transforms import preprocess

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pipe = preprocess(register=register, with_mask=True)
    items = []
    for entry in tqdm(entries, desc="preprocess", disable=not progress):
        tensors, meta_path = cache_dir / f"{entry['id']}.safetensors", cache_dir / f"{entry['id']}.json"
        if not (tensors.exists() and meta_path.exists()):
            try:
                study = read_study(entry["study"])
                d = pipe({**{m: study.sources.get(m) for m in MODALITIES}, "mask": entry.get("mask")})
            except Exception as exc:  # noqa: BLE001 - a bad study is reported and skipped, the rest go on
                cause = intake_cause(exc)
                if cause is None:
                    raise
                log.warning("skipped %s: %s", entry["id"], cause)
                continue
            save_case(tensors, d)
            atomic_write_json(meta_path, {"id": entry["id"], "label": entry.get("label"), "registration": d["registration"],
                                          "messages": d.get("messages", []) + study.messages})
        items.append({"cache": str(tensors), "label": int(entry.get("label", -1)), "id": entry["id"]})
    return items


def save_case(path: Path, d: dict) -> None:
    """One preprocessed study (``mr``/``ct`` [1, *ROI] or ``None``, ``mask`` [1, *ROI]) as safetensors, atomically."""
    from safetensors.torch import save

    from mmcore.utils.io import atomic_write_bytes

    def raw(x):
        return torch.as_tensor(x.as_tensor() if hasattr(x, "as_tensor") else x)

    tensors = {m: raw(d[m]).float().contiguous() for m in MODALITIES if d.get(m) is not None}
    tensors["mask"] = raw(d["mask"]).to(torch.uint8).contiguous()
    atomic_write_bytes(path, save(tensors))


def load_case(path: Path | str) -> dict:
    """A cached study: ``mr``/``ct`` [1, *ROI] float or ``None``, ``present`` ``{modality: bool}``, ``mask``.

    Reads the per-modality layout and the earlier stacked one (``image`` [2, *ROI] in MR, CT
    order + ``present`` [2]) that caches written before it hold."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    if "image" in t:
        if "present" not in t or t["image"].shape[0] != len(MODALITIES):
            raise ValueError(f"{path}: stacked cache without a {len(MODALITIES)}-channel 'image' and 'present'")
        flags = t.pop("present").bool().tolist()
        image = t.pop("image")
        t.update({m: image[i:i + 1] for i, m in enumerate(MODALITIES) if flags[i]})
    if "mask" not in t or not any(m in t for m in MODALITIES):
        raise ValueError(f"{path}: a cached study needs 'mask' and one of {list(MODALITIES)}; has {sorted(t)}")
    case = {m: (t[m].float() if m in t else None) for m in MODALITIES}
    return {**case, "present": {m: case[m] is not None for m in MODALITIES}, "mask": t["mask"].float()}


class LoadCachedd:
    """``{"cache": path}`` -> ``mr``/``ct`` [1, *ROI] float (``None`` where absent), ``present``, ``mask`` [1, *ROI]."""

    def __call__(self, data: dict) -> dict:
        return {**data, **load_case(data["cache"])}


PATCH = (32, 32, 32)


class RandIntensityd:
    """Per-study contrast jitter on the normalised volumes (each present modality drawn independently):
    MR ``x -> a * x ** gamma + N(0, sd)`` with gamma 0.7-1.4, a 0.9-1.1, sd 0-0.03; CT (window [0, 1]) a
    shift of +-0.05 (~+-8 HU), a scale 0.9-1.1 around mid-window and the same noise, clipped to the window.

    Why: a model trained on one contrast keyed on absolute grey levels and found nothing on heads
    rendered by other code; the lesion is defined *relative to* its own white matter, so absolute
    levels must not be a usable cue. ``prob`` per modality; a seeded ``generator`` makes it repeatable."""

    def __init__(self, keys: tuple[str, ...] = MODALITIES, prob: float = 0.8, generator: torch.Generator | None = None) -> None:
        self.keys, self.prob, self.gen = tuple(keys), prob, generator

    def _u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for m in self.keys:
            x = d.get(m)
            if x is None or float(torch.rand((), generator=self.gen)) >= self.prob:
                continue
            x = torch.as_tensor(x.as_tensor() if hasattr(x, "as_tensor") else x).float()
            noise = torch.randn(x.shape, generator=self.gen) * self._u(0.0, 0.03)
            if m == "ct":
                x = ((x - 0.5) * self._u(0.9, 1.1) + 0.5 + self._u(-0.05, 0.05) + noise).clamp(0, 1)
            else:
                x = (self._u(0.9, 1.1) * x.clamp(min=0) ** self._u(0.7, 1.4) + noise).clamp(0, 1.2)
            d[m] = x
        return d


def train_transforms(augment: bool = True, patch: tuple[int, ...] | None = None):
    """Cached load; when augmenting, flips on every axis (heads arrive RAS or flipped), a small random
    affine (+-10 degrees, +-10 % scale, p 0.5), :class:`RandIntensityd` and (``patch``) lesion-centred/
    background crops.

    Patches make a CPU step ~4x cheaper and raise the lesion's share of voxels from ~0.2 % to
    a few %, which is what lets the segmentation start learning within minutes.
    """
    import math

    from monai.transforms import Compose, RandAffined, RandCropByPosNegLabeld, RandFlipd

    from .transforms import on_stack

    steps = [LoadCachedd()]
    if augment:
        geometric = [RandFlipd(keys=["image", "mask"], prob=0.5, spatial_axis=a) for a in (0, 1, 2)]
        geometric.append(RandAffined(keys=["image", "mask"], prob=0.5, rotate_range=[math.radians(10)] * 3,
                                     scale_range=[0.1] * 3, mode=("bilinear", "nearest"), padding_mode="zeros"))
        if patch:
            geometric.append(RandCropByPosNegLabeld(keys=["image", "mask"], label_key="mask", spatial_size=patch,
                                                    pos=3, neg=1, num_samples=1, allow_smaller=True))
        steps += [on_stack(*geometric), RandIntensityd()]
    return Compose(steps)


def cached_dataset(items: list[dict], augment: bool, num_workers: int = 0, patch: tuple[int, ...] | None = None):
    from monai.data import CacheDataset

    return CacheDataset(items, transform=train_transforms(augment, patch), cache_rate=1.0, num_workers=num_workers,
                        progress=False)


def collate_studies(items: list[dict]):
    """Cases (``mr``/``ct`` [1, *ROI] or ``None``, ``mask``, ``label``) -> :class:`mmcore.data.MultimodalBatch`
    with ``mr``/``ct`` [B, 1, *ROI] + present masks, ``fields["seg"]`` [B, 1, *ROI] and ``fields["label"]`` [B]."""
    from mmcore.data import collate_multimodal

    samples = []
    items = [x for it in items for x in (it if isinstance(it, list) else [it])]   # patch samplers return lists
    for it in items:
        sample = {m: it.get(m) for m in MODALITIES}
        if "present" in it and {m: sample[m] is not None for m in MODALITIES} != dict(it["present"]):
            raise ValueError(f"case {it.get('id', '?')}: present {it['present']} does not match its tensors "
                             f"({[m for m in MODALITIES if sample[m] is not None]})")
        sample["seg"] = torch.as_tensor(it["mask"])
        sample["label"] = int(it["label"])
        samples.append(sample)
    shape = tuple(samples[0]["seg"].shape[1:])
    return collate_multimodal(samples, modalities=list(MODALITIES), shapes={m: (1, *shape) for m in MODALITIES})


def study_batch(d: dict):
    """One preprocessed study (:func:`apps.medical.transforms.preprocess`) -> a ``MultimodalBatch`` of size 1
    (``mr``/``ct`` [1, 1, *ROI], an absent modality's placeholder never read behind its False mask)."""
    from mmcore.data import collate_multimodal

    sample = {m: (d[m].as_tensor() if hasattr(d[m], "as_tensor") else d[m]) if d["present"].get(m) else None
              for m in MODALITIES}
    shape = next(v.shape for v in sample.values() if v is not None)
    return collate_multimodal([sample], modalities=list(MODALITIES), shapes={m: tuple(shape) for m in MODALITIES})


def read_datalist(path: Path | str) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "training" not in data:
        raise ValueError(f"{path}: a MONAI-style datalist with 'training' (and 'validation'/'test') lists is expected")
    return data
