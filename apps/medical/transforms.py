"""MONAI dictionary transforms from study files to the model's per-modality grid, and back.

A study travels as mmcore's contract for one sample: a tensor per modality (``mr``, ``ct``; ``None``
when absent) plus ``present`` (``{"mr": bool, "ct": bool}``). Channels are stacked only *inside*
the geometric steps (:func:`on_stack`: :class:`StackModalitiesd` -> MONAI transforms on ``image``
-> :class:`SplitModalitiesd`), because MONAI resamples, crops and inverts one channel-first image
per key; no step outside reads a channel by position.

===============  ==========================================  ================================
step             transform                                   result
===============  ==========================================  ================================
load             :class:`LoadSeriesd` (MONAI ``LoadImage``)  ``mr``, ``ct``, ``mask`` MetaTensors
orient           ``Orientationd`` RAS                        same, RAS
co-register      :class:`CoRegisterd` (SimpleITK MI)         ``mr``, ``ct`` [1, X, Y, Z] on the
                                                             reference grid (MR, or CT when MR
                                                             is missing), ``present``,
                                                             ``registration``
spacing          ``Spacingd`` 4 mm (stacked)                 reference grid at 4 mm
normalise        :class:`NormalizeModalitiesd`               MR 1-99 percentiles, CT window -40..120 HU
crop             ``CropForegroundd`` + ``ResizeWithPadOrCropd``  ``mr``, ``ct`` [1, 48, 56, 48]
                 (stacked: one foreground box for both)
===============  ==========================================  ================================

Every geometric step is a MONAI invertible transform on the stacked ``image`` key, and each split
modality carries that key's transform history, so :func:`invert_to_native` (MONAI ``Invertd``)
brings a prediction back to the reference series' native voxel grid.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .intake import IntakeError
from .stagetimes import stage

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
    """Load ``keys`` (file path or DICOM file list; ``None``/missing = absent modality).

    A DICOM series whose loaded affine does not match the box its headers give (MONAI falls back to
    an identity affine, with only a warning, on position/orientation strings it cannot parse) is
    refused. An MR or CT that cannot be loaded is dropped with a message naming it and the cause
    when the other modality loads; the study is refused only when neither does."""

    def __init__(self, keys=("mr", "ct", "mask")) -> None:
        self.keys = keys

    def __call__(self, data: dict) -> dict:
        from .dicom_io import geometry_mismatch

        d = dict(data)
        failed: list[str] = []
        for key in self.keys:
            if d.get(key) is None:
                d.pop(key, None)
                continue
            source = d[key]
            try:
                with stage("read volumes (MONAI reader)"):
                    d[key] = load_volume(source, key)
                if isinstance(source, (list, tuple)) and len(source) > 1:
                    with stage("geometry check (DICOM headers)"):
                        problem = geometry_mismatch(list(source), np.asarray(d[key].affine, float), tuple(d[key].shape[1:]))
                    if problem:
                        raise IntakeError(problem)
            except IntakeError as exc:
                if key not in MODALITIES:
                    raise
                d.pop(key)
                failed.append(str(exc))
                continue
            if "nonfinite_fraction" in d[key].meta:
                d.setdefault("messages", []).append(
                    f"{key.upper()}: {d[key].meta['nonfinite_fraction']:.3%} NaN/Inf voxels replaced by the volume's range")
        if not any(m in d for m in MODALITIES):
            raise IntakeError("; ".join(failed) if failed else "study has neither an MR nor a CT volume")
        d.setdefault("messages", []).extend(f"rejected {why}; analysed without it" for why in failed)
        return d


class CoRegisterd:
    """Register CT to MR (rigid MI) and resample it onto the MR grid: ``mr``, ``ct`` [1, *S] on one grid.

    With one modality the reference is that modality. Sets ``present`` (``{modality: bool}``),
    ``reference``; the registration result (transform, quality, seconds) goes to ``registration``;
    a failed quality check keeps header alignment and says so in ``messages``. An absent modality's
    key is removed (MONAI transforms skip it); :class:`SplitModalitiesd` sets it to ``None``.
    """

    def __init__(self, register: bool = True, seed: int = 0) -> None:
        self.register = register
        self.seed = seed

    def __call__(self, data: dict) -> dict:
        from .registration import register_rigid, resample_to

        d = dict(data)
        mr, ct = d.pop("mr", None), d.pop("ct", None)
        ref = mr if mr is not None else ct
        ref_affine = np.asarray(ref.affine, float)
        reg = None
        if mr is not None and ct is not None:
            ct_np, ct_affine = ct[0].numpy(), np.asarray(ct.affine, float)
            if self.register:
                with stage("registration (SimpleITK MI)"):
                    reg = register_rigid(mr[0].numpy(), ref_affine, ct_np, ct_affine, seed=self.seed)
                if not reg["quality"]["passed"]:
                    d.setdefault("messages", []).append(
                        "registration quality check failed (" + "; ".join(reg["quality"]["reasons"]) + "): CT kept at header alignment")
            else:
                reg = {"method": "header only", "ct_from_mr": np.eye(4).tolist(), "quality": {"passed": True, "reasons": []}}
            use = np.asarray(reg["ct_from_mr"]) if reg["quality"]["passed"] else np.eye(4)
            with stage("resample CT onto MR"):
                ct = torch.from_numpy(resample_to(ct_np, ct_affine, ref.shape[1:], ref_affine, use))[None]
        for name, vol in (("mr", mr), ("ct", ct)):
            if vol is not None:
                d[name] = _on_grid_of(ref, vol)
        d["present"] = {"mr": mr is not None, "ct": ct is not None}
        d["reference"] = "mr" if mr is not None else "ct"
        d["registration"] = reg
        return d


def _raw(x) -> torch.Tensor:
    from monai.data import MetaTensor

    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def _on_grid_of(ref, values: torch.Tensor):
    """``values`` [C, *S] as float, a MetaTensor with ``ref``'s affine, meta and transform history
    when ``ref`` is one (a plain tensor otherwise: cached training cases)."""
    from monai.data import MetaTensor

    raw = _raw(values).float()
    if not isinstance(ref, MetaTensor):
        return raw
    return MetaTensor(raw, affine=ref.affine, meta=dict(ref.meta), applied_operations=list(ref.applied_operations))


class StackModalitiesd:
    """``mr``, ``ct`` [1, *S] -> ``image`` [2, *S] (channel order ``modalities``; zeros where
    ``present`` is False), for the MONAI geometric steps only: :class:`SplitModalitiesd` undoes it.

    ``image`` takes the transform history of the ``reference`` modality (all modalities share
    it: they are on one grid since :class:`CoRegisterd`)."""

    def __init__(self, modalities: tuple[str, ...] = MODALITIES, key: str = "image") -> None:
        self.modalities, self.key = tuple(modalities), key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        present = d["present"]
        vols = {m: d.pop(m) for m in self.modalities if present.get(m)}
        if not vols or any(v is None for v in vols.values()):
            raise ValueError(f"stacking {list(self.modalities)}: present {present} but tensors for "
                             f"{[m for m, v in vols.items() if v is not None]}")
        ref = vols[d["reference"]] if d.get("reference") in vols else next(iter(vols.values()))
        zero = torch.zeros_like(_raw(ref)[0])
        channels = [_raw(vols[m])[0] if m in vols else zero for m in self.modalities]
        for m in self.modalities:
            d.pop(m, None)
        d[self.key] = _on_grid_of(ref, torch.stack(channels))
        return d


class SplitModalitiesd:
    """``image`` [len(modalities), *S] -> ``mr``, ``ct`` [1, *S] (``None`` where not ``present``),
    each with ``image``'s affine and transform history; removes ``image``."""

    def __init__(self, modalities: tuple[str, ...] = MODALITIES, key: str = "image") -> None:
        self.modalities, self.key = tuple(modalities), key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        image = d.pop(self.key)
        for i, m in enumerate(self.modalities):
            d[m] = _on_grid_of(image, _raw(image)[i:i + 1].clone()) if d["present"].get(m) else None
        return d


