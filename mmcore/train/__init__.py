"""The shared trainer: AMP, accumulation, clipping, schedules, torchmetrics, early stopping,
atomic safetensors checkpoints with exact resume, and DDP under torchrun.

Names are imported lazily so that command-line parsers can use ``add_train_arguments`` and
``TrainConfig`` without paying for ``import torch``.
"""
from importlib import import_module

_EXPORTS = {
    "TrainConfig": "config", "add_train_arguments": "config", "config_from_args": "config",
    "Trainer": "trainer", "TrainResult": "trainer", "StepOutput": "trainer", "classification_step": "trainer",
    "CheckpointManager": "checkpoint", "UnsafeCheckpointError": "checkpoint", "save_weights": "checkpoint",
    "load_weights": "checkpoint", "safe_torch_load": "checkpoint", "atomic_write_bytes": "mmcore.utils.io",
    "atomic_write_text": "mmcore.utils.io", "atomic_write_json": "mmcore.utils.io",
    "NonFiniteTrainingError": "guards",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = _EXPORTS[name]
        value = getattr(import_module(module if "." in module else f".{module}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
