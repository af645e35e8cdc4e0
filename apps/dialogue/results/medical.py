"""The medical function set, executed over a :class:`~.context.MedicalContext` (findings.json first,
the mask and the study's images only for pictures and intensities)."""
from __future__ import annotations

import io

import numpy as np

from .context import ANALYSED, MedicalContext, ResultError
from .program import Answer, Program, abstain

NAMES = {"mr": "MR", "ct": "CT"}


def _fmt(v: float) -> str:
    return f"{v:g}"


def _modality_note(ctx: MedicalContext, modality: str | None) -> str:
    """'' when ``modality`` is unset or used; otherwise what the analysis did without it."""
    f = ctx.findings
    if modality is None or modality in f.get("modalities_used", []):
        return ""
    used = ", ".join(NAMES.get(m, m) for m in f.get("modalities_used", [])) or "none"
    return f"The analysis used no {NAMES.get(modality, modality)} (modalities used: {used}). "


def run(ctx: MedicalContext, p: Program) -> Answer:
    f = ctx.findings
    if f.get("status") not in ANALYSED and p.op != "status":
        return Answer(f"The analysis {f.get('status')} this study: {f.get('error')}", p, value=None)
    fn = _OPS.get(p.op)
    if fn is None:
        return abstain(p)
    return fn(ctx, p)


def _found(ctx, p):
    f = ctx.findings
    lesion = f["lesion"]
    if f.get("no_lesion_found") or not lesion.get("voxels"):
        return Answer("No lesion was found inside the intracranial volume (0 mL).", p, value=False)
    return Answer(f"Yes: one lesion of {_fmt(lesion['volume_ml'])} mL.", p, value=True)


def _volume(ctx, p):
    lesion = ctx.findings["lesion"]
    note = _modality_note(ctx, p.get("modality"))
    shared = ""
    if p.get("modality") and not note:
        shared = f" (one mask from the fused {' + '.join(NAMES[m] for m in ctx.findings['modalities_used'])} analysis)"
    if not lesion.get("voxels"):
        return Answer(f"{note}No lesion was found, so its volume is 0 mL.", p, value=0.0, unit="mL")
    return Answer(f"{note}The lesion measures {_fmt(lesion['volume_ml'])} mL ({lesion['voxels']} voxels){shared}.", p,
                  value=lesion["volume_ml"], unit="mL")


def _location(ctx, p):
    lesion = ctx.findings["lesion"]
    note = _modality_note(ctx, p.get("modality"))
    if "location" not in lesion:
        return Answer(f"{note}No lesion was found, so it has no location.", p, value=None)
    c = lesion["centroid_ras_mm"]
    return Answer(f"{note}{lesion['location'][0].upper()}{lesion['location'][1:]}; centre at "
                  f"({', '.join(_fmt(v) for v in c)}) mm RAS.", p, value=c, unit="mm")


def _probabilities(ctx, p):
    f = ctx.findings
    if f.get("probabilities") is None:
        return Answer(f"The model withheld its class probabilities because {f.get('diagnosis_withheld')}.", p, value=None)
    probs = sorted(f["probabilities"].items(), key=lambda kv: -kv[1])
    return Answer("Class probabilities (calibrated on synthetic data): " + ", ".join(f"{k} {_fmt(v)}" for k, v in probs)
                  + ".", p, value=dict(probs))


def _probability(ctx, p):
    f = ctx.findings
    name = p.get("class")
    if name is None:
        return _probabilities(ctx, Program.make("probabilities"))
    if f.get("probabilities") is None:
        return Answer(f"The model withheld its class probabilities because {f.get('diagnosis_withheld')}.", p, value=None)
    if name not in f["probabilities"]:
        return abstain(p, f"the model has no class '{name}' (classes: {', '.join(f['probabilities'])})")
    return Answer(f"The probability of {name} is {_fmt(f['probabilities'][name])}.", p, value=f["probabilities"][name])


def _diagnosis(ctx, p):
    f = ctx.findings
    if f.get("diagnosis") is None:
        return Answer(f"The model withheld a diagnosis: {f.get('diagnosis_withheld')}.", p, value=None)
    d = f["diagnosis"]
    return Answer(f"{d[0].upper()}{d[1:]} (probability {_fmt(f['probabilities'][d])}; research demo, not for clinical use).",
                  p, value=d)


