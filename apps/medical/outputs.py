"""Writers for one analysed study: NIfTI mask (native grid), DICOM SEG (highdicom), HTML report."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from mmcore.train import atomic_write_bytes, atomic_write_text

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


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _guard_text(record: dict | None) -> str:
    if not record or not record.get("method"):
        return "off"
    removed = record.get("removed_outside_ml") or 0
    return (f"{record['method']}; removed {removed} mL outside the intracranial volume" if removed
            else f"{record['method']}; nothing predicted outside the intracranial volume")


def _ood_text(record: dict | None) -> str:
    if not record:
        return "-"
    if record.get("flagged"):
        return f"FLAGGED: {record.get('reason')}"
    if "distance" in record:
        return f"in domain (distance {record['distance']} <= {record['threshold']})"
    return record.get("note") or record.get("reason") or "-"


def write_report(path: Path, findings: dict, images: dict[str, np.ndarray | None] | None,
                 lesion: np.ndarray | None) -> None:
    """Self-contained HTML: MR and CT slices through the lesion with its contour, the probabilities.

    ``images``: ``{"mr": [*S] or None, "ct": ...}`` on the model grid (``None``: the modality is missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    shown = [v for v in (images or {}).values() if v is not None]
    if shown:
        k = int(np.argmax(lesion.sum((0, 1)))) if lesion is not None and lesion.any() else shown[0].shape[-1] // 2
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
        for ax, m, name in zip(axes, ("mr", "ct"), ("MR (T1)", "CT (registered, -40..120 HU)")):
            ax.axis("off")
            if images.get(m) is None:
                ax.set_title(f"{name}: missing")
                continue
            ax.imshow(np.rot90(images[m][:, :, k]), cmap="gray", vmin=0, vmax=1)
            if lesion is not None and lesion[:, :, k].any():
                ax.contour(np.rot90(lesion[:, :, k].astype(float)), levels=[0.5], colors="red", linewidths=1.2)
            ax.set_title(f"{name}, axial {k}")
        figs.append(_png(fig))
        plt.close(fig)
    probs = findings.get("probabilities") or {}
    if probs:
        fig, ax = plt.subplots(figsize=(5, 2.2))
        ax.barh(list(probs), list(probs.values()), color="#4a7ab0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability (calibrated on synthetic data)")
        figs.append(_png(fig))
        plt.close(fig)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in [
        ("study", findings.get("study")), ("status", findings.get("status")),
        ("result", findings.get("result")),
        ("diagnosis", findings.get("diagnosis") or f"withheld: {findings.get('diagnosis_withheld')}"),
        ("intracranial guard", _guard_text(findings.get("intracranial_guard"))),
        ("out-of-domain check", _ood_text(findings.get("out_of_domain"))),
        ("modalities used", ", ".join(findings.get("modalities_used", []))),
        ("modalities missing", ", ".join(findings.get("modalities_missing", [])) or "none"),
        ("flag", findings.get("flag") or "-"), ("lesion volume (mL)", findings.get("lesion", {}).get("volume_ml")),
        ("lesion centre (RAS mm)", findings.get("lesion", {}).get("centroid_ras_mm")),
        ("location", findings.get("lesion", {}).get("location")),
        ("registration", (findings.get("registration") or {}).get("quality"))])
    notes = "".join(f"<li>{html.escape(m)}</li>" for m in findings.get("messages", []))
    imgs = "".join(f'<img src="data:image/png;base64,{b}"/><br/>' for b in figs)
    atomic_write_text(path, f"""<!doctype html><html><head><meta charset="utf-8"><title>mmcore medical report</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}} th{{text-align:left;padding-right:1em}}</style></head>
<body><h1>Study report</h1><p><b>{html.escape(findings.get("disclaimer") or "Research demo, not for clinical use.")}</b></p><table>{rows}</table>
{imgs}<h3>Notes</h3><ul>{notes or '<li>none</li>'}</ul></body></html>""")
