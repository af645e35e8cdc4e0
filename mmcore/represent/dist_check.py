"""Check the distributed contrastive losses: run under torchrun (2 ranks, gloo) or alone.

    python -m torch.distributed.run --nproc_per_node=2 mmcore/represent/dist_check.py out.json
    python mmcore/represent/dist_check.py single.json

computes CLIP/SigLIP loss and gradients on one seeded batch (two rows absent).

Each rank takes its slice of the batch; gradients of a shared linear encoder are averaged across
ranks the way DDP does.  Writes JSON with the loss (mean over ranks), the parameter gradients and
this batch's embedding gradients (rank-ordered) to the path in argv[1].
"""
import json
import os
import sys

import torch
import torch.distributed as dist

from mmcore.represent.contrastive import ClipLoss, SigLipLoss


def main(out_path: str) -> None:
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    with torch.random.fork_rng(devices=[]):     # called in-process by a test: leave its RNG alone
        torch.manual_seed(0)
        x, y = torch.randn(8, 6), torch.randn(8, 4)
        enc_a, enc_b = torch.nn.Linear(6, 5), torch.nn.Linear(4, 5)
    present = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    result = {}
    for name, loss_fn in (("clip", ClipLoss(label_smoothing=0.1)), ("siglip", SigLipLoss())):
        for p in [*enc_a.parameters(), *enc_b.parameters(), *loss_fn.parameters()]:
            p.grad = None
        a, b = enc_a(x[rows]), enc_b(y[rows])
        a.retain_grad()
        loss = loss_fn(a, b, present=present[rows])
        loss.backward()
        params = [*enc_a.parameters(), *enc_b.parameters(), *loss_fn.parameters()]
        grads = [p.grad.clone() for p in params]
        feat_grad = a.grad / world          # see ClipLoss docstring: summed over ranks = world x global
        value = loss.detach().clone()
        if distributed:
            for g in grads:
                dist.all_reduce(g)
                g /= world                  # what DDP does
            dist.all_reduce(value)
            value /= world
            parts = [torch.empty_like(feat_grad) for _ in range(world)]
            dist.all_gather(parts, feat_grad)
            feat_grad = torch.cat(parts)
        result[name] = {"loss": value.item(), "param_grads": [g.flatten().tolist() for g in grads],
                        "feature_grad": feat_grad.tolist()}
    if rank == 0:
        with open(out_path, "w") as fh:
            json.dump(result, fh)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
