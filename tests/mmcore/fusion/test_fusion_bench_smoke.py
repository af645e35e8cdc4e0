"""`mm bench fusion` end to end on a tiny setting: the table, checks, JSON and PNGs are written."""
from __future__ import annotations

import json

from mmcore.bench import fusion as bench


def test_bench_fusion_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "results"
    code = bench.main(["--skip-attention", "--methods", "unimodal_a,early,late", "--epochs", "1", "--n-train", "256",
                       "--n-val", "64", "--n-test", "128", "--out", str(out), "--runs", str(tmp_path / "runs")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | clean |" in printed and "only a+b" in printed
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert set(rows) == {"unimodal_a", "early", "late"}
    assert rows["late"]["effective"] == 0.0
    for row in rows.values():
        assert len(row["curve"]) == 11 and set(row["parts"]) == {"shared", "unique", "interaction"}
        assert len(row["subsets"]) == 7
    assert any("beats best unimodal" in c["check"] for c in results["checks"])
    for png in ("noise_curves.png", "missing_subsets.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "runs" / "early" / "model.safetensors").exists()
