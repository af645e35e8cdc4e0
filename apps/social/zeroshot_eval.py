"""Zero-shot agreement on the demo generator against the abstention margin, seed by seed.

    python -m apps.social.zeroshot_eval --seeds 0,1,2,3,4 --margins 0,0.05,0.08,0.1

For each seed: the demo's data (``SyntheticConfig(n_posts=3000, bot_frac=0.15, seed)``), its first
``--posts`` posts with text, zero-shot labels ``misinformation,reliable`` at each margin; printed:
the share answered, agreement with the true label on the answered posts, and the share of answered
posts that carry a class phrase (group T: the only posts whose text says which class they are).
The default margin of ``mm social analyze --zero-shot-margin`` was chosen on seed 0 alone; the
other seeds are the held-out check.
"""
from __future__ import annotations

import argparse

import numpy as np

from .synthetic import LABELS, SyntheticConfig, generate
from .zeroshot import zero_shot

NAMES = ["misinformation", "reliable"]


def sweep(seed: int, margins: list[float], n_posts: int = 300, encoder=None) -> list[dict]:
    data = generate(SyntheticConfig(n_posts=3000, bot_frac=0.15, seed=seed))
    df = data.posts.merge(data.truth, on="post_id")
    df = df[df.text.notna() & (df.text.str.len() > 0)].head(n_posts)
    truth, group = df.y_true.to_numpy(), df.group.to_numpy()
    as_label = np.array([LABELS.index(n) for n in NAMES])
    rows = []
    for margin in margins:
        pred, _ = zero_shot(df.text.tolist(), NAMES, encoder=encoder, abstain_margin=margin)
        ok = pred >= 0
        rows.append({"seed": seed, "margin": margin, "answered": float(ok.mean()),
                     "agreement": float((as_label[pred[ok]] == truth[ok]).mean()) if ok.any() else float("nan"),
                     "class_phrase_share": float((group[ok] == "T").mean()) if ok.any() else float("nan")})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.social.zeroshot_eval", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--margins", default="0,0.05,0.08,0.1")
    p.add_argument("--posts", type=int, default=300)
    args = p.parse_args(argv)
    from .text import minilm_encoder

    encoder = minilm_encoder()
    print("| seed | margin | answered | agreement (answered) | answered posts with a class phrase |")
    print("|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        for r in sweep(seed, [float(m) for m in args.margins.split(",")], args.posts, encoder):
            print(f"| {r['seed']} | {r['margin']:.2f} | {r['answered']:.2f} | {r['agreement']:.3f} | "
                  f"{r['class_phrase_share']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
