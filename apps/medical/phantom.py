"""Demo studies with real anatomy: the MNI152 template nilearn installs, turned into an MR and a CT.

Nothing derived from the template is shipped: volumes are generated at run time. When nilearn's
template cannot be loaded a purely synthetic ellipsoid head is used instead.

One subject = one lesion of one of four classes. The *core* of a lesion carries the class cue,
its *rim* (oedema, hypo in both modalities) makes every lesion visible in either modality.

=========  ====================  ===================
class      CT core (HU offset)   MR core (T1 offset)
=========  ====================  ===================
0 ischemic       -25 (hypo)          -0.30 (dark)
1 haemorrhage    +25 (hyper)         +0.30 (bright)
2 fatty          -25 (hypo)          +0.30 (bright)
3 calcified      +25 (hyper)         -0.30 (dark)
=========  ====================  ===================

Each modality carries one bit of the class (a 2 x 2 design, as CT density and T1 signal do for
real lesions: subacute blood is bright in both, fat is dark on CT but bright on T1, ...), with
per-lesion jitter (CT 14 HU, MR 0.17). CT alone cannot tell 0 from 2 or 1 from 3, MR alone cannot
tell 0 from 3 or 1 from 2; only fusion separates all four. An ideal classifier on the two cues
(LDA, 4,000 draws) reaches macro one-vs-rest AUROC 0.99 fused vs 0.82 CT-only and 0.83 MR-only;
0.833 is the ceiling for one modality (each class is indistinguishable from one of the other three).
(The first generator put both CT cues on classes 0/1 and both MR cues on 2/3: one modality then
already separated half the classes from everything else, ideal AUROC 0.95 fused vs 0.82 single,
and the near pairs made the fused margin fragile.)

Geometry: MNI point ``p`` -> patient-in-MR-scanner ``x = R p + t`` (random pose) -> CT scanner
``q = M x`` (random extra rigid motion, kept as ground truth ``ct_from_mr``). MR is sampled on a
1.5 mm RAS grid, CT on a 0.9 x 0.9 x 3 mm grid in DICOM (LPS) axes.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

CLASS_NAMES = ("ischemic", "haemorrhage", "fatty", "calcified")
CT_CUE = (-25.0, 25.0, -25.0, 25.0)
MR_CUE = (-0.30, 0.30, 0.30, -0.30)
CT_JITTER, MR_JITTER = 14.0, 0.17
BASE_SPACING = 1.5


@dataclass
class Anatomy:
    """Base volumes on a 1.5 mm grid in MNI space (``affine`` maps voxel -> MNI mm)."""

    mr: np.ndarray        # T1-like, WM ~0.85
    ct: np.ndarray        # HU
    brain_depth: np.ndarray   # mm from the brain surface, 0 outside
    wm: np.ndarray
    affine: np.ndarray
    source: str


def _mni_arrays():
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    return t1.get_fdata(dtype=np.float32), gm, wm, t1.affine, "nilearn MNI152 2009 template"


def _synthetic_arrays():
    shape = (197, 233, 189)
    affine = np.array([[1, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]], float)
    idx = np.indices(shape).reshape(3, -1).T
    p = (np.c_[idx, np.ones(len(idx))] @ affine.T)[:, :3] - np.array([0, -18, 15])
    r = np.sqrt((p[:, 0] / 68) ** 2 + (p[:, 1] / 86) ** 2 + (p[:, 2] / 62) ** 2).reshape(shape)
    wm = np.clip((0.75 - r) * 8, 0, 1).astype(np.float32)
    gm = np.clip((1 - r) * 8, 0, 1).astype(np.float32) - wm
    t1 = (0.85 * wm + 0.5 * gm).astype(np.float32)
    return t1, gm, wm, affine, "synthetic ellipsoid head (nilearn template unavailable)"


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    try:
        t1, gm, wm, affine, source = _mni_arrays()
    except Exception:  # noqa: BLE001 - no nilearn data: fall back, the source says which
        t1, gm, wm, affine, source = _synthetic_arrays()
    z = 1.0 / BASE_SPACING
    t1, gm, wm = (ndimage.zoom(a, z, order=1) for a in (t1, gm, wm))
    base_affine = affine.copy()
    base_affine[:3, :3] = affine[:3, :3] * BASE_SPACING
    brain = ndimage.binary_fill_holes((gm + wm) > 0.25)
    outside = ndimage.distance_transform_edt(~brain) * BASE_SPACING
    depth = (ndimage.distance_transform_edt(brain) * BASE_SPACING).astype(np.float32)
    csf = np.clip(1 - gm - wm, 0, 1) * brain
    total = np.maximum(gm + wm + csf, 1e-3)
    mr = np.where(brain, 0.85 * wm / total + 0.5 * gm / total + 0.12 * csf / total, 0.0)
    ct = np.where(brain, (28 * wm + 40 * gm + 8 * csf) / total, -1000.0)
    shell = (outside > 0) & (outside <= 2.0)
    skull = (outside > 2.0) & (outside <= 8.0)
    scalp = (outside > 8.0) & (outside <= 13.0)
    mr[shell], ct[shell] = 0.12, 8.0
    mr[skull], ct[skull] = 0.08, 1000.0
    mr[scalp], ct[scalp] = 0.65, 30.0
    return Anatomy(mr.astype(np.float32), ct.astype(np.float32), depth, wm.astype(np.float32), base_affine, source)


def random_rigid(rng: np.random.Generator, max_deg: float, shift_mm: tuple[float, float]) -> np.ndarray:
    """A 4x4 rotation (each Euler angle in +-max_deg) and translation of norm in ``shift_mm``."""
    a, b, c = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = direction * rng.uniform(*shift_mm)
    return m


def grid_affine(spacing, shape, center, flip_xy: bool = False) -> np.ndarray:
    """Axis-aligned voxel->world affine whose grid is centred on ``center`` (RAS mm)."""
    signs = np.array([-1.0, -1.0, 1.0]) if flip_xy else np.ones(3)
    a = np.eye(4)
    a[:3, :3] = np.diag(signs * np.asarray(spacing, float))
    a[:3, 3] = np.asarray(center, float) - a[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return a


def sample(volume: np.ndarray, vol_affine: np.ndarray, out_affine: np.ndarray, out_shape, world_to_vol: np.ndarray,
           order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Resample ``volume`` onto a grid: out voxel -> world -> (world_to_vol) -> volume voxel."""
    m = np.linalg.inv(vol_affine) @ world_to_vol @ out_affine
    return ndimage.affine_transform(volume, m[:3, :3], m[:3, 3], output_shape=tuple(out_shape), order=order,
                                    cval=cval, mode="constant").astype(np.float32)


