"""The evaluation family: studies that training never sees, drawn by *other code*.

Nothing here is shared with :mod:`apps.medical.phantom` or :mod:`apps.medical.randomized` except
the class cue table (the task itself: which CT density and T1 signal each class has). The anatomy,
the tissue contrasts, the lesion shapes, the acquisition grids and the noise are all written
independently, so a model that learned one phantom fails here.

Anatomy (analytic, evaluated exactly at every voxel centre, no template):

* brain: a superellipsoid ``|x/a|^p + |y/b|^p + |z/c|^p = 1`` (``p`` 2.2-3.0, semi-axes 60-74 x
  76-92 x 54-66 mm), its surface folded by low-order spherical harmonics-like ripples (gyri,
  +-2.5 mm), a flattened base; two lateral ventricles (CSF ellipsoids); white matter where the
  normalised radius is below 0.78 (rippled), grey matter up to the surface;
* outside: a CSF layer (1-3 mm), a skull with inner/outer tables and diploe (4-9 mm), scalp
  (3-7 mm), air.

Contrasts: T1 WM 0.72-0.95, GM 0.42-0.62, CSF 0.06-0.2, skull 0.03-0.1, scalp 0.55-0.85, times a
global gain (300-3000) and a bias field made of three Gaussian bumps (not a polynomial); Gaussian
noise on real and imaginary parts (magnitude). CT: WM 20-30 HU, GM 33-45, CSF 0-10, diploe
500-900, tables 1100-1700, scalp 15-40, air -1000, noise 3-10 HU and a beam-hardening rim.

Lesions: none (no-lesion studies) or one of 1-25 mL, *lobulated* (2-4 overlapping ellipsoids) or
a single rotated ellipsoid, anywhere in the brain including next to the cortex; the core (deeper
than a 1.5-3.5 mm rim) carries the class cue of :data:`apps.medical.phantom.CT_CUE` /
:data:`~apps.medical.phantom.MR_CUE` relative to this head's own white matter, the rim is
oedema (hypo in both).

Acquisition: MR in-plane 1.0-1.5 mm, slices 1.5-4 mm, axes RAS or flipped; CT in-plane 0.7-1.0 mm,
slices 3-5 mm, a random rigid motion against the MR (6-12 mm); thick slices integrate 3
sub-slices (partial volume); anatomy is rendered once on a 1.5 mm head grid and resampled. Some studies are DICOM, some MR-only or CT-only.

Ground truth per study (``truth/<id>/``): ``truth.json`` (label, -1 = no lesion; volume; CT
motion; brain landmarks), ``mask.nii.gz`` (lesion) and ``icv.nii.gz`` (intracranial volume) on the
reference grid (MR, or CT for CT-only studies).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .phantom import CLASS_NAMES, CT_CUE, MR_CUE, grid_affine, random_rigid

FAMILY = "analytic superellipsoid heads, lobulated lesions (apps.medical.eval_family)"


@dataclass
class Head:
    """One random analytic head in its own frame (mm, RAS, brain centre at the origin)."""

    axes: np.ndarray          # brain semi-axes a, b, c
    power: float
    ripple: np.ndarray        # (k, 4): amplitude, frequencies in azimuth/elevation, phase
    ventricles: list
    csf_mm: float
    skull_mm: float
    scalp_mm: float
    mr_tissue: dict
    ct_tissue: dict


def random_head(rng: np.random.Generator) -> Head:
    axes = np.array([rng.uniform(60, 74), rng.uniform(76, 92), rng.uniform(54, 66)])
    ripple = np.c_[rng.uniform(0.8, 2.5, 5), rng.integers(3, 9, 5), rng.integers(2, 7, 5), rng.uniform(0, 2 * np.pi, 5)]
    vent = [(np.array([s * rng.uniform(6, 10), rng.uniform(-6, 6), rng.uniform(4, 12)]),
             np.array([rng.uniform(3, 6), rng.uniform(14, 24), rng.uniform(5, 9)])) for s in (-1, 1)]
    mr = {"wm": rng.uniform(0.72, 0.95), "gm": rng.uniform(0.42, 0.62), "csf": rng.uniform(0.06, 0.2),
          "skull": rng.uniform(0.03, 0.1), "scalp": rng.uniform(0.55, 0.85)}
    ct = {"wm": rng.uniform(20, 30), "gm": rng.uniform(33, 45), "csf": rng.uniform(0, 10), "diploe": rng.uniform(500, 900),
          "table": rng.uniform(1100, 1700), "scalp": rng.uniform(15, 40)}
    return Head(axes, float(rng.uniform(2.2, 3.0)), ripple, vent, float(rng.uniform(1, 3)), float(rng.uniform(4, 9)),
                float(rng.uniform(3, 7)), mr, ct)


def _radius(head: Head, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised superellipsoid radius (1 on the folded brain surface) and an outward distance in mm."""
    x, y, z = np.asarray(p, np.float32)
    a, b, c = (float(v) for v in head.axes)
    e = float(head.power)
    zc = np.where(z < -0.55 * c, z * np.float32(1.6), z)       # flattened base: the brain ends sooner below
    rho = (np.abs(x / a) ** e + np.abs(y / b) ** e + np.abs(zc / c) ** e) ** (1 / e)
    az = np.arctan2(y, x)
    el = np.arctan2(z, np.hypot(x, y))
    fold = sum(float(amp) * np.sin(float(fa) * az + float(ph)) * np.cos(float(fe) * el) for amp, fa, fe, ph in head.ripple)
    mean_r = float(np.mean(head.axes))
    rho = rho + fold / mean_r
    return rho, (rho - 1.0) * mean_r


