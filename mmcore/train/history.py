"""Training history: one CSV row per logged event, and a PNG of the curves at the end."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..utils.io import atomic_write_bytes, atomic_write_text


class History:
    """Rows of ``{"epoch", "step", "split", metric: value, ...}`` kept in memory and in CSV.

    The whole CSV is rewritten atomically each time so a killed run never leaves a torn file,
    and a resumed run continues the same history.
    """

    def __init__(self, rows: list[dict] | None = None) -> None:
        self.rows: list[dict] = list(rows or [])

    def log(self, **row) -> None:
        self.rows.append({k: (float(v) if hasattr(v, "item") else v) for k, v in row.items()})

    def columns(self) -> list[str]:
        cols: list[str] = []
        for row in self.rows:
            for key in row:
                if key not in cols:
                    cols.append(key)
        return cols

    def write_csv(self, path: str | Path) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row)
        atomic_write_text(path, buf.getvalue())

    def plot(self, path: str | Path, title: str = "training curves") -> None:
        """One panel per metric, train and validation on shared axes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        skip = {"epoch", "step", "split", "lr", "time_s", "samples_per_s"}
        metrics = [c for c in self.columns() if c not in skip]
        if not metrics:
            return
        ncols = min(3, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            for split in ("train", "val"):
                pts = [(r["step"], r[metric]) for r in self.rows
                       if r.get("split") == split and isinstance(r.get(metric), (int, float))
                       and not math.isnan(r[metric])]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if split == "val" else None, markersize=3, label=split)
            ax.set_title(metric)
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        fig.suptitle(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
