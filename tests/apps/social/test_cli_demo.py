"""The CLI end to end on a small synthetic set: ingest through the twarc2 adapter, analyze (all
models, analytics, Gephi files, predictions, report), and the command-line entry points."""
import json
from pathlib import Path

import networkx as nx
import pandas as pd

from mmcore.cli import main as mm


def test_ingest_cli_reports_rejects(tmp_path, capsys):
    data = Path(__file__).resolve().parents[3] / "data" / "social"
    assert mm(["social", "ingest", str(data / "mixed_lines.jsonl"), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "ingest_report.json").read_text())
    assert report["rejected"] == 4 and report["rows"]["posts"] == 4
    assert "rejects" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{]\n")
    assert mm(["social", "ingest", str(bad), "--out", str(tmp_path / "b")]) == 1  # nothing usable


def test_demo_pipeline_writes_everything(tmp_path):
    import torch

    from apps.social import cli

    threads = torch.get_num_threads()
    summary = cli.demo(tmp_path, "cpu", n_posts=400, epochs=2, zero_shot=False, quick=True)
    for name in ("report.html", "users.gexf", "users.graphml", "post_predictions.parquet", "post_predictions.csv",
                 "user_analytics.parquet", "metrics.json", "communities.png", "modalities.png", "confusion.png",
                 "labels_over_time.png", "bots.png"):
        assert (tmp_path / name).exists(), name
    preds = pd.read_parquet(tmp_path / "post_predictions.parquet")
    assert len(preds) == summary["posts"] == 400 and {"pred_fused", "score_fused", "pred_text"} <= set(preds.columns)
    g = nx.read_gexf(tmp_path / "users.gexf")
    some = next(iter(g.nodes(data=True)))[1]
    assert {"community", "pagerank", "pred_graph", "true_label"} <= set(some)
    users = pd.read_parquet(tmp_path / "data" / "users.parquet").set_index("user_id")
    assert all(d["label"] == users.username.get(n, n) for n, d in g.nodes(data=True))  # not "bot"/"human"
    assert all("relations" in d and "first_seen" in d for _, _, d in g.edges(data=True))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    canonical = pd.read_parquet(tmp_path / "data" / "posts.parquet")  # retweets keep rows of their own
    assert (canonical.kind != "repost").sum() == 400 and metrics["ingest"]["rows"]["posts"] == len(canonical)
    assert metrics["ingest"]["rejected"] == 0
    assert "ceilings_test" in metrics and "fused" in metrics["post_models"]
    html = (tmp_path / "report.html").read_text()
    assert "What each modality adds" in html and "modalities.png" in html and "Fusion adds" in html
    assert torch.get_num_threads() == threads  # the demo's one-thread setting does not leak
