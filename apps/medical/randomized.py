"""Domain-randomised training studies: many heads, contrasts, acquisitions and lesion layouts.

Each study draws:

* **anatomy**: the MNI152-derived head of :func:`apps.medical.phantom.load_anatomy` under a random
  smooth elastic deformation (displacements on a 5^3 control grid, s.d. 2-5 mm, cubic
  interpolation) and an anisotropic scaling of +-15 % per axis (p = 0.7), or an independently
  written analytic head (:func:`ellipsoid_head`: ellipsoidal brain with a cortical band, deep grey
  nuclei, ventricles, CSF, skull and scalp; p = 0.3);
* **contrast**: every tissue's T1 value and HU redrawn (piecewise-linear remap of the anchor
  intensities), a bias field of random strength, noise s.d. 0.01-0.06 (MR, magnitude) and 3-12
  HU (CT), a global MR gain 200-4000;
* **acquisition**: MR and CT slice thickness 1-5 mm and in-plane spacing 0.5-1.5 mm, each drawn
  independently; a grid above :data:`VOXEL_BUDGET` voxels keeps its slice thickness and has its
  in-plane spacing raised until it fits (CPU budget; the rendered spacings are stored per study);
  a random head pose; MR axes RAS or flipped;
* **lesions**: 0-3 (a no-lesion study with p = 0.2), each 0.5-30 mL (log-uniform), an ellipsoid
  with a noisy surface, anywhere in the brain including against the cortex (clipped to the
  brain), all of the study's class (cue table of :mod:`apps.medical.phantom`).

CT is generated aligned with the MR (registration is not what this trains), so the cache is built
with header alignment. Only the preprocessed model-grid tensors are kept (nothing derived from
the template is written outside the run's cache).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from .phantom import BASE_SPACING, CT_CUE, MR_CUE, Anatomy, grid_affine, load_anatomy, random_rigid

VOXEL_BUDGET = 2_000_000
FOV_MM = np.array([190.0, 226.0, 190.0])
MR_ANCHORS = {"air": 0.0, "skull": 0.08, "csf": 0.12, "gm": 0.5, "scalp": 0.65, "wm": 0.85}
CT_ANCHORS = {"air": -1000.0, "csf": 8.0, "wm": 28.0, "scalp": 30.0, "gm": 40.0, "skull": 1000.0}


def ellipsoid_head(rng: np.random.Generator, like: Anatomy) -> Anatomy:
    """An analytic head on ``like``'s 1.5 mm grid: ellipsoidal brain (semi-axes 58-72 x 74-90 x
    56-68 mm), cortex band 2.5-4 mm, caudate/thalamus-like grey nuclei, two ventricles, CSF 1-3 mm,
    skull 4-8 mm, scalp 3-7 mm; same value conventions as the MNI head (T1 in [0, 1], HU)."""
    shape = like.mr.shape
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    p = like.affine[:3, :3].astype(np.float32) @ idx + like.affine[:3, 3:4].astype(np.float32)
    centre = np.array([0.0, -18.0, 12.0], np.float32) + rng.normal(0, 3, 3).astype(np.float32)
    p = p - centre[:, None]
    semi = np.array([rng.uniform(58, 72), rng.uniform(74, 90), rng.uniform(56, 68)], np.float32)
    r = np.sqrt(((p / semi[:, None]) ** 2).sum(0))
    mean_r = float(semi.mean())
    out_mm = ((r - 1) * mean_r).reshape(shape)
    depth = np.clip(-out_mm, 0, None)
    brain = out_mm <= 0
    cortex = rng.uniform(2.5, 4.0)
    csf_l, skull_l, scalp_l = rng.uniform(1, 3), rng.uniform(4, 8), rng.uniform(3, 7)
    vent = np.zeros(p.shape[1], bool)
    nuclei = np.zeros(p.shape[1], bool)
    for s in (-1, 1):
        vc = np.array([s * rng.uniform(5, 9), rng.uniform(-4, 6), rng.uniform(6, 14)], np.float32)
        vs = np.array([rng.uniform(3, 6), rng.uniform(15, 25), rng.uniform(5, 9)], np.float32)
        vent |= (((p - vc[:, None]) / vs[:, None]) ** 2).sum(0) <= 1
        nc = np.array([s * rng.uniform(14, 22), rng.uniform(-10, 4), rng.uniform(-2, 6)], np.float32)
        ns = np.array([rng.uniform(6, 10), rng.uniform(8, 14), rng.uniform(6, 10)], np.float32)
        nuclei |= (((p - nc[:, None]) / ns[:, None]) ** 2).sum(0) <= 1
    vent, nuclei = vent.reshape(shape), nuclei.reshape(shape)
    gm = brain & ((depth < cortex) | nuclei) & ~vent
    wm = brain & ~gm & ~vent
    csf = (brain & vent) | ((out_mm > 0) & (out_mm <= csf_l))
    skull = (out_mm > csf_l) & (out_mm <= csf_l + skull_l)
    scalp = (out_mm > csf_l + skull_l) & (out_mm <= csf_l + skull_l + scalp_l)
    a = MR_ANCHORS
    mr = (a["wm"] * wm + a["gm"] * gm + a["csf"] * csf + a["skull"] * skull + a["scalp"] * scalp).astype(np.float32)
    c = CT_ANCHORS
    ct = np.full(shape, c["air"], np.float32)
    ct[wm], ct[gm], ct[csf], ct[skull], ct[scalp] = c["wm"], c["gm"], c["csf"], c["skull"], c["scalp"]
    return Anatomy(mr, ct, depth.astype(np.float32), wm.astype(np.float32), like.affine.copy(), "analytic ellipsoid head")


def remap_contrast(anat: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Redraw each tissue's T1 value and HU; returns (mr, ct, new WM T1, new WM HU)."""
    new_mr = {"air": 0.0, "skull": rng.uniform(0.02, 0.2), "csf": rng.uniform(0.04, 0.25), "gm": rng.uniform(0.38, 0.65),
              "scalp": rng.uniform(0.4, 0.95), "wm": rng.uniform(0.7, 1.0)}
    new_ct = {"air": -1000.0, "csf": rng.uniform(0, 15), "wm": rng.uniform(18, 32), "scalp": rng.uniform(10, 45),
              "gm": rng.uniform(32, 48), "skull": rng.uniform(600, 1800)}
    keys = sorted(MR_ANCHORS, key=MR_ANCHORS.get)
    mr = np.interp(anat.mr, [MR_ANCHORS[k] for k in keys], [new_mr[k] for k in keys]).astype(np.float32)
    keys = sorted(CT_ANCHORS, key=CT_ANCHORS.get)
    ct = np.interp(anat.ct, [CT_ANCHORS[k] for k in keys], [new_ct[k] for k in keys]).astype(np.float32)
    return mr, ct, float(new_mr["wm"]), float(new_ct["wm"])


