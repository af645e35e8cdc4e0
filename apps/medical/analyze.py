"""Analyse studies: intake -> preprocess/register -> sliding-window model -> invert -> writers.

Per study ``OUT/<study>/``: ``findings.json`` (always, also for a refused study), and when the
study could be analysed ``lesion_mask.nii.gz`` (native grid of the reference series: MR, or CT
when MR is missing), ``report.html`` and, for DICOM input, ``lesion_seg.dcm``.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np
import torch

from .bundle import DEFAULT_BUNDLE, load_bundle
from .intake import IntakeError, StudyInput, intake_cause, list_studies, read_study
from .model import keep_largest_lesion
from .phantom import CLASS_NAMES
from .transforms import MODALITIES, ROI


@torch.no_grad()
def predict(model, image: torch.Tensor, present: torch.Tensor) -> dict:
    """Sliding-window segmentation on ``image`` [2, *S] then the diagnosis pooled in the lesion."""
    from monai.inferers import sliding_window_inference

    model.eval()
    device = model.temperature.device       # windows run where the model lives; results come back on the CPU
    use = [m for m in model.modalities if m in MODALITIES]
    pres = {m: present[MODALITIES.index(m)].view(1).to(device) for m in model.modalities}
    if not any(bool(p) for p in pres.values()):
        raise IntakeError(f"the model needs one of {list(model.modalities)}; the study has none of them")
    names: list[str] = []
    sizes: list[int] = []

    def dense(x: torch.Tensor) -> torch.Tensor:
        images = {m: x[:, MODALITIES.index(m):MODALITIES.index(m) + 1] for m in use}
        seg, maps = model.segment(images, {m: p.expand(x.shape[0]) for m, p in pres.items()})
        names[:], sizes[:] = list(maps), [v.shape[1] for v in maps.values()]
        return torch.cat([seg, *maps.values()], 1)

    out = sliding_window_inference(image[None].float().to(device), roi_size=ROI, sw_batch_size=1, predictor=dense,
                                   overlap=0.25)
    seg, rest = out[:, :2], out[:, 2:]
    maps = dict(zip(names, torch.split(rest, sizes, dim=1)))
    prob = keep_largest_lesion(seg.softmax(1)[:, 1:2])
    logits = model.diagnose(maps, prob, pres) / model.temperature
    return {"lesion_prob": prob[0, 0].cpu(), "probs": logits.softmax(-1)[0].cpu(), "logits": logits[0].cpu()}


def _location(centroid: np.ndarray) -> str:
    x, y, z = centroid
    return (f"{'right' if x > 0 else 'left'} hemisphere, {'anterior' if y > -18 else 'posterior'}, "
            f"{'superior' if z > 18 else 'inferior'} (scanner RAS; demo head centred near (0, -18, 18) mm)")


def analyze_study(path: Path, out_dir: Path, model, *, register: bool = True, write: bool = True,
                  drop: str | None = None, keep: dict | None = None) -> dict:
    """Analyse one study; never raises for bad input: the findings say what went wrong."""
    from mmcore.train import atomic_write_json

    from .outputs import write_dicom_seg, write_nifti_mask, write_report
    from .transforms import invert_to_native, preprocess

    t0 = time.perf_counter()
    path = Path(path)
    findings: dict = {"study": str(path), "status": "ok", "messages": []}
    out = Path(out_dir)
    try:
        study: StudyInput = read_study(path)
        findings["messages"] += study.messages
        sources = {m: study.sources.get(m) for m in MODALITIES}
        if drop:
            sources[drop] = None
            findings["messages"].append(f"{drop.upper()} removed on request (modality-removal test)")
        pipe = preprocess(register=register, with_mask=False)
        d = pipe(sources)
        findings["messages"] += d.get("messages", [])
        present = d["present"]
        pred = predict(model, d["image"].as_tensor(), present)
        native = invert_to_native(pipe, d, pred["lesion_prob"][None])
        mask = (native[0].numpy() > 0.5)
        affine = np.asarray(native.affine, float)
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
        used = [m for m, p in zip(MODALITIES, present.tolist()) if p and m in model.modalities]
        missing = [m for m in MODALITIES if m not in used]
        probs = {n: round(float(p), 4) for n, p in zip(CLASS_NAMES, pred["probs"])}
        lesion: dict = {"volume_ml": round(float(mask.sum() * voxel_ml), 3), "voxels": int(mask.sum())}
        if mask.any():
            c = affine @ np.r_[np.argwhere(mask).mean(0), 1.0]
            lesion["centroid_ras_mm"] = [round(float(v), 1) for v in c[:3]]
            lesion["location"] = _location(c[:3])
        findings.update({
            "study_instance_uid": study.study_uid, "input_kind": study.kind, "series": study.series,
            "sources": {m: (str(v[0]) if len(v) == 1 else f"{len(v)} DICOM files in {v[0].parent}") for m, v in study.sources.items()},
            "reference_modality": d["reference"], "modalities_used": used, "modalities_missing": missing,
            "flag": (f"single-modality result ({', '.join(m.upper() for m in missing)} missing): the model was trained with "
                     "modality dropout but fused accuracy is higher; see docs/medical.md") if missing else None,
            "registration": d["registration"], "probabilities": probs,
            "diagnosis": max(probs, key=probs.get), "lesion": lesion,
        })
        if not mask.any():
            findings["messages"].append("no lesion found (no voxel with lesion probability > 0.5); probabilities are uninformative")
        if keep is not None:
            keep.update({"native_mask": mask, "native_affine": affine, "probs": pred["probs"], "data": d})
        if write:
            write_nifti_mask(out / "lesion_mask.nii.gz", mask, affine)
            findings["outputs"] = {"mask_nifti": "lesion_mask.nii.gz", "report": "report.html"}
            if study.kind == "dicom" and d["reference"] in study.sources:
                try:
                    findings["dicom_seg"] = write_dicom_seg(out / "lesion_seg.dcm", mask, affine, study.sources[d["reference"]])
                    findings["outputs"]["dicom_seg"] = "lesion_seg.dcm"
                except Exception as exc:  # noqa: BLE001 - the other outputs stay valid
                    findings["messages"].append(f"DICOM SEG not written: {type(exc).__name__}: {exc}")
            lesion_grid = (pred["lesion_prob"] > 0.5).numpy()
            write_report(out / "report.html", findings, d["image"].numpy(), present.tolist(), lesion_grid)
    except IntakeError as exc:
        findings.update(status="refused", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken study must not stop the batch
        cause = intake_cause(exc)
        if cause is not None:       # raised inside a MONAI transform (wrapped in a RuntimeError)
            findings.update(status="refused", error=str(cause))
        else:
            findings.update(status="error", error=f"{type(exc).__name__}: {exc}",
                            traceback_tail=traceback.format_exc().strip().splitlines()[-3:])
    findings["seconds"] = round(time.perf_counter() - t0, 3)
    if write:
        atomic_write_json(out / "findings.json", findings)
    return findings


def analyze_path(path: Path, out: Path, model, *, register: bool = True, progress: bool = True) -> list[dict]:
    """One study or a folder of studies; returns every study's findings (bad ones included)."""
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    studies = list_studies(path)
    results = []
    for study in tqdm(studies, desc="studies", disable=not progress or len(studies) < 2):
        sub = Path(out) if len(studies) == 1 else Path(out) / study.name
        f = analyze_study(study, sub, model, register=register)
        results.append(f)
        status = f["status"] if f["status"] != "ok" else f"{f['diagnosis']} ({max(f['probabilities'].values()):.2f})"
        print(f"[medical] {study.name}: {status}" + (f" - {f['error']}" if "error" in f else ""))
    if len(studies) > 1:
        atomic_write_json(Path(out) / "summary.json", [{k: r.get(k) for k in ("study", "status", "diagnosis", "error")}
                                                       for r in results])
    return results


def load_model(bundle: Path | str | None = None, device: str = "cpu"):
    """The bundle's network (default: the shipped one) on ``device``; a clear error when there is none."""
    bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
    if not (bundle / "models" / "model.safetensors").exists():
        raise FileNotFoundError(f"no model bundle at {bundle} (expected models/model.safetensors); train one with "
                                "`mm medical train --data DIR --generate 96,32,48 --export data/medical/model`")
    return load_bundle(bundle, device)
