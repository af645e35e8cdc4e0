"""Analyse studies: intake -> preprocess/register -> sliding-window model -> invert -> writers.

Per study ``OUT/<study>/``: ``findings.json`` (always, also for a refused study), and when the
study could be analysed ``lesion_mask.nii.gz`` (native grid of the reference series: MR, or CT
when MR is missing), ``report.html`` and, for DICOM input, ``lesion_seg.dcm``. ``status``: ``ok``,
``incomplete`` (analysed, but an output could not be written: ``output_errors`` says which and why),
``refused`` (bad input, ``error`` says why) or ``error`` (a bug; ``traceback_tail``).
"""
from __future__ import annotations

import json
import logging
import re
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from .bundle import DEFAULT_BUNDLE, load_bundle
from .intake import IntakeError, StudyInput, dicom_studies, intake_cause, list_studies, read_study
from .model import keep_largest_lesion
from .phantom import CLASS_NAMES
from .stagetimes import stage
from .transforms import MODALITIES, ROI

log = logging.getLogger(__name__)


DISCLAIMER = ("Research demo trained on synthetic phantoms only; not for clinical use. Probabilities are calibrated "
              "on synthetic data.")


@torch.no_grad()
def predict(model, batch, icv: torch.Tensor | None = None, unguarded: bool = False) -> dict:
    """Sliding-window segmentation on one study then the diagnosis pooled in the lesion.

    ``batch``: a :class:`~mmcore.data.MultimodalBatch` of one study (``mr``/``ct`` [1, 1, *S] and their
    present masks; :func:`apps.medical.datasets.study_batch`). ``icv`` [*S] (0/1): the intracranial
    volume; lesion probability outside it is set to 0 *before* the largest component is chosen and
    the diagnosis pools its features (the anatomical guard). Returns ``lesion_prob`` (guarded,
    largest component), ``lesion_prob_raw`` (the network's own) and, with ``unguarded``, the largest
    component and diagnosis without the guard (evaluation compares them)."""
    from .inference import sliding_window_named

    model.eval()
    device = model.temperature.device       # windows run where the model lives; results come back on the CPU
    batch = model.as_batch(batch).to(device)
    if batch.batch_size != 1:
        raise ValueError(f"predict takes one study; got a batch of {batch.batch_size}")
    present = {m: batch.mask(m) for m in model.modalities}
    if not any(bool(p.any()) for p in present.values()):
        raise IntakeError(f"the model needs one of {list(model.modalities)}; the study has none of them")
    maps = sliding_window_named(batch, model.dense, ROI, modalities=model.modalities, overlap=0.25)
    seg = maps.pop("seg")
    raw = seg.softmax(1)[:, 1:2]
    inside = raw if icv is None else raw * icv.to(raw.device, raw.dtype).view(1, 1, *raw.shape[-3:])
    prob = keep_largest_lesion(inside)
    logits = model.diagnose(maps, prob, present) / model.temperature
    out = {"lesion_prob": prob[0, 0].cpu(), "lesion_prob_raw": raw[0, 0].cpu(), "probs": logits.softmax(-1)[0].cpu(),
           "logits": logits[0].cpu()}
    if icv is not None and unguarded:     # what the network alone answers (evaluation's before/after)
        alone = keep_largest_lesion(raw)
        out["unguarded"] = {"lesion_prob": alone[0, 0].cpu(),
                            "probs": (model.diagnose(maps, alone, present) / model.temperature).softmax(-1)[0].cpu()}
    return out


def _location(centroid: np.ndarray, reference: np.ndarray | None) -> str:
    """Where the lesion lies in patient (RAS) terms, relative to the intracranial centroid when known."""
    if reference is None:
        x = centroid[0]
        return f"{'right' if x > 0 else 'left'} of the scanner's x = 0 plane (intracranial volume unknown)"
    dx, dy, dz = centroid - reference
    return (f"{'right' if dx > 0 else 'left'} hemisphere, {abs(dx):.0f} mm from the midline; "
            f"{abs(dy):.0f} mm {'anterior' if dy > 0 else 'posterior'} and {abs(dz):.0f} mm "
            f"{'superior' if dz > 0 else 'inferior'} of the intracranial centroid (patient RAS; midline assumed "
            "through that centroid)")


