"""Save and load a :class:`MultimodalModel`: ``model.safetensors`` + ``config.json`` in a folder,
both written atomically; loading never unpickles anything."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..train import UnsafeCheckpointError, atomic_write_json, load_weights, save_weights
from .config import ModelConfig
from .multimodal import MultimodalModel

FORMAT = "mmcore.MultimodalModel/1"


def save_model(model: MultimodalModel, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json``; returns the folder."""
    if model.config is None:
        raise ValueError("this model was not built from a ModelConfig; build it with MultimodalModel.from_config to save it")
    directory = Path(directory)
    save_weights(model, directory / "model.safetensors", metadata={"format": FORMAT})
    atomic_write_json(directory / "config.json", {"format": FORMAT, "model": model.config.to_dict(), **(extra or {})})
    return directory


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> MultimodalModel:
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"no config.json in {directory} (expected a folder written by save_model)")
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    if "model" not in data:
        raise ValueError(f"{config_path}: no 'model' section")
    model = MultimodalModel.from_config(ModelConfig.from_dict(data["model"]))
    try:
        load_weights(model, directory / "model.safetensors", device=device)
    except UnsafeCheckpointError:
        raise   # a refused file says it was refused and why, never "does not match"
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise RuntimeError(f"weights in {directory / 'model.safetensors'} do not match the model described by "
                           f"{config_path}: {' '.join(first)}") from None
    return model.to(device).eval()
