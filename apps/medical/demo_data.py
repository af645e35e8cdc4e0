"""Write a demo data set: study folders (NIfTI or DICOM), ground truth kept apart, a MONAI datalist.

Layout::

    out/studies/<id>/mr.nii.gz, ct.nii.gz          NIfTI study
    out/studies/<id>/MR/IM_*.dcm, CT/IM_*.dcm       DICOM study (+ decoys: localizer, SR, DICOMDIR)
    out/truth/<id>/truth.json, mask.nii.gz          label, lesion, CT motion, landmarks (never read by analyze)
    out/datalist.json                               {"training": [...], "validation": [...], "test": [...]}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .phantom import make_subject, save_truth


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, dtype=np.float32) -> None:
    import nibabel as nib

    from mmcore.utils.io import atomic_path

    img = nib.Nifti1Image(array.astype(dtype), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _write_decoys(study_dir: Path, subject, study: dict) -> None:
    """A 2-slice localizer (same patient), a structured report and a DICOMDIR-named file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .dicom_io import write_series

    loc = subject.mr[:, :, subject.mr.shape[2] // 2 - 1: subject.mr.shape[2] // 2 + 1]
    write_series(loc, subject.mr_affine, study_dir / "LOCALIZER", modality="MR", study=study, series_number=99,
                 description="3-plane localizer", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID, sr.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    sr.Modality, sr.StudyInstanceUID, sr.SeriesInstanceUID = "SR", study["StudyInstanceUID"], generate_uid()
    sr.PatientID = study["PatientID"]
    (study_dir / "REPORT").mkdir(exist_ok=True)
    sr.save_as(study_dir / "REPORT" / "SR0001.dcm", enforce_file_format=True)
    (study_dir / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM")  # an index file, must be skipped


def write_study(root: Path, study_id: str, seed: int, *, label: int | None = None, fmt: str = "nifti",
                drop: str | None = None, decoys: bool = False, scale: float = 1.0) -> dict:
    """Generate and write one study; returns its datalist entry."""
    from .dicom_io import new_study, write_series

    subject = make_subject(seed, label, scale=scale)
    study_dir = root / "studies" / study_id
    truth_dir = root / "truth" / study_id
    study_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        study = new_study(study_id)
        if drop != "mr":
            write_series(subject.mr, subject.mr_affine, study_dir / "MR", modality="MR", study=study, series_number=2,
                         description="T1 MPRAGE")
        if drop != "ct":
            write_series(subject.ct, subject.ct_affine, study_dir / "CT", modality="CT", study=study, series_number=3,
                         description="Head CT 3mm")
        if decoys:
            _write_decoys(study_dir, subject, study)
    else:
        if drop != "mr":
            _save_nifti(study_dir / "mr.nii.gz", subject.mr, subject.mr_affine)
        if drop != "ct":
            _save_nifti(study_dir / "ct.nii.gz", subject.ct, subject.ct_affine, dtype=np.int16)
    _save_nifti(truth_dir / "mask.nii.gz", subject.mask, subject.mr_affine, dtype=np.uint8)
    truth = {**subject.truth, "format": fmt, "dropped": drop}
    save_truth(truth_dir / "truth.json", truth)
    return {"id": study_id, "study": str(study_dir), "label": truth["label"], "truth": str(truth_dir / "truth.json"),
            "mask": str(truth_dir / "mask.nii.gz"), "format": fmt, "dropped": drop}


def generate(out: Path, n_train: int = 0, n_val: int = 0, n_test: int = 0, seed: int = 0, *,
             dicom_every: int = 0, drop_every: int = 0, scale: float = 1.0, train_scale: float = 1.5,
             progress: bool = True) -> dict:
    """Write ``n_train + n_val + n_test`` studies with balanced classes and a datalist.json.

    ``dicom_every=k`` writes every k-th *test* study as DICOM (with decoys); ``drop_every=k`` drops
    a modality (alternating MR/CT) from every k-th test study. Training/validation studies use
    coarser native grids (``train_scale``) to keep data generation and caching fast on a CPU.
    """
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    out = Path(out)
    splits = {"training": n_train, "validation": n_val, "test": n_test}
    datalist: dict[str, list] = {k: [] for k in splits}
    total = sum(splits.values())
    bar = tqdm(total=total, desc="demo studies", disable=not progress)
    offsets = {"training": 0, "validation": 100_000, "test": 200_000}
    for split, n in splits.items():
        for i in range(n):
            study_seed = seed * 1_000_000 + offsets[split] + i
            fmt, drop = "nifti", None
            if split == "test" and dicom_every and i % dicom_every == dicom_every - 1:
                fmt = "dicom"
            if split == "test" and drop_every and i % drop_every == drop_every - 1:
                drop = ("ct", "mr")[(i // drop_every) % 2]
            entry = write_study(out, f"{split[:3]}{i:04d}", study_seed, label=i % 4, fmt=fmt, drop=drop,
                                decoys=fmt == "dicom", scale=scale if split == "test" else train_scale)
            datalist[split].append(entry)
            bar.update(1)
    bar.close()
    atomic_write_json(out / "datalist.json", datalist)
    return datalist
