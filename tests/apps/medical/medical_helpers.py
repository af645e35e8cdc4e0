"""Small synthetic studies for fast tests (no MNI template needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def blob_volume(shape=(40, 44, 36), seed=0, lesion_center=(20, 22, 18), radius=5.0):
    """A head-like ellipsoid with smooth texture and a bright sphere; returns (volume, lesion mask)."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(np.float32)
    c = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((idx[i] - c[i]) / (0.42 * shape[i])) ** 2 for i in range(3)))
    vol = np.where(r < 1, 600.0, 20.0) + 150 * np.sin(idx[0] / 3.0) * np.cos(idx[1] / 4.0) * (r < 1)
    dist = np.sqrt(sum((idx[i] - lesion_center[i]) ** 2 for i in range(3)))
    mask = dist <= radius
    vol = vol + 300 * mask + rng.normal(0, 10, shape)
    return vol.astype(np.float32), mask.astype(np.uint8)


def affine_for(spacing=(2.0, 2.0, 2.0), origin=(-40.0, -44.0, -36.0)):
    a = np.eye(4)
    a[:3, :3] = np.diag(spacing)
    a[:3, 3] = origin
    return a


def write_nifti(path: Path, vol, affine):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(vol), affine), str(path))
    return path
