"""The speed work of `mm bench medical`: exact separable pooling, the lean MONAI import, stage timings."""
import argparse
import importlib
import json
import sys

import pytest
import torch
import torch.nn.functional as F


@pytest.mark.parametrize("r", [1, 2])
def test_box_max_equals_max_pool3d_exactly(r):
    from apps.medical.model import _box_max

    g = torch.Generator().manual_seed(r)
    for x in (torch.randn(2, 3, 9, 11, 7, generator=g), (torch.rand(1, 1, 12, 10, 8, generator=g) > 0.9).float()):
        assert torch.equal(_box_max(x, r), F.max_pool3d(x, 2 * r + 1, stride=1, padding=r))
        assert torch.equal(-_box_max(-x, r), -F.max_pool3d(-x, 2 * r + 1, stride=1, padding=r))


def test_lean_import_hides_deferred_packages_only_while_installed(monkeypatch):
    from apps.medical import lean_import

    monkeypatch.setattr(lean_import, "DEFERRED", ("colorsys",))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    hook = lean_import._Hide()
    sys.meta_path.insert(0, hook)
    try:
        with pytest.raises(ModuleNotFoundError, match="colorsys"):
            importlib.import_module("colorsys")
        importlib.import_module("json")          # anything else imports as usual
    finally:
        sys.meta_path.remove(hook)
    assert importlib.import_module("colorsys").rgb_to_hsv(1, 0, 0)[0] == 0.0   # and after: the real module


def test_lean_import_is_a_no_op_once_monai_is_imported(monkeypatch):
    import monai  # noqa: F401

    from apps.medical.lean_import import import_monai_lean

    assert import_monai_lean() is False
    monkeypatch.delitem(sys.modules, "monai")
    monkeypatch.setenv("MM_MEDICAL_FULL_MONAI", "1")
    assert import_monai_lean() is False and "monai" not in sys.modules


def test_stage_accumulates_wall_and_cpu():
    from apps.medical.stagetimes import TIMES, process_age, stage

    TIMES.pop("t", None)
    for _ in range(2):
        with stage("t"):
            sum(i * i for i in range(20000))
    assert TIMES["t"][0] > 0 and TIMES["t"][1] >= 0
    age = process_age()
    assert age is None or age > 0


def test_cli_timings_file_names_every_stage_run(model, tmp_path, monkeypatch):
    import apps.medical.analyze as analyze
    from apps.medical.cli import cmd_analyze

    monkeypatch.setattr(analyze, "load_model", lambda *a, **k: model)
    (tmp_path / "empty").mkdir()
    timings = tmp_path / "t.json"
    args = argparse.Namespace(study=str(tmp_path / "empty"), out=str(tmp_path / "out"), bundle=None, device="cpu",
                              threads=1, no_register=True, no_progress=True, timings=str(timings))
    assert cmd_analyze(args) == 1            # refused (empty folder), still timed
    t = json.loads(timings.read_text())
    assert {"imports (torch, MONAI, app)", "model load (safetensors)", "intake (index DICOM headers)",
            "write findings.json"} <= set(t["stages"])
    assert t["cpu_s"] > 0 and all(v["wall_s"] >= 0 for v in t["stages"].values())


def test_step_table_has_one_row_per_unet():
    from apps.medical.bench import _step_rows
    from apps.medical.bench_step import UNETS, synthetic_batch

    b = synthetic_batch(2)
    assert tuple(b["mr"].shape) == (2, 1, 48, 56, 48) and b.fields["seg"].sum() > 0
    names = ["ours", *(f"monai_unet_{n}" for n in UNETS)]
    r = {"batch_size": 2, "roi": [48, 56, 48], "threads": 1, "steps": 3, "params": dict.fromkeys(names, 1000),
         "seconds_median": dict.fromkeys(names, 1.0), "cpu_seconds_median": dict.fromkeys(names, 1.0),
         "monai_unets": {n: "UNet(...) + DiceCELoss" for n in UNETS},
         "ratio_ours_over_unet": dict.fromkeys(UNETS, 1.0), "cpu_ratio_ours_over_unet": dict.fromkeys(UNETS, 1.0)}
    text = _step_rows(r)
    assert text.count("| MONAI UNet") == len(UNETS) and "ours (shipped config)" in text
