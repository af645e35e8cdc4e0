"""The HTML report of one analysed study: what was found, native-resolution slices, registration.

Slices are drawn from the study's own voxels (the reference series' native grid, reoriented to RAS;
the CT registered and resampled onto it), not from the 4 mm model grid, in *radiological*
convention: the patient's right on the viewer's left. Every panel carries its orientation letters
(R/L, A/P, S/I) and keeps the true voxel aspect (thick slices are drawn thick).

=====================  =============================================  ============================
argument               shape / keys                                   note
=====================  =============================================  ============================
display["mr"|"ct"]     [X, Y, Z] float (HU for CT) or None            RAS, one grid for both
display["affine"]      [4, 4]                                         voxel -> RAS mm of that grid
lesion                 [X, Y, Z] bool or None                         the final (guarded) mask
=====================  =============================================  ============================
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from mmcore.train import atomic_write_text

# plane -> (fixed axis, axis drawn left-right, axis drawn bottom-top, letters left/right/top/bottom)
PLANES = {
    "axial": (2, 0, 1, ("R", "L", "A", "P")),
    "coronal": (1, 0, 2, ("R", "L", "S", "I")),
    "sagittal": (0, 1, 2, ("P", "A", "S", "I")),
}
CT_DISPLAY_HU = (-40.0, 120.0)


def _png(fig, tight: bool = True) -> str:
    buf = io.BytesIO()
    # "tight" draws the figure twice to measure it: the slice grid lays itself out instead (half the cost)
    fig.savefig(buf, format="png", dpi=90, **({"bbox_inches": "tight"} if tight else {}))
    return base64.b64encode(buf.getvalue()).decode()


def plane_image(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One slice of a RAS volume as it is drawn: rows top -> bottom, columns left -> right of the viewer
    (radiological: the patient's right, +x, on the left; sagittal: posterior on the left)."""
    fixed, horiz, vert, _ = PLANES[plane]
    sl = np.take(vol, index, axis=fixed)                # 2-D, axes (horiz, vert) in RAS order
    img = sl.T[::-1]                                    # rows: vert from top (+) to bottom (-)
    return img[:, ::-1] if horiz == 0 else img          # x: +R drawn on the left


def _aspect(spacing: np.ndarray, plane: str) -> float:
    _, horiz, vert, _ = PLANES[plane]
    return float(spacing[vert] / spacing[horiz])


