"""Temperature calibration of the diagnosis: the ECE every medical figure uses, logits collection,
the temperature fit, and ``mm medical calibrate`` (refit a bundle's temperature on held-out studies).

Calibrated probabilities are ``softmax(z / T)`` for logits ``z`` [N, 4]; ``T`` minimises the NLL on
studies like the ones the model will see (Guo et al. 2017, https://arxiv.org/abs/1706.04599).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .bundle import bundle_metrics, export_bundle, load_bundle


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-label ECE with 15 equal-width bins (torchmetrics): the one ECE every medical figure uses.

    ``probs`` [N, C], ``labels`` [N]: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(multiclass_calibration_error(probs, labels, probs.shape[-1], n_bins=15))


@torch.no_grad()
def collect_logits(model, dataset, batch_size: int = 4, drop: str | None = None):
    """Uncalibrated logits (temperature 1) [N, C] and labels [N] over a dataset, optionally without one
    modality; batches go to the model's device, the results come back on the CPU."""
    from torch.utils.data import DataLoader

    from .datasets import collate_studies

    model.eval()
    device = model.temperature.device
    temp = model.temperature.clone()
    model.temperature.fill_(1.0)
    logits, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_studies):
        if drop:
            batch = batch.drop_modality(drop)
        logits.append(model(batch.to(device))["logits"].cpu())
        labels.append(batch.fields["label"])
    model.temperature.copy_(temp)
    return torch.cat(logits), torch.cat(labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising validation NLL of ``logits / T``."""
    logits, labels = logits.detach().cpu(), labels.cpu()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibrate(bundle: Path, data: list[Path], split: str = "validation", cache: Path | None = None,
              device: str = "cpu") -> dict:
    """Refit the bundle's temperature on ``split`` of one or more data sets and rewrite the bundle.

    Why a separate step: the temperature must come from studies like the ones the model will see.
    The demo's validation studies use coarser native grids than the test studies (to keep training
    quick); the model is more accurate on the finer ones, so a temperature fitted on the coarse
    split left it underconfident there."""
    from .datasets import cached_dataset, prepare_cases, read_datalist

    model = load_bundle(bundle, device)
    items = []
    for d in data:
        entries = read_datalist(Path(d) / "datalist.json").get(split, [])
        items += prepare_cases(entries, Path(cache) if cache else Path(d) / "cache")
    if not items:
        raise SystemExit(f"no '{split}' studies in {', '.join(map(str, data))}")
    logits, labels = collect_logits(model, cached_dataset(items, augment=False))
    before = float(model.temperature)
    after = fit_temperature(logits, labels)

    def scores(t: float) -> dict:
        probs = (logits / t).softmax(-1)
        return {"nll": float(F.cross_entropy(logits / t, labels)),
                "ece": expected_calibration_error(probs, labels)}

    report = {"studies": len(items), "split": split, "data": [str(d) for d in data],
              "temperature_before": before, "temperature_after": after, "before": scores(before), "after": scores(after)}
    model.temperature.fill_(after)
    export_bundle(model.cpu(), Path(bundle), {**bundle_metrics(bundle), "temperature": after, "calibration": report})
    return report
