"""End to end on a generated demo study with the shipped model, and real public files that must
give a clear answer or a clear refusal (never a traceback)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from apps.medical.analyze import DEFAULT_BUNDLE, analyze_path, analyze_study

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / "models" / "model.safetensors").exists(),
                                reason="shipped model bundle missing (data/medical/model)")


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory):
    from apps.medical.demo_data import write_study

    root = tmp_path_factory.mktemp("demo")
    return write_study(root, "s1", 424242, label=1, fmt="dicom", decoys=True)


def test_dicom_demo_study_all_outputs(model, dicom_study, tmp_path):
    import highdicom as hd
    import nibabel as nib
    import pydicom

    from apps.medical.phantom import load_truth, tre_mm

    f = analyze_study(dicom_study["study"], tmp_path, model)
    assert f["status"] == "ok", f
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert saved["study_instance_uid"] and set(saved["series"]) == {"mr", "ct"}
    assert saved["modalities_used"] == ["mr", "ct"] and saved["flag"] is None
    truth = load_truth(dicom_study["truth"])
    assert tre_mm(np.asarray(saved["registration"]["ct_from_mr"]), truth) < 1.0 < tre_mm(np.eye(4), truth)
    assert "localizer" in " ".join(saved["messages"])
    # NIfTI mask on the native MR grid (the DICOM series' LPS-ordered grid, same world as the truth)
    mask = nib.load(tmp_path / "lesion_mask.nii.gz")
    gt = nib.load(dicom_study["mask"])
    assert mask.shape == gt.shape
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(gt.shape[:2]) - 1
    np.testing.assert_allclose(mask.affine, gt.affine @ flip, atol=1e-3)
    m = np.asarray(mask.dataobj) > 0
    assert saved["lesion"]["voxels"] == int(m.sum())
    # DICOM SEG: highdicom reads it back on the MR series' geometry
    seg = hd.seg.segread(tmp_path / "lesion_seg.dcm")
    mr_files = sorted((dicom_study and __import__("pathlib").Path(dicom_study["study"]) / "MR").glob("*.dcm"))
    src = [pydicom.dcmread(p, stop_before_pixels=True) for p in mr_files]
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert {u for _, _, u in seg.get_source_image_uids()} == {d.SOPInstanceUID for d in src}
    vol = seg.get_volume()
    assert len(src) in vol.array.shape[:3] and vol.array.sum() == m.sum()   # SEG frames == NIfTI mask
    # slices always; probability bars only when a class is asserted
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64") >= (2 if saved["probabilities"] else 1)
    # an in-domain study from a seed the out-of-domain statistics never saw keeps its diagnosis
    assert not saved["out_of_domain"]["flagged"], saved["out_of_domain"]
    assert abs(sum(saved["probabilities"].values()) - 1) < 1e-3


def test_missing_modality_flagged(model, dicom_study, tmp_path):
    f = analyze_study(dicom_study["study"], tmp_path, model, drop="mr", write=False)
    assert f["status"] == "ok" and f["modalities_missing"] == ["mr"] and "MR missing" in f["flag"]
    assert f["reference_modality"] == "ct"


def test_public_real_files_answer_or_refuse(model, tmp_path):
    import nibabel.testing
    from pydicom.data import get_testdata_file

    batch = tmp_path / "batch"
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (batch / name.split(".")[0]).mkdir(parents=True)
        shutil.copy(get_testdata_file(name), batch / name.split(".")[0] / name)
    (batch / "nibabel_anat").mkdir()
    shutil.copy(f"{nibabel.testing.data_path}/anatomical.nii", batch / "nibabel_anat" / "anatomical.nii")
    (batch / "empty").mkdir()
    results = {r["study"].split("/")[-1]: r for r in analyze_path(batch, tmp_path / "out", model, progress=False)}
    assert set(results) == {"CT_small", "MR_small", "nibabel_anat", "empty"}
    for name in ("CT_small", "MR_small"):
        assert results[name]["status"] == "refused" and "only 1 slice" in results[name]["error"]
    assert results["empty"]["status"] == "refused"
    anat = results["nibabel_anat"]
    assert anat["status"] == "ok" and anat["modalities_missing"] == ["ct"] and anat["flag"]
    # a real MR unlike the phantoms: out of domain, so no class is asserted (it said "calcified 0.83")
    assert anat["out_of_domain"]["flagged"] and anat["diagnosis"] is None and anat["diagnosis_withheld"]
    for r in results.values():
        assert (tmp_path / "out" / r["study"].split("/")[-1] / "findings.json").exists()


def test_truncated_nifti_study_is_refused_with_the_file_named(model, tmp_path):
    # the loader's clear message must survive MONAI's Compose, which wraps errors in RuntimeError
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mr.nii.gz").write_bytes(b"\x1f\x8b truncated")
    (bad / "ct.nii.gz").write_bytes(b"\x1f\x8b truncated")
    f = analyze_study(bad, tmp_path / "out", model)
    assert f["status"] == "refused" and "mr.nii.gz" in f["error"] and "cannot be read" in f["error"]
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["status"] == "refused"


def test_real_ct_pixels_are_out_of_domain(model, tmp_path):
    """pydicom's CT_small (a real CT slice) stacked into a 12-slice series passes intake; the
    out-of-domain check must flag it and withhold the diagnosis."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series, study = generate_uid(), tmp_path / "ct_small_stack"
    study.mkdir()
    z0 = float(src.ImagePositionPatient[2])
    for k in range(12):
        ds = src.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID, ds.InstanceNumber = series, k + 1
        ds.ImagePositionPatient = [*map(float, src.ImagePositionPatient[:2]), z0 + 5.0 * k]
        ds.save_as(study / f"IM{k:03d}.dcm")
    f = analyze_study(study, tmp_path / "out", model)
    assert f["status"] == "ok", f
    assert f["out_of_domain"]["flagged"] and f["diagnosis"] is None and "unlike the training data" in f["diagnosis_withheld"]


def test_the_cli_with_the_lean_monai_import_gives_the_same_findings(model, dicom_study, tmp_path):
    """`mm medical analyze` in its own process imports MONAI with its optional packages hidden
    (apps/medical/lean_import.py); the findings must equal the in-process run's (full MONAI)."""
    import subprocess
    import sys

    full = analyze_study(dicom_study["study"], tmp_path / "full", model)
    run = subprocess.run([sys.executable, "-m", "mmcore.cli", "medical", "analyze", str(dicom_study["study"]),
                          "--out", str(tmp_path / "lean"), "--no-progress", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lean = json.loads((tmp_path / "lean" / "findings.json").read_text())
    for key in ("status", "flag", "modalities_used", "lesion", "diagnosis", "probabilities", "out_of_domain",
                "no_lesion_found", "intracranial_guard"):
        assert json.dumps(lean.get(key), sort_keys=True) == json.dumps(full.get(key), sort_keys=True), key
    assert np.allclose(lean["registration"]["ct_from_mr"], full["registration"]["ct_from_mr"], atol=1e-6)