def on_stack(*transforms, modalities: tuple[str, ...] = MODALITIES):
    """MONAI transforms that act on ``image``, run on the stacked modalities and split back after."""
    from monai.transforms import Compose

    return Compose([StackModalitiesd(modalities), *transforms, SplitModalitiesd(modalities)])


class NormalizeModalitiesd:
    """MR: 1st-99th percentile of the head -> [0, 1]; CT: window ``CT_WINDOW`` HU -> [0, 1] (clipped)."""

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        if d.get("mr") is not None:
            mr = d["mr"]
            out = mr.clone()
            lo, hi = torch.quantile(mr[0].flatten()[::7].float(), torch.tensor([0.01, 0.99]))
            out[0] = ((mr[0] - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1.2)
            d["mr"] = out
        if d.get("ct") is not None:
            lo, hi = CT_WINDOW
            out = d["ct"].clone()
            out[0] = ((d["ct"][0] - lo) / (hi - lo)).clamp(0, 1)
            d["ct"] = out
        return d


class KeepDisplayd:
    """Keep a copy of the co-registered native-resolution volumes for the report (``display``: ``mr``,
    ``ct`` [X, Y, Z] float32 or ``None``, ``affine`` RAS): the only point of the pipeline where both are
    on the reference series' own grid, before the 4 mm resampling."""

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        ref = d[d["reference"]]
        d["display"] = {"affine": np.asarray(ref.affine, float),
                        **{m: (_raw(d[m])[0].numpy().astype(np.float32, copy=True) if d.get(m) is not None else None)
                           for m in MODALITIES}}
        return d


def preprocess(register: bool = True, with_mask: bool = True, seed: int = 0, with_icv: bool = False,
               keep_display: bool = False):
    """The deterministic MONAI Compose from files to the model grid (cacheable).

    Result: ``mr``, ``ct`` (MetaTensor [1, *ROI] or ``None``), ``present``, ``reference``,
    ``registration``, ``mask`` [1, *ROI] (``with_mask``) and, ``with_icv``, the study's intracranial
    volume (:class:`~apps.medical.intracranial.IntracranialMaskd`, from the CT or the MR on the
    reference grid) as ``icv`` [1, *ROI], carried through every geometric step; ``keep_display``:
    ``display`` (:class:`KeepDisplayd`, the native-resolution volumes for the report)."""
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
        *([KeepDisplayd()] if keep_display else []),
        *icv_steps,
        on_stack(Spacingd(keys=geo, pixdim=SPACING, mode=["bilinear"] * len(geo), allow_missing_keys=True)),
        NormalizeModalitiesd(),
        on_stack(CropForegroundd(keys=geo, source_key="image", select_fn=lambda x: x > 0.05, margin=2, allow_smaller=True),
                 ResizeWithPadOrCropd(keys=geo, spatial_size=ROI)),
        *([AsDiscreted(keys="mask", threshold=0.5)] if with_mask else []),
        *([AsDiscreted(keys="icv", threshold=0.5)] if with_icv else []),
    ])


def invert_to_native(pipeline, data: dict, prediction: torch.Tensor):
    """Bring a prediction on the model grid back to the reference series' native grid (MONAI ``Invertd``).

    The geometric steps ran on the stacked ``image`` key; the reference modality carries their history."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    ref = data[data["reference"]]
    pred = MetaTensor(prediction, affine=ref.affine, meta=dict(ref.meta), applied_operations=list(ref.applied_operations))
    inv = Invertd(keys="pred", transform=pipeline, orig_keys="image", nearest_interp=False)
    out = inv({"pred": pred, "image": ref})
    return out["pred"]
