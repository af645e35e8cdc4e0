"""The torture lane's training run (issue 14), launched by test_torture.py under torchrun.

One module trains, in one Trainer, everything that used to break resume or DDP at once:

* a MultimodalModel with token encoders and the cross-modal transformer fusion (classification,
  on rows that have at least one modality);
* an xID memory-bank loss over the same per-modality features (generators in the state dict);
* MVAE, MMVAE and MoPoE from mmcore.generative, at a β from a KL annealer (a checkpointed callback);

on batches where random rows lack random modalities, some rows all of them, with one DataLoader
worker per rank and random per-item augmentation.  Writes rank<r>.safetensors (every rank) and
result.json (rank 0) into --out.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from mmcore.data import MultimodalCollator
from mmcore.generative import MMVAE, MVAE, KLAnnealing, MoPoE
from mmcore.models import EncoderConfig, FusionConfig, HeadConfig, ModelConfig, MultimodalModel
from mmcore.represent.xid import XIDLoss
from mmcore.train import StepOutput, TrainConfig, Trainer

DIMS = {"a": 6, "b": 4}
N = 96


class Items(torch.utils.data.Dataset):
    """Two modalities from one class signal; each missing with p = 0.4 (so ~16% of rows have none);
    every draw of augmentation noise comes from the global RNG inside ``__getitem__``."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.label = torch.randint(3, (N,), generator=g)
        means = {m: torch.randn(3, d, generator=g) for m, d in DIMS.items()}
        self.x = {m: means[m][self.label] + 0.5 * torch.randn(N, d, generator=g) for m, d in DIMS.items()}
        self.keep = torch.rand(N, len(DIMS), generator=g) >= 0.4

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict:
        item = {"label": self.label[i], "index": i}
        for j, m in enumerate(DIMS):
            item[m] = self.x[m][i] + 0.2 * torch.randn(DIMS[m]) if self.keep[i, j] else None
        return item


class Torture(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        config = ModelConfig(modalities={m: EncoderConfig(d, 8, "tokens", {"num_tokens": 2}) for m, d in DIMS.items()},
                             fusion=FusionConfig("cross_modal", 8, {"heads": 2}), head=HeadConfig(3, hidden=8))
        self.classifier = MultimodalModel.from_config(config)
        self.xid = XIDLoss(N, 8, modalities=("a", "b"), num_negatives=8, temperature=0.2)
        vae = dict(latent_dim=4, hidden=16, likelihood="gaussian", sigma=0.5)
        self.vaes = nn.ModuleDict({"mvae": MVAE(DIMS, **vae), "mmvae": MMVAE(DIMS, samples=2, **vae),
                                   "mopoe": MoPoE(DIMS, **vae)})

    def forward(self, batch, beta: float) -> torch.Tensor:
        features, present, _ = self.classifier.encode(batch)
        logits = self.classifier.head(self.classifier.fusion(features, present))
        any_row = torch.stack([batch.mask(m) for m in DIMS]).any(0)
        loss = F.cross_entropy(logits[any_row], batch.fields["label"][any_row])
        pooled = {m: f.mean(1) for m, f in features.items()}
        if len(pooled) == len(DIMS):
            loss = loss + 0.1 * self.xid(pooled, batch.fields["index"], present=present)
        for vae in self.vaes.values():
            loss = loss + 0.01 * vae(batch, beta).loss
        return loss


class HangAt:
    """Writes the step reached to ``progress`` and stops dead at ``step`` (to be killed there)."""

    def __init__(self, out: str, step: int) -> None:
        self.out, self.step = out, step

    def on_step_end(self, trainer) -> None:
        if trainer.step == self.step:
            # torchrun starts each rank in its own session: the test needs the ranks' pids to kill them
            with open(os.path.join(self.out, f"pid-rank{trainer.dist.rank}"), "w") as fh:
                fh.write(str(os.getpid()))
            if trainer.dist.is_main:
                with open(os.path.join(self.out, "progress"), "w") as fh:
                    fh.write(str(trainer.step))
            time.sleep(600)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--hang-at", type=int, default=0, help="stop dead after this optimizer step (to be killed)")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.device == "cuda":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    model = Torture()
    annealer = KLAnnealing("linear", warmup_steps=10)

    def step(m, batch):
        return StepOutput(m(batch, annealer.beta))

    cfg = TrainConfig(out_dir=args.out, epochs=2, batch_size=8, lr=3e-3, device=args.device, progress=False, seed=5,
                      checkpoint_every=4, num_workers=1, keep_checkpoints=10, schedule="cosine", warmup_steps=2)
    callbacks = [annealer] + ([HangAt(args.out, args.hang_at)] if args.hang_at else [])
    trainer = Trainer(model, cfg, Items(), collate_fn=MultimodalCollator(DIMS, shapes={m: (d,) for m, d in DIMS.items()}),
                      step_fn=step, callbacks=callbacks)
    result = trainer.fit(resume=args.resume)
    rank = trainer.dist.rank
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, f"rank{rank}.safetensors"))
    if rank == 0:
        with open(os.path.join(args.out, "result.json"), "w") as fh:
            json.dump({"step": result.step, "skipped": trainer.guard.skipped, "world_size": trainer.dist.world_size,
                       "beta": annealer.beta, "train_losses": [r["loss"] for r in result.history if r["split"] == "train"]},
                      fh)


if __name__ == "__main__":
    main()
