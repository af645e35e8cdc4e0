"""Held-out evaluation through the whole analyze path, against the generator's ground truth.

Per test study: registration TRE (estimated vs true CT motion, on brain landmarks) and the
header-only TRE; lesion Dice and HD95 (MONAI metrics, in mm), lesion-wise detection and the
lesion volume outside the true intracranial volume on the reference grid
(:func:`apps.medical.scoring.study_row`); class probabilities with both modalities, with MR removed
and with CT removed (same preprocessed tensors). Summary (:func:`apps.medical.scoring.summarize`):
Dice, HD95, detection sensitivity, false-positive lesions per study, "no lesion found" rate,
macro one-vs-rest AUROC (torchmetrics) for fused, MR-only, CT-only and late fusion, ECE (15 bins)
with its sampling floor and a bootstrap interval, the out-of-domain flag rate, and timings.
Studies without a lesion carry ``label`` -1.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .analyze import analyze_study, predict
from .phantom import tre_mm
from .scoring import classification_metrics, ece_uncertainty, seg_metrics, study_row, summarize
from .transforms import MODALITIES

__all__ = ["classification_metrics", "ece_uncertainty", "evaluate", "seg_metrics", "summarize"]


def evaluate(model, entries: list[dict], out: Path, *, register: bool = True, progress: bool = True,
             guard: bool = True) -> dict:
    """Analyse every entry (``study``, ``truth``, ``mask``, optional ``icv``), score it, write
    ``eval_rows.json`` and ``eval_summary.json`` under ``out``; returns the summary."""
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    rows = []
    for e in tqdm(entries, desc="eval", disable=not progress):
        truth = json.loads(Path(e["truth"]).read_text())
        keep: dict = {}
        t0 = time.perf_counter()
        f = analyze_study(Path(e["study"]), Path(out) / "studies" / e["id"], model, register=register, write=True,
                          keep=keep, guard=guard)
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
        row.update(study_row(e, truth, f, keep))
        d, batch = keep["data"], keep["batch"]
        if all(d["present"][m] for m in MODALITIES):
            icv = d["icv"].as_tensor()[0] if "icv" in d else None
            for m in MODALITIES:     # modality removal on the same preprocessed tensors
                row[f"probs_without_{m}"] = predict(model, batch.drop_modality(m), icv)["probs"].tolist()
        rows.append(row)
    summary = summarize(rows)
    atomic_write_json(Path(out) / "eval_rows.json", rows)
    atomic_write_json(Path(out) / "eval_summary.json", summary)
    return summary
