"""``mm bench social``: stage throughput (posts/s) at several sizes, and the acceptance figures.

    mm bench social --throughput --sizes 10000,100000,1000000
    mm bench social --acceptance --posts 20000

Throughput stages: ingest (generic JSONL, streaming writer), encode (hashed text features; the
MiniLM encoder's own rate and the warm-cache rate are measured on a sample), graph (heterograph +
features), train (one epoch of the fused model, sampled mini-batches), predict (one full-graph
pass), export (predictions Parquet + CSV, users GEXF).  Posts carry no images here (image decoding
is measured by the acceptance run); results go to ``benchmarks/results/social/``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path("benchmarks/results/social")


def _timer():
    t = time.perf_counter()
    return lambda: time.perf_counter() - t


def throughput(n_posts: int, work: Path, minilm_sample: int = 128) -> dict:
    import torch

    from .dataset import build_tensors, load_tables
    from .graph import to_networkx
    from .ingest import ingest
    from .model import ModelConfig, SocialModel
    from .outputs import prediction_frame, write_gephi, write_table
    from .synthetic import SyntheticConfig, generate
    from .synthetic_io import GENERIC_MAPPING, write_follows, write_generic
    from .text import MiniLMEncoder
    from .train import predict
    from .dataset import SubgraphCollator

    work.mkdir(parents=True, exist_ok=True)
    t = _timer()
    data = generate(SyntheticConfig(n_posts=n_posts, image_missing=1.0, seed=0))
    data.posts["image_index"] = -1
    write_generic(data, work)
    follows = write_follows(data, work)
    gen_s = t()
    times = {}
    t = _timer()
    ingest([work / "posts.jsonl"], work / "data", mapping=GENERIC_MAPPING, labels=work / "labels.csv")
    ingest([follows], work / "follows", table="edges")
    times["ingest"] = t()
    import pandas as pd

    tables = load_tables(work / "data")
    tables["edges"] = pd.concat([tables["edges"], pd.read_parquet(work / "follows" / "edges.parquet")], ignore_index=True)
    t = _timer()
    store = build_tensors(tables)
    build_s = t()
    t = _timer()
    from .text import encode_texts

    encode_texts(store.posts.text.tolist())
    times["encode"] = t()
    times["graph"] = max(build_s - times["encode"], 1e-9)
    store.image_feat = torch.zeros(len(store.posts), 32)
    cfg = ModelConfig(n_classes=len(store.post_classes), text_dim=store.text.shape[1], use_text=True, use_image=True,
                      use_graph=True, use_meta=True)
    model = SocialModel(cfg, list(store.graph.edge_index))
    collate = SubgraphCollator(store, "post", [15])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seeds = store.seeds("post", "train")
    t = _timer()
    for s in range(0, len(seeds), 512):
        batch = collate(list(seeds[s:s + 512]))
        loss = torch.nn.functional.cross_entropy(model(batch), batch.fields["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    times["train"] = t() * len(store.posts) / max(1, len(seeds))  # per post of the whole set
    t = _timer()
    probs = predict(model, store, "post")
    times["predict"] = t()
    t = _timer()
    frame = prediction_frame(store.posts.post_id, store.post_split, store.post_label.numpy(), store.post_classes,
                             {"fused": probs}, "post_id")
    write_table(frame, work / "export", "post_predictions")
    write_gephi(to_networkx(store.graph), work / "export")
    times["export"] = t()
    row = {"posts": n_posts, "generate_s": round(gen_s, 2)}
    row.update({f"{k}_posts_per_s": round(n_posts / v, 1) for k, v in times.items()})
    texts = [t for t in store.posts.text.tolist() if isinstance(t, str)][:minilm_sample]
    enc = MiniLMEncoder(work / "cache")
    enc.embed(texts[:8])  # load the model outside the timing
    t = _timer()
    enc.embed(texts)
    row["minilm_encoder_sentences_per_s"] = round(len(texts) / t(), 1)
    t = _timer()
    enc.encode(texts)  # through the cache (cold: same work + hashing + shard write)
    row["minilm_cached_cold_per_s"] = round(len(texts) / t(), 1)
    t = _timer()
    enc.encode(texts * 50)
    row["minilm_cached_warm_per_s"] = round(len(texts) * 50 / t(), 1)
    return row


def acceptance(n_posts: int, work: Path, epochs: int = 12) -> dict:
    import torch

    from .dataset import build_tensors, load_tables
    from .synthetic import ceilings, generate
    from .synthetic_io import write_canonical
    from .train import default_train_config, train_all

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    t = _timer()
    data = generate(n_posts=n_posts, seed=0)
    write_canonical(data, work / "data")
    store = build_tensors(load_tables(work / "data"))
    report = train_all(store, work / "out", default_train_config(epochs=epochs, batch_size=512, device="cpu"), fanouts=(15,),
                       post_models=("image", "text", "graph", "fused"), user_models=("text", "metadata", "graph"))
    test = store.post_split == "test"
    labels, group = store.post_label.numpy(), data.truth.group.to_numpy()
    acc = {k: v["accuracy"] for k, v in report["post"].items()}
    xor = test & (group == "X")
    per_xor = {k: float((p.argmax(1)[xor] == labels[xor]).mean()) for k, p in report["post_probs"].items()}
    ceil = ceilings(data.truth, store.posts.post_id[test])
    best_uni = max(acc[k] for k in ("text", "image", "graph"))
    bots = report["user"]
    return {"posts": n_posts, "test_posts": int(test.sum()), "seconds": round(t(), 1), "accuracy": acc,
            "ceilings": ceil, "xor_accuracy": per_xor, "bots": bots,
            "checks": {"fused_minus_best_unimodal": acc["fused"] - best_uni,
                       "ceiling_minus_fused": ceil["all"] - acc["fused"],
                       "xor_fused": per_xor["fused"], "xor_late_fusion": per_xor.get("late_fusion"),
                       "bot_f1_graph_minus_text": bots["graph"]["f1_positive"] - bots["text"]["f1_positive"]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mm bench social")
    p.add_argument("--throughput", action="store_true")
    p.add_argument("--acceptance", action="store_true")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--posts", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--work", default="runs/bench-social")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (args.throughput or args.acceptance):
        args.throughput = True
    meta = {"machine": platform.platform(), "python": platform.python_version()}
    if args.acceptance:
        res = acceptance(args.posts, Path(args.work) / f"acceptance-{args.posts}", args.epochs)
        (out / f"acceptance_{args.posts}.json").write_text(json.dumps({**meta, **res}, indent=1))
        print(json.dumps(res["checks"], indent=1))
    if args.throughput:
        rows = []
        for n in [int(s) for s in args.sizes.split(",")]:
            rows.append(throughput(n, Path(args.work) / f"tp-{n}"))
            print(json.dumps(rows[-1]), flush=True)
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame.to_csv(out / "throughput.csv", index=False)
        _plot(frame, out / "throughput.png")
        print(frame.to_string(index=False))
    return 0


def _plot(frame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for col in [c for c in frame.columns if c.endswith("_posts_per_s")]:
        ax.plot(frame.posts, frame.posts / frame[col], marker="o", label=col.removesuffix("_posts_per_s"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("posts")
    ax.set_ylabel("seconds per stage")
    ax.set_title("social pipeline: time per stage (linear growth = slope 1)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