def _registration(ctx, p):
    reg = ctx.findings.get("registration")
    if not reg:
        used = ", ".join(NAMES.get(m, m) for m in ctx.findings.get("modalities_used", []))
        return Answer(f"No registration was run: the analysis had one modality ({used}).", p, value=None)
    q = reg.get("quality") or {}
    verdict = "passed" if q.get("passed") else f"failed ({'; '.join(q.get('reasons') or [])})"
    text = f"CT-to-MR registration {verdict}"
    if "mi_header_only" in q:
        text += f": mutual information {_fmt(q['mi_header_only'])} before, {_fmt(q['mi_registered'])} after"
    if "translation_mm" in reg:
        text += f"; motion corrected {_fmt(reg['translation_mm'])} mm and {_fmt(reg['rotation_deg'])} degrees"
    text += f" ({reg.get('method')})."
    return Answer(text, p, value=bool(q.get("passed")))


def _modalities(ctx, p):
    f = ctx.findings
    used = ", ".join(NAMES.get(m, m) for m in f["modalities_used"]) or "none"
    missing = ", ".join(NAMES.get(m, m) for m in f["modalities_missing"]) or "none"
    flag = " This is a single-modality result: fused accuracy is higher." if f["modalities_missing"] else ""
    return Answer(f"Modalities used: {used}; missing: {missing}.{flag}", p,
                  value={"used": f["modalities_used"], "missing": f["modalities_missing"]})


def _ood(ctx, p):
    o = ctx.findings.get("out_of_domain") or {}
    if o.get("flagged"):
        return Answer(f"The study was flagged as out of domain: {o.get('reason')}.", p, value=True)
    if "distance" in o:
        return Answer(f"The study is in domain: distance {_fmt(o['distance'])} <= threshold {_fmt(o['threshold'])}.",
                      p, value=False)
    return Answer(f"The out-of-domain check did not run: {o.get('note') or o.get('reason')}.", p, value=None)


def _guard(ctx, p):
    g = ctx.findings.get("intracranial_guard") or {}
    if not g.get("method"):
        return Answer("The intracranial guard was off.", p, value=None)
    return Answer(f"The intracranial guard ({g['method']}; intracranial volume {_fmt(g['icv_ml'])} mL) removed "
                  f"{_fmt(g['removed_outside_ml'])} mL of predicted lesion outside the brain "
                  f"({g['removed_components']} component(s)).", p, value=g["removed_outside_ml"], unit="mL")


def _icv(ctx, p):
    g = ctx.findings.get("intracranial_guard") or {}
    if g.get("icv_ml") is None:
        return Answer("The analysis did not measure the intracranial volume (the intracranial guard was off).", p,
                      value=None)
    how = f" ({g['method']})" if g.get("method") else ""
    return Answer(f"The intracranial volume is {_fmt(g['icv_ml'])} mL{how}.", p, value=g["icv_ml"], unit="mL")


def _status(ctx, p):
    f = ctx.findings
    msgs = [str(m) for m in (f.get("messages") or [])]
    took = f" in {_fmt(round(float(f['seconds']), 1))} s" if isinstance(f.get("seconds"), (int, float)) else ""
    head = f"The analysis finished with status '{f.get('status')}'{took}"
    if f.get("error"):
        head += f": {f['error']}"
    if not msgs:
        return Answer(f"{head}; no warnings.", p, value={"status": f.get("status"), "messages": []})
    return Answer(f"{head}; {len(msgs)} message(s): " + "; ".join(msgs) + ".", p,
                  value={"status": f.get("status"), "messages": msgs})


def _withheld(ctx, p):
    f = ctx.findings
    if f.get("diagnosis") is None:
        return Answer(f"The model withheld a diagnosis: {f.get('diagnosis_withheld')}.", p,
                      value=f.get("diagnosis_withheld"))
    d = f["diagnosis"]
    return Answer(f"Nothing was withheld: the model gave a diagnosis, {d} (probability {_fmt(f['probabilities'][d])}).",
                  p, value=None)


