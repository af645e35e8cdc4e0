"""Per-study scores against ground truth and the table `mm medical eval` prints.

A row (one study) holds: ``label`` (-1: the study has no lesion), ``status``, ``probs`` (the
model's class probabilities, kept even when the findings withhold the diagnosis, so that AUROC
and ECE measure the classifier itself), ``diagnosis`` (what the findings assert, ``None`` when
withheld), ``ood`` (out-of-domain flag), segmentation scores on the reference grid and
lesion-wise detection:

* a true lesion is *detected* when a predicted connected component (26-connected) overlaps it;
* a predicted component that overlaps no true lesion is a *false-positive lesion*;
* ``outside_icv_ml``: predicted lesion volume outside the true intracranial volume (families that
  ship ``icv.nii.gz``).

Summary figures: lesion Dice (mean over lesion studies with MR + CT; 0 for a missed lesion),
HD95 median, detection sensitivity over every lesion study, false-positive lesions per study
over every study, "no lesion found" rate on the no-lesion studies, macro one-vs-rest AUROC for
fused / MR only / CT only (same preprocessed tensors, a modality removed), ECE (15 bins) with the
sampling floor of :func:`ece_uncertainty`, the out-of-domain flag rate and
how many diagnoses were asserted.
"""
from __future__ import annotations

import numpy as np
import torch

from .calibration import expected_calibration_error


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


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def detection(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Lesion-wise counts: true lesions found / missed, predicted components that hit nothing."""
    t_lab, n_true = components(truth)
    p_lab, n_pred = components(pred)
    hit_true = set(np.unique(t_lab[(p_lab > 0) & (t_lab > 0)]).tolist()) - {0}
    hit_pred = set(np.unique(p_lab[(p_lab > 0) & (t_lab > 0)]).tolist()) - {0}
    return {"true_lesions": n_true, "detected": len(hit_true), "pred_components": n_pred,
            "false_positive_lesions": n_pred - len(hit_pred)}


def to_truth_grid(mask: np.ndarray, affine: np.ndarray, truth_affine: np.ndarray, truth_shape,
                  world_map: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of a predicted mask onto the truth grid (``world_map``: truth
    world -> prediction world, e.g. the true CT motion when the truth lives on the MR grid)."""
    from scipy import ndimage

    m = np.linalg.inv(affine) @ world_map @ truth_affine
    return ndimage.affine_transform(mask.astype(np.float32), m[:3, :3], m[:3, 3], output_shape=tuple(truth_shape),
                                    order=0, mode="constant") > 0.5


def study_row(entry: dict, truth: dict, findings: dict, keep: dict) -> dict:
    """Scores of one analysed study against its truth files (``mask``, optional ``icv``)."""
    import nibabel as nib

    from .phantom import CLASS_NAMES

    row: dict = {}
    tm = nib.load(entry["mask"])
    truth_ref = truth.get("reference", "mr")
    same_world = findings["reference_modality"] == truth_ref
    world = np.eye(4) if same_world else np.asarray(truth["ct_from_mr"])
    pred = to_truth_grid(keep["native_mask"], keep["native_affine"], tm.affine, tm.shape, world)
    true_mask = np.asarray(tm.dataobj) > 0
    voxel_ml = float(np.prod(tm.header.get_zooms()[:3])) / 1000
    if true_mask.any():
        row.update(seg_metrics(pred, true_mask, tm.header.get_zooms()[:3]))
    row.update(detection(pred, true_mask))
    row["pred_ml"] = float(pred.sum() * voxel_ml)
    if entry.get("icv"):
        icv = np.asarray(nib.load(entry["icv"]).dataobj) > 0
        row["outside_icv_ml"] = float((pred & ~icv).sum() * voxel_ml)
    row["no_lesion_found"] = bool(findings.get("no_lesion_found", not keep["native_mask"].any()))
    name = findings.get("diagnosis")
    row["diagnosis"] = CLASS_NAMES.index(name) if name in CLASS_NAMES else None
    row["ood"] = bool((findings.get("out_of_domain") or {}).get("flagged", False))
    return row


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict]) -> dict:
    """The summary `mm medical eval` writes (see the module docstring)."""
    ok = [r for r in rows if r["status"] == "ok"]
    s: dict = {"studies": len(rows), "analysed": len(ok),
               "refused_or_failed": [(r["id"], r.get("error")) for r in rows if r["status"] != "ok"]}
    lesion = [r for r in ok if r["label"] >= 0]
    clean = [r for r in ok if r["label"] < 0]
    both = [r for r in lesion if "probs_without_mr" in r]
    s["lesion_studies"], s["no_lesion_studies"] = len(lesion), len(clean)
    if both:
        labels = torch.tensor([r["label"] for r in both])
        fused = torch.tensor([r["probs"] for r in both])
        mr_only = torch.tensor([r["probs_without_ct"] for r in both])
        ct_only = torch.tensor([r["probs_without_mr"] for r in both])
        if len(set(labels.tolist())) == 4:
            s["fused"] = classification_metrics(fused, labels)
            s["fused"]["ece_uncertainty"] = ece_uncertainty(fused, labels)
            s["mr_only (CT removed)"] = classification_metrics(mr_only, labels)
            s["ct_only (MR removed)"] = classification_metrics(ct_only, labels)
            s["late_fusion (mean of single-modality outputs)"] = classification_metrics((mr_only + ct_only) / 2, labels)
            best_single = max(s["mr_only (CT removed)"]["auroc"], s["ct_only (MR removed)"]["auroc"])
            s["fused_minus_best_single_auroc"] = s["fused"]["auroc"] - best_single
        s["dice_mean"] = _mean(r["dice"] for r in both)
        hd = [r["hd95_mm"] for r in both]
        s["hd95_mm_median"] = float(np.median(hd))
    single = [r for r in lesion if r.get("dropped")]
    if single:
        s["dice_mean_single_modality_studies"] = _mean(r["dice"] for r in single)
    det = [r for r in ok if "detected" in r]
    true_total = sum(r["true_lesions"] for r in det)
    if true_total:
        s["detection_sensitivity"] = sum(r["detected"] for r in det) / true_total
    if det:
        s["false_positive_lesions_per_study"] = sum(r["false_positive_lesions"] for r in det) / len(det)
    if clean:
        s["no_lesion_found_rate"] = float(np.mean([bool(r.get("no_lesion_found")) for r in clean]))
    icv = [r for r in ok if r.get("outside_icv_ml") is not None]
    if icv:
        s["outside_icv_ml_total"] = float(sum(r["outside_icv_ml"] for r in icv))
        s["studies_with_lesion_outside_icv"] = int(sum(r["outside_icv_ml"] > 0 for r in icv))
    s["ood_flag_rate"] = float(np.mean([bool(r.get("ood")) for r in ok])) if ok else None
    s["diagnoses_asserted"] = int(sum(r.get("diagnosis") is not None for r in ok))
    s["diagnoses_asserted_correct"] = int(sum(r.get("diagnosis") is not None and r["label"] >= 0
                                              and r["diagnosis"] == r["label"] for r in ok))
    s["diagnoses_on_no_lesion_studies"] = int(sum(r.get("diagnosis") is not None for r in clean))
    tre = [r for r in ok if "tre_mm" in r]
    if tre:
        s["tre_mm_mean"] = float(np.mean([r["tre_mm"] for r in tre]))
        s["tre_mm_max"] = float(np.max([r["tre_mm"] for r in tre]))
        s["tre_header_only_mm_range"] = [float(np.min([r["tre_header_mm"] for r in tre])),
                                         float(np.max([r["tre_header_mm"] for r in tre]))]
        s["registration_seconds_median"] = float(np.median([r["registration_seconds"] for r in tre]))
    s["analyze_seconds_median"] = float(np.median([r["seconds"] for r in ok])) if ok else None
    return s