def _render_lesion(anat: Anatomy, rng: np.random.Generator, label: int):
    """Copies of the base MR/CT with one lesion; returns (mr, ct, center_mni, radius, cues)."""
    radius = float(rng.uniform(12.0, 16.0))
    ok = np.argwhere((anat.brain_depth > radius + 4) & (anat.wm > 0.4))
    if len(ok) == 0:
        ok = np.argwhere(anat.brain_depth > radius)
    vox = ok[rng.integers(len(ok))]
    center = (anat.affine @ np.r_[vox, 1.0])[:3]
    ct_cue = CT_CUE[label] + rng.normal(0, CT_JITTER)
    mr_cue = MR_CUE[label] + rng.normal(0, MR_JITTER)
    mr, ct = anat.mr.copy(), anat.ct.copy()
    half = int(np.ceil((radius + 3) / BASE_SPACING))
    lo = np.maximum(vox - half, 0)
    hi = np.minimum(vox + half + 1, np.array(mr.shape))
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    idx = np.indices([b - a for a, b in zip(lo, hi)]).reshape(3, -1).T + lo
    dist = np.linalg.norm(idx - vox, axis=1).reshape([b - a for a, b in zip(lo, hi)]) * BASE_SPACING
    whole = np.clip((radius - dist) / 1.5 + 0.5, 0, 1)
    core = np.clip((0.6 * radius - dist) / 1.5 + 0.5, 0, 1)
    rim = whole - core
    mr[sl] = mr[sl] * (1 - whole) + rim * 0.50 + core * 0.85 * (1 + mr_cue)
    ct[sl] = ct[sl] * (1 - whole) + rim * 16.0 + core * (30.0 + ct_cue)
    return mr, ct, center, radius, {"ct_hu_offset": float(ct_cue), "mr_offset": float(mr_cue)}


def _bias_field(shape, rng) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    coef = rng.normal(0, 0.08, 6)
    poly = coef[0] * grids[0] + coef[1] * grids[1] + coef[2] * grids[2] + coef[3] * grids[0] * grids[1] \
        + coef[4] * grids[2] ** 2 + coef[5] * grids[1] ** 2
    return np.exp(poly).astype(np.float32)


