"""Out-of-domain check: is this study like the ones the model was trained on?

Per study a feature vector ``f`` (D = 2 C + 14 with C the bottleneck width):

* the model's fused bottleneck features (``FusionSegDiagNet.embed``): mean and standard deviation
  over the head, ``[2C]``;
* intensity statistics of each present modality on the model grid, inside the head foreground
  (normalised image > 0.05): 10/25/50/75/90th percentiles, the fraction above 1 (MR) or at the
  window's top (CT: bone) and the head volume in litres, ``[7]`` per modality (zeros when absent).

For each presence pattern (MR + CT, MR only, CT only) the training studies give a mean ``mu`` and a
shrunk covariance ``S = (1 - a) Cov + a diag(Cov) + eps I`` (a = 0.5: D ~ 78 features from a few
hundred studies). The score is the Mahalanobis distance ``d(f) = sqrt((f - mu)^T S^-1 (f - mu))``;
the threshold is the ``quantile`` (0.99) of ``d`` over held-out *validation* studies of the same
pattern, times ``margin`` (1.1). A study scoring above it is flagged: its mask and registration
are still written, its diagnosis is withheld and the findings say why.

Stored beside the model as ``configs/ood.json`` (means, inverse covariances, thresholds, the
data it was fitted on).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

PATTERNS = {"mr+ct": (True, True), "mr": (True, False), "ct": (False, True)}
SHRINK, EPS = 0.5, 1e-3


def pattern_of(present: dict) -> str | None:
    """``{"mr": bool, "ct": bool}`` (one study's present flags) -> ``"mr+ct"``, ``"mr"``, ``"ct"`` or None."""
    p = (bool(present.get("mr")), bool(present.get("ct")))
    return next((k for k, v in PATTERNS.items() if v == p), None)


def intensity_stats(images: dict, present: dict, voxel_ml: float) -> torch.Tensor:
    """[14]: per modality (MR, CT) percentiles 10/25/50/75/90 in the head, the top fraction, head litres.

    ``images`` ``{m: [*S]}`` on one grid; the head is the union of the present modalities' foregrounds."""
    have = [m for m in ("mr", "ct") if present.get(m)]
    head = torch.stack([images[m] > 0.05 for m in have]).any(0)
    out = []
    for m in ("mr", "ct"):
        if m not in have or not bool(head.any()):
            out.append(torch.zeros(7))
            continue
        v = images[m][head].float()
        q = torch.quantile(v[:: max(1, v.numel() // 20000)], torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
        top = (v > 1.0).float().mean() if m == "mr" else (v >= 0.99).float().mean()
        out.append(torch.cat([q, top.view(1), torch.tensor([head.sum().item() * voxel_ml / 1000])]))
    return torch.cat(out)


@torch.no_grad()
def study_features(model, batch, voxel_ml: float = 0.064) -> torch.Tensor:
    """The feature vector of one preprocessed study (a ``MultimodalBatch`` of one: ``mr``/``ct`` [1, 1, *ROI])."""
    device = model.temperature.device
    images, present = model.inputs(batch.to(device))
    emb = model.embed(images, present)[0].cpu()
    flags = {m: bool(batch.mask(m)[0]) for m in ("mr", "ct")}
    return torch.cat([emb, intensity_stats({m: batch[m][0, 0] for m in flags if flags[m]}, flags, voxel_ml)])


def fit(features: dict[str, list[torch.Tensor]], validation: dict[str, list[torch.Tensor]],
        quantile: float = 0.99, margin: float = 1.1, source: str = "") -> dict:
    """Per pattern: mean, shrunk inverse covariance from ``features``, threshold from ``validation``."""
    out: dict = {"quantile": quantile, "margin": margin, "shrink": SHRINK, "source": source, "patterns": {}}
    for pat, rows in features.items():
        if len(rows) < 5:
            continue
        x = torch.stack(rows).double()
        mu = x.mean(0)
        cov = torch.cov(x.T) if len(rows) > 1 else torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)
        cov = (1 - SHRINK) * cov + SHRINK * torch.diag(torch.diag(cov)) + EPS * torch.eye(x.shape[1], dtype=x.dtype)
        prec = torch.linalg.inv(cov)
        entry = {"mean": mu.tolist(), "precision": prec.tolist(), "train_studies": len(rows)}
        val = validation.get(pat) or []
        d_train = _distance(x, mu, prec)
        d_val = _distance(torch.stack(val).double(), mu, prec) if val else d_train
        entry["threshold"] = float(torch.quantile(d_val, quantile)) * margin
        entry["validation_studies"] = len(val)
        entry["validation_flag_rate"] = float((d_val > entry["threshold"]).double().mean())
        out["patterns"][pat] = entry
    return out


def _distance(x: torch.Tensor, mu: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
    z = x - mu
    return torch.sqrt(torch.clamp(((z @ prec) * z).sum(-1), min=0))


def score(stats: dict, features: torch.Tensor, present) -> dict:
    """``{"flagged", "distance", "threshold", "pattern", "reason"}`` for one study."""
    pat = pattern_of(present)
    entry = (stats.get("patterns") or {}).get(pat)
    if entry is None:
        return {"flagged": False, "pattern": pat, "reason": "no out-of-domain statistics for this modality pattern"}
    mu = torch.tensor(entry["mean"], dtype=torch.float64)
    prec = torch.tensor(entry["precision"], dtype=torch.float64)
    d = float(_distance(features.double()[None], mu, prec)[0])
    flagged = d > entry["threshold"]
    return {"flagged": bool(flagged), "pattern": pat, "distance": round(d, 3), "threshold": round(entry["threshold"], 3),
            "reason": (f"study unlike the training data ({pat.upper()}: feature distance {d:.1f} > threshold "
                       f"{entry['threshold']:.1f}, the {stats['quantile']:.0%} quantile of validation studies x {stats['margin']})")
            if flagged else None}


def save(stats: dict, bundle: Path) -> Path:
    from mmcore.train import atomic_write_json

    path = Path(bundle) / "configs" / "ood.json"
    atomic_write_json(path, stats)
    return path


def load(bundle: Path) -> dict | None:
    path = Path(bundle) / "configs" / "ood.json"
    return json.loads(path.read_text()) if path.exists() else None


@torch.no_grad()
def features_from_cache(model, items: list[dict]) -> dict[str, list[torch.Tensor]]:
    """Features of cached studies under every pattern they allow (MR + CT studies also as MR-only
    and CT-only: the same study with one modality removed, as at inference)."""
    from .datasets import load_case, study_batch

    out: dict[str, list[torch.Tensor]] = {k: [] for k in PATTERNS}
    for it in items:
        batch = study_batch(load_case(it["cache"]))
        variants = [batch]
        if all(bool(batch.mask(m)[0]) for m in ("mr", "ct")):
            variants += [batch.drop_modality("ct"), batch.drop_modality("mr")]
        for b in variants:
            out[pattern_of({m: bool(b.mask(m)[0]) for m in ("mr", "ct")})].append(study_features(model, b))
    return out


def fit_for_bundle(model, train_items: list[dict], val_items: list[dict], source: str = "") -> dict:
    """Fit the statistics of ``model`` on cached training studies, thresholds on validation ones."""
    model.eval()
    return fit(features_from_cache(model, train_items), features_from_cache(model, val_items), source=source)
