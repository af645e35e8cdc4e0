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


def flatten_into(dest: Path, *series_dirs: Path) -> Path:
    """Move the files of several series folders into one flat folder (names prefixed by their folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in series_dirs:
        for f in sorted(Path(d).glob("*.dcm")):
            f.rename(dest / f"{Path(d).name}_{f.name}")
        Path(d).rmdir()
    return dest


def set_raw(path: Path, tag: int, text: str, vr: str = "DS") -> None:
    """Store ``text`` as the raw value of ``tag`` (as a scanner would write it; pydicom does not validate it)."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(path)
    raw = text.encode() + (b" " if len(text) % 2 else b"")
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
    ds.save_as(path)


def deidentify(folder: Path, remove=("PatientBirthDate", "PatientSex"), empty=("PatientName", "ReferringPhysicianName",
                                                                                "AccessionNumber", "StudyID")) -> None:
    """A basic-profile style de-identification in place: type-2 attributes removed or emptied."""
    import pydicom

    for f in sorted(Path(folder).rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        for k in remove:
            if k in ds:
                delattr(ds, k)
        for k in empty:
            setattr(ds, k, "")
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "basic profile (test)"
        ds.save_as(f)