@dataclass
class Subject:
    mr: np.ndarray | None
    mr_affine: np.ndarray
    ct: np.ndarray | None
    ct_affine: np.ndarray
    mask: np.ndarray           # lesion mask on the MR grid
    truth: dict


MR_SHAPE, MR_SPACING = (128, 152, 128), (1.5, 1.5, 1.5)
CT_SHAPE, CT_SPACING = (256, 256, 64), (0.9, 0.9, 3.0)
FOV_CENTER = (0.0, -18.0, 18.0)


def make_subject(seed: int, label: int | None = None, scale: float = 1.0) -> Subject:
    """One subject; ``scale`` > 1 makes coarser (faster) native grids for quick tests."""
    rng = np.random.default_rng(seed)
    anat = load_anatomy()
    label = int(rng.integers(4)) if label is None else int(label)
    mr_base, ct_base, center, radius, cues = _render_lesion(anat, rng, label)
    pose = random_rigid(rng, 8.0, (0.0, 8.0))
    ct_from_mr = random_rigid(rng, 4.0, (6.0, 10.0))
    mr_shape = tuple(int(round(n / scale)) for n in MR_SHAPE)
    ct_shape = (*(int(round(n / scale)) for n in CT_SHAPE[:2]), CT_SHAPE[2])
    mr_affine = grid_affine(np.array(MR_SPACING) * scale, mr_shape, FOV_CENTER)
    ct_affine = grid_affine((CT_SPACING[0] * scale, CT_SPACING[1] * scale, CT_SPACING[2]), ct_shape,
                            np.array(FOV_CENTER) + rng.normal(0, 3, 3), flip_xy=True)
    mni_from_world = np.linalg.inv(pose)
    mr = sample(mr_base, anat.affine, mr_affine, mr_shape, mni_from_world)
    mr = mr * _bias_field(mr_shape, rng)
    mr = np.abs(mr + rng.normal(0, 0.03, mr_shape).astype(np.float32))    # magnitude (Rician-like) noise
    mr = (mr * 1000).astype(np.float32)
    ct = sample(ct_base, anat.affine, ct_affine, ct_shape, mni_from_world @ np.linalg.inv(ct_from_mr), cval=-1000)
    ct = ct + rng.normal(0, 6.0, ct_shape).astype(np.float32)
    # ground-truth mask: the lesion sphere, evaluated exactly at MR voxel centres
    idx = np.indices(mr_shape).reshape(3, -1)
    world = mr_affine[:3, :3] @ idx + mr_affine[:3, 3:4]
    mni = mni_from_world[:3, :3] @ world + mni_from_world[:3, 3:4]
    mask = (np.linalg.norm(mni - center[:, None], axis=0) <= radius).reshape(mr_shape).astype(np.uint8)
    center_world = (pose @ np.r_[center, 1])[:3]
    landmarks_mni = np.argwhere(anat.brain_depth > 5)[rng.integers(0, int((anat.brain_depth > 5).sum()), 64)]
    landmarks = (pose @ anat.affine @ np.c_[landmarks_mni, np.ones(64)].T)[:3].T
    truth = {
        "label": label, "class_name": CLASS_NAMES[label], "radius_mm": radius,
        "lesion_center_ras_mm": center_world.tolist(), "ct_from_mr": ct_from_mr.tolist(),
        "landmarks_ras_mm": landmarks.round(2).tolist(), "cues": cues,
        "lesion_volume_ml": float(4 / 3 * np.pi * radius ** 3 / 1000), "anatomy": anat.source, "seed": seed,
    }
    return Subject(mr, mr_affine, ct, ct_affine, mask, truth)


def tre_mm(ct_from_mr_est: np.ndarray, truth: dict) -> float:
    """Mean target registration error over the subject's brain landmarks (MR world, RAS mm)."""
    pts = np.c_[np.asarray(truth["landmarks_ras_mm"]), np.ones(len(truth["landmarks_ras_mm"]))]
    true = pts @ np.asarray(truth["ct_from_mr"]).T
    est = pts @ np.asarray(ct_from_mr_est).T
    return float(np.linalg.norm(true[:, :3] - est[:, :3], axis=1).mean())


def save_truth(path: Path, truth: dict) -> None:
    from mmcore.train import atomic_write_json

    atomic_write_json(path, truth)


def load_truth(path: Path) -> dict:
    return json.loads(Path(path).read_text())
