"""Writers for one analysed study: NIfTI mask (native grid), DICOM SEG (highdicom); the HTML report is
:mod:`apps.medical.report`."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mmcore.train import atomic_write_bytes

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_nifti_mask(path: Path, mask: np.ndarray, affine_ras: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(mask.astype(np.uint8), np.asarray(affine_ras, float))
    img.set_qform(np.asarray(affine_ras, float), code=1)
    img.set_sform(np.asarray(affine_ras, float), code=1)
    img.header.set_xyzt_units("mm")
    data = img.to_bytes()
    if str(path).endswith(".gz"):
        import gzip

        data = gzip.compress(data, compresslevel=1)
    atomic_write_bytes(path, data)


# Type-2 attributes (must be present, may be empty) that highdicom copies from the source images; a
# de-identification profile may have emptied or removed them (e.g. PatientBirthDate).
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                "AccessionNumber", "ReferringPhysicianName")


def _with_type2(ds):
    """The source dataset (in memory only) with each of :data:`TYPE2_COPIED` present, empty when it was removed."""
    for keyword in TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def write_dicom_seg(path: Path, mask: np.ndarray, affine_ras: np.ndarray, source_files: list[Path]) -> dict:
    """A binary DICOM SEG over the source series; frames follow the source slices.

    ``mask`` is on the grid MONAI loaded the series to (``affine_ras``); each source slice is
    located by its ImagePositionPatient, and the array axes are matched to the DICOM row/column
    directions, so the SEG has exactly the source geometry.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from .dicom_io import read_header

    # headers only (parsed once per study, see dicom_io.header_cache): the SEG copies the source images'
    # attributes, never their pixels
    sources = [_with_type2(read_header(f)) for f in source_files]
    inv = np.linalg.inv(LPS @ np.asarray(affine_ras, float))
    lps_axes = (LPS @ np.asarray(affine_ras, float))[:3, :3]
    frames = []
    for ds in sources:
        ijk = inv @ np.r_[np.asarray(ds.ImagePositionPatient, float), 1.0]
        if np.abs(ijk[:2]).max() > 0.01 or abs(ijk[2] - round(ijk[2])) > 0.01:
            raise ValueError(f"{ds.filename}: slice is not on the loaded grid (voxel {ijk[:3].round(3)})")
        sl = mask[:, :, int(round(ijk[2]))]
        row_dir = np.asarray(ds.ImageOrientationPatient[:3], float)
        # array axis 0 runs along a DICOM row (column index) when it points along the row direction
        frames.append(sl.T if abs(lps_axes[:, 0] @ row_dir) > 0.5 * np.linalg.norm(lps_axes[:, 0]) else sl)
    pixels = np.stack(frames).astype(bool)
    algorithm = hd.AlgorithmIdentificationSequence(name="mmcore medical FusionSegDiagNet", version="0.1.0",
                                                   family=codes.DCM.ArtificialIntelligence)
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=generate_uid(), series_number=100, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="mmcore", manufacturer_model_name="FusionSegDiagNet", software_versions="0.1.0",
        device_serial_number="0", omit_empty_frames=False, series_description="mmcore lesion SEG")
    buf = io.BytesIO()
    seg.save_as(buf)
    atomic_write_bytes(path, buf.getvalue())
    return {"sop_instance_uid": str(seg.SOPInstanceUID), "series_instance_uid": str(seg.SeriesInstanceUID),
            "frames": int(pixels.shape[0])}
