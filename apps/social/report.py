"""The HTML report and its PNG plots: community graph, labels over time, confusion matrix, and what
each modality adds (test accuracy / bot F1 per model, with the generator's ceilings when known)."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from mmcore.utils.io import atomic_path, atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_communities(graph_nx, users: pd.DataFrame, path: Path, max_nodes: int = 300, seed: int = 0) -> Path:
    """The most central accounts (by PageRank), coloured by Leiden community, sized by PageRank."""
    import networkx as nx

    plt = _plt()
    top = users.sort_values("pagerank", ascending=False).head(max_nodes).user_id.astype(str).tolist()
    sub = graph_nx.subgraph(top).to_undirected()
    pos = nx.spring_layout(sub, seed=seed, k=0.3, iterations=40)
    comm = users.set_index(users.user_id.astype(str)).community
    fig, ax = plt.subplots(figsize=(7, 6))
    nx.draw_networkx_edges(sub, pos, ax=ax, alpha=0.15, width=0.5)
    pr = users.set_index(users.user_id.astype(str)).pagerank
    nx.draw_networkx_nodes(sub, pos, ax=ax, node_size=[20 + 4000 * pr[n] for n in sub.nodes],
                           node_color=[comm[n] for n in sub.nodes], cmap="tab20", alpha=0.85)
    ax.set_title(f"Top {len(top)} accounts by PageRank, coloured by Leiden community")
    ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_labels_over_time(created, labels, path: Path, title: str) -> Path:
    plt = _plt()
    frame = pd.DataFrame({"day": pd.to_datetime(created, utc=True).dt.floor("D"), "label": labels}).dropna()
    counts = frame.groupby(["day", "label"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(counts):
        counts.plot.area(ax=ax, alpha=0.8)
    ax.set_title(title)
    ax.set_ylabel("posts per day")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_confusion(y_true, y_pred, classes: list, path: Path, title: str) -> Path:
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_modalities(scores: dict, path: Path, title: str, key: str = "accuracy", ceilings: dict | None = None) -> Path:
    plt = _plt()
    names = list(scores)
    values = [scores[n][key] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, values, color=["#4c72b0" if n != "fused" else "#dd8452" for n in names])
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center")
    if ceilings:
        for n, c in ceilings.items():
            if n in names:
                i = names.index(n)
                ax.plot([i - 0.4, i + 0.4], [c, c], color="red", lw=2)
        ax.plot([], [], color="red", lw=2, label="generator ceiling")
        ax.legend(loc="lower right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(key)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _table(frame: pd.DataFrame, max_rows: int = 15) -> str:
    return frame.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")


def write_report(out_dir: Path, sections: list[tuple[str, str]], title: str = "Social media analysis") -> Path:
    """sections: (heading, html body) pairs; images are referenced by relative file name."""
    css = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
           "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd}"
           "img{max-width:100%}h2{border-bottom:2px solid #dd8452}")
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{b}\n" for h, b in sections)
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}</style></head>" \
           f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path


def img(name: str) -> str:
    return f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"


def metrics_table(scores: dict, ceilings: dict | None = None) -> str:
    rows = [{"model": k, **v, **({"ceiling": ceilings.get(k, np.nan)} if ceilings else {})} for k, v in scores.items()]
    return _table(pd.DataFrame(rows), 50)


table = _table
