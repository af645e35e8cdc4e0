"""Training step time of the shipped network beside a MONAI ``UNet`` of similar width, same run, interleaved.

Both take the shipped training configuration's input: ``batch_size`` whole volumes of ``ROI``
(48x56x48 at 4 mm; ``configs``/``docs/config.json`` of the bundle), MR + CT. One step is forward +
loss + backward + AdamW step + zero_grad, one torch thread. Ours: :func:`apps.medical.train.make_step`
with the bundle's modality dropout, lesion weight and anneal (segmentation Dice + weighted CE + the
diagnosis CE). MONAI: ``UNet(3, 2, 2, channels, strides=(2, 2), num_res_units=...)`` on the stacked
channels with ``DiceCELoss``, segmentation only. Steps alternate (ours, each UNet, ours, ...) so machine
load drifts hit all alike; medians after one warm-up step each.

Three MONAI UNets (LeakyReLU, instance norm, like ours):

* ``resolution_matched`` (the headline): channels 8-16-32-32, strides 1-2-2, one residual unit:
  the same widths at the same grid levels as ours (8 channels at full resolution, 16 at 1/2, 32 at
  1/4), 107k parameters (ours: 148k, two encoders);
* ``same_widths_strided``: channels 8-16-32, strides 2-2 (MONAI's usual recipe; its first
  convolution already halves the grid, so no feature map at full resolution), 29k parameters;
* ``double_width``: channels 16-32-64, strides 2-2, one residual unit, 137k parameters.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch


def synthetic_batch(batch_size: int, seed: int = 0):
    """MR/CT-like volumes with a spherical lesion per row (timing does not depend on the values)."""
    from .datasets import collate_studies
    from .transforms import ROI

    g = torch.Generator().manual_seed(seed)
    zz, yy, xx = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in ROI), indexing="ij")
    items = []
    for i in range(batch_size):
        c = [s / 2 + float(torch.randint(-6, 7, (1,), generator=g)) for s in ROI]
        lesion = (((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 16).float()[None]
        mr = (0.5 + 0.1 * torch.randn(1, *ROI, generator=g) + 0.3 * lesion).clamp(0, 1.2)
        ct = (0.4 + 0.1 * torch.randn(1, *ROI, generator=g) + 0.4 * lesion).clamp(0, 1)
        items.append({"mr": mr, "ct": ct, "mask": lesion, "label": i % 4})
    return collate_studies(items)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


UNETS = {"resolution_matched": ((8, 16, 32, 32), (1, 2, 2), 1),
         "same_widths_strided": ((8, 16, 32), (2, 2), 0),
         "double_width": ((16, 32, 64), (2, 2), 1)}


def compare(bundle: Path | None = None, steps: int = 6, profile: bool = False) -> dict:
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    from .bundle import DEFAULT_BUNDLE
    from .model import FusionSegDiagNet
    from .train import make_step

    bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
    cfg_file = bundle / "docs" / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    m = cfg.get("model") or json.loads((bundle / "configs" / "inference.json").read_text())["model"]
    batch_size = int(cfg.get("train", {}).get("batch_size", 2))
    torch.manual_seed(0)
    ours = FusionSegDiagNet(tuple(m["modalities"]), m["fusion"], tuple(m["channels"]), m["hidden"], m["n_classes"],
                            gmu_levels=tuple(m.get("gmu_levels", (2,))))
    unets = {name: UNet(3, 2, 2, channels=ch, strides=st, num_res_units=r, act="LEAKYRELU", norm="INSTANCE")
             for name, (ch, st, r) in UNETS.items()}
    batch = synthetic_batch(batch_size)
    stacked = torch.cat([batch["mr"], batch["ct"]], 1)
    our_step = make_step(cfg.get("modality_dropout", 0.35), lesion_weight=cfg.get("lesion_weight", 5.0),
                         anneal_steps=cfg.get("anneal_steps", 0))
    unet_loss = DiceCELoss(to_onehot_y=True, softmax=True)
    runs = {"ours": (ours, lambda: our_step(ours, batch).loss)}
    for name, unet in unets.items():
        runs[f"monai_unet_{name}"] = (unet, lambda unet=unet: unet_loss(unet(stacked), batch.fields["seg"]))
    opts = {k: torch.optim.AdamW(model.parameters(), 1e-3) for k, (model, _) in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}

    def one(name: str) -> None:
        model, loss_fn = runs[name]
        model.train()
        w, c = time.perf_counter(), time.process_time()
        loss_fn().backward()
        opts[name].step()
        opts[name].zero_grad()
        times[name].append(time.perf_counter() - w)
        cpu[name].append(time.process_time() - c)

    for _ in range(steps + 1):          # first step of each is warm-up
        for name in runs:
            one(name)
    result = {"batch_size": batch_size, "roi": list(batch["mr"].shape[2:]), "steps": steps, "threads": torch.get_num_threads(),
              "params": {k: n_params(model) for k, (model, _) in runs.items()},
              "monai_unets": {name: f"UNet(3, 2, 2, channels={ch}, strides={st}, num_res_units={r}, LeakyReLU, instance "
                                    "norm) + DiceCELoss on stacked MR, CT" for name, (ch, st, r) in UNETS.items()},
              "seconds_median": {k: statistics.median(v[1:]) for k, v in times.items()},
              "cpu_seconds_median": {k: statistics.median(v[1:]) for k, v in cpu.items()},
              "seconds_all": {k: [round(x, 4) for x in v] for k, v in times.items()}}
    result["ratio_ours_over_unet"] = {name: result["seconds_median"]["ours"] / result["seconds_median"][f"monai_unet_{name}"]
                                      for name in UNETS}
    result["cpu_ratio_ours_over_unet"] = {
        name: result["cpu_seconds_median"]["ours"] / result["cpu_seconds_median"][f"monai_unet_{name}"] for name in UNETS}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        with prof(activities=[ProfilerActivity.CPU]) as p:
            one("ours")
        result["profile_ours"] = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return result


if __name__ == "__main__":
    import sys

    from .lean_import import import_monai_lean

    torch.set_num_threads(1)
    import_monai_lean()
    r = compare(steps=int(sys.argv[1]) if len(sys.argv) > 1 else 6, profile=True)
    print(r.pop("profile_ours"))
    print(json.dumps(r, indent=1))
