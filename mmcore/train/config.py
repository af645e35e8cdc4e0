"""The trainer's typed config; saved as JSON beside every checkpoint."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    out_dir: str = "runs/run"
    epochs: int = 10
    max_steps: int | None = None          # stop after this many optimizer steps, whatever the epoch
    batch_size: int = 32                  # per process
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"              # adamw | sgd
    schedule: str = "cosine"              # constant | cosine | linear (all after warmup)
    warmup_steps: int = 0
    grad_clip: float | None = 1.0         # max global grad norm; None disables
    accumulate: int = 1                   # micro-batches per optimizer step
    amp: bool = False                     # bf16 autocast (CPU and CUDA)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 0             # optimizer steps between checkpoints; 0 = at epoch ends only
    keep_checkpoints: int = 2
    monitor: str | None = None            # e.g. "val_accuracy"; None = val_loss when there is val data
    monitor_mode: str = "max"             # max | min
    patience: int | None = None           # epochs without improvement before stopping; None = never
    eval_every_epochs: int = 1
    log_every: int = 10                   # optimizer steps between train-loss rows in the CSV
    progress: bool = True
    max_nonfinite_steps: int = 10         # consecutive skipped (NaN/inf) steps that stop the run; 0 = never stop
    find_unused_parameters: bool | None = None   # DDP: None = detect on the first step (warns, names them)

    def __post_init__(self) -> None:
        if self.accumulate < 1:
            raise ValueError("accumulate must be >= 1")
        if self.schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"unknown schedule '{self.schedule}' (constant, cosine, linear)")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"unknown optimizer '{self.optimizer}' (adamw, sgd)")
        if self.monitor_mode not in ("max", "min"):
            raise ValueError("monitor_mode must be 'max' or 'min'")
        if self.max_nonfinite_steps < 0:
            raise ValueError("max_nonfinite_steps must be >= 0 (0 = never stop)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


def add_train_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """Add the common training flags (``--epochs``, ``--lr``, ``--resume`` ...) to an app's parser."""
    d = defaults or TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--out", dest="out_dir", default=d.out_dir, help="run directory (checkpoints, logs, curves)")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--max-steps", type=int, default=d.max_steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--schedule", default=d.schedule, choices=["constant", "cosine", "linear"])
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip)
    g.add_argument("--accumulate", type=int, default=d.accumulate)
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=d.amp, help="bf16 autocast")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--num-workers", type=int, default=d.num_workers)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    g.add_argument("--patience", type=int, default=d.patience)
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from parsed flags, other fields from ``base``."""
    data = (base or TrainConfig()).to_dict()
    for key in data:
        if hasattr(args, key):
            data[key] = getattr(args, key)
    return TrainConfig.from_dict(data)