def _guard(native: torch.Tensor, affine: np.ndarray, method: str | None) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """From the native [guarded prob, raw prob, ICV] stack: the final mask, the guard's record, the ICV."""
    from scipy import ndimage

    guarded, raw = native[0].numpy() > 0.5, native[1].numpy() > 0.5
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    if method is None:
        return guarded, {"method": None, "note": "intracranial guard off"}, None
    icv = native[2].numpy() > 0.5
    outside = raw & ~icv
    n_out = int(ndimage.label(outside, structure=np.ones((3, 3, 3), bool))[1]) if outside.any() else 0
    record = {"method": method, "icv_ml": round(float(icv.sum() * voxel_ml), 1),
              "removed_outside_ml": round(float(outside.sum() * voxel_ml), 3), "removed_components": n_out}
    return guarded & icv, record, icv


def _to_display_grid(mask: np.ndarray, affine: np.ndarray, display: dict | None) -> np.ndarray | None:
    """The native-grid mask (the reference series' array order) reoriented like the report's RAS volumes."""
    if display is None:
        return None
    import nibabel as nib

    o = nib.orientations
    ras = o.apply_orientation(mask, o.ornt_transform(o.io_orientation(affine), o.axcodes2ornt("RAS")))
    shape = next((v.shape for k, v in display.items() if k != "affine" and v is not None), None)
    return ras.astype(bool) if ras.shape == shape else None


def _write_outputs(out: Path, findings: dict, study: StudyInput, d: dict, mask, affine) -> None:
    """Every output of an analysed study; one that cannot be written is named in ``output_errors`` and
    the status becomes ``incomplete`` (never a silent "ok")."""
    from .outputs import write_dicom_seg, write_nifti_mask
    from .report import write_report

    findings["outputs"], errors = {}, []

    def attempt(name: str, file: str, fn) -> None:
        try:
            result = fn()
            findings["outputs"][name] = file
            if name == "dicom_seg":
                findings["dicom_seg"] = result
        except Exception as exc:  # noqa: BLE001 - the other outputs stay valid; the status says what is missing
            errors.append(f"{file} not written: {type(exc).__name__}: {str(exc)[:200]}")
            findings["status"] = "incomplete"
            findings["output_errors"] = errors

    with stage("write NIfTI mask"):
        attempt("mask_nifti", "lesion_mask.nii.gz", lambda: write_nifti_mask(out / "lesion_mask.nii.gz", mask, affine))
    if study.kind == "dicom" and d["reference"] in study.sources:
        with stage("write DICOM SEG"):
            attempt("dicom_seg", "lesion_seg.dcm",
                    lambda: write_dicom_seg(out / "lesion_seg.dcm", mask, affine, study.sources[d["reference"]]))
    findings["messages"] += [f"output {e}" for e in errors]        # the report lists them too
    n = len(errors)
    with stage("write report (HTML + PNG)"):
        display = d.get("display")
        attempt("report", "report.html", lambda: write_report(
            out / "report.html", findings, display, _to_display_grid(mask, affine, display)))
    findings["messages"] += [f"output {e}" for e in errors[n:]]


def analyze_study(path: Path, out_dir: Path, model, *, register: bool = True, write: bool = True,
                  drop: str | None = None, keep: dict | None = None, guard: bool = True,
                  select: str | None = None, source: str | None = None) -> dict:
    """Analyse one study; never raises for bad input: the findings say what went wrong.

    ``guard``: remove predicted lesion outside the intracranial volume (:mod:`apps.medical.intracranial`).
    The diagnosis is withheld (``diagnosis`` None, ``diagnosis_withheld`` says why) when no lesion is
    found inside the brain or the out-of-domain check (:mod:`apps.medical.ood`) flags the study.
    ``select``: one study of a folder holding several (:func:`apps.medical.intake.dicom_studies`).
    ``source``: what the findings and the report name as the study instead of ``path`` (a study
    downloaded from an archive into a folder deleted afterwards: its address there)."""

    from .dicom_io import header_cache

    with header_cache():            # each DICOM header parsed once for intake, geometry check and SEG
        return _analyze_study(path, out_dir, model, register=register, write=write, drop=drop, keep=keep, guard=guard,
                              select=select, source=source)