def tissues(head: Head, p: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean/float tissue maps at points ``p`` [3, N] (head frame)."""
    rho, out_mm = _radius(head, p)
    brain = rho <= 1.0
    vent = np.zeros(p.shape[1], bool)
    for centre, semi in head.ventricles:
        vent |= (((p - centre[:, None]) / semi[:, None]) ** 2).sum(0) <= 1
    wm = brain & (rho < 0.78) & ~vent
    gm = brain & ~wm & ~vent
    csf = (brain & vent) | ((out_mm > 0) & (out_mm <= head.csf_mm))
    skull_in = head.csf_mm
    skull = (out_mm > skull_in) & (out_mm <= skull_in + head.skull_mm)
    depth_skull = (out_mm - skull_in) / head.skull_mm
    table = skull & ((depth_skull < 0.3) | (depth_skull > 0.7))
    scalp = (out_mm > skull_in + head.skull_mm) & (out_mm <= skull_in + head.skull_mm + head.scalp_mm)
    icv = brain | ((out_mm > 0) & (out_mm <= head.csf_mm))
    return {"wm": wm, "gm": gm, "csf": csf, "skull": skull, "table": table, "scalp": scalp, "icv": icv,
            "out_mm": out_mm}


@dataclass
class Lesion:
    label: int
    blobs: list               # (centre [3], rotation [3x3], semi-axes [3])
    rim_mm: float
    ct_cue: float
    mr_cue: float


def random_lesion(head: Head, rng: np.random.Generator, label: int) -> Lesion:
    """A lobulated lesion or one ellipsoid of 1-25 mL fully inside the brain (near the cortex too)."""
    for _ in range(200):
        volume_ml = float(np.exp(rng.uniform(np.log(1.0), np.log(25.0))))
        r_equiv = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        depth_frac = rng.uniform(0.0, 0.9)
        centre = direction * head.axes * depth_frac
        n = 1 if rng.random() < 0.4 else int(rng.integers(2, 5))
        blobs = []
        for k in range(n):
            rot = random_rigid(rng, 90.0, (0.0, 0.0))[:3, :3]
            semi = r_equiv * rng.uniform(0.6, 1.3, 3) * (1.0 if n == 1 else 0.8)
            off = np.zeros(3) if k == 0 else rng.normal(0, 0.5 * r_equiv, 3)
            blobs.append((centre + off, rot, semi))
        les = Lesion(label, blobs, float(rng.uniform(1.5, 3.5)), CT_CUE[label] + rng.normal(0, 12.0),
                     MR_CUE[label] + rng.normal(0, 0.15))
        pts = _lesion_points(les)
        rho, _ = _radius(head, pts)
        if (rho <= 0.97).all():
            return les
    raise RuntimeError("could not place a lesion inside the brain")


def _lesion_points(les: Lesion, n: int = 400) -> np.ndarray:
    """Points on every blob's surface (to check the lesion lies inside the brain)."""
    g = np.random.default_rng(0).normal(size=(3, n))
    g /= np.linalg.norm(g, axis=0)
    return np.concatenate([c[:, None] + rot @ (semi[:, None] * g) for c, rot, semi in les.blobs], 1)


def lesion_depth(les: Lesion, p: np.ndarray) -> np.ndarray:
    """Approximate depth inside the lesion in mm (> 0 inside), max over blobs."""
    best = np.full(p.shape[1], -np.inf, np.float32)
    for c, rot, semi in les.blobs:
        near = np.flatnonzero((np.abs(p - c[:, None].astype(np.float32)) <= semi.max() + 1).all(0))
        local = rot.T.astype(np.float32) @ (p[:, near] - c[:, None].astype(np.float32))
        r = np.sqrt(((local / semi[:, None].astype(np.float32)) ** 2).sum(0))
        best[near] = np.maximum(best[near], (1 - r) * float(semi.min()))
    return best


def render(head: Head, les: Lesion | None, p: np.ndarray, rng=None) -> dict[str, np.ndarray]:
    """T1, HU, lesion and ICV values at points ``p`` [3, N] (head frame), before noise."""
    t = tissues(head, p)
    mr_t, ct_t = head.mr_tissue, head.ct_tissue
    mr = (mr_t["wm"] * t["wm"] + mr_t["gm"] * t["gm"] + mr_t["csf"] * t["csf"] + mr_t["skull"] * t["skull"]
          + mr_t["scalp"] * t["scalp"]).astype(np.float32)
    ct = np.full(p.shape[1], -1000.0, np.float32)
    ct[t["wm"]], ct[t["gm"]], ct[t["csf"]], ct[t["scalp"]] = ct_t["wm"], ct_t["gm"], ct_t["csf"], ct_t["scalp"]
    ct[t["skull"]] = np.where(t["table"][t["skull"]], ct_t["table"], ct_t["diploe"])
    ct += np.where((t["out_mm"] > -6) & (t["out_mm"] <= 0), 4.0 * (1 + t["out_mm"] / 6), 0.0).astype(np.float32)
    lesion = np.zeros(p.shape[1], np.float32)
    if les is not None:
        d = lesion_depth(les, p)
        inside = d > 0
        core = d > les.rim_mm
        lesion[inside] = 1.0
        mr[inside] = 0.55 * mr_t["wm"]
        ct[inside] = ct_t["wm"] - 6.0
        mr[core] = mr_t["wm"] * (1 + les.mr_cue)
        ct[core] = ct_t["wm"] + 4.0 + les.ct_cue
    return {"mr": mr, "ct": ct, "lesion": lesion, "icv": t["icv"].astype(np.float32)}


HEAD_GRID_MM = 1.5


def render_head_grid(head: Head, les, extent: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every map of :func:`render` on a 1.5 mm grid of the head frame covering +-``extent`` mm; returns
    (maps, voxel -> head-frame affine). Evaluated once, then resampled onto each scanner's grid."""
    shape = tuple(int(np.ceil(2 * e / HEAD_GRID_MM)) + 1 for e in extent)
    affine = np.eye(4)
    affine[:3, :3] *= HEAD_GRID_MM
    affine[:3, 3] = -np.asarray(extent, float)
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    pts = (affine[:3, :3] @ idx + affine[:3, 3:4]).astype(np.float32)
    vals = render(head, les, pts, None)
    return {k: v.reshape(shape) for k, v in vals.items()}, affine


def acquire(maps: dict, maps_affine: np.ndarray, affine: np.ndarray, shape, world_to_head: np.ndarray) -> dict:
    """Resample the head-frame maps onto a scanner grid (linear). Images (``mr``, ``ct``) from slices
    thicker than 2 mm average three sub-slices (partial volume along the slice axis); truth maps
    are sampled at voxel centres."""
    from scipy import ndimage

    thick = float(np.linalg.norm(affine[:3, 2]))
    out = {}
    for key, vol in maps.items():
        offsets = [-1 / 3, 0.0, 1 / 3] if thick > 2.0 and key in ("mr", "ct") else [0.0]
        acc = np.zeros(shape, np.float32)
        for o in offsets:
            shift = np.eye(4)
            shift[2, 3] = o
            m = np.linalg.inv(maps_affine) @ world_to_head @ affine @ shift
            cval = -1000.0 if key == "ct" else 0.0
            acc += ndimage.affine_transform(vol, m[:3, :3], m[:3, 3], output_shape=tuple(shape), order=1,
                                            cval=cval, mode="constant") / len(offsets)
        out[key] = acc
    return out


def _bias(shape, rng) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    field = np.zeros(shape, np.float32)
    for _ in range(3):
        c = rng.uniform(-1, 1, 3)
        field += rng.uniform(-0.25, 0.25) * np.exp(-sum((g - ci) ** 2 for g, ci in zip(grids, c)) / rng.uniform(0.3, 1.0))
    return np.exp(field)


def make_study(seed: int, *, label: int | None, drop: str | None = None) -> dict:
    """Arrays, affines and truth of one evaluation-family study (``label`` None: no lesion)."""
    rng = np.random.default_rng(seed)
    head = random_head(rng)
    les = random_lesion(head, rng, label) if label is not None else None
    head_pose = random_rigid(rng, 10.0, (0.0, 10.0))             # head frame -> MR scanner world
    head_pose[:3, 3] += np.array([0.0, -15.0, 20.0])
    ct_from_mr = random_rigid(rng, 5.0, (6.0, 12.0))
    fov = head.axes * 2 + 2 * (head.csf_mm + head.skull_mm + head.scalp_mm) + 16
    mr_sp = np.array([rng.uniform(1.0, 1.5)] * 2 + [rng.uniform(1.5, 4.0)])
    ct_sp = np.array([rng.uniform(0.7, 1.0)] * 2 + [rng.uniform(3.0, 5.0)])
    mr_shape = tuple(int(np.ceil(f / s)) for f, s in zip(fov, mr_sp))
    ct_shape = tuple(int(np.ceil(f / s)) for f, s in zip(fov * 1.05, ct_sp))
    centre = head_pose[:3, 3] + rng.normal(0, 3, 3)
    mr_affine = grid_affine(mr_sp, mr_shape, centre, flip_xy=bool(rng.random() < 0.5))
    ct_affine = grid_affine(ct_sp, ct_shape, centre + rng.normal(0, 3, 3), flip_xy=True)
    head_from_mr = np.linalg.inv(head_pose)
    out: dict = {"mr": None, "ct": None}
    extent = head.axes + head.csf_mm + head.skull_mm + head.scalp_mm + 4
    maps, maps_affine = render_head_grid(head, les, extent)
    mr_v = acquire(maps if drop != "mr" else {"icv": maps["icv"]}, maps_affine, mr_affine, mr_shape, head_from_mr)
    if drop != "mr":
        gain = rng.uniform(300, 3000)
        clean = mr_v["mr"] * _bias(mr_shape, rng)
        sigma = rng.uniform(0.015, 0.05)
        noisy = np.hypot(clean + rng.normal(0, sigma, mr_shape), rng.normal(0, sigma, mr_shape))
        out["mr"] = (noisy * gain).astype(np.float32)
    ct_v = None
    if drop != "ct":
        # a CT voxel at CT-world q shows the anatomy at MR-world inv(ct_from_mr) q
        ct_v = acquire({k: maps[k] for k in (("ct", "lesion", "icv") if drop == "mr" else ("ct",))}, maps_affine, ct_affine, ct_shape,
                       head_from_mr @ np.linalg.inv(ct_from_mr))
        out["ct"] = (ct_v["ct"] + rng.normal(0, rng.uniform(3, 10), ct_shape)).astype(np.float32)
    ref = "ct" if drop == "mr" else "mr"
    ref_v = ct_v if ref == "ct" else mr_v
    inside = np.argwhere(mr_v["icv"] > 0.99)
    pick = inside[rng.integers(len(inside), size=64)]
    landmarks = (mr_affine @ np.c_[pick, np.ones(64)].T)[:3].T
    voxel_ml = abs(np.linalg.det((mr_affine if ref == "mr" else ct_affine)[:3, :3])) / 1000
    truth = {
        "label": -1 if label is None else int(label), "class_name": "no lesion" if label is None else CLASS_NAMES[label],
        "lesion_volume_ml": float((ref_v["lesion"] > 0.5).sum() * voxel_ml), "ct_from_mr": ct_from_mr.tolist(),
        "landmarks_ras_mm": landmarks.round(2).tolist(), "family": FAMILY, "seed": seed, "reference": ref,
        "cues": None if les is None else {"ct_hu_offset": float(les.ct_cue), "mr_offset": float(les.mr_cue)},
        "lesion_shape": None if les is None else ("ellipsoid" if len(les.blobs) == 1 else f"lobulated ({len(les.blobs)} lobes)"),
        "mr_spacing_mm": mr_sp.round(3).tolist(), "ct_spacing_mm": ct_sp.round(3).tolist(),
    }
    out.update(mr_affine=mr_affine, ct_affine=ct_affine, ref_affine=mr_affine if ref == "mr" else ct_affine,
               mask=(ref_v["lesion"] > 0.5).astype(np.uint8), icv=(ref_v["icv"] > 0.5).astype(np.uint8), truth=truth)
    return out


def write_family_study(root: Path, study_id: str, seed: int, *, label: int | None, fmt: str = "nifti",
                       drop: str | None = None) -> dict:
    """Write one study (NIfTI or DICOM) and its truth; returns its datalist entry."""
    from .demo_data import _save_nifti, save_truth
    from .dicom_io import new_study, write_series

    s = make_study(seed, label=label, drop=drop)
    study_dir, truth_dir = root / "studies" / study_id, root / "truth" / study_id
    study_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        study = new_study(study_id)
        if s["mr"] is not None:
            write_series(s["mr"], s["mr_affine"], study_dir / "MR", modality="MR", study=study, series_number=4,
                         description="3D T1 SPGR")
        if s["ct"] is not None:
            write_series(s["ct"], s["ct_affine"], study_dir / "CT", modality="CT", study=study, series_number=7,
                         description="CT head axial")
    else:
        if s["mr"] is not None:
            _save_nifti(study_dir / "t1.nii.gz", s["mr"], s["mr_affine"])
        if s["ct"] is not None:
            _save_nifti(study_dir / "ct.nii.gz", s["ct"], s["ct_affine"], dtype=np.int16)
    _save_nifti(truth_dir / "mask.nii.gz", s["mask"], s["ref_affine"], dtype=np.uint8)
    _save_nifti(truth_dir / "icv.nii.gz", s["icv"], s["ref_affine"], dtype=np.uint8)
    truth = {**s["truth"], "format": fmt, "dropped": drop}
    save_truth(truth_dir / "truth.json", truth)
    return {"id": study_id, "study": str(study_dir), "label": truth["label"], "truth": str(truth_dir / "truth.json"),
            "mask": str(truth_dir / "mask.nii.gz"), "icv": str(truth_dir / "icv.nii.gz"), "format": fmt, "dropped": drop}


def family_plan(n: int) -> list[dict]:
    """Study ``i`` of ``n``: every 5th without a lesion, every 6th MR-only / CT-only (alternating),
    every 4th DICOM; the lesion studies cycle through the four classes."""
    plan, k = [], 0
    for i in range(n):
        no_lesion = i % 5 == 2
        drop = ("ct", "mr")[(i // 6) % 2] if i % 6 == 5 else None
        label = None if no_lesion else k % 4
        k += 0 if no_lesion else 1
        plan.append({"label": label, "drop": drop, "fmt": "dicom" if i % 4 == 3 else "nifti"})
    return plan


def generate_family(out: Path, n: int = 60, seed: int = 7, progress: bool = True) -> dict:
    """Write ``n`` evaluation-family studies under ``out`` and ``datalist.json`` (all in ``test``)."""
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    out = Path(out)
    entries = []
    for i, p in enumerate(tqdm(family_plan(n), desc="eval family", disable=not progress)):
        entries.append(write_family_study(out, f"fam{i:04d}", 7_000_000 + 1000 * seed + i, label=p["label"],
                                          fmt=p["fmt"], drop=p["drop"]))
    datalist = {"training": [], "validation": [], "test": entries, "family": FAMILY}
    atomic_write_json(out / "datalist.json", datalist)
    return datalist
