"""Robustness harness: evaluate a trained multimodal model as test-time modalities go missing and
as noise rises, and summarise with MultiBench's robustness metrics.

* :func:`subset_accuracies` - accuracy with only each non-empty subset of modalities available.
* :func:`noise_curve` - accuracy at noise levels ``0, 0.1, ..., 1`` (11 levels).
* :func:`relative_robustness` - area under the accuracy-vs-noise curve, trapezoid rule, ``dx = 0.1``:

      RR(f) = sum_{i=0}^{9} (a_i + a_{i+1}) / 2 * 0.1

* :func:`effective_robustness` - the gap to late fusion once both curves are shifted to the same
  clean accuracy (Taori et al.'s idea as MultiBench implements it):

      ER(f) = sum_i ( a_i - (l_i + a_0 - l_0) )                    (``reduce="sum"``, MultiBench)
      ER(f) = trapezoid over i of the same gap, dx = 0.1           (``reduce="trapezoid"``)

  Positive: ``f`` loses less accuracy than late fusion as noise rises.

The default noise (:func:`gaussian_noise`) adds ``N(0, (level * scale * std_m)^2)`` to every
present value of each modality, with ``std_m`` the modality's feature standard deviation over
its present rows, so a level means the same thing for every modality.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import torch
from torch import nn

from ..data import MultimodalBatch

LEVELS = tuple(round(0.1 * i, 1) for i in range(11))
NoiseFn = Callable[[MultimodalBatch, float, torch.Generator], MultimodalBatch]


# --------------------------------------------------------------------------- metrics
def relative_robustness(curve: Sequence[float], dx: float = 0.1) -> float:
    """Trapezoid area under ``curve`` (accuracies at evenly spaced noise levels)."""
    if len(curve) < 2:
        raise ValueError("a robustness curve needs at least two levels")
    return float(sum((a + b) / 2 * dx for a, b in zip(curve[:-1], curve[1:])))


def effective_robustness(curve: Sequence[float], late_curve: Sequence[float], reduce: str = "sum", dx: float = 0.1) -> float:
    """Gap of ``curve`` to ``late_curve`` shifted to ``curve``'s clean accuracy (see module doc)."""
    if len(curve) != len(late_curve):
        raise ValueError(f"curves have different lengths: {len(curve)} and {len(late_curve)}")
    gap = [(a - curve[0]) - (b - late_curve[0]) for a, b in zip(curve, late_curve)]
    if reduce == "sum":
        return float(sum(gap))
    if reduce == "trapezoid":
        return relative_robustness(gap, dx)
    raise ValueError(f"reduce must be 'sum' or 'trapezoid', got '{reduce}'")


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: nn.Module, batch: MultimodalBatch, chunk: int = 1024) -> torch.Tensor:
    """``model(batch)`` in chunks of rows, eval mode, restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(batch.select(slice(i, i + chunk))) for i in range(0, max(batch.batch_size, 1), chunk)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def accuracy(model: nn.Module, batch: MultimodalBatch, target_key: str = "label", rows: torch.Tensor | None = None,
             chunk: int = 1024) -> float:
    pred = predict(model, batch, chunk).argmax(-1).cpu()
    target = batch.fields[target_key].cpu()
    hit = (pred == target).float()
    return float(hit[rows].mean()) if rows is not None else float(hit.mean())


def modality_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, largest first: ``(a, b, c), (a, b), ..., (c,)``."""
    out = []
    for k in range(len(modalities), 0, -1):
        out += list(combinations(modalities, k))
    return out


def subset_accuracies(model: nn.Module, batch: MultimodalBatch, modalities: Sequence[str] | None = None,
                      target_key: str = "label") -> dict[tuple[str, ...], float]:
    """Accuracy when only each subset of modalities is available at test time."""
    modalities = list(modalities or batch.modalities)
    return {s: accuracy(model, batch.only(s), target_key) for s in modality_subsets(modalities)}


