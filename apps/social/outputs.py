"""Writers: predictions and scores (Parquet + CSV), metrics JSON, Gephi files (GEXF, GraphML).

Every file is written through :func:`mmcore.utils.io.atomic_path` (a temporary name, renamed on
success), so a crash never leaves half a file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmcore.utils.io import atomic_path, atomic_write_json


def write_table(frame: pd.DataFrame, out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    pq, csv = out_dir / f"{name}.parquet", out_dir / f"{name}.csv"
    with atomic_path(pq) as tmp:
        frame.to_parquet(tmp, index=False)
    flat = frame.copy()
    for col in flat.columns:  # CSV has no lists: join them
        if flat[col].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            flat[col] = flat[col].map(lambda v: ";".join(map(str, v)) if isinstance(v, (list, np.ndarray)) else v)
    with atomic_path(csv) as tmp:
        flat.to_csv(tmp, index=False)
    return pq, csv


def prediction_frame(ids, split, labels, classes: list, probs: dict[str, np.ndarray], id_name: str) -> pd.DataFrame:
    frame = pd.DataFrame({id_name: np.asarray(ids).astype(str), "split": split,
                          "label": [classes[i] if i >= 0 else None for i in labels]})
    for name, p in probs.items():
        key = name.replace("+", "_")
        pred = p.argmax(1)
        frame[f"pred_{key}"] = [classes[i] for i in pred]
        frame[f"score_{key}"] = p.max(1).astype(np.float32)
    return frame


def write_gephi(graph_nx, out_dir: Path, name: str = "users") -> tuple[Path, Path]:
    import networkx as nx

    out_dir.mkdir(parents=True, exist_ok=True)
    gexf, graphml = out_dir / f"{name}.gexf", out_dir / f"{name}.graphml"
    with atomic_path(gexf) as tmp:
        nx.write_gexf(graph_nx, tmp)
    with atomic_path(graphml) as tmp:
        nx.write_graphml(graph_nx, tmp)
    return gexf, graphml


def usernames(users: pd.DataFrame, user_ids) -> list[str]:
    """The username of each user in ``user_ids`` order; the ID where there is none (stub users)."""
    names = users.set_index(users.user_id.astype(str)).username if "username" in users else pd.Series(dtype=object)
    names = names[~names.index.duplicated()]
    got = names.reindex([str(u) for u in user_ids]).to_numpy()
    return [str(n) if isinstance(n, str) and n else str(u) for n, u in zip(got, user_ids)]


def node_attributes(users: pd.DataFrame, user_pred: pd.DataFrame | None, labels: list[str] | None = None) -> dict:
    """Gephi-friendly attribute lists (plain str/int/float) aligned with the user order.

    ``labels`` (usernames) become the node label Gephi shows; the account's class is
    ``true_label`` (never the node label)."""
    attrs = {"label": labels} if labels is not None else {}
    attrs |= {"community": users.community.astype(int).tolist(), "pagerank": users.pagerank.astype(float).tolist(),
             "coreness": users.coreness.astype(int).tolist(), "participation": users.participation.astype(float).tolist(),
             "coordination_cluster": users.coordination_cluster.astype(int).tolist()}
    if user_pred is not None:
        for col in user_pred.columns:
            if col.startswith(("pred_", "score_")) or col == "label":
                values = user_pred[col]
                attrs["true_label" if col == "label" else col] = [float(v) if isinstance(v, (float, np.floating)) else ("" if v is None else str(v)) for v in values]
    return attrs


def write_metrics(metrics: dict, out_dir: Path) -> Path:
    path = out_dir / "metrics.json"
    atomic_write_json(path, metrics)
    return path
