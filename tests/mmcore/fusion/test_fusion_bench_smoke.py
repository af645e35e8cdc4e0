"""`mm bench fusion` end to end on a tiny setting: the table, checks, JSON and PNGs are written."""
from __future__ import annotations

import json

from mmcore.bench import fusion as bench


def test_bench_fusion_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "results"
    code = bench.main(["--skip-attention", "--methods", "unimodal_a,early,late", "--max-steps", "4", "--eval-every", "2", "--n-train", "256",
                       "--n-val", "64", "--n-test", "128", "--out", str(out), "--runs", str(tmp_path / "runs")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | clean |" in printed and "only a+b" in printed
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert set(rows) == {"unimodal_a", "early", "late"}
    assert all(0 < row["steps"] <= 4 and row["train_seconds"] > 0 for row in rows.values())
    assert "load_average" in results and results["seconds"] > 0
    assert "total wall time" in printed and "load average" in (out / "results.md").read_text()
    assert rows["late"]["effective"] == 0.0
    for row in rows.values():
        assert len(row["curve"]) == 11 and set(row["parts"]) == {"shared", "unique", "interaction"}
        assert len(row["subsets"]) == 7
    assert any("beats best unimodal" in c["check"] for c in results["checks"])
    for png in ("noise_curves.png", "missing_subsets.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "runs" / "early" / "model.safetensors").exists()


class _FakeTrainer:
    def __init__(self):
        self.step, self.last_metrics, self.stopped_early = 0, {}, False


def test_plateau_stop_waits_for_min_steps_then_stops_on_a_flat_validation_curve():
    stop, trainer = bench.StopOnPlateau(min_steps=500, patience=2, min_delta=0.01), _FakeTrainer()
    for step, acc in [(100, 0.70), (200, 0.70), (300, 0.705), (400, 0.70)]:   # flat, but before min_steps
        trainer.step, trainer.last_metrics = step, {"val_accuracy": acc}
        stop.on_epoch_end(trainer)
        assert not trainer.stopped_early
    for step, acc in [(500, 0.80), (600, 0.805)]:                             # a real gain resets patience
        trainer.step, trainer.last_metrics = step, {"val_accuracy": acc}
        stop.on_epoch_end(trainer)
        assert not trainer.stopped_early
    trainer.step, trainer.last_metrics = 700, {"val_accuracy": 0.80}
    stop.on_epoch_end(trainer)
    assert trainer.stopped_early