def slices_figure(display: dict, lesion: np.ndarray | None) -> str | None:
    """A PNG (base64) of every present modality in three planes through the lesion (or the volume's centre)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, display.get(m)) for m in ("mr", "ct") if display.get(m) is not None]
    if not rows:
        return None
    shape = rows[0][1].shape
    spacing = np.linalg.norm(np.asarray(display["affine"], float)[:3, :3], axis=0)
    has_lesion = lesion is not None and lesion.shape == shape and lesion.any()
    centre = np.argwhere(lesion).mean(0).round().astype(int) if has_lesion else np.array(shape) // 2
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 3.5 * len(rows)), squeeze=False)
    for r, (m, vol) in enumerate(rows):
        if m == "ct":
            lo, hi, name = *CT_DISPLAY_HU, "CT on the MR grid" if display.get("mr") is not None else "CT"
        else:
            lo, hi = np.percentile(vol[::2, ::2, ::2], [1, 99.5])
            name = "MR (T1)"
        for c, plane in enumerate(PLANES):
            ax = axes[r, c]
            fixed = PLANES[plane][0]
            ax.imshow(plane_image(vol, plane, int(centre[fixed])), cmap="gray", vmin=lo, vmax=hi,
                      aspect=_aspect(spacing, plane), interpolation="nearest")
            if has_lesion:
                cut = plane_image(lesion.astype(float), plane, int(centre[fixed]))
                if cut.any():
                    ax.contour(cut, levels=[0.5], colors="red", linewidths=1.0)
            left, right, top, bottom = PLANES[plane][3]
            for text, xy in ((left, (0.02, 0.5)), (right, (0.98, 0.5)), (top, (0.5, 0.97)), (bottom, (0.5, 0.03))):
                ax.text(*xy, text, transform=ax.transAxes, color="yellow", fontsize=11, fontweight="bold",
                        ha="center", va="center")
            mm = (np.asarray(display["affine"], float) @ np.r_[centre, 1.0])[fixed]
            # a text, not a title: matplotlib re-measures titles on every draw (most of this figure's cost)
            ax.text(0.5, 1.01, f"{name}, {plane} {'xyz'[fixed]} = {mm:.0f} mm", transform=ax.transAxes, fontsize=9,
                    ha="center", va="bottom")
            ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.15)
    fig.suptitle(f"native grid {' x '.join(f'{s:.2f}' for s in spacing)} mm; radiological view (patient right on the left); "
                 f"red: lesion{' (none found)' if not has_lesion else ''}", fontsize=9)
    out = _png(fig, tight=False)
    plt.close(fig)
    return out


def registration_rows(reg: dict | None) -> list[tuple[str, str]]:
    """The CT -> MR registration as table rows (what was done, how far it moved, whether it passed)."""
    if not isinstance(reg, dict) or not reg:
        return [("registration", "none (one modality, or registration off)")]
    q = reg.get("quality") or {}
    rows = [("method", reg.get("method", "-"))]
    if q:
        rows.append(("check", "passed" if q.get("passed") else f"FAILED: {'; '.join(q.get('reasons') or []) or 'see messages'}"))
    if reg.get("ct_from_mr") is not None:
        t = np.asarray(reg["ct_from_mr"], float)[:3, 3]
        rows.append(("translation (mm, x y z)", f"{' '.join(f'{v:+.1f}' for v in t)} (|t| = {reg.get('translation_mm', float(np.linalg.norm(t))):.1f})"))
    if "rotation_deg" in reg:
        rows.append(("rotation (degrees)", f"{reg['rotation_deg']:.2f}"))
    if "mi_header_only" in q:
        rows.append(("mutual information, headers only -> registered", f"{q['mi_header_only']:.3f} -> {q.get('mi_registered', float('nan')):.3f}"))
    for key, label in (("iterations", "iterations"), ("stop", "stopped because")):
        if key in q:
            rows.append((label, str(q[key])))
    if "seconds" in reg:
        rows.append(("seconds", f"{reg['seconds']:.2f}"))
    for key, value in reg.items():
        if key not in ("method", "quality", "ct_from_mr", "rotation_deg", "translation_mm", "seconds"):
            rows.append((key, str(value)))
    return rows


def _guard_text(record: dict | None) -> str:
    if not record or not record.get("method"):
        return "off"
    removed = record.get("removed_outside_ml") or 0
    return (f"{record['method']}; removed {removed} mL outside the intracranial volume" if removed
            else f"{record['method']}; nothing predicted outside the intracranial volume")


def _ood_text(record: dict | None) -> str:
    if not record:
        return "-"
    if record.get("flagged"):
        return f"FLAGGED: {record.get('reason')}"
    if "distance" in record:
        return f"in domain (distance {record['distance']} <= {record['threshold']})"
    return record.get("note") or record.get("reason") or "-"


def _table(rows) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def write_report(path: Path, findings: dict, display: dict | None, lesion: np.ndarray | None) -> None:
    """Self-contained HTML (atomic): the findings, native slices with the contour, the probabilities
    ("calibrated on synthetic data"), the registration table and every message."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    slices = slices_figure(display, lesion) if display else None
    if slices:
        figs.append(slices)
    probs = findings.get("probabilities") or {}
    if probs:
        fig, ax = plt.subplots(figsize=(5, 2.2))
        ax.barh(list(probs), list(probs.values()), color="#4a7ab0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability (calibrated on synthetic data)")
        figs.append(_png(fig))
        plt.close(fig)
    lesion_info = findings.get("lesion", {})
    summary = _table([
        ("study", findings.get("study")), ("status", findings.get("status")),
        ("result", findings.get("result")),
        ("diagnosis", findings.get("diagnosis") or f"withheld: {findings.get('diagnosis_withheld')}"),
        ("intracranial guard", _guard_text(findings.get("intracranial_guard"))),
        ("out-of-domain check", _ood_text(findings.get("out_of_domain"))),
        ("modalities used", ", ".join(findings.get("modalities_used", []))),
        ("modalities missing", ", ".join(findings.get("modalities_missing", [])) or "none"),
        ("flag", findings.get("flag") or "-"), ("lesion volume (mL)", lesion_info.get("volume_ml")),
        ("lesion centre (RAS mm)", lesion_info.get("centroid_ras_mm")),
        ("location", lesion_info.get("location")),
        ("model", (findings.get("model") or {}).get("version", "-") if isinstance(findings.get("model"), dict) else "-")])
    notes = "".join(f"<li>{html.escape(m)}</li>" for m in findings.get("messages", []))
    imgs = "".join(f'<img src="data:image/png;base64,{b}"/><br/>' for b in figs)
    atomic_write_text(path, f"""<!doctype html><html><head><meta charset="utf-8"><title>mmcore medical report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}} th{{text-align:left;padding-right:1em}}</style></head>
<body><h1>Study report</h1><p><b>{html.escape(findings.get("disclaimer") or "Research demo, not for clinical use.")}</b></p>{summary}
{imgs}<h3>Registration (CT to MR)</h3>{_table(registration_rows(findings.get("registration")))}
<h3>Notes</h3><ul>{notes or '<li>none</li>'}</ul></body></html>""")