def add_lesions(anat: Anatomy, mr: np.ndarray, ct: np.ndarray, wm_t1: float, wm_hu: float, label: int,
                n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Paint ``n`` lesions of class ``label`` into the base volumes in place; returns the base mask."""
    mask = np.zeros(mr.shape, np.float32)
    brain = anat.brain_depth > 0
    info = []
    for _ in range(n):
        volume = float(np.exp(rng.uniform(np.log(0.5), np.log(30.0))))
        radius = (3 * volume * 1000 / (4 * np.pi)) ** (1 / 3)
        ok = np.argwhere(anat.brain_depth > rng.uniform(0.3, 1.0) * radius)
        if len(ok) == 0:
            continue
        vox = ok[rng.integers(len(ok))]
        semi = radius * rng.uniform(0.7, 1.3, 3)
        semi *= radius / np.prod(semi) ** (1 / 3)
        rot = random_rigid(rng, 90.0, (0.0, 0.0))[:3, :3]
        half = int(np.ceil((semi.max() + 4) / BASE_SPACING))
        lo = np.maximum(vox - half, 0)
        hi = np.minimum(vox + half + 1, np.array(mr.shape))
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        idx = (np.indices([b - a for a, b in zip(lo, hi)]).reshape(3, -1).T + lo - vox) * BASE_SPACING
        local = idx @ rot
        rr = np.sqrt(((local / semi) ** 2).sum(1)).reshape([b - a for a, b in zip(lo, hi)])
        bumps = ndimage.gaussian_filter(rng.normal(0, 1, rr.shape), 2.0)
        rr = rr * (1 + 0.12 * bumps / max(float(bumps.std()), 1e-6))
        dist = (1 - rr) * semi.min()                       # mm inside the surface (approx.)
        whole = np.clip(dist / 1.5 + 0.5, 0, 1) * brain[sl]
        core = np.clip((dist - max(1.5, 0.35 * semi.min())) / 1.5 + 0.5, 0, 1) * brain[sl]
        rim = whole - core
        mr_cue = MR_CUE[label] + rng.normal(0, 0.15)
        ct_cue = CT_CUE[label] + rng.normal(0, 12.0)
        rim_t1, rim_hu = wm_t1 * rng.uniform(0.45, 0.7), wm_hu - rng.uniform(4, 14)
        mr[sl] = mr[sl] * (1 - whole) + rim * rim_t1 + core * wm_t1 * (1 + mr_cue)
        ct[sl] = ct[sl] * (1 - whole) + rim * rim_hu + core * (wm_hu + 2 + ct_cue)
        mask[sl] = np.maximum(mask[sl], whole)
        info.append({"volume_ml": volume, "centre_base_vox": vox.tolist()})
    return mask, info


def _elastic_map(anat: Anatomy, rng: np.random.Generator, strength: float):
    """A smooth displacement field (mm) on a 5^3 control grid over the base volume."""
    ctrl = rng.normal(0, strength, (3, 5, 5, 5)).astype(np.float32)
    ctrl[:, [0, -1]] = 0
    ctrl[:, :, [0, -1]] = 0
    ctrl[:, :, :, [0, -1]] = 0
    return ctrl


def _spacing(rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    inplane, thick = rng.uniform(0.5, 1.5), rng.uniform(1.0, 5.0)
    need = float(np.sqrt(np.prod(FOV_MM[:2]) * FOV_MM[2] / thick / VOXEL_BUDGET))
    return np.array([max(inplane, need)] * 2 + [thick]), need > inplane


def _sample(base: np.ndarray, coords: np.ndarray, shape, cval: float) -> np.ndarray:
    return ndimage.map_coordinates(base, coords, order=1, cval=cval, mode="constant").reshape(shape).astype(np.float32)


def render_study(seed: int) -> dict:
    """One randomised study: MR and CT arrays on their own native grids (same world), the lesion mask
    on the MR grid, affines and the drawn parameters."""
    rng = np.random.default_rng(seed)
    mni = load_anatomy()
    analytic = rng.random() < 0.3
    anat = ellipsoid_head(rng, mni) if analytic else mni
    mr_b, ct_b, wm_t1, wm_hu = remap_contrast(anat, rng)
    has_lesion = rng.random() >= 0.2
    label = int(rng.integers(4))
    n_les = int(rng.integers(1, 4)) if has_lesion else 0
    mask_b, lesions = add_lesions(anat, mr_b, ct_b, wm_t1, wm_hu, label, n_les, rng)
    scale = np.ones(3) if analytic or rng.random() < 0.3 else rng.uniform(0.85, 1.15, 3)
    strength = 0.0 if analytic else rng.uniform(2.0, 5.0)
    ctrl = _elastic_map(anat, rng, strength)
    pose = random_rigid(rng, 10.0, (0.0, 10.0))
    base_from_world = np.linalg.inv(anat.affine) @ np.diag([*(1 / scale), 1.0]) @ np.linalg.inv(pose)
    out = {"label": label if lesions else -1, "lesions": lesions, "anatomy": anat.source, "scale": scale.tolist(),
           "elastic_sd_mm": strength}
    for name, base, cval in (("mr", mr_b, 0.0), ("ct", ct_b, -1000.0)):
        spacing, coarsened = _spacing(rng)
        shape = tuple(int(np.ceil(f / s)) for f, s in zip(FOV_MM, spacing))
        aff = grid_affine(spacing, shape, (0.0, -18.0, 18.0) + rng.normal(0, 4, 3), flip_xy=bool(rng.random() < 0.5))
        idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
        world = aff[:3, :3].astype(np.float32) @ idx + aff[:3, 3:4].astype(np.float32)
        coords = base_from_world[:3, :3].astype(np.float32) @ world + base_from_world[:3, 3:4].astype(np.float32)
        if strength:
            ctrl_coords = coords / (np.array(base.shape, np.float32)[:, None] - 1) * 4
            disp = np.stack([ndimage.map_coordinates(c, ctrl_coords, order=1, mode="nearest") for c in ctrl])
            coords = coords + disp / BASE_SPACING
        vol = _sample(base, coords, shape, cval)
        if name == "mr":
            grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
            coef = rng.normal(0, rng.uniform(0.02, 0.15), 4)
            vol = vol * np.exp(coef[0] * grids[0] + coef[1] * grids[1] + coef[2] * grids[2] + coef[3] * grids[2] ** 2)
            sigma = rng.uniform(0.01, 0.06)
            vol = np.hypot(vol + rng.normal(0, sigma, shape).astype(np.float32), rng.normal(0, sigma, shape).astype(np.float32))
            vol = vol * rng.uniform(200, 4000)
            out["mask"] = (_sample(mask_b, coords, shape, 0.0) > 0.5).astype(np.uint8)
        else:
            vol = vol + rng.normal(0, rng.uniform(3, 12), shape).astype(np.float32)
        out[name], out[f"{name}_affine"] = vol.astype(np.float32), aff
        out[f"{name}_spacing_mm"], out[f"{name}_spacing_coarsened"] = spacing.round(3).tolist(), bool(coarsened)
    return out


def build_cache(out: Path, n_train: int, n_val: int, seed: int = 0, progress: bool = True,
                shard: tuple[int, int] = (0, 1)) -> dict:
    """Render ``n_train + n_val`` studies and keep only their preprocessed tensors (resumable).

    Per study ``<out>/cache/rnd*.safetensors`` + ``.json`` (the drawn parameters); ``<out>/
    datalist.json`` lists ``{"cache", "label", "id"}`` items for ``training`` and ``validation``.
    No-lesion studies carry label -1 (the diagnosis loss skips them). ``shard=(k, n)``: render only
    every n-th study from the k-th (parallel builders); the datalist lists what exists."""
    import tempfile

    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    from .datasets import save_case
    from .demo_data import _save_nifti
    from .transforms import preprocess

    out = Path(out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    pipe = preprocess(register=False, with_mask=True)
    lists: dict[str, list] = {"training": [], "validation": []}
    plan = [("training", i, seed * 1_000_000 + 500_000 + i) for i in range(n_train)]
    plan += [("validation", i, seed * 1_000_000 + 600_000 + i) for i in range(n_val)]
    for j, (split, i, study_seed) in enumerate(tqdm(plan, desc="randomised studies", disable=not progress)):
        sid = f"rnd{split[:1]}{i:04d}"
        tensors, meta = cache / f"{sid}.safetensors", cache / f"{sid}.json"
        if not (tensors.exists() and meta.exists()) and j % shard[1] == shard[0]:
            s = render_study(study_seed)
            drop = {0: "mr", 1: "ct"}.get(int(np.random.default_rng(study_seed + 7).integers(10)))
            with tempfile.TemporaryDirectory(prefix="mm-rnd-") as tmp:
                paths = {}
                for m in ("mr", "ct"):
                    if m != drop:
                        paths[m] = Path(tmp) / f"{m}.nii"
                        _save_nifti(paths[m], s[m], s[f"{m}_affine"])
                paths["mask"] = Path(tmp) / "mask.nii"
                _save_nifti(paths["mask"], s["mask"], s["mr_affine"], dtype=np.uint8)
                if drop == "mr":      # the mask must live on the reference (CT) grid
                    from .phantom import sample

                    m_ct = sample(s["mask"].astype(np.float32), s["mr_affine"], s["ct_affine"], s["ct"].shape, np.eye(4), order=1)
                    _save_nifti(paths["mask"], (m_ct > 0.5).astype(np.uint8), s["ct_affine"], dtype=np.uint8)
                d = pipe({m: str(paths[m]) if m in paths else None for m in ("mr", "ct", "mask")})
            save_case(tensors, d)
            info = {k: v for k, v in s.items() if not isinstance(v, np.ndarray)}
            atomic_write_json(meta, {"id": sid, "seed": study_seed, "dropped": drop, **info})
        if not meta.exists():
            continue
        label = json.loads(meta.read_text())["label"]
        lists[split].append({"cache": str(tensors), "label": int(label), "id": sid})
    atomic_write_json(out / "datalist.json", lists)
    return lists