def gaussian_noise(scale: float = 1.0, modalities: Iterable[str] | None = None) -> NoiseFn:
    """A noise function: Gaussian, std = level * scale * (the modality's feature std)."""
    chosen = None if modalities is None else set(modalities)

    def apply(batch: MultimodalBatch, level: float, generator: torch.Generator) -> MultimodalBatch:
        tensors = dict(batch.tensors)
        for name, x in batch.tensors.items():
            if (chosen is not None and name not in chosen) or not x.is_floating_point() or level == 0:
                continue
            rows = batch.present[name]
            std = x[rows].std() if rows.sum() > 1 else x.new_tensor(1.0)
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            keep = rows.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
            tensors[name] = x + eps * (level * scale * std) * keep
        return MultimodalBatch(tensors, dict(batch.present), dict(batch.fields), dict(batch.token_mask))

    return apply


def noise_curve(model: nn.Module, batch: MultimodalBatch, levels: Sequence[float] = LEVELS,
                noise: NoiseFn | None = None, seed: int = 0, target_key: str = "label") -> list[float]:
    """Accuracy at each noise level (same seed at every level, so curves are comparable)."""
    noise = noise or gaussian_noise()
    curve = []
    for level in levels:
        # offset so the noise never replays a data generator seeded with the same small integer
        g = torch.Generator().manual_seed(1_000_003 * seed + 2_654_435_761)
        curve.append(accuracy(model, noise(batch, float(level), g), target_key))
    return curve


@dataclass
class RobustnessReport:
    clean: float
    subsets: dict[str, float]
    levels: list[float]
    curve: list[float]
    relative: float
    effective: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_robustness(model: nn.Module, batch: MultimodalBatch, late_curve: Sequence[float] | None = None,
                        levels: Sequence[float] = LEVELS, noise: NoiseFn | None = None, seed: int = 0,
                        target_key: str = "label", modalities: Sequence[str] | None = None) -> RobustnessReport:
    """Clean accuracy, every missing-modality subset, the noise curve and both robustness metrics."""
    subsets = subset_accuracies(model, batch, modalities, target_key)
    curve = noise_curve(model, batch, levels, noise, seed, target_key)
    dx = float(levels[1] - levels[0]) if len(levels) > 1 else 0.1
    return RobustnessReport(
        clean=curve[0] if levels[0] == 0 else accuracy(model, batch, target_key),
        subsets={"+".join(s): v for s, v in subsets.items()},
        levels=[float(v) for v in levels],
        curve=curve,
        relative=relative_robustness(curve, dx),
        effective=effective_robustness(curve, late_curve) if late_curve is not None else None,
    )


# --------------------------------------------------------------------------- plots
def plot_noise_curves(curves: dict[str, Sequence[float]], path: str | Path, levels: Sequence[float] = LEVELS,
                      title: str = "accuracy vs test-time noise") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20")
    for i, (name, curve) in enumerate(curves.items()):
        style = "--" if name.startswith("unimodal") else "-"
        ax.plot(levels, curve, style, marker="o", ms=3, label=name, color=colours(i % 20))
    ax.set_xlabel("noise level")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, atomic_write_bytes)


def plot_subset_accuracies(table: dict[str, dict[str, float]], path: str | Path,
                           title: str = "accuracy with only these modalities") -> Path:
    """A heat map: rows = methods, columns = available-modality subsets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..train import atomic_write_bytes

    methods = list(table)
    subsets = list(next(iter(table.values())))
    grid = np.array([[table[m].get(s, np.nan) for s in subsets] for m in methods])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(subsets), 0.9 + 0.38 * len(methods)))
    im = ax.imshow(grid, vmin=0.4, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(subsets)), subsets, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    for i in range(len(methods)):
        for j in range(len(subsets)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.75 else "black")
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, atomic_write_bytes)


def _save(fig, path: str | Path, write) -> Path:
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write(path, buf.getvalue())
    return path
