"""The intracranial volume (ICV) of a study, from its CT (bone thresholding) or its MR (an atlas
brain mask brought over by affine registration), and the guard that removes predicted lesion
voxels outside it.

CT (preferred when present, on the reference grid after co-registration, HU):

    bone  = closing(HU > 250, 3 mm ball)
    inner = fill_holes(bone) per axial slice, minus bone           (the skull's inside)
    ICV   = largest 26-connected component of inner & (HU > -200)  (air pockets out)

MR only: an atlas head (nilearn's MNI152 T1 template and brain mask at 3 mm, with a synthetic
CSF shell, skull and scalp so that its outline matches a head with a skull) is registered to the
study's MR by a 12-parameter affine (Mattes MI, SimpleITK, 2 levels), and its ICV mask, dilated by
3 mm (registration tolerance), is resampled onto the MR grid. When the registration fails its
quality check (MI did not improve, or a scale outside 0.7-1.4) the guard falls back to the head
outline (MR foreground, holes filled), which removes only what lies outside the head, and says so.

Nothing derived from the template is written to disk.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

BONE_HU = 250.0
ATLAS_SPACING = 3.0


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.ceil(radius_vox).astype(int), 1)
    idx = np.indices(2 * r + 1).reshape(3, -1).T - r
    return ((idx / np.maximum(radius_vox, 1e-3)) ** 2).sum(1).reshape(tuple(2 * r + 1)) <= 1


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(sizes.argmax())


def ct_intracranial(hu: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """ICV from a CT in HU on an axis-aligned grid whose third axis is axial (RAS after Orientationd)."""
    spacing = _spacing(affine)
    bone = ndimage.binary_closing(hu > BONE_HU, structure=_ball(3.0 / spacing), iterations=1)
    filled = np.stack([ndimage.binary_fill_holes(bone[:, :, k]) for k in range(bone.shape[2])], axis=2)
    inner = filled & ~bone & (hu > -200)
    if not inner.any():
        return inner
    return largest_component(inner)


@functools.lru_cache(maxsize=1)
def atlas_head() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(T1-like head with skull, ICV mask, voxel->MNI affine) at 3 mm, or None without nilearn's data."""
    try:
        from nilearn import datasets

        t1 = datasets.load_mni152_template(resolution=1)
        brain = datasets.load_mni152_brain_mask(resolution=1)
    except Exception:  # noqa: BLE001 - no template: the caller falls back and says so
        return None
    step = ATLAS_SPACING / float(abs(t1.affine[0, 0]))
    t = ndimage.zoom(t1.get_fdata(dtype=np.float32), 1 / step, order=1)
    b = ndimage.zoom(brain.get_fdata(dtype=np.float32), 1 / step, order=1) > 0.5
    affine = t1.affine.copy()
    affine[:3, :3] *= step
    outside = ndimage.distance_transform_edt(~b) * ATLAS_SPACING
    icv = b | (outside <= 2.0)
    head = np.where(b, t / max(float(np.percentile(t[b], 99)), 1e-6), 0.0).astype(np.float32)
    head[(outside > 0) & (outside <= 2.0)] = 0.12          # CSF shell
    head[(outside > 2.0) & (outside <= 8.0)] = 0.08        # skull (dark on T1)
    head[(outside > 8.0) & (outside <= 13.0)] = 0.65       # scalp
    return head, icv, affine


