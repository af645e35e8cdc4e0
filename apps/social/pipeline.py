"""``analyze``: ingest -> encode -> train/predict -> analytics -> outputs, as one function.

Out folder layout::

    data/                      canonical Parquet tables + rejects + ingest_report.json
    models/<task>-<name>/      each Trainer run (config, curves.png, best weights)
    post_predictions.{parquet,csv}   one row per post: split, label, pred_/score_ per model
    user_analytics.{parquet,csv}     community, PageRank, coreness, bridges, coordination, bot preds
    topics.csv, cascades.csv
    users.gexf, users.graphml  for Gephi (attributes: community, pagerank, predictions ...)
    metrics.json, report.html, *.png
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmcore.train import TrainConfig

from . import report as R
from .analytics import run_analytics
from .dataset import build_tensors, load_tables
from .graph import to_networkx
from .ingest import ingest
from .outputs import node_attributes, prediction_frame, usernames, write_gephi, write_metrics, write_table
from .synthetic import ceilings
from .train import default_train_config, train_all

logger = logging.getLogger(__name__)

def _is_canonical(path: Path) -> bool:
    return path.is_dir() and ((path / "posts.parquet").exists() or (path / "canonical" / "posts.parquet").exists())


def prepare_data(inputs: list, out_dir: Path, fmt: str = "auto", mapping: dict | None = None, media_root=None,
                 labels=None, log=None) -> tuple[Path, dict | None]:
    """A canonical folder as is, or raw files ingested into ``out_dir/data``.  ``log``: a progress
    callable (default: this module's logger at INFO)."""
    log = log or logger.info
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and _is_canonical(paths[0]):
        return paths[0], None
    stats = ingest(paths, out_dir / "data", fmt, mapping=mapping, media_root=media_root, labels=labels, progress=True)
    log(f"ingest: {stats.lines} lines -> {stats.rows['posts']} posts, {stats.rows['users']} users, "
        f"{stats.rows['edges']} edges; {stats.rejected} rejected, {stats.media_problems} media problems "
        f"(see {out_dir / 'data' / 'rejects.csv'})")
    return out_dir / "data", stats.to_dict()


def analyze(inputs: list, out_dir: str | Path, *, fmt: str = "auto", mapping: dict | None = None, media_root=None,
            labels=None, text_encoder: str = "hashed", cache_dir=None, train_config: TrainConfig | None = None,
            text_backend: str = "torch",
            zero_shot_labels: list | None = None, zero_shot_max: int = 300, zero_shot_margin: float = 0.08,
            seed: int = 0, log=None, split: str = "hash",
            ingest_stats: dict | None = None, post_models=None, user_models=None) -> dict:
    log = log or logger.info
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    data_dir, stats = prepare_data(inputs, out, fmt, mapping, media_root, labels, log)
    ingest_stats = stats or ingest_stats
    timings["ingest"] = time.perf_counter() - t0
    tables = load_tables(data_dir)
    t = time.perf_counter()
    store = build_tensors(tables, text_encoder, cache_dir or out / "cache", progress=True, split=split,
                          text_backend=text_backend)
    timings["encode"] = time.perf_counter() - t
    log(f"{len(store.posts)} posts, {len(store.graph.user_ids)} users; post labels {store.post_classes}, "
        f"user labels {store.user_classes}")
    t = time.perf_counter()
    cfg = train_config or default_train_config(seed=seed)
    chosen = {k: v for k, v in (("post_models", post_models), ("user_models", user_models)) if v is not None}
    result = train_all(store, out, cfg, log=log, **chosen)
    timings["train"] = time.perf_counter() - t
    t = time.perf_counter()
    an = run_analytics(store, seed)
    timings["analytics"] = time.perf_counter() - t
    truth_path = Path(tables["dir"]) / "truth_posts.parquet"
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    metrics = {"n_posts": len(store.posts), "n_users": len(store.graph.user_ids), "ingest": ingest_stats,
               "post_models": result["post"], "user_models": result["user"], "runs": result["runs"],
               "post_missing_modalities": result.get("post_missing"),
               "communities": an["n_communities"], "modularity": an["modularity"],
               "coordination_clusters": an["n_coordination_clusters"], "info": store.info}
    test = store.post_split == "test"
    if truth is not None:
        metrics["ceilings_test"] = ceilings(truth, store.posts.post_id[test])
        metrics["per_group_test"] = _per_group(result["post_probs"], store, truth, test)
    # --- predictions
    posts = prediction_frame(store.posts.post_id, store.post_split, store.post_label.numpy(), store.post_classes,
                             result["post_probs"], "post_id")
    posts["created_at"], posts["user_id"], posts["topic"] = store.posts.created_at.to_numpy(), store.posts.user_id.to_numpy(), an["post_topic"]
    if zero_shot_labels:
        metrics["zero_shot"] = _zero_shot(store, posts, zero_shot_labels, zero_shot_max, cache_dir or out / "cache",
                                          zero_shot_margin, text_backend)
    write_table(posts, out, "post_predictions")
    user_pred = prediction_frame(store.graph.user_ids, store.user_split, store.user_label.numpy(), store.user_classes,
                                 result["user_probs"], "user_id") if result["user_probs"] else None
    users = an["users"]
    if user_pred is not None:
        users = users.merge(user_pred, on="user_id")
    write_table(users, out, "user_analytics")
    write_table(an["topics"], out, "topics")
    write_table(an["cascades"].head(5000), out, "cascades")
    graph_nx = to_networkx(store.graph, node_attributes(an["users"], user_pred, usernames(store.users, store.graph.user_ids)))
    write_gephi(graph_nx, out)
    timings["export"] = time.perf_counter() - t0 - sum(timings.values())
    metrics["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    write_metrics(metrics, out)
    _report(out, store, result, an, metrics, users, graph_nx, posts)
    log(f"wrote {out / 'report.html'} in {time.perf_counter() - t0:.1f}s")
    return metrics


def _per_group(probs: dict, store, truth: pd.DataFrame, rows: np.ndarray) -> dict:
    group = truth.set_index("post_id").group.reindex(store.posts.post_id).to_numpy()
    labels = store.post_label.numpy()
    return {name: {g: float((p.argmax(1)[rows & (group == g)] == labels[rows & (group == g)]).mean())
                   for g in sorted(set(group[rows]))} for name, p in probs.items()}


def _zero_shot(store, posts: pd.DataFrame, names: list, max_posts: int, cache_dir, margin: float,
               text_backend: str = "torch") -> dict:
    """Zero-shot labels for the first ``max_posts`` posts with text, through the run's MiniLM
    backend; agreement with the labels (where the names are the label classes) on the answered
    posts and on all of them, and the share answered (the rest abstained: corrected margin < ``margin``)."""
    from .text import minilm_encoder
    from .zeroshot import zero_shot

    rows = np.flatnonzero(store.post.present["text"].numpy())[:max_posts]
    encoder = minilm_encoder(cache_dir, backend=text_backend)
    texts = store.posts.text.iloc[rows].tolist()
    pred, _ = zero_shot(texts, names, encoder=encoder, abstain_margin=margin)
    forced, _ = zero_shot(texts, names, encoder=encoder)
    posts["zero_shot"] = None
    posts.loc[rows, "zero_shot"] = [names[i] if i >= 0 else None for i in pred]
    out = {"labels": names, "posts": int(len(rows)), "abstain_margin": margin,
           "answered": float((pred >= 0).mean()) if len(rows) else float("nan")}
    truth = store.post_label.numpy()[rows]
    if set(names) <= set(store.post_classes):
        as_class = np.array([store.post_classes.index(n) for n in names])
        for key, p in (("accuracy_answered", pred), ("accuracy_all_forced", forced)):
            ok = (truth >= 0) & (p >= 0)
            out[key] = float((as_class[p[ok]] == truth[ok]).mean()) if ok.any() else float("nan")
    return out


def _report(out: Path, store, result, an, metrics, users, graph_nx, posts) -> None:
    sections = [("Data", f"<p>{metrics['n_posts']} posts, {metrics['n_users']} accounts, {metrics['communities']} "
                         f"Leiden communities (modularity {metrics['modularity']:.3f}), {metrics['coordination_clusters']} "
                         f"coordination clusters.</p><pre>{json.dumps(metrics.get('ingest'), indent=1)}</pre>")]
    R.plot_communities(graph_nx, an["users"], out / "communities.png")
    sections.append(("Communities", R.img("communities.png")))
    if result["post"]:
        ceil = metrics.get("ceilings_test")
        ceil_by_model = {k: ceil[k] for k in ("text", "image", "graph", "text+image", "late_fusion")} | {"fused": ceil["all"]} if ceil else None
        R.plot_modalities(result["post"], out / "modalities.png", "Post task: test accuracy by model", "accuracy", ceil_by_model)
        best = "fused" if "fused" in result["post_probs"] else next(iter(result["post_probs"]))
        test = (store.post_split == "test") & (store.post_label.numpy() >= 0)
        R.plot_confusion(store.post_label.numpy()[test], result["post_probs"][best].argmax(1)[test], store.post_classes,
                         out / "confusion.png", f"{best} model, test posts")
        R.plot_labels_over_time(store.posts.created_at, posts[f"pred_{best.replace('+', '_')}"], out / "labels_over_time.png",
                                f"Predicted labels per day ({best})")
        sections.append(("What each modality adds", _fusion_headline(result["post"], metrics) + R.img("modalities.png")
                         + R.metrics_table(result["post"], ceil_by_model)))
        if result.get("post_missing"):
            sections.append(("When post content is missing",
                             "<p>Test accuracy of the fused model when only these post modalities are there at "
                             "test time (the others marked absent in every post; <i>none</i>: the graph alone).</p>"
                             + R.table(pd.DataFrame([{"post content": k, "accuracy": v}
                                                     for k, v in result["post_missing"].items()]))))
        if "per_group_test" in metrics:
            sections.append(("Accuracy by planted group", R.table(pd.DataFrame(metrics["per_group_test"]).T.reset_index(names="model"))))
        sections.append(("Confusion matrix", R.img("confusion.png")))
        sections.append(("Labels over time", R.img("labels_over_time.png")))
    if result["user"]:
        R.plot_modalities(result["user"], out / "bots.png", "Bot detection: test F1 (bot class)", "f1_positive"
                          if "f1_positive" in next(iter(result["user"].values())) else "f1_macro")
        sections.append(("Bot detection", R.img("bots.png") + R.metrics_table(result["user"])))
    sections.append(("Most influential accounts (PageRank)", R.table(users.sort_values("pagerank", ascending=False))))
    sections.append(("Bridge accounts", R.table(users[users.bridge].sort_values("participation", ascending=False))))
    coord = users[users.coordination_cluster >= 0].groupby("coordination_cluster").user_id.agg(["size", lambda s: " ".join(s[:10])])
    sections.append(("Coordination clusters", R.table(coord.reset_index().set_axis(["cluster", "accounts", "members"], axis=1))))
    sections.append(("Topics", R.table(an["topics"])))
    sections.append(("Largest cascades", R.table(an["cascades"])))
    if "zero_shot" in metrics:
        sections.append(("Zero-shot labels", f"<pre>{json.dumps(metrics['zero_shot'], indent=1)}</pre>"))
    R.write_report(out, sections)


def _fusion_headline(post: dict, metrics: dict) -> str:
    """One sentence: the fused model against the best single modality (and on XOR posts, if known)."""
    uni = {k: post[k]["accuracy"] for k in ("text", "image", "graph") if k in post}
    if "fused" not in post or not uni:
        return ""
    best = max(uni, key=uni.get)
    fused = post["fused"]["accuracy"]
    text = (f"<p><b>Fusion adds {100 * (fused - uni[best]):+.1f} points</b>: fused {fused:.3f} vs the best single "
            f"modality ({best}) {uni[best]:.3f} on the test posts")
    xor = {k: v.get("X") for k, v in metrics.get("per_group_test", {}).items()}
    if xor.get("fused") is not None and xor.get("late_fusion") is not None:
        text += (f"; on posts whose label is text cue XOR image cue, fused {xor['fused']:.2f} vs late fusion "
                 f"{xor['late_fusion']:.2f} (a sum of per-modality scores cannot express XOR)")
    return text + ".</p>"
