"""Held-out evaluation through the whole analyze path, against the generator's ground truth.

Per test study: registration TRE (estimated vs true CT motion, on brain landmarks) and the
header-only TRE; lesion Dice and HD95 (MONAI metrics, in mm) on the native MR grid; class
probabilities with both modalities, with MR removed and with CT removed (same preprocessed
tensors). Summary: macro one-vs-rest AUROC (torchmetrics) for fused, MR-only, CT-only and late
fusion (mean of the two single-modality outputs), ECE (15 bins) with its sampling floor and a
bootstrap interval (:func:`ece_uncertainty`), the AUROC drop when a modality
is removed, and timings.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .analyze import analyze_study, predict
from .calibration import expected_calibration_error
from .phantom import tre_mm
from .transforms import MODALITIES


def _to_truth_grid(mask: np.ndarray, affine: np.ndarray, truth_affine: np.ndarray, truth_shape, world_map: np.ndarray):
    from scipy import ndimage

    m = np.linalg.inv(affine) @ world_map @ truth_affine
    return ndimage.affine_transform(mask.astype(np.float32), m[:3, :3], m[:3, 3], output_shape=tuple(truth_shape),
                                    order=0, mode="constant") > 0.5


def seg_metrics(pred: np.ndarray, truth: np.ndarray, spacing) -> dict:
    from monai.metrics import compute_dice, compute_hausdorff_distance

    p = torch.as_tensor(pred[None, None].astype(np.float32))
    t = torch.as_tensor(truth[None, None].astype(np.float32))
    dice = float(compute_dice(p, t, include_background=True)[0, 0])
    hd = float(compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                          spacing=[float(s) for s in spacing])[0, 0]) \
        if pred.any() else float("inf")
    return {"dice": dice, "hd95_mm": hd}


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc

    return {"auroc": float(multiclass_auroc(probs, labels, 4, average="macro")),
            "accuracy": float(multiclass_accuracy(probs, labels, 4, average="micro")),
            "ece": expected_calibration_error(probs, labels)}


def ece_uncertainty(probs: torch.Tensor, labels: torch.Tensor, draws: int = 500, seed: int = 0) -> dict:
    """How far the 15-bin ECE of ``len(labels)`` studies can be trusted.

    ``floor``: the ECE a *perfectly calibrated* model with these same confidences would show on this
    many studies (labels redrawn from its own probabilities), mean and 95th percentile; the binned
    estimator is biased upwards on small sets, so an ECE near the floor is sampling noise, not
    miscalibration. ``ci95``: percentile bootstrap over studies of the measured ECE.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    floor = torch.tensor([expected_calibration_error(probs, torch.multinomial(probs, 1, generator=g).squeeze(1))
                          for _ in range(draws)])
    resamples = (torch.randint(n, (n,), generator=g) for _ in range(draws))
    boot = torch.tensor([expected_calibration_error(probs[i], labels[i]) for i in resamples])
    return {"studies": n, "floor_mean": float(floor.mean()), "floor_p95": float(floor.quantile(0.95)),
            "ci95": [float(boot.quantile(0.025)), float(boot.quantile(0.975))]}


def evaluate(model, entries: list[dict], out: Path, *, register: bool = True, progress: bool = True) -> dict:
    import nibabel as nib
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    rows = []
    for e in tqdm(entries, desc="eval", disable=not progress):
        truth = json.loads(Path(e["truth"]).read_text())
        keep: dict = {}
        t0 = time.perf_counter()
        f = analyze_study(Path(e["study"]), Path(out) / "studies" / e["id"], model, register=register, write=True, keep=keep)
        row = {"id": e["id"], "label": truth["label"], "status": f["status"], "format": truth.get("format"),
               "dropped": truth.get("dropped"), "seconds": time.perf_counter() - t0}
        if f["status"] != "ok":
            row["error"] = f.get("error")
            rows.append(row)
            continue
        row["probs"] = keep["probs"].tolist()
        reg = f.get("registration")
        if reg and reg.get("ct_from_mr"):
            row["tre_mm"] = tre_mm(np.asarray(reg["ct_from_mr"]), truth)
            row["tre_header_mm"] = tre_mm(np.eye(4), truth)
            row["registration_seconds"] = reg.get("seconds")
        tm = nib.load(e["mask"])
        world = np.eye(4) if f["reference_modality"] == "mr" else np.asarray(truth["ct_from_mr"])
        pred = _to_truth_grid(keep["native_mask"], keep["native_affine"], tm.affine, tm.shape, world)
        row.update(seg_metrics(pred, np.asarray(tm.dataobj) > 0, tm.header.get_zooms()[:3]))
        d = keep["data"]
        if bool(d["present"].all()):
            for m in MODALITIES:     # modality removal on the same preprocessed tensors
                present = d["present"].clone()
                present[MODALITIES.index(m)] = False
                row[f"probs_without_{m}"] = predict(model, d["image"].as_tensor(), present)["probs"].tolist()
        rows.append(row)
    summary = summarize(rows)
    atomic_write_json(Path(out) / "eval_rows.json", rows)
    atomic_write_json(Path(out) / "eval_summary.json", summary)
    return summary


def summarize(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    both = [r for r in ok if "probs_without_mr" in r]
    s: dict = {"studies": len(rows), "analysed": len(ok), "refused_or_failed": [(r["id"], r.get("error")) for r in rows if r["status"] != "ok"]}
    if both:
        labels = torch.tensor([r["label"] for r in both])
        fused = torch.tensor([r["probs"] for r in both])
        mr_only = torch.tensor([r["probs_without_ct"] for r in both])
        ct_only = torch.tensor([r["probs_without_mr"] for r in both])
        s["fused"] = classification_metrics(fused, labels)
        s["fused"]["ece_uncertainty"] = ece_uncertainty(fused, labels)
        s["mr_only (CT removed)"] = classification_metrics(mr_only, labels)
        s["ct_only (MR removed)"] = classification_metrics(ct_only, labels)
        s["late_fusion (mean of single-modality outputs)"] = classification_metrics((mr_only + ct_only) / 2, labels)
        best_single = max(s["mr_only (CT removed)"]["auroc"], s["ct_only (MR removed)"]["auroc"])
        s["fused_minus_best_single_auroc"] = s["fused"]["auroc"] - best_single
        s["auroc_drop_without_mr"] = s["fused"]["auroc"] - s["ct_only (MR removed)"]["auroc"]
        s["auroc_drop_without_ct"] = s["fused"]["auroc"] - s["mr_only (CT removed)"]["auroc"]
        s["dice_mean"] = float(np.mean([r["dice"] for r in both]))
        s["hd95_mm_median"] = float(np.median([r["hd95_mm"] for r in both]))
        s["hd95_mm_mean"] = float(np.mean([r["hd95_mm"] for r in both]))
    single = [r for r in ok if r.get("dropped")]
    if single:
        s["dice_mean_single_modality_studies"] = float(np.mean([r["dice"] for r in single]))
    tre = [r for r in ok if "tre_mm" in r]
    if tre:
        s["tre_mm_mean"] = float(np.mean([r["tre_mm"] for r in tre]))
        s["tre_mm_max"] = float(np.max([r["tre_mm"] for r in tre]))
        s["tre_header_only_mm_range"] = [float(np.min([r["tre_header_mm"] for r in tre])), float(np.max([r["tre_header_mm"] for r in tre]))]
        s["registration_seconds_median"] = float(np.median([r["registration_seconds"] for r in tre]))
    s["analyze_seconds_median"] = float(np.median([r["seconds"] for r in ok])) if ok else None
    return s
