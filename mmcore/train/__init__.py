"""The shared trainer: AMP, accumulation, clipping, schedules, torchmetrics, early stopping,
atomic safetensors checkpoints with exact resume, and DDP under torchrun."""
from .checkpoint import (
    CheckpointManager,
    UnsafeCheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights,
    safe_torch_load,
    save_weights,
)
from .config import TrainConfig, add_train_arguments, config_from_args
from .trainer import StepOutput, Trainer, TrainResult, classification_step

__all__ = [
    "Trainer", "TrainConfig", "TrainResult", "StepOutput", "classification_step",
    "add_train_arguments", "config_from_args", "CheckpointManager", "UnsafeCheckpointError",
    "save_weights", "load_weights", "safe_torch_load",
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
]
