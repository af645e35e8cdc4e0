"""Issue 16 item 4 through ``analyze_study``/``analyze_path``/the CLI with the shipped model: the
expected status, messages and outputs of each intake case (intake-level checks: test_intake_cases.py)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from medical_helpers import affine_for, blob_volume, deidentify, flatten_into, set_raw

from apps.medical.analyze import DEFAULT_BUNDLE, analyze_path, analyze_study

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / "models" / "model.safetensors").exists(),
                                reason="shipped model bundle missing (data/medical/model)")


@pytest.fixture(scope="module")
def deid_study(tmp_path_factory):
    """A demo MR+CT DICOM study de-identified in place (PatientBirthDate/PatientSex removed, names emptied)."""
    from apps.medical.demo_data import write_study

    entry = write_study(tmp_path_factory.mktemp("deid"), "d1", 515151, label=2, fmt="dicom")
    deidentify(Path(entry["study"]))
    return Path(entry["study"])


def test_a_deidentified_study_gets_a_seg_on_the_source_geometry(model, deid_study, tmp_path):
    import highdicom as hd
    import pydicom

    f = analyze_study(deid_study, tmp_path, model, register=False)
    assert f["status"] == "ok", f
    assert f["outputs"] == {"mask_nifti": "lesion_mask.nii.gz", "dicom_seg": "lesion_seg.dcm", "report": "report.html"}
    assert "output_errors" not in f
    seg = hd.seg.segread(tmp_path / "lesion_seg.dcm")
    src = {d.SOPInstanceUID: d for d in (pydicom.dcmread(p, stop_before_pixels=True)
                                         for p in sorted((deid_study / "MR").glob("*.dcm")))}
    assert "PatientBirthDate" not in next(iter(src.values()))
    assert seg.FrameOfReferenceUID == next(iter(src.values())).FrameOfReferenceUID
    assert len(seg.PerFrameFunctionalGroupsSequence) == len(src)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = src[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                                   np.asarray(ref.ImagePositionPatient, float), atol=1e-3)
    assert int(seg.pixel_array.sum()) == f["lesion"]["voxels"]


def test_a_output_that_cannot_be_written_makes_the_status_say_so(model, deid_study, tmp_path, monkeypatch):
    import apps.medical.outputs as outputs

    def broken(*args, **kwargs):
        raise OSError("disk full (test)")

    monkeypatch.setattr(outputs, "write_dicom_seg", broken)
    f = analyze_study(deid_study, tmp_path, model, register=False)
    assert f["status"] == "incomplete"
    assert f["output_errors"] == ["lesion_seg.dcm not written: OSError: disk full (test)"]
    assert "dicom_seg" not in f["outputs"] and (tmp_path / "lesion_mask.nii.gz").exists()
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert saved["status"] == "incomplete" and any("lesion_seg.dcm not written" in m for m in saved["messages"])
    assert "lesion_seg.dcm not written" in (tmp_path / "report.html").read_text()


def test_b_cli_on_an_empty_folder_writes_refused_findings_and_exits_non_zero(model, tmp_path, monkeypatch):
    import apps.medical.analyze as analyze
    from apps.medical.cli import cmd_analyze

    monkeypatch.setattr(analyze, "load_model", lambda *a, **k: model)
    (tmp_path / "empty").mkdir()
    args = argparse.Namespace(study=str(tmp_path / "empty"), out=str(tmp_path / "out"), bundle=None, device="cpu",
                              threads=1, no_register=True, no_progress=True)
    assert cmd_analyze(args) == 1
    saved = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert saved["status"] == "refused" and "no image series found" in saved["error"]


def test_c_flat_folder_of_two_patients_gives_two_separate_studies(model, tmp_path):
    import pydicom

    from apps.medical.dicom_io import new_study, write_series

    studies = {}
    for p, shift in (("P1", 0), ("P2", 3)):
        vol, _ = blob_volume((40, 44, 36), seed=shift, lesion_center=(20 + shift, 22, 18))
        studies[p] = new_study(p)
        write_series(vol, affine_for(), tmp_path / f"mr_{p}", modality="MR", study=studies[p], description="T1")
        write_series(vol - 1000, affine_for(), tmp_path / f"ct_{p}", modality="CT", study=studies[p], description="CT")
    flat = flatten_into(tmp_path / "flat", *(tmp_path / f"{m}_{p}" for m in ("mr", "ct") for p in ("P1", "P2")))
    results = analyze_path(flat, tmp_path / "out", model, register=False, progress=False)
    assert len(results) == 2
    for r in results:
        patient = r["study_key"].split("|")[0]
        assert r["status"] == "ok", r
        assert r["study_instance_uid"] == studies[patient]["StudyInstanceUID"]
        out = Path(r["output_dir"])
        assert out.parent == tmp_path / "out" and out.name.startswith(patient + "_")
        assert json.loads((out / "findings.json").read_text())["study_key"] == r["study_key"]
        seg = pydicom.dcmread(out / "lesion_seg.dcm", stop_before_pixels=True)
        assert seg.PatientID == patient and seg.StudyInstanceUID == studies[patient]["StudyInstanceUID"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(s["study_key"].split("|")[0] for s in summary) == ["P1", "P2"]


def test_d_e_cut_ct_slice_and_flair_only_mr_analysed_with_what_remains(model, deid_study, tmp_path):
    import pydicom

    study = tmp_path / "s"
    shutil.copytree(deid_study, study)
    for p in (study / "MR").glob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.SeriesDescription = "AX T2 FLAIR"
        ds.save_as(p)
    cut = sorted((study / "CT").glob("*.dcm"))[10]
    cut.write_bytes(cut.read_bytes()[:-500])
    f = analyze_study(study, tmp_path / "out", model, register=False, write=False)
    assert f["status"] == "ok", f
    assert f["modalities_used"] == ["mr"] and f["modalities_missing"] == ["ct"] and "CT missing" in f["flag"]
    assert set(f["series"]) == {"mr"} and set(f["sources"]) == {"mr"}     # the rejected CT is not listed as used
    assert any(m.startswith("rejected") and cut.name in m and "pixel data cut" in m for m in f["messages"])
    assert any(m.startswith("WARNING") and "AX T2 FLAIR" in m for m in f["messages"])


def test_f_unparseable_orientation_refuses_the_study_naming_the_series(model, tmp_path):
    from apps.medical.dicom_io import new_study, write_series

    vol, _ = blob_volume((24, 28, 12))
    write_series(vol, affine_for((2.0, 2.0, 3.0)), tmp_path / "s" / "mr", modality="MR", study=new_study("P9"),
                 series_number=4, description="T1 3D")
    for p in sorted((tmp_path / "s" / "mr").glob("*.dcm")):
        set_raw(p, 0x00200037, "-1.00000000000000000\\0.0000000000000000001\\0\\0\\-1\\0")
    f = analyze_study(tmp_path / "s", tmp_path / "out", model)
    assert f["status"] == "refused"
    assert "series 4 'T1 3D'" in f["error"] and "does not match the headers" in f["error"]
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["status"] == "refused"
