"""``mm bench social --end-to-end``: the per-stage linear fit and 1M extrapolation, and a tiny real run
(every stage a fresh process, the hashed encoder on the same chunked path so it stays fast)."""
import json

import pandas as pd
import pytest

from apps.social import bench
from apps.social.bench_e2e import STAGES, end_to_end, extrapolate, fit_stages, linear_fit


def test_linear_fit_recovers_a_line():
    posts = [10_000, 30_000, 100_000]
    fit = linear_fit(posts, [2.0 + 0.004 * n for n in posts])
    assert fit["s_per_1k_posts"] == pytest.approx(4.0) and fit["intercept_s"] == pytest.approx(2.0)
    assert fit["r2"] == pytest.approx(1.0) and fit["max_rel_dev"] == pytest.approx(0.0, abs=1e-9)
    assert extrapolate(fit, 1_000_000) == pytest.approx(4002.0)


def test_linear_fit_shows_curvature():
    posts = [10_000, 30_000, 100_000]
    fit = linear_fit(posts, [1e-7 * n * n for n in posts])  # quadratic: the line cannot pass through all
    assert fit["r2"] < 0.999 and fit["max_rel_dev"] > 0.1
    one = linear_fit([5000], [10.0])  # one point: the line through the origin
    assert one["s_per_1k_posts"] == pytest.approx(2.0) and one["intercept_s"] == 0.0


def _row(n, seconds):
    return {"posts": n, "stages": {s: {"wall_s": t, "tree_peak_rss_mb": 100 + n / 1000} for s, t in seconds.items()}}


def test_fit_stages_sums_the_extrapolated_stages():
    rate = {"ingest": 0.0001, "encode": 0.004, "network": 0.0005}
    rows = [_row(n, {s: 3.0 + r * n for s, r in rate.items()}) for n in (10_000, 30_000, 100_000)]
    fit = fit_stages(rows)
    expect = {s: 3.0 + r * 1e6 for s, r in rate.items()}
    for stage in STAGES:
        assert fit["stages"][stage]["at_target_s"] == pytest.approx(expect[stage])
        # the check scales the largest size in proportion: its fixed 3 s grow 10x too
        assert fit["stages"][stage]["proportional_at_target_s"] == pytest.approx((3.0 + rate[stage] * 1e5) * 10)
        assert fit["stages"][stage]["tree_peak_rss_at_target_mb_if_linear"] == pytest.approx(1100.0)
    assert fit["total_at_target_s"] == pytest.approx(sum(expect.values()))
    assert fit["meets_goal"] is True  # 4609 s <= 2 h
    slower = fit_stages([_row(n, {s: 0.01 * n for s in STAGES}) for n in (1000, 2000)])
    assert slower["meets_goal"] is False  # 30,000 s
    falling = fit_stages([_row(1000, {s: 5.0 for s in STAGES}), _row(2000, {s: 4.0 for s in STAGES})])
    assert falling["meets_goal"] is None and not falling["linear_growth"]


def test_end_to_end_tiny(tmp_path):
    res = end_to_end([300, 600], tmp_path / "work", tmp_path / "out", workers=1, backend="hashed", command="test")
    saved = json.loads((tmp_path / "out" / "end_to_end.json").read_text())
    assert saved["command"] == "test" and saved["date"] and [r["posts"] for r in saved["sizes"]] == [r["posts"] for r in res["sizes"]]
    for row, n in zip(res["sizes"], (300, 600)):
        run = tmp_path / "work" / f"e2e-{n}-w1"
        posts = pd.read_parquet(run / "data" / "posts.parquet")
        assert row["posts"] == len(posts) > 0 and row["input_lines"] == n
        encode = row["stages"]["encode"]
        distinct = posts.text[posts.text.fillna("").str.strip() != ""].nunique()
        assert encode["posts"] == len(posts) and encode["texts_encoded"] == distinct  # distinct texts: one each
        assert (run / "network" / "accounts_network.parquet").exists()
        assert row["stages"]["network"]["accounts"] > 0 and set(row["stages"]["network"]["parts_s"]) >= {"edges", "summary"}
        for stage in STAGES:
            s = row["stages"][stage]
            assert s["wall_s"] >= s["s"] > 0 and s["peak_rss_mb"] > 0 and s["tree_peak_rss_mb"] > 0
    text = (tmp_path / "out" / "end_to_end.txt").read_text()
    assert "command: test" in text and all(stage in text for stage in STAGES)
    assert f"{res['sizes'][0]['stages']['encode']['wall_s']:.1f}s" in text  # the measured points beside the fit


def test_bench_cli_passes_sizes_and_workers(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("apps.social.bench_e2e.end_to_end", lambda sizes, work, out, **kw: seen.update(sizes=sizes, **kw))
    argv = ["--end-to-end", "--posts", "3000,6000", "--workers", "1", "--out", str(tmp_path), "--work", str(tmp_path)]
    assert bench.main(argv) == 0
    assert seen["sizes"] == [3000, 6000] and seen["workers"] == 1 and seen["backend"] == "onnx-int8"
    assert seen["command"] == "mm bench social " + " ".join(argv)
    with pytest.raises(SystemExit):  # a list of sizes is for --end-to-end only
        bench.main(["--scale", "--posts", "3000,6000", "--out", str(tmp_path)])
