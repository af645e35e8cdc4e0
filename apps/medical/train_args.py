"""`mm medical train` flags and the typed config they become, kept free of torch so `mm --help` stays fast."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from mmcore.train.config import TrainConfig, add_train_arguments, config_from_args


def default_trainer_config(out_dir: str = "runs/medical") -> TrainConfig:
    """The shared Trainer's settings for stage 1 unless flags say otherwise (validation loss picks the best)."""
    return TrainConfig(out_dir=out_dir, epochs=12, batch_size=4, lr=3e-3, monitor="val_loss", monitor_mode="min",
                       checkpoint_every=0)


@dataclass
class MedicalTrainConfig:
    """Everything `mm medical train` needs; ``trainer`` holds the shared Trainer's settings (incl. device, seed)."""

    data: str                                       # folder with datalist.json (or where to generate one)
    generate: tuple[int, int, int] | None = None    # N_TRAIN, N_VAL, N_TEST demo studies when data has none
    randomized: tuple[int, int] | None = None       # N_TRAIN, N_VAL domain-randomised studies (apps.medical.randomized)
    data_seed: int = 0
    cache: str | None = None                        # preprocessed-case cache (default DATA/cache)
    extra_data: tuple[str, ...] = ()                # more datalist folders mixed into training/validation
    fusion: str = "gated"                           # gated | early
    modalities: tuple[str, ...] = ("mr", "ct")
    modality_dropout: float = 0.35
    lesion_weight: float = 5.0
    anneal_steps: int = 0
    patches: bool = False
    head_epochs: int = 150
    head_only: bool = False
    threads: int = 1
    init: str | None = None
    export: str | None = None
    resume: bool = False
    trainer: TrainConfig = field(default_factory=default_trainer_config)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "MedicalTrainConfig":
        """The CLI's conversion: parsed flags -> typed config (the Trainer part through mmcore's own helper)."""
        trainer = config_from_args(args, base=default_trainer_config(args.out_dir))
        trainer.eval_every_epochs = max(1, getattr(args, "eval_every_epochs", 1))
        generate = tuple(int(x) for x in args.generate.split(",")) if args.generate else None
        if generate is not None and len(generate) != 3:
            raise SystemExit(f"--generate {args.generate}: give N_TRAIN,N_VAL,N_TEST (three integers)")
        randomized = tuple(int(x) for x in args.randomized.split(",")) if getattr(args, "randomized", None) else None
        if randomized is not None and len(randomized) != 2:
            raise SystemExit(f"--randomized {args.randomized}: give N_TRAIN,N_VAL (two integers)")
        return cls(data=args.data, generate=generate, randomized=randomized, data_seed=args.data_seed, cache=args.cache,
                   extra_data=tuple(args.extra_data or ()), fusion=args.fusion,
                   modalities=tuple(args.modalities.split(",")), modality_dropout=args.modality_dropout,
                   lesion_weight=args.lesion_weight, anneal_steps=args.anneal_steps, patches=args.patches,
                   head_epochs=args.head_epochs, head_only=args.head_only, threads=args.threads, init=args.init,
                   export=args.export, resume=args.resume, trainer=trainer)


def add_device_argument(parser) -> None:
    """``--device auto|cpu|cuda[:N]``: ``auto`` is CUDA when a GPU is visible, else the CPU."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU) | cpu | cuda[:N]")


def device_from_arg(name: str) -> str:
    """The ``--device`` value resolved (mmcore's one rule); a wrong value exits with a one-line message."""
    from mmcore.utils.device import resolve_device

    try:
        return str(resolve_device(name))
    except (RuntimeError, ValueError) as exc:
        raise SystemExit(f"mm medical: {exc}") from None


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder with datalist.json (or where to generate one)")
    parser.add_argument("--generate", default=None, help="N_TRAIN,N_VAL,N_TEST demo studies to create when --data has none")
    parser.add_argument("--randomized", default=None,
                        help="N_TRAIN,N_VAL domain-randomised studies (many heads, contrasts, acquisitions, 0-3 lesions) "
                             "rendered into DATA/cache and used instead of DATA's datalist (resumable)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="preprocessed-case cache (default DATA/cache)")
    parser.add_argument("--extra-data", action="append", default=None, metavar="DIR",
                        help="another folder with datalist.json whose training/validation studies are mixed in "
                             "(cached in DIR/cache; repeatable), e.g. phantom studies beside --randomized ones")
    parser.add_argument("--fusion", default="gated", choices=["gated", "early"])
    parser.add_argument("--modalities", default="mr,ct", help="mr,ct | mr | ct (single-modality baselines)")
    parser.add_argument("--modality-dropout", type=float, default=0.35)
    parser.add_argument("--lesion-weight", type=float, default=5.0,
                        help="initial CE weight of the lesion class in the segmentation loss (class imbalance)")
    parser.add_argument("--anneal-steps", type=int, default=0,
                        help="lower the lesion weight linearly to 1 over this many steps (0: keep it)")
    parser.add_argument("--patches", action=argparse.BooleanOptionalAction, default=False,
                        help="stage 1 on 32^3 lesion-centred patches (4x cheaper steps, but the net learned a "
                             "patch-position shortcut: Dice 0 on whole volumes; default: whole volumes)")
    parser.add_argument("--head-epochs", type=int, default=150, help="stage 2: diagnosis head on frozen lesion features")
    parser.add_argument("--head-only", action="store_true", help="skip stage 1; reuse OUT/best/model.safetensors")
    parser.add_argument("--eval-every-epochs", type=int, default=1, help="validate every N epochs (and after the last)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--init", default=None,
                        help="start from these weights (a bundle folder or a .safetensors file); keys that do not fit are skipped")
    parser.add_argument("--export", default=None, help="copy the bundle here (e.g. data/medical/model)")
    add_device_argument(parser)
    add_train_arguments(parser, default_trainer_config())