def _on_mask_grid(ctx: MedicalContext, modality: str, shape, affine) -> np.ndarray:
    """The modality's image sampled on the mask's grid (through the registration for the CT)."""
    from apps.medical.registration import resample_to

    key = ("on_mask_grid", modality)
    if key in ctx._cache:
        return ctx._cache[key]
    image, img_affine = ctx.image(modality)
    if image.shape == tuple(shape) and np.allclose(img_affine, affine, atol=1e-3):
        ctx._cache[key] = image
        return image
    reg = ctx.findings.get("registration") or {}
    ref = ctx.findings.get("reference_modality")
    t = np.asarray(reg.get("ct_from_mr", np.eye(4)), float)
    if not (reg.get("quality") or {}).get("passed"):
        t = np.eye(4)
    if modality == "mr" and ref == "ct":
        t = np.linalg.inv(t)
    fill = -1000.0 if modality == "ct" else 0.0
    ctx._cache[key] = resample_to(image, img_affine, shape, affine, t, fill=fill)
    return ctx._cache[key]


def _pick_modality(ctx, p) -> tuple[str | None, str]:
    modality = p.get("modality") or ctx.findings.get("reference_modality")
    return modality, _modality_note(ctx, p.get("modality"))


def _intensity(ctx, p):
    modality, note = _pick_modality(ctx, p)
    if note:
        return Answer(note.strip(), p, value=None)
    lesion = ctx.findings["lesion"]
    if not lesion.get("voxels"):
        return Answer("No lesion was found, so there is no intensity inside it.", p, value=None)
    try:
        mask, affine = ctx.mask()
        image = _on_mask_grid(ctx, modality, mask.shape, affine)
    except ResultError as exc:
        return abstain(p, str(exc))
    inside, ring = float(image[mask].mean()), _ring_mean(image, mask)
    unit = "HU" if modality == "ct" else "(MR signal units)"
    return Answer(f"Mean {NAMES[modality]} intensity in the lesion: {inside:.1f} {unit}; around it: {ring:.1f} {unit}.",
                  p, value=round(inside, 1), unit="HU" if modality == "ct" else "a.u.")


def _ring_mean(image, mask) -> float:
    from scipy import ndimage

    ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
    return float(image[ring].mean()) if ring.any() else float("nan")


def _image(ctx, p):
    modality, note = _pick_modality(ctx, p)
    if note:
        return Answer(note.strip(), p, value=None)
    try:
        mask, affine = ctx.mask()
        image = _on_mask_grid(ctx, modality, mask.shape, affine)
    except ResultError as exc:
        return abstain(p, str(exc))
    k = int(np.argmax(mask.sum((0, 1)))) if mask.any() else mask.shape[2] // 2
    z = float((affine @ np.r_[0, 0, k, 1.0])[2])
    png = slice_png(image[:, :, k], mask[:, :, k], modality, f"{NAMES[modality]}, axial slice {k} (z = {z:.1f} mm)")
    area = float(mask[:, :, k].sum() * abs(np.linalg.det(affine[:2, :2])))
    what = (f"the slice with the most lesion ({area:.0f} mm² of it), contour in red" if mask.any()
            else "the middle slice (no lesion found)")
    caption = f"{NAMES[modality]} axial slice {k} (z = {z:.1f} mm): {what}."
    return Answer(f"The picture shows {caption}", p, value=k, image_png=png, image_caption=caption)


def slice_png(image2d: np.ndarray, mask2d: np.ndarray, modality: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = (-40.0, 120.0) if modality == "ct" else tuple(np.percentile(image2d, [1, 99.5]))
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.imshow(np.rot90(image2d), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    if mask2d.any():
        ax.contour(np.rot90(mask2d.astype(float)), levels=[0.5], colors="red", linewidths=1.2)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


_OPS = {"lesion.found": _found, "lesion.volume": _volume, "lesion.location": _location, "lesion.image": _image,
        "lesion.intensity": _intensity, "probabilities": _probabilities, "probability": _probability,
        "diagnosis": _diagnosis, "registration.quality": _registration, "modalities": _modalities,
        "out_of_domain": _ood, "guard": _guard, "intracranial_volume": _icv, "status": _status,
        "withheld": _withheld}
