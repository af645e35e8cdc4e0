"""The model bundle on disk (MONAI bundle layout): export, load, warm-start from one.

Layout: ``configs/metadata.json`` (name, version, class names, metrics), ``configs/inference.json``
(network config, ROI, spacing, temperature) and ``models/model.safetensors`` (weights only: no
pickles are ever read). ``DEFAULT_BUNDLE`` is the shipped ``data/medical/model``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .model import FusionSegDiagNet
from .phantom import CLASS_NAMES

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "data" / "medical" / "model"


def export_bundle(model: FusionSegDiagNet, out: Path, metrics: dict | None = None, note: str = "") -> Path:
    """MONAI bundle layout: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.safetensors``."""
    from mmcore.train import atomic_write_json, atomic_write_text, save_weights

    from .transforms import CT_WINDOW, ROI, SPACING

    out = Path(out)
    save_weights(model, out / "models" / "model.safetensors", metadata={"format": "apps.medical.FusionSegDiagNet"})
    atomic_write_json(out / "configs" / "metadata.json", {
        "name": "mmcore medical CT+MR fusion (demo phantoms)", "version": "0.1.0",
        "task": "lesion segmentation + 4-class diagnosis from MR and/or CT",
        "network_data_format": {"inputs": {"mr": {"shape": [1, *ROI], "spacing_mm": SPACING},
                                           "ct": {"shape": [1, *ROI], "window_hu": CT_WINDOW}},
                                "outputs": {"seg": {"channels": 2}, "logits": {"classes": 4}}},
        "class_names": list(CLASS_NAMES), "metrics": metrics or {},
    })
    atomic_write_json(out / "configs" / "inference.json", {"model": model.config, "roi": list(ROI), "spacing": list(SPACING),
                                                          "temperature": float(model.temperature)})
    if note:
        atomic_write_text(out / "docs" / "README.md", note)
    return out


def load_bundle(path: Path | str, device: str = "cpu") -> FusionSegDiagNet:
    """The network of a bundle folder, weights loaded (safetensors only), in eval mode on ``device``."""
    from mmcore.train import load_weights

    path = Path(path)
    cfg = json.loads((path / "configs" / "inference.json").read_text())
    m = cfg["model"]
    # bundles written before ``gmu_levels`` existed fused levels 1 and 2 with a GMU
    model = FusionSegDiagNet(tuple(m["modalities"]), m["fusion"], tuple(m["channels"]), m["hidden"], m["n_classes"],
                             gmu_levels=tuple(m.get("gmu_levels", (1, 2))))
    load_weights(model, path / "models" / "model.safetensors", device=str(device))
    return model.to(device).eval()


def bundle_metrics(path: Path | str) -> dict:
    """The ``metrics`` recorded in a bundle's ``configs/metadata.json`` ({} when there is none)."""
    meta = Path(path) / "configs" / "metadata.json"
    return json.loads(meta.read_text()).get("metrics", {}) if meta.exists() else {}


def init_weights(model: FusionSegDiagNet, path: Path) -> list[str]:
    """Copy every tensor of ``path`` (bundle folder or .safetensors) whose name and shape fit ``model``;
    returns the names that did not fit (logged): fine-tuning from a related checkpoint."""
    from safetensors.torch import load_file

    path = Path(path)
    file = path / "models" / "model.safetensors" if path.is_dir() else path
    if not file.exists():
        raise SystemExit(f"--init {path}: no weights at {file}")
    source, own = load_file(str(file)), model.state_dict()
    fit = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape and k != "temperature"}
    skipped = sorted(set(source) - set(fit) - {"temperature"})
    model.load_state_dict(fit, strict=False)
    log.info("initialised %d tensors from %s%s", len(fit), file, f"; skipped {skipped}" if skipped else "")
    return skipped
