"""MONAI dictionary transforms from study files to the model's 2-channel grid, and back.

Data path (keys of the dictionary):

===============  ==========================================  ================================
step             transform                                   result
===============  ==========================================  ================================
load             :class:`LoadSeriesd` (MONAI ``LoadImage``)  ``mr``, ``ct``, ``mask`` MetaTensors
orient           ``Orientationd`` RAS                        same, RAS
co-register      :class:`CoRegisterd` (SimpleITK MI)         ``image`` [2, X, Y, Z] on the reference
                                                             grid (MR, or CT when MR is missing),
                                                             ``present`` [2] bool, ``registration``
spacing          ``Spacingd`` 4 mm                           reference grid at 4 mm
normalise        :class:`NormalizeModalitiesd`               MR 1-99 percentiles, CT window -40..120 HU
crop             ``CropForegroundd`` + ``ResizeWithPadOrCropd``  [2, 48, 56, 48]
===============  ==========================================  ================================

Every geometric step is a MONAI invertible transform on ``image``, so ``Invertd`` (or
``pipeline.inverse``) brings a prediction back to the reference series' native voxel grid.
The MR channel is channel 0, CT channel 1; an absent modality's channel is zeros and its
``present`` flag is False (the model never reads it).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .intake import IntakeError

MODALITIES = ("mr", "ct")
SPACING = (4.0, 4.0, 4.0)
ROI = (48, 56, 48)
CT_WINDOW = (-40.0, 120.0)


def load_volume(source, name: str):
    """A channel-first MetaTensor from a NIfTI path or a list of DICOM files of one series."""
    from monai.transforms import LoadImage

    files = [Path(p) for p in (source if isinstance(source, (list, tuple)) else [source])]
    what = files[0] if len(files) == 1 else f"{name.upper()} series in {files[0].parent}"
    is_nifti = len(files) == 1 and files[0].name.endswith((".nii", ".nii.gz"))
    try:
        if is_nifti:
            img = LoadImage(reader="NibabelReader", image_only=True)(str(files[0]))
        else:
            with tempfile.TemporaryDirectory(prefix="mm-series-") as stage:
                # PydicomReader stacks a whole folder: give it a folder holding exactly this series
                for i, f in enumerate(files):
                    os.symlink(f.resolve(), Path(stage) / f"{i:05d}.dcm")
                img = LoadImage(reader="PydicomReader", image_only=True)(stage)
    except IntakeError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt/truncated files: one clear message
        raise IntakeError(f"{what}: cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from None
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] > 1:
        raise IntakeError(f"{what}: 4-D volume {shape} (time series or multi-echo); give one 3-D volume")
    if len(shape) == 4:
        img = img[..., 0]
    if img.ndim == 2 or min(img.shape) < 4:
        raise IntakeError(f"{what}: shape {tuple(img.shape)} is 2-D (or too thin); a 3-D volume with >= 4 voxels per axis is needed")
    finite = torch.isfinite(img)
    if not bool(finite.all()):
        bad = float((~finite).float().mean())
        if bad > 0.01:
            raise IntakeError(f"{what}: {bad:.1%} of voxels are NaN/Inf; refusing to analyse")
        img = torch.nan_to_num(img, nan=float(img[finite].min()), posinf=float(img[finite].max()), neginf=float(img[finite].min()))
        img.meta["nonfinite_fraction"] = bad
    return img.unsqueeze(0).float()


class LoadSeriesd:
    """Load ``keys`` (file path or DICOM file list; ``None``/missing = absent modality)."""

    def __init__(self, keys=("mr", "ct", "mask")) -> None:
        self.keys = keys

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.keys:
            if d.get(key) is None:
                d.pop(key, None)
                continue
            d[key] = load_volume(d[key], key)
            if "nonfinite_fraction" in d[key].meta:
                d.setdefault("messages", []).append(
                    f"{key.upper()}: {d[key].meta['nonfinite_fraction']:.3%} NaN/Inf voxels replaced by the volume's range")
        if not any(m in d for m in MODALITIES):
            raise IntakeError("study has neither an MR nor a CT volume")
        return d


class CoRegisterd:
    """Register CT to MR (rigid MI), resample it onto the MR grid and stack ``image`` = [MR, CT].

    With one modality the reference is that modality. The registration result (transform,
    quality, seconds) goes to ``registration``; a failed quality check keeps header alignment
    and says so in ``messages``.
    """

    def __init__(self, register: bool = True, seed: int = 0) -> None:
        self.register = register
        self.seed = seed

    def __call__(self, data: dict) -> dict:
        from monai.data import MetaTensor

        from .registration import register_rigid, resample_to

        d = dict(data)
        mr, ct = d.pop("mr", None), d.pop("ct", None)
        ref = mr if mr is not None else ct
        ref_affine = np.asarray(ref.affine, float)
        channels = [torch.zeros_like(ref[0]), torch.zeros_like(ref[0])]
        if mr is not None:
            channels[0] = mr[0].as_tensor() if isinstance(mr, MetaTensor) else mr[0]
        reg = None
        if mr is not None and ct is not None:
            ct_np, ct_affine = ct[0].numpy(), np.asarray(ct.affine, float)
            if self.register:
                reg = register_rigid(mr[0].numpy(), ref_affine, ct_np, ct_affine, seed=self.seed)
                if not reg["quality"]["passed"]:
                    d.setdefault("messages", []).append(
                        "registration quality check failed (" + "; ".join(reg["quality"]["reasons"]) + "): CT kept at header alignment")
            else:
                reg = {"method": "header only", "ct_from_mr": np.eye(4).tolist(), "quality": {"passed": True, "reasons": []}}
            use = np.asarray(reg["ct_from_mr"]) if reg["quality"]["passed"] else np.eye(4)
            channels[1] = torch.from_numpy(resample_to(ct_np, ct_affine, ref.shape[1:], ref_affine, use))
        elif ct is not None:
            channels[1] = ct[0].as_tensor() if isinstance(ct, MetaTensor) else ct[0]
        image = MetaTensor(torch.stack(channels).float(), affine=ref.affine, meta=dict(ref.meta),
                           applied_operations=list(ref.applied_operations))
        d["image"] = image
        d["present"] = torch.tensor([mr is not None, ct is not None])
        d["reference"] = "mr" if mr is not None else "ct"
        d["registration"] = reg
        return d


class NormalizeModalitiesd:
    """MR: 1st-99th percentile of the head -> [0, 1]; CT: window ``CT_WINDOW`` HU -> [0, 1] (clipped)."""

    def __init__(self, key: str = "image") -> None:
        self.key = key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        img = d[self.key]
        present = d["present"]
        out = img.clone()
        if present[0]:
            mr = img[0]
            lo, hi = torch.quantile(mr.flatten()[::7].float(), torch.tensor([0.01, 0.99]))
            out[0] = ((mr - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1.2)
        if present[1]:
            lo, hi = CT_WINDOW
            out[1] = ((img[1] - lo) / (hi - lo)).clamp(0, 1)
        out[~present] = 0
        d[self.key] = out
        return d


def preprocess(register: bool = True, with_mask: bool = True, seed: int = 0, with_icv: bool = False):
    """The deterministic MONAI Compose from files to the model grid (cacheable).

    ``with_icv``: also the study's intracranial volume (:class:`~apps.medical.intracranial.IntracranialMaskd`,
    from the CT or the MR on the reference grid) as ``icv`` [1, *ROI], carried through every geometric step."""
    from monai.transforms import (
        AsDiscreted,
        Compose,
        CropForegroundd,
        Orientationd,
        ResizeWithPadOrCropd,
        Spacingd,
    )

    geo = ["image", "mask"] if with_mask else ["image"]
    icv_steps = []
    if with_icv:
        from .intracranial import IntracranialMaskd

        geo.append("icv")
        icv_steps.append(IntracranialMaskd())
    return Compose([
        LoadSeriesd(("mr", "ct", "mask") if with_mask else ("mr", "ct")),
        Orientationd(keys=["mr", "ct", "mask", "image"], axcodes="RAS", allow_missing_keys=True),
        CoRegisterd(register=register, seed=seed),
        *icv_steps,
        Spacingd(keys=geo, pixdim=SPACING, mode=["bilinear"] * len(geo), allow_missing_keys=True),
        NormalizeModalitiesd("image"),
        CropForegroundd(keys=geo, source_key="image", select_fn=lambda x: x > 0.05, margin=2, allow_smaller=True),
        ResizeWithPadOrCropd(keys=geo, spatial_size=ROI),
        *([AsDiscreted(keys="mask", threshold=0.5)] if with_mask else []),
        *([AsDiscreted(keys="icv", threshold=0.5)] if with_icv else []),
    ])


def invert_to_native(pipeline, data: dict, prediction: torch.Tensor):
    """Bring a prediction on the model grid back to the reference series' native grid (MONAI ``Invertd``)."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    pred = MetaTensor(prediction, affine=data["image"].affine, meta=dict(data["image"].meta),
                      applied_operations=list(data["image"].applied_operations))
    inv = Invertd(keys="pred", transform=pipeline, orig_keys="image", nearest_interp=False)
    out = inv({"pred": pred, "image": data["image"]})
    return out["pred"]
