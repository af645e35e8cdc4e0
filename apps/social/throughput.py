"""Posts per second for each pipeline stage at one data size (``mm bench social --throughput``).

| stage   | what is timed                                                                          |
|---------|----------------------------------------------------------------------------------------|
| ingest  | users CSV + posts JSONL + edges CSV through the generic adapters and streaming writer   |
| encode  | MiniLM text features through the disk cache: every post's text is hashed (SHA-256) and    |
|         | its embedding looked up; texts not in the cache would be encoded (``misses``, must be 0) |
| graph   | canonical tables -> heterograph, user metadata, post statistics, labels, splits, and   |
|         | the sampler's CSC index                                                                |
| train   | a fixed number of mini-batch steps of the fused model (sampled 1-hop subgraphs);       |
|         | posts/s = seed posts trained per second, so an epoch takes ``train posts / rate``       |
| predict | one full-graph forward pass, every post scored                                         |
| export  | predictions Parquet + CSV, the user graph as GEXF + GraphML                             |

The cache is warmed once, before any size, by :func:`warm_cache`: the generator draws every
post's text from a finite vocabulary (``synthetic_stream.text_vocabulary``), all of which is
encoded through mmcore's :class:`MiniLMEncoder` (the cold path: hash, dedupe, tokenise, forward,
pool, cache write), next to the encoder's own forward throughput on the same texts.  Each size runs in a
fresh process so ``peak_rss_mb`` is that size's own.
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

from mmcore.utils.io import atomic_write_json


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_minilm_rate(texts: list[str], batch_size: int = 64) -> float:
    """Sentences/s of the bare all-MiniLM-L6-v2: tokenise, forward, mean-pool (no cache, no hashing)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .text import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    with torch.inference_mode():
        model(**tok(texts[:8], padding=True, return_tensors="pt"))  # first call allocates
        t = time.perf_counter()
        for s in range(0, len(texts), batch_size):
            enc = tok(texts[s:s + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            (hidden * mask).sum(1) / mask.sum(1)
        return len(texts) / (time.perf_counter() - t)


def warm_cache(vocab: list[str], cache_dir: Path, raw_sample: int = 256) -> dict:
    """Encode every distinct text into the cache; measure the raw encoder before and after."""
    import shutil

    import torch

    from .text import encode_minilm, minilm_encoder

    shutil.rmtree(cache_dir, ignore_errors=True)
    sample = vocab[:: max(1, len(vocab) // raw_sample)][:raw_sample]
    raw_before = raw_minilm_rate(sample)
    enc = minilm_encoder(cache_dir)  # the model loads here, outside the timing, like the raw measurement
    t = time.perf_counter()
    encode_minilm(enc, vocab)
    seconds = time.perf_counter() - t
    raw_after = raw_minilm_rate(sample)
    raw = (raw_before + raw_after) / 2
    ours = len(vocab) / seconds
    return {"distinct_texts": len(vocab), "threads": torch.get_num_threads(), "warm_seconds": round(seconds, 1),
            "raw_minilm_sentences_per_s": round(raw, 1), "raw_minilm_runs": [round(raw_before, 1), round(raw_after, 1)],
            "our_encode_cold_sentences_per_s": round(ours, 1), "raw_over_ours": round(raw / ours, 3),
            "raw_sample": len(sample)}


def run_size(n_posts: int, work: Path, cache_dir: Path, train_steps: int = 20, batch_size: int = 512,
             vocab_size: int = 1024, seed: int = 0) -> dict:
    import shutil

    import pandas as pd
    import torch
    import torch_geometric  # noqa: F401  a one-off import (seconds on a busy box) must not count as a stage

    from .dataset import SubgraphCollator, build_tensors, load_tables
    from .graph import to_networkx
    from .ingest import CanonicalWriter, ingest_file
    from .model import ModelConfig, SocialModel
    from .outputs import prediction_frame, write_gephi, write_table
    from .synthetic_stream import MAPPING, StreamConfig, write_stream
    from .text import encode_minilm, minilm_encoder
    from .train import predict

    torch.manual_seed(seed)
    shutil.rmtree(work, ignore_errors=True)
    times, rss = {}, {}

    def stage(name: str, t0: float) -> None:
        times[name] = time.perf_counter() - t0
        rss[name] = round(_rss_mb())

    t = time.perf_counter()
    raw = write_stream(StreamConfig(n_posts=n_posts, vocab_size=vocab_size, seed=seed), work / "raw")
    generate_s = time.perf_counter() - t
    rss["generate"] = round(_rss_mb())

    t = time.perf_counter()
    writer = CanonicalWriter(work / "data")
    ingest_file(writer, raw["users"], "csv", table="users")  # accounts first: their rows carry the metadata
    ingest_file(writer, raw["posts"], "jsonl", mapping=MAPPING)
    ingest_file(writer, raw["edges"], "csv", table="edges")
    stats = writer.close()
    stage("ingest", t)

    tables = load_tables(work / "data")
    t = time.perf_counter()
    enc = minilm_encoder(cache_dir)  # loading the model and the cache file is part of the stage
    text, present = encode_minilm(enc, tables["posts"].text.tolist())
    stage("encode", t)
    if enc.encoded_count:
        raise RuntimeError(f"{enc.encoded_count} texts were not in the warm cache {cache_dir}")

    t = time.perf_counter()
    store = build_tensors(tables, text_features=(text, present))
    no_image = torch.zeros(len(store.posts), dtype=torch.bool)  # no images in this data: every image is masked
    store.add_post_modality("image", torch.zeros(len(store.posts), 32), no_image)
    collate = SubgraphCollator(store, "post", [15])
    stage("graph", t)
    del text

    cfg = ModelConfig(n_classes=len(store.post_classes), text_dim=store.post["text"].shape[1], use_text=True, use_image=True,
                      use_graph=True, use_meta=True)
    model = SocialModel(cfg, list(store.graph.edge_index))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seeds = store.seeds("post", "train")
    order = seeds[torch.randperm(len(seeds), generator=torch.Generator().manual_seed(seed))]
    steps = min(train_steps, len(order) // batch_size)
    t = time.perf_counter()
    losses = []
    for s in range(steps):
        batch = collate(order[s * batch_size:(s + 1) * batch_size].tolist())
        loss = torch.nn.functional.cross_entropy(model(batch), batch.fields["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    stage("train", t)
    trained = steps * batch_size

    t = time.perf_counter()
    probs = predict(model, store, "post")
    stage("predict", t)

    t = time.perf_counter()
    frame = prediction_frame(store.posts.post_id, store.post_split, store.post_label.numpy(), store.post_classes,
                             {"fused": probs}, "post_id")
    write_table(frame, work / "export", "post_predictions")
    write_gephi(to_networkx(store.graph), work / "export")
    stage("export", t)

    per_stage_posts = {k: (trained if k == "train" else n_posts) for k in times}
    row = {"posts": n_posts, "users": int(len(store.graph.user_ids)),
           "edges": int(sum(v.shape[1] for k, v in store.graph.edge_index.items() if not k[1].startswith("rev_"))),
           "ingest_lines": stats.lines, "distinct_texts": int(pd.Series(tables["posts"].text).nunique()),
           "cache_misses": enc.encoded_count, "sampler": collate.sampler_backend, "train_steps": steps, "train_seed_posts": trained,
           "train_loss_first_last": [round(losses[0], 3), round(losses[-1], 3)] if losses else None,
           "generate_s": round(generate_s, 1)}
    row.update({f"{k}_s": round(v, 2) for k, v in times.items()})
    row.update({f"{k}_posts_per_s": round(per_stage_posts[k] / v, 1) for k, v in times.items()})
    row.update({f"{k}_peak_rss_mb": v for k, v in rss.items()})
    shutil.rmtree(work, ignore_errors=True)
    return row


STAGES = ("ingest", "encode", "graph", "train", "predict", "export")


def scaling_table(rows: list[dict]) -> str:
    """posts/s per stage, and each size's time per post relative to the smallest size (1.0 = linear)."""
    base = rows[0]
    head = f"{'stage':<8}" + "".join(f"{r['posts']:>14,}" for r in rows) + "".join(
        f"{'x per post ' + _short(r['posts']):>16}" for r in rows[1:])
    lines = [head]
    for s in STAGES:
        rates = [r[f"{s}_posts_per_s"] for r in rows]
        ratios = [base[f"{s}_posts_per_s"] / r for r in rates[1:]]  # (time/post at N) / (time/post at base)
        lines.append(f"{s:<8}" + "".join(f"{v:>14,.1f}" for v in rates) + "".join(f"{v:>16.2f}" for v in ratios))
    return "\n".join(lines)


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def main_one(argv: list[str]) -> int:
    """Entry point of the per-size subprocess: ``--one N --work W --cache C --json OUT``."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--one", type=int, required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    row = run_size(a.one, Path(a.work), Path(a.cache), a.train_steps, vocab_size=a.vocab)
    atomic_write_json(a.json, row)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main_one(sys.argv[1:]))
