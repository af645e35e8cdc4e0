"""Write an axis-aligned volume as a DICOM image series (one file per axial slice) with pydicom.

Geometry: the volume is ``[I, J, K]`` with a RAS voxel->world ``affine``. DICOM works in LPS; each
slice ``k`` is stored as ``pixels[j, i]`` so that the *row* direction (along a row, increasing
column) is affine column 0 and the *column* direction is affine column 1, both in LPS.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import threading
from pathlib import Path

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def to_lps_axes(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip axes of an axis-aligned grid so that i runs L->... (+x LPS) and j runs P->... (+y LPS)."""
    vol, aff = volume, affine.copy()
    lps = LPS @ aff
    for axis in (0, 1):
        if lps[axis, axis] < 0:
            vol = np.flip(vol, axis)
            n = volume.shape[axis]
            aff[:3, 3] = aff[:3, 3] + aff[:3, axis] * (n - 1)
            aff[:3, axis] = -aff[:3, axis]
            lps = LPS @ aff
    return np.ascontiguousarray(vol), aff


def write_series(volume: np.ndarray, affine: np.ndarray, out_dir: Path, *, modality: str, study: dict,
                 series_uid: str | None = None, series_number: int = 1, description: str = "",
                 image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"), for_uid: str | None = None) -> str:
    """Write ``volume`` as ``out_dir/IM_####.dcm``; returns the SeriesInstanceUID.

    ``study`` holds patient/study attributes shared by the series of one study
    (``StudyInstanceUID``, ``PatientID``, ``PatientName``, ``StudyDate`` ...).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vol, aff = to_lps_axes(volume, affine)
    lps = LPS @ aff
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    series_uid = series_uid or generate_uid()
    for_uid = for_uid or generate_uid()
    data = np.round(vol).astype(np.int16)
    now = datetime.datetime(2024, 1, 1, 9, 0, 0)
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        for key, value in study.items():
            setattr(ds, key, value)
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
        ds.Modality = modality
        ds.Manufacturer = "mmcore demo"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = for_uid
        ds.InstanceNumber = k + 1
        ds.ImageType = list(image_type)
        ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0, 0, k, 1.0]))[:3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(vol.shape[1]), int(vol.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = 120
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
        ds.save_as(out_dir / f"IM_{k + 1:04d}.dcm", enforce_file_format=True)
    return series_uid


def new_study(patient_id: str) -> dict:
    from pydicom.uid import generate_uid

    return {
        "StudyInstanceUID": generate_uid(), "PatientID": patient_id, "PatientName": f"Demo^{patient_id}",
        "PatientBirthDate": "19700101", "PatientSex": "O", "StudyID": "1", "AccessionNumber": patient_id[-8:],
        "ReferringPhysicianName": "", "StudyDescription": "mmcore demo MR+CT head",
    }


_CACHE = threading.local()


@contextlib.contextmanager
def header_cache():
    """Within this block (one study's analysis, this thread) each DICOM file's header is parsed once:
    :func:`read_header` serves intake's index, the loaded-geometry check and the SEG writer from it."""
    outer = getattr(_CACHE, "headers", None)
    if outer is None:
        _CACHE.headers = {}
    try:
        yield
    finally:
        if outer is None:
            _CACHE.headers = None


def read_header(path):
    """``pydicom.dcmread(path, stop_before_pixels=True)``, memoised by path, size and mtime inside
    :func:`header_cache` (the same object each time: callers must not rely on private changes)."""
    import pydicom

    cache = getattr(_CACHE, "headers", None)
    if cache is None:
        return pydicom.dcmread(path, stop_before_pixels=True)
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in cache:
        cache[key] = pydicom.dcmread(path, stop_before_pixels=True)
    return cache[key]


def header_corners(files: list[Path]) -> tuple[np.ndarray, str]:
    """The 8 corner voxel centres (RAS mm, [8, 3]) of a single-orientation series from its headers, and a
    label naming the series; the check for a loader that got the geometry wrong (:func:`geometry_mismatch`)."""
    heads = [read_header(f) for f in files]
    o = np.asarray(heads[0].ImageOrientationPatient, float)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    heads.sort(key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))
    dr, dc = (float(v) for v in heads[0].PixelSpacing)      # row spacing (between rows), column spacing
    extent = [np.zeros(3), row_dir * dc * (int(heads[0].Columns) - 1)], [np.zeros(3), col_dir * dr * (int(heads[0].Rows) - 1)]
    corners = [np.asarray(d.ImagePositionPatient, float) + a + b for d in (heads[0], heads[-1])
               for a in extent[0] for b in extent[1]]
    label = (f"{heads[0].get('Modality', '')} series {heads[0].get('SeriesNumber', '')} '{heads[0].get('SeriesDescription', '')}' "
             f"({len(files)} files in {Path(files[0]).parent})")
    return np.stack(corners) * np.array([-1.0, -1.0, 1.0]), label


def geometry_mismatch(files: list[Path], affine_ras: np.ndarray, shape: tuple[int, ...], tol_mm: float = 1.0) -> str | None:
    """None when a loaded volume (``affine_ras``, spatial ``shape``) covers the box the DICOM headers give,
    else the reason naming the series (e.g. a reader that fell back to an identity affine)."""
    want, label = header_corners(files)
    idx = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    got = (idx @ np.asarray(affine_ras, float).T)[:, :3]
    err = max(float(np.linalg.norm(got - w, axis=1).min()) for w in want)
    if err > tol_mm:
        return (f"{label}: the loaded geometry does not match the headers (a corner {err:.1f} mm off; the reader could not "
                "parse ImagePositionPatient/ImageOrientationPatient and used another affine); series refused")
    return None