TABLE_ROWS = [
    ("lesion Dice (mean, MR + CT)", "dice_mean", "{:.3f}"),
    ("HD95 mm (median)", "hd95_mm_median", "{:.1f}"),
    ("detection sensitivity", "detection_sensitivity", "{:.3f}"),
    ("false-positive lesions / study", "false_positive_lesions_per_study", "{:.3f}"),
    ("'no lesion found' on no-lesion studies", "no_lesion_found_rate", "{:.3f}"),
    ("lesion mL outside the intracranial volume", "outside_icv_ml_total", "{:.2f}"),
    ("fused AUROC", ("fused", "auroc"), "{:.3f}"),
    ("MR-only AUROC (CT removed)", ("mr_only (CT removed)", "auroc"), "{:.3f}"),
    ("CT-only AUROC (MR removed)", ("ct_only (MR removed)", "auroc"), "{:.3f}"),
    ("fused - best single AUROC", "fused_minus_best_single_auroc", "{:+.3f}"),
    ("fused ECE (15 bins)", ("fused", "ece"), "{:.3f}"),
    ("ECE sampling floor (mean)", ("fused", "ece_uncertainty", "floor_mean"), "{:.3f}"),
    ("out-of-domain flag rate", "ood_flag_rate", "{:.3f}"),
    ("diagnoses asserted", "diagnoses_asserted", "{}"),
    ("TRE mm (mean)", "tre_mm_mean", "{:.2f}"),
]


def _get(summary: dict, key):
    for k in (key if isinstance(key, tuple) else (key,)):
        if not isinstance(summary, dict) or k not in summary:
            return None
        summary = summary[k]
    return summary


def format_table(summaries: dict[str, dict]) -> str:
    """A plain-text table, one column per evaluated set (e.g. in-distribution, evaluation family)."""
    names = list(summaries)
    head = ["measure"] + [f"{n} ({summaries[n].get('analysed')}/{summaries[n].get('studies')})" for n in names]
    lines = [head]
    for label, key, fmt in TABLE_ROWS:
        cells = []
        for n in names:
            v = _get(summaries[n], key)
            cells.append("-" if v is None else fmt.format(v))
        lines.append([label, *cells])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in lines)
