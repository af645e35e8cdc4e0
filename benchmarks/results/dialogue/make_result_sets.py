"""The result folders `mm dialogue results-eval` was scored on (docs/dialogue.md, "talk with your results").

    python benchmarks/results/dialogue/make_result_sets.py OUT [medical|social|both]

OUT/med/sNN: 24 `mm medical analyze` outputs (`write_study` seeds 424242 and 5001-5023, labels
cycling through the 4 classes, every 7th as DICOM, CT removed from 3 and MR from 1);
OUT/socialS: 5 `mm social demo` reports (400 posts, seeds 0-4, one epoch, the quick model set).
Then: mm dialogue results-eval --medical OUT/med --social OUT/social0 ... --social OUT/social4
"""
import sys
import time
from pathlib import Path

import torch


def medical(root: Path) -> None:
    from apps.medical.analyze import analyze_study, load_model
    from apps.medical.demo_data import write_study

    model = load_model()
    for i in range(24):
        t0 = time.time()
        drop = {2: "ct", 5: "ct", 9: "mr", 14: "ct"}.get(i)
        study = write_study(root / "studies", f"s{i}", 424242 if i == 0 else 5000 + i, label=i % 4,
                            fmt="dicom" if i % 7 == 0 else "nifti")
        f = analyze_study(study["study"], root / "med" / f"s{i:02d}", model, drop=drop)
        print(i, f["status"], f.get("diagnosis"), f.get("diagnosis_withheld"), f"{time.time() - t0:.1f} s", flush=True)


def social(root: Path) -> None:
    from apps.social import cli

    for seed in range(5):
        cli.demo(root / f"social{seed}", "cpu", n_posts=400, epochs=1, zero_shot=False, quick=True, seed=seed)
        print("social", seed, flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, which = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "both")
    if which in ("medical", "both"):
        medical(out)
    if which in ("social", "both"):
        social(out)