def mr_intracranial(mr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, str, list[str]]:
    """ICV on the MR grid by atlas registration; returns (mask, method, notes)."""
    import SimpleITK as sitk

    from .registration import FLIP, _downsample, to_sitk

    head_outline = ndimage.binary_fill_holes(mr > 0.1 * float(np.percentile(mr, 99)))
    atlas = atlas_head()
    if atlas is None:
        return head_outline, "head outline (atlas unavailable)", ["MNI atlas unavailable: only voxels outside the head are removed"]
    head, icv, atlas_affine = atlas
    fixed = _downsample(to_sitk(mr / max(float(np.percentile(mr, 99)), 1e-6), affine), ATLAS_SPACING)
    moving = to_sitk(head, atlas_affine)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=100,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetInitialTransform(init, inPlace=False)
    before = float(reg.MetricEvaluate(fixed, moving))
    final = reg.Execute(fixed, moving)
    tx = sitk.AffineTransform(final.GetNthTransform(0) if hasattr(final, "GetNthTransform") else final)
    reg.SetInitialTransform(tx, inPlace=False)          # MetricEvaluate reads the *initial* transform
    after = float(reg.MetricEvaluate(fixed, moving))
    m = np.eye(4)                                      # fixed (MR, LPS) point -> atlas (LPS) point
    m[:3, :3] = np.asarray(tx.GetMatrix()).reshape(3, 3)
    c = np.asarray(tx.GetCenter())
    m[:3, 3] = np.asarray(tx.GetTranslation()) + c - m[:3, :3] @ c
    atlas_from_mr = FLIP @ m @ FLIP                    # RAS world of the MR -> RAS world of the atlas
    scales = np.linalg.svd(atlas_from_mr[:3, :3], compute_uv=False)
    if not (after < before - 1e-3) or scales.min() < 0.7 or scales.max() > 1.45:
        return head_outline, "head outline (atlas registration failed)", [
            f"atlas registration failed its check (MI {before:.3f} -> {after:.3f}, scales {np.round(1 / scales, 2).tolist()}): "
            "only voxels outside the head are removed"]
    icv_dil = ndimage.binary_dilation(icv, structure=_ball(np.full(3, 3.0 / ATLAS_SPACING)))
    vox = np.linalg.inv(atlas_affine) @ atlas_from_mr @ np.asarray(affine, float)
    mask = ndimage.affine_transform(icv_dil.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=mr.shape,
                                    order=1, mode="constant") > 0.5
    return mask & head_outline, "MNI brain mask by affine registration", []


def intracranial_mask(mr: np.ndarray | None, ct_hu: np.ndarray | None, affine: np.ndarray) -> tuple[np.ndarray, str, list[str]]:
    """ICV on the reference grid from whatever the study has: CT thresholding first, else the MR atlas."""
    if ct_hu is not None:
        icv = ct_intracranial(ct_hu, affine)
        voxel_ml = float(np.prod(_spacing(affine))) / 1000
        if icv.sum() * voxel_ml > 300:                  # a skull was found (adult ICV is 1,200-1,700 mL)
            return icv, "CT bone threshold (HU > 250)", []
        note = f"CT bone threshold found no closed skull ({icv.sum() * voxel_ml:.0f} mL inside)"
        if mr is None:
            head = ndimage.binary_fill_holes(ct_hu > -200)
            return head, "head outline (CT, no closed skull)", [note + ": only voxels outside the head are removed"]
        mask, method, notes = mr_intracranial(mr, affine)
        return mask, method, [note + "; used the MR", *notes]
    return mr_intracranial(mr, affine)


class IntracranialMaskd:
    """After :class:`~apps.medical.transforms.CoRegisterd`: ``icv`` (a MetaTensor [1, *S] on the
    reference grid, same geometry history as the reference modality) and ``intracranial_method`` (not ``icv_*``: MONAI's Spacingd treats keys starting with ``icv_``
    as icv's meta dictionaries)."""

    def __call__(self, data: dict) -> dict:
        import torch
        from monai.data import MetaTensor

        d = dict(data)
        img = d[d["reference"]]      # MR and CT share the reference grid since CoRegisterd
        mr, ct = (d[m][0].numpy() if d["present"][m] else None for m in ("mr", "ct"))
        from .stagetimes import stage

        with stage("intracranial mask"):
            mask, method, notes = intracranial_mask(mr, ct, np.asarray(img.affine, float))
        d["icv"] = MetaTensor(torch.from_numpy(mask[None].astype(np.float32)), affine=img.affine, meta=dict(img.meta),
                              applied_operations=list(img.applied_operations))
        d["intracranial_method"] = method
        if notes:
            d.setdefault("messages", []).extend(notes)
        return d
