"""Write an axis-aligned volume as a DICOM image series (one file per axial slice) with pydicom.

Geometry: the volume is ``[I, J, K]`` with a RAS voxel->world ``affine``. DICOM works in LPS; each
slice ``k`` is stored as ``pixels[j, i]`` so that the *row* direction (along a row, increasing
column) is affine column 0 and the *column* direction is affine column 1, both in LPS.
"""
from __future__ import annotations

import datetime
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
