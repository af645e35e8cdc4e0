"""GNN training under ``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on GPUs).

    torchrun --standalone --nproc_per_node=2 -m apps.social.ddp --posts 800 --epochs 2 --out runs/social-ddp

Every rank builds the same synthetic graph (same seed), the shared Trainer gives each rank its
share of the seed posts (``DistributedSampler``), samples their neighbourhoods, and DDP averages
the gradients, so after training every rank must hold identical weights.  The script checks
exactly that (SHA-256 of each rank's state dict, gathered on rank 0) and writes
``OUT/ddp_report.json``; it exits 1 if the ranks disagree.  Without torchrun it runs as one
process (world size 1).  The model: text + user metadata + the 2-layer heterogeneous GNN.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mmcore.utils.io import atomic_write_json


def state_digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.social.ddp")
    p.add_argument("--posts", type=int, default=800)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="runs/social-ddp")
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    from mmcore.train import Trainer
    from mmcore.train.distributed import init_distributed

    from .dataset import SubgraphCollator, build_tensors, load_tables
    from .model import ModelConfig, SocialModel
    from .synthetic import SyntheticConfig, generate
    from .synthetic_io import write_canonical
    from .train import _metrics, default_train_config

    torch.set_num_threads(1)
    info = init_distributed(torch.device("cpu"))
    out = Path(args.out)
    data = generate(SyntheticConfig(n_posts=args.posts, image_missing=1.0, seed=0))
    data.posts["image_index"] = -1  # text + graph: no images to write per rank
    store = build_tensors(load_tables(write_canonical(data, out / f"data-rank{info.rank}", image_paths=[None] * args.posts)))
    torch.manual_seed(0)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    cfg = ModelConfig(task="post", n_classes=len(store.post_classes), text_dim=store.post["text"].shape[1], use_text=True,
                      use_meta=True, use_graph=True)
    model = SocialModel(cfg, list(store.graph.edge_index))
    collate = SubgraphCollator(store, "post", [10])
    tcfg = default_train_config(out_dir=str(out / "run"), epochs=args.epochs, batch_size=args.batch_size, device="cpu",
                                patience=None, monitor="val_accuracy", monitor_mode="max", seed=0)
    trainer = Trainer(model, tcfg, store.seeds("post", "train"), store.seeds("post", "val"), collate_fn=collate,
                      metrics=_metrics(len(store.post_classes)), extra_config={"model": cfg.to_dict(), "sampler":
                                                                                collate.sampler_backend})
    result = trainer.fit()
    digest = state_digest(model)
    digests = [digest]
    if info.enabled:
        digests = [None] * info.world_size
        dist.all_gather_object(digests, digest)
    identical = len(set(digests)) == 1
    if info.is_main:
        report = {"world_size": info.world_size, "backend": dist.get_backend() if info.enabled else None,
                  "steps_per_rank": result.step, "train_posts": len(store.seeds("post", "train")),
                  "val_accuracy": result.last_metrics.get("val_accuracy"), "weight_sha256_per_rank": digests,
                  "identical_weights": identical, "sampler": collate.sampler_backend}
        atomic_write_json(out / "ddp_report.json", report)
        print(json.dumps(report, indent=1))
    if info.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return 0 if identical else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