def _analyze_study(path: Path, out_dir: Path, model, *, register: bool, write: bool, drop: str | None,
                   keep: dict | None, guard: bool, select: str | None, source: str | None) -> dict:
    from mmcore.train import atomic_write_json

    from .datasets import study_batch
    from .ood import score as ood_score
    from .ood import study_features
    from .transforms import invert_to_native, preprocess

    t0 = time.perf_counter()
    path = Path(path)
    # absolute: whoever reads findings.json later (a chat, a viewer) may run from another folder
    folder = str(path.resolve())
    findings: dict = {"study": source or folder, "status": "ok", "messages": [], "model": getattr(model, "bundle_info", None),
                      "disclaimer": DISCLAIMER}
    if select:
        findings.update(study_key=select, output_dir=str(out_dir))
    out = Path(out_dir)
    try:
        with stage("intake (index DICOM headers)"):
            study: StudyInput = read_study(path, select) if select else read_study(path)
        findings["messages"] += study.messages
        sources = {m: study.sources.get(m) for m in MODALITIES}
        if drop:
            sources[drop] = None
            findings["messages"].append(f"{drop.upper()} removed on request (modality-removal test)")
        pipe = preprocess(register=register, with_mask=False, with_icv=guard, keep_display=write)
        with stage("preprocess"):
            d = pipe(sources)
        findings["messages"] += d.get("messages", [])
        present = d["present"]                 # {modality: bool}
        batch = study_batch(d)
        icv_grid = d["icv"].as_tensor()[0] if guard else None
        with stage("inference (sliding window + diagnosis)"):
            pred = predict(model, batch, icv_grid, unguarded=keep is not None)
        stack = [pred["lesion_prob"], pred["lesion_prob_raw"]] + ([icv_grid.float()] if guard else [])
        if "unguarded" in pred:
            stack.append(pred["unguarded"]["lesion_prob"])
        with stage("invert to native grid (Invertd)"):
            native = invert_to_native(pipe, d, torch.stack(stack))
        affine = np.asarray(native.affine, float)
        with stage("guards + OOD"):
            mask, guard_record, icv_native = _guard(native, affine, d.get("intracranial_method") if guard else None)
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
        used = [m for m in MODALITIES if present[m] and m in model.modalities]
        missing = [m for m in MODALITIES if m not in used]
        probs = {n: round(float(p), 4) for n, p in zip(CLASS_NAMES, pred["probs"])}
        lesion: dict = {"volume_ml": round(float(mask.sum() * voxel_ml), 3), "voxels": int(mask.sum())}
        if mask.any():
            c = affine @ np.r_[np.argwhere(mask).mean(0), 1.0]
            ref = (affine @ np.r_[np.argwhere(icv_native).mean(0), 1.0])[:3] if icv_native is not None and icv_native.any() else None
            lesion["centroid_ras_mm"] = [round(float(v), 1) for v in c[:3]]
            lesion["location"] = _location(c[:3], ref)
        stats = getattr(model, "ood_stats", None)
        with stage("guards + OOD"):
            features = study_features(model, batch).cpu()
            ood = (ood_score(stats, features, present)
                   if stats else {"flagged": False, "reason": None, "note": "this bundle has no out-of-domain statistics"})
        reasons = [ood["reason"]] if ood["flagged"] else []
        if not mask.any():
            reasons.append("no lesion found inside the intracranial volume (no voxel with lesion probability > 0.5)")
        withheld = "; ".join(reasons) or None
        findings.update({
            # only the series that were loaded and used (a rejected or removed one is in the messages)
            "study_instance_uid": study.study_uid, "input_kind": study.kind,
            "series": {m: v for m, v in study.series.items() if present.get(m)},
            "sources": {m: (str(v[0]) if len(v) == 1 else f"{len(v)} DICOM files in {v[0].parent}")
                        for m, v in study.sources.items() if present.get(m)},
            "reference_modality": d["reference"], "modalities_used": used, "modalities_missing": missing,
            "flag": (f"single-modality result ({', '.join(m.upper() for m in missing)} missing): the model was trained with "
                     "modality dropout but fused accuracy is higher; see docs/medical.md") if missing else None,
            "registration": d["registration"], "intracranial_guard": guard_record, "out_of_domain": ood,
            "result": "no lesion found" if not mask.any() else "lesion found",
            "no_lesion_found": not bool(mask.any()),
            "probabilities": None if withheld else probs,
            "diagnosis": None if withheld else max(probs, key=probs.get),
            "diagnosis_withheld": withheld, "lesion": lesion,
        })
        if guard_record.get("removed_outside_ml"):
            findings["messages"].append(
                f"removed {guard_record['removed_outside_ml']} mL of predicted lesion outside the intracranial volume "
                f"({guard_record['removed_components']} component(s); {guard_record['method']})")
        if withheld:
            findings["messages"].append(f"diagnosis withheld: {withheld}")
        if keep is not None:
            keep.update({"native_mask": mask, "native_affine": affine, "probs": pred["probs"], "data": d, "batch": batch,
                         "native_icv": icv_native, "ood_features": features})
            if "unguarded" in pred:
                keep["unguarded"] = {"native_mask": native[3].numpy() > 0.5, "probs": pred["unguarded"]["probs"]}
        if write:
            _relabel(findings, folder, source)
            _write_outputs(out, findings, study, d, mask, affine)
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
    _relabel(findings, folder, source)
    if write:
        with stage("write findings.json"):
            atomic_write_json(out / "findings.json", findings)
    return findings


