"""The HTML report's pictures: orientation of every plane, the mask on the report's grid, the registration table."""
from __future__ import annotations

import numpy as np
import pytest

from apps.medical.analyze import _to_display_grid
from apps.medical.report import plane_image, registration_rows, write_report


def _marked_volume() -> np.ndarray:
    """A RAS volume [X, Y, Z] with one bright voxel at the patient's right (+x), anterior (+y), superior (+z) corner."""
    vol = np.zeros((6, 7, 5), np.float32)
    vol[5, 6, 4] = 1.0
    return vol


@pytest.mark.parametrize("plane, where", [
    ("axial", (0, 0)),      # radiological: right on the viewer's left, anterior at the top
    ("coronal", (0, 0)),    # right on the left, superior at the top
    ("sagittal", (0, -1)),  # posterior on the left, so anterior on the right; superior at the top
])
def test_each_plane_puts_the_patient_where_its_letters_say(plane, where):
    vol = _marked_volume()
    index = {"axial": 4, "coronal": 6, "sagittal": 5}[plane]
    img = plane_image(vol, plane, index)
    r, c = np.argwhere(img == 1.0)[0]
    assert (r, c) == (where[0] % img.shape[0], where[1] % img.shape[1])


def test_mask_on_a_flipped_native_grid_lands_on_the_ras_display_grid():
    import nibabel as nib

    rng = np.random.default_rng(0)
    mask = rng.random((6, 7, 5)) > 0.8
    lps = np.diag([-1.5, -1.5, 3.0, 1.0])      # DICOM-like axes: x and y run towards L and P
    canon = nib.as_closest_canonical(nib.Nifti1Image(mask.astype(np.uint8), lps))
    display = {"affine": canon.affine, "mr": np.zeros(canon.shape, np.float32), "ct": None}
    out = _to_display_grid(mask, lps, display)
    assert out is not None and np.array_equal(out, np.asarray(canon.dataobj).astype(bool))
    # a grid that does not match gives no contour rather than a wrong one
    assert _to_display_grid(mask, lps, {**display, "mr": np.zeros((2, 2, 2), np.float32)}) is None


def test_registration_table_and_report(tmp_path):
    reg = {"method": "SimpleITK Euler3D", "ct_from_mr": np.eye(4).tolist(), "rotation_deg": 1.5, "translation_mm": 0.0,
           "seconds": 1.2, "quality": {"passed": False, "reasons": ["MI did not improve"], "mi_header_only": -0.4,
                                       "mi_registered": -0.41, "iterations": 3}}
    rows = dict(registration_rows(reg))
    assert rows["check"] == "FAILED: MI did not improve" and rows["rotation (degrees)"] == "1.50"
    assert registration_rows(None) == [("registration", "none (one modality, or registration off)")]
    vol = np.random.default_rng(1).random((20, 24, 16)).astype(np.float32)
    lesion = np.zeros(vol.shape, bool)
    lesion[8:12, 10:14, 6:9] = True
    findings = {"study": "s", "status": "ok", "probabilities": {"a": 0.7, "b": 0.3}, "registration": reg,
                "messages": ["hello <b>"], "lesion": {"volume_ml": 1.0}}
    write_report(tmp_path / "r.html", findings, {"mr": vol, "ct": vol * 100, "affine": np.diag([1.0, 1.0, 2.0, 1.0])}, lesion)
    text = (tmp_path / "r.html").read_text()
    assert text.count("data:image/png;base64") == 2 and "Registration (CT to MR)" in text
    assert "FAILED: MI did not improve" in text and "hello &lt;b&gt;" in text


def test_training_contrast_jitter_keeps_ranges_absent_modalities_and_repeats_with_a_seed():
    import torch

    from apps.medical.datasets import RandIntensityd

    x = {"mr": torch.rand(1, 8, 8, 8) * 1.2, "ct": torch.rand(1, 8, 8, 8), "present": {"mr": True, "ct": True}}
    a = RandIntensityd(prob=1.0, generator=torch.Generator().manual_seed(3))(x)
    b = RandIntensityd(prob=1.0, generator=torch.Generator().manual_seed(3))(x)
    assert torch.equal(a["mr"], b["mr"]) and torch.equal(a["ct"], b["ct"])
    assert not torch.equal(a["mr"], x["mr"]) and float(a["ct"].min()) >= 0 and float(a["ct"].max()) <= 1
    assert float(a["mr"].min()) >= 0 and float(a["mr"].max()) <= 1.2
    # the lesion's contrast to its surroundings survives: the order of two grey levels is kept (monotone map)
    two = {"mr": torch.tensor([[[[0.3, 0.6]]]]), "ct": None, "present": {"mr": True, "ct": False}}
    out = RandIntensityd(prob=1.0, generator=torch.Generator().manual_seed(5))(two)
    assert out["ct"] is None and float(out["mr"][..., 1] - out["mr"][..., 0]) > 0.05
