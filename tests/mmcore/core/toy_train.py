"""A small training run driven by the tests as a subprocess (resume and torchrun tests).

Writes rank<r>.safetensors (every rank) and result.json (rank 0) into --out.
"""
import argparse
import json
import os
import time

import torch
from safetensors.torch import save_file
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from mmcore.data import MultimodalBatch, MultimodalCollator, ToyMultimodalDataset
from mmcore.train import TrainConfig, Trainer

DIMS = {"image": 16, "text": 8}


class DropoutFusion(nn.Module):
    """Masked-mean fusion with dropout, so the resume test depends on the RNG state."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Dropout(0.2)) for m, d in DIMS.items()})
        self.head = nn.Linear(32, 3)

    def forward(self, batch: MultimodalBatch) -> torch.Tensor:
        total, count = 0.0, 0.0
        for m, enc in self.enc.items():
            w = batch.mask(m).unsqueeze(-1).float()
            total = total + enc(batch[m]) * w
            count = count + w
        return self.head(total / count.clamp(min=1))


class Delay:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer) -> None:
        time.sleep(self.seconds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    train = ToyMultimodalDataset(768, DIMS, noise=3.0, missing_rate=0.3, seed=0)
    val = ToyMultimodalDataset(256, DIMS, noise=3.0, missing_rate=0.3, seed=1)
    torch.manual_seed(0)
    model = DropoutFusion()
    cfg = TrainConfig(out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=3e-3,
                      accumulate=args.accumulate, checkpoint_every=args.checkpoint_every, amp=args.amp,
                      device="cpu", monitor="val_accuracy", monitor_mode="max", progress=False, seed=7,
                      warmup_steps=5, keep_checkpoints=3)
    trainer = Trainer(model, cfg, train, val, collate_fn=MultimodalCollator(DIMS), metrics=MulticlassAccuracy(3),
                      callbacks=[Delay(args.delay)] if args.delay else [])
    result = trainer.fit(resume=args.resume)
    rank = trainer.dist.rank
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, f"rank{rank}.safetensors"))
    if rank == 0:
        train_losses = [r["loss"] for r in result.history if r.get("split") == "train"]
        with open(os.path.join(args.out, "result.json"), "w") as fh:
            json.dump({"metrics": result.last_metrics, "step": result.step, "train_losses": train_losses,
                       "world_size": trainer.dist.world_size}, fh)


if __name__ == "__main__":
    main()
