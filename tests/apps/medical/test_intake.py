"""Study intake: series grouping, decoys, selection rules, bad input with clear messages."""
from __future__ import annotations

import shutil

import pytest
from medical_helpers import affine_for, blob_volume, write_nifti

from apps.medical.dicom_io import new_study, write_series
from apps.medical.intake import IntakeError, list_studies, read_study


@pytest.fixture()
def dicom_study(tmp_path):
    vol, _ = blob_volume((24, 28, 12))
    study = new_study("P1")
    folder = tmp_path / "study"
    write_series(vol, affine_for((2.0, 2.0, 3.0)), folder / "a", modality="MR", study=study, series_number=2, description="T1 MPRAGE")
    write_series(vol - 1000, affine_for((1.0, 1.0, 3.0)), folder / "b", modality="CT", study=study, series_number=3, description="CT")
    write_series(vol[:, :, :2], affine_for(), folder / "loc", modality="MR", study=study, series_number=9,
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    (folder / "DICOMDIR").write_bytes(b"\0" * 132)
    (folder / "notes.bin").write_bytes(b"not dicom at all")
    return folder, study


def test_groups_series_and_skips_decoys(dicom_study):
    folder, study = dicom_study
    s = read_study(folder)
    assert s.kind == "dicom" and s.modalities == ["mr", "ct"]
    assert len(s.sources["mr"]) == 12 and len(s.sources["ct"]) == 12
    assert s.study_uid == study["StudyInstanceUID"]
    joined = " ".join(s.messages)
    assert "localizer" in joined and "DICOMDIR" in joined and "notes.bin" in joined


def test_two_mr_candidates_named_and_rule_applied(dicom_study):
    folder, study = dicom_study
    vol, _ = blob_volume((24, 28, 16))
    write_series(vol, affine_for((2.0, 2.0, 3.0)), folder / "c", modality="MR", study=study, series_number=5, description="FLAIR")
    s = read_study(folder)
    msg = next(m for m in s.messages if "candidate MR series" in m)
    assert "T1 MPRAGE" in msg and "FLAIR" in msg and "Chose series 2" in msg
    assert s.series["mr"]["description"] == "T1 MPRAGE"


def test_inconsistent_spacing_rejected_with_series_named(dicom_study):
    folder, _ = dicom_study
    files = sorted((folder / "b").glob("*.dcm"))
    files[5].unlink()   # a missing slice: uneven spacing
    s = read_study(folder)
    assert "ct" not in s.sources
    assert any("inconsistent slice spacing" in m and "'CT'" in m for m in s.messages)


def test_mixed_orientation_rejected(dicom_study):
    import pydicom

    folder, _ = dicom_study
    f = sorted((folder / "a").glob("*.dcm"))[3]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(f)
    s = read_study(folder)
    assert "mr" not in s.sources and any("different orientations" in m for m in s.messages)


def test_empty_and_missing_folders_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IntakeError, match="no image series"):
        read_study(tmp_path / "empty")
    with pytest.raises(IntakeError, match="no such folder"):
        read_study(tmp_path / "nope")


def test_pydicom_single_slices_refused_clearly(tmp_path):
    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(get_testdata_file(name), d / name)
        with pytest.raises(IntakeError, match="only 1 slice"):
            read_study(d)


def test_nifti_names_and_manifest(tmp_path):
    vol, _ = blob_volume((20, 20, 20))
    write_nifti(tmp_path / "s1" / "T1w.nii.gz", vol, affine_for())
    write_nifti(tmp_path / "s1" / "head_ct.nii.gz", vol, affine_for())
    write_nifti(tmp_path / "s1" / "other.nii.gz", vol, affine_for())
    s = read_study(tmp_path / "s1")
    assert s.sources["mr"][0].name == "T1w.nii.gz" and s.sources["ct"][0].name == "head_ct.nii.gz"
    assert any("other.nii.gz" in m for m in s.messages)
    (tmp_path / "s1" / "manifest.json").write_text('{"mr": "other.nii.gz"}')
    s = read_study(tmp_path / "s1")
    assert s.modalities == ["mr"] and s.sources["mr"][0].name == "other.nii.gz"
    (tmp_path / "s1" / "manifest.json").write_text('{"mr": "gone.nii.gz"}')
    with pytest.raises(IntakeError, match="do not exist"):
        read_study(tmp_path / "s1")


def test_list_studies_batch_vs_single(tmp_path, dicom_study):
    folder, _ = dicom_study
    assert list_studies(folder) == [folder]
    assert list_studies(folder.parent) == [folder]
