"""`mm medical train` flags, kept free of torch so `mm --help` stays fast."""
from __future__ import annotations


def add_arguments(parser) -> None:
    import argparse

    from mmcore.train import TrainConfig, add_train_arguments

    parser.add_argument("--data", required=True, help="folder with datalist.json (or where to generate one)")
    parser.add_argument("--generate", default=None, help="N_TRAIN,N_VAL,N_TEST demo studies to create when --data has none")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="preprocessed-case cache (default DATA/cache)")
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
    add_train_arguments(parser, TrainConfig(out_dir="runs/medical", epochs=12, batch_size=4, lr=3e-3))
