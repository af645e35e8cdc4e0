"""Anatomical guard, "no lesion found", out-of-domain withholding, evaluation-family scoring.

The guards are tested with networks whose answer is fixed by construction (a segmentation bias
that marks every voxel as lesion, or none), so each test fails on code without the guard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from medical_helpers import write_nifti

from apps.medical.analyze import analyze_study
from apps.medical.model import FusionSegDiagNet


def ct_head(shape=(64, 64, 40), spacing=(3.0, 3.0, 4.0), brain_mm=66.0, skull_mm=7.0, scalp_mm=6.0):
    """A CT head (HU): brain sphere, skull shell, scalp, air; returns (volume, affine, true ICV)."""
    idx = np.indices(shape).astype(np.float32)
    c = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((idx[i] - c[i]) * spacing[i]) ** 2 for i in range(3)))
    vol = np.full(shape, -1000.0, np.float32)
    vol[r <= brain_mm + skull_mm + scalp_mm] = 30.0
    vol[r <= brain_mm + skull_mm] = 1000.0
    vol[r <= brain_mm] = 32.0
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -c * np.array(spacing)
    return vol, affine, r <= brain_mm


def fixed_model(lesion: bool) -> FusionSegDiagNet:
    """A network whose segmentation says "lesion" everywhere (``lesion``) or nowhere."""
    torch.manual_seed(0)
    model = FusionSegDiagNet().eval()
    with torch.no_grad():
        model.seg_out.weight.zero_()
        model.seg_out.bias.copy_(torch.tensor([-6.0, 6.0] if lesion else [6.0, -6.0]))
    return model


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    vol, affine, icv = ct_head()
    write_nifti(root / "study" / "ct.nii.gz", vol.astype(np.int16), affine)
    return root / "study", affine, icv


def test_ct_intracranial_mask_is_the_inside_of_the_skull():
    from apps.medical.intracranial import ct_intracranial

    vol, affine, icv = ct_head()
    mask = ct_intracranial(vol, affine)
    dice = 2 * (mask & icv).sum() / (mask.sum() + icv.sum())
    assert dice > 0.9
    assert not (mask & (vol > 250)).any()            # never bone
    assert not (mask & (vol < -500)).any()           # never air outside the head


@pytest.mark.slow
def test_guard_removes_lesion_predicted_outside_the_intracranial_volume(ct_study, tmp_path):
    study, affine, icv = ct_study
    model = fixed_model(lesion=True)
    keep: dict = {}
    f = analyze_study(study, tmp_path / "on", model, keep=keep)
    assert f["status"] == "ok", f
    mask, native_affine = keep["native_mask"], keep["native_affine"]
    np.testing.assert_allclose(native_affine, affine, atol=1e-4)
    assert mask.any() and not (mask & ~icv).sum() > 0.02 * mask.sum()   # 4 mm model grid: a boundary voxel at most
    g = f["intracranial_guard"]
    assert g["method"].startswith("CT bone") and g["removed_outside_ml"] > 100    # skull and scalp were 'lesion'
    assert any("outside the intracranial volume" in m for m in f["messages"])
    assert "outside the intracranial volume" in (tmp_path / "on" / "report.html").read_text()
    # the same study without the guard keeps the skull/scalp 'lesion': what the guard is for
    off: dict = {}
    analyze_study(study, tmp_path / "off", model, keep=off, guard=False, write=False)
    assert (off["native_mask"] & ~icv).sum() > 0.2 * off["native_mask"].sum()


def test_no_lesion_found_withholds_the_diagnosis(ct_study, tmp_path):
    study, _, _ = ct_study
    f = analyze_study(study, tmp_path, fixed_model(lesion=False))
    assert f["status"] == "ok" and f["result"] == "no lesion found" and f["no_lesion_found"]
    assert f["diagnosis"] is None and f["probabilities"] is None and "no lesion found" in f["diagnosis_withheld"]
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert saved["diagnosis"] is None and "not for clinical use" in saved["disclaimer"]


def test_ood_fit_and_score_flags_far_studies_only():
    from apps.medical.ood import fit, score

    g = torch.Generator().manual_seed(0)
    train = [torch.randn(12, generator=g) for _ in range(200)]
    val = [torch.randn(12, generator=g) for _ in range(100)]
    stats = fit({"mr+ct": train}, {"mr+ct": val})
    test = [torch.randn(12, generator=g) for _ in range(200)]
    rate = np.mean([score(stats, x, {"mr": True, "ct": True})["flagged"] for x in test])
    assert rate <= 0.05
    far = score(stats, torch.full((12,), 4.0), {"mr": True, "ct": True})
    assert far["flagged"] and "unlike the training data" in far["reason"]
    assert not score(stats, torch.zeros(12), {"mr": True, "ct": False})["flagged"]     # no statistics for MR-only: not flagged


def test_out_of_domain_study_gets_mask_but_no_diagnosis(ct_study, tmp_path):
    from apps.medical.ood import fit

    study, _, _ = ct_study
    model = fixed_model(lesion=True)
    dim = 2 * model.channels[-1] + 14
    g = torch.Generator().manual_seed(1)
    # statistics of a far-away 'training set': this study must be flagged
    model.ood_stats = fit({"ct": [100 + torch.randn(dim, generator=g) for _ in range(50)]},
                          {"ct": [100 + torch.randn(dim, generator=g) for _ in range(20)]})
    f = analyze_study(study, tmp_path, model)
    assert f["status"] == "ok" and f["out_of_domain"]["flagged"]
    assert f["diagnosis"] is None and f["probabilities"] is None and "unlike the training data" in f["diagnosis_withheld"]
    assert f["lesion"]["voxels"] > 0 and (tmp_path / "lesion_mask.nii.gz").exists()


def test_detection_counts_components():
    from apps.medical.scoring import detection

    truth = np.zeros((20, 20, 20), bool)
    truth[2:5, 2:5, 2:5] = truth[12:15, 12:15, 12:15] = True
    pred = np.zeros_like(truth)
    pred[3:6, 3:6, 3:6] = pred[8:9, 16:18, 1:3] = True
    d = detection(pred, truth)
    assert d == {"true_lesions": 2, "detected": 1, "pred_components": 2, "false_positive_lesions": 1}


def test_eval_family_plan_and_lesions_inside_the_brain():
    from apps.medical.eval_family import _lesion_points, _radius, family_plan, random_head, random_lesion

    plan = family_plan(48)
    assert sum(p["label"] is None for p in plan) >= 9
    assert {p["drop"] for p in plan} == {None, "mr", "ct"} and any(p["fmt"] == "dicom" for p in plan)
    assert {p["label"] for p in plan if p["label"] is not None} == {0, 1, 2, 3}
    rng = np.random.default_rng(0)
    for _ in range(5):
        head = random_head(rng)
        les = random_lesion(head, rng, int(rng.integers(4)))
        assert (_radius(head, _lesion_points(les))[0] <= 0.97).all()