def analyze_path(path: Path, out: Path, model, *, register: bool = True, progress: bool = True) -> list[dict]:
    """One study or a folder of studies; returns every study's findings (bad ones included)."""
    import contextlib

    from .dicom_io import header_cache

    folders = list_studies(path)
    # one study folder: its DICOM headers are parsed once, for finding its studies and for analysing them
    with header_cache() if len(folders) == 1 else contextlib.nullcontext():
        return _analyze_folders(folders, out, model, register=register, progress=progress)


def _analyze_folders(folders: list[Path], out: Path, model, *, register: bool, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    from mmcore.train import atomic_write_json

    studies = []                     # (folder, study key or None, output folder)
    for folder in folders:
        base = Path(out) if len(folders) == 1 else Path(out) / folder.name
        keys = dicom_studies(folder) if folder.is_dir() and not _has_nifti(folder) else []
        if len(keys) > 1:            # several DICOM studies in one folder: each on its own, never mixed
            studies += [(folder, k, base / _key_dir(k)) for k in keys]
        else:
            studies.append((folder, None, base))
    results = []
    for study, key, sub in tqdm(studies, desc="studies", disable=not progress or len(studies) < 2):
        f = analyze_study(study, sub, model, register=register, select=key)
        results.append(f)
        if f["status"] != "ok":
            status = f"{f['status']} - {f.get('error')}"
        elif f["diagnosis"] is None:
            status = f"{f['result']}; diagnosis withheld: {f['diagnosis_withheld']}"
        else:
            status = f"{f['diagnosis']} ({max(f['probabilities'].values()):.2f})"
        log.info("%s: %s", study.name + (f" [{key}]" if key else ""), status)
    if len(studies) > 1:
        atomic_write_json(Path(out) / "summary.json", [{k: r.get(k) for k in ("study", "study_key", "status", "diagnosis",
                                                                              "error", "output_dir")} for r in results])
    return results


def _relabel(findings: dict, folder: str, source: str | None) -> None:
    """Every text of the findings that names files of ``folder`` names them under ``source`` instead."""
    def swap(value):
        if isinstance(value, str):
            return value.replace(folder, source)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return [swap(v) for v in value] if isinstance(value, list) else value

    if source:
        findings.update({k: swap(v) for k, v in findings.items()})


def _has_nifti(folder: Path) -> bool:
    return (folder / "manifest.json").exists() or any(p.name.endswith((".nii", ".nii.gz")) for p in folder.iterdir())


def _key_dir(key: str) -> str:
    """An output folder name for a ``PatientID|StudyInstanceUID`` key."""
    patient, uid = key.split("|", 1)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{patient or 'no-patient-id'}_{uid or 'no-study-uid'}")[:120]


def load_model(bundle: Path | str | None = None, device: str = "cpu"):
    """The bundle's network (default: the shipped one) on ``device``; a clear error when there is none."""
    bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
    if not (bundle / "models" / "model.safetensors").exists():
        raise FileNotFoundError(f"no model bundle at {bundle} (expected models/model.safetensors); train one with "
                                "`mm medical train --data DIR --generate 96,32,48 --export data/medical/model`")
    from .ood import load as load_ood

    model = load_bundle(bundle, device)
    meta = bundle / "configs" / "metadata.json"
    info = json.loads(meta.read_text()) if meta.exists() else {}
    model.bundle_info = {"bundle": str(bundle), "name": info.get("name"), "version": info.get("version")}
    model.ood_stats = load_ood(bundle)       # None: the findings say the check could not run
    return model
