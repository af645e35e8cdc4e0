"""Lesion Dice of a weights file on the validation studies of training caches (model grid, the largest
connected component, as inference keeps it), per set and per anatomy -- the check behind "randomised
validation Dice 0.144 (shipped) -> 0.416" in docs/medical.md.

    python benchmarks/results/medical/randomised_val_dice.py WEIGHTS.safetensors runs/med-rnd runs/med-train

Each folder is one that `mm medical train` cached (`datalist.json` + `cache/`); only studies with a lesion
are scored (a no-lesion study with a predicted lesion is counted apart)."""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from apps.medical.datasets import cached_dataset, collate_studies
from apps.medical.model import FusionSegDiagNet, keep_largest_lesion
from mmcore.train import load_weights


def validation_items(folder: Path) -> list[dict]:
    items = []
    for e in json.loads((folder / "datalist.json").read_text()).get("validation", []):
        cache = Path(e["cache"]) if "cache" in e else folder / "cache" / f"{e['id']}.safetensors"
        if cache.exists():
            meta = cache.with_suffix(".json")
            anatomy = json.loads(meta.read_text()).get("anatomy", "phantom") if meta.exists() else "phantom"
            items.append({"cache": str(cache), "label": int(e["label"]), "anatomy": anatomy.split()[0]})
    return items


@torch.no_grad()
def main(weights: str, *folders: str) -> None:
    torch.set_num_threads(1)
    model = FusionSegDiagNet()
    load_weights(model, weights)
    model.eval()
    for folder in map(Path, folders):
        items = validation_items(folder)
        ds = cached_dataset(items, augment=False)
        dice, false_alarms = defaultdict(list), 0
        for i, item in enumerate(items):
            batch = collate_studies([ds[i]])
            seg, _ = model.segment(*model.inputs(batch))
            pred = keep_largest_lesion(seg.softmax(1)[:, 1:2]) > 0.5
            true = batch.fields["seg"] > 0.5
            if true.any():
                dice[item["anatomy"]].append(float(2 * (pred & true).sum() / (pred.sum() + true.sum())))
            elif pred.any():
                false_alarms += 1
        every = [d for ds_ in dice.values() for d in ds_]
        per = ", ".join(f"{a} {sum(v) / len(v):.3f} ({len(v)})" for a, v in sorted(dice.items()))
        print(f"{folder}: {len(items)} validation studies, Dice {sum(every) / max(1, len(every)):.3f} over {len(every)} "
              f"with a lesion ({per}); lesion predicted on {false_alarms} without one")


if __name__ == "__main__":
    main(*sys.argv[1:])
