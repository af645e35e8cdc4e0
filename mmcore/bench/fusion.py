"""`mm bench fusion`: every fusion method and each unimodal baseline on the synthetic benchmark.

    mm bench fusion                      train all methods (fixed seeds), robustness table + plots
    mm bench fusion --attention-only     cross-modal attention vs nn.MultiheadAttention timing only
    mm bench fusion --methods early,late,tensor --max-steps 600   a subset, shorter

Writes ``benchmarks/results/fusion/``: ``results.json``, ``results.md`` (the table),
``noise_curves.png``, ``missing_subsets.png``, ``attention_timing.json``.  Each model trains with
the shared :class:`~mmcore.train.Trainer` (runs under ``--runs``, default ``runs/bench-fusion``).

Data: :class:`~mmcore.data.synthetic.SyntheticFactorDataset` with three modalities; training rows
miss each modality with probability 0.15 (never all), test rows have every modality and the
harness removes them.  Accuracy is reported overall and per part (shared / unique / interaction).
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data import MultimodalBatch
from ..data.synthetic import SyntheticFactorDataset
from ..eval.robustness import (
    effective_robustness,
    evaluate_robustness,
    plot_noise_curves,
    plot_subset_accuracies,
)
from ..models import EncoderConfig, FusionConfig, HeadConfig, ModelConfig, MultimodalModel
from ..train import TrainConfig, Trainer, atomic_write_json, atomic_write_text
from ._fusion_attention import MHACrossModalBaseline, time_attention  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

MODALITIES = ("a", "b", "c")
# methods whose fused vector can hold products of modalities (checked against late fusion on the
# XOR part); late, late_weighted and attention_weighted average per-modality outputs, so cannot
INTERACTION_CAPABLE = ("tensor", "low_rank", "transformer_early", "transformer_bottleneck", "transformer_late",
                       "cross_modal")


@dataclass
class Method:
    name: str
    fusion: str
    options: dict = field(default_factory=dict)
    encoder: str = "mlp"
    encoder_options: dict = field(default_factory=dict)
    width: int = 32
    modalities: tuple[str, ...] = MODALITIES
    steps_scale: float = 1.0                  # x --max-steps and x --min-steps (slow learners get more)
    lr: float | None = None                   # None: --lr
    batch_size: int | None = None             # None: --batch-size


def methods() -> list[Method]:
    tok = {"num_tokens": 1}
    # The transformers pool the mean of all tokens and normalise after pooling (pool_norm="after",
    # the module default): a direct path from every modality to the head.  Pooling CLS tokens
    # only, or normalising each token before averaging, left the XOR part at chance for
    # thousands of steps (docs/fusion.md, "Why the transformers were stuck").
    mean = {"heads": 2, "pool": "mean"}
    out = [Method(f"unimodal_{m}", "early", modalities=(m,)) for m in MODALITIES]
    out += [
        Method("early", "early"),
        Method("late", "late"),
        Method("late_weighted", "late", {"mode": "weighted"}),
        Method("tensor", "tensor", width=8),
        Method("low_rank", "low_rank", {"rank": 8}),
        Method("gmu", "gmu"),
        Method("nl_gate", "nl_gate", steps_scale=3.0),        # leaves its plateau after ~900 steps
        Method("attention_weighted", "attention_weighted"),
        Method("mfb", "mfb"),
        # lr 1e-3: at 3e-3 the blocks grow the additive (shared/unique) features so fast that, after
        # the pooled LayerNorm, the XOR part stays at chance (docs/fusion.md)
        Method("transformer_early", "transformer", {"mode": "early", "depth": 2, **mean}, "tokens", tok,
               steps_scale=3.0, lr=1e-3),
        Method("transformer_bottleneck", "transformer", {"mode": "bottleneck", "depth": 2, "n_bottleneck": 2, **mean},
               "tokens", tok, steps_scale=3.0, lr=1e-3),
        Method("transformer_late", "transformer", {"mode": "late", "depth": 1, **mean}, "tokens", tok,
               steps_scale=3.0, lr=1e-3),
        Method("cross_modal", "cross_modal", {"depth": 1, "heads": 2}, "tokens", tok, steps_scale=3.0),
        Method("modality_graph", "modality_graph", {"conv": "gcn"}, steps_scale=3.0),
        Method("sample_graph", "sample_graph", {"conv": "gcn", "k": 8}),
    ]
    return out


class _Rows(Dataset):
    """``length`` row indices cycling over ``rows``: one trainer "epoch" is ``length / batch`` steps,
    so validation (and the plateau check) runs every ``--eval-every`` steps."""

    def __init__(self, rows: torch.Tensor, length: int | None = None) -> None:
        self.rows = rows.tolist()                # plain ints: indexing a tensor per sample is slow
        self.length = len(self.rows) if length is None else length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> int:
        return self.rows[i % len(self.rows)]


class StopOnPlateau:
    """Trainer callback: stop once validation accuracy has not risen by ``min_delta`` for
    ``patience`` evaluations, but never before ``min_steps`` (attention models sit on a plateau
    with the interaction part at chance before they find it)."""

    def __init__(self, min_steps: int, patience: int, min_delta: float = 0.002) -> None:
        self.min_steps, self.patience, self.min_delta = min_steps, patience, min_delta
        self.best, self.stale = -1.0, 0

    def on_epoch_end(self, trainer) -> None:
        acc = trainer.last_metrics.get("val_accuracy")
        if acc is None:
            return
        if acc > self.best + self.min_delta:
            self.best, self.stale = acc, 0
        else:
            self.stale += 1
        if trainer.step >= self.min_steps and self.stale >= self.patience:
            trainer.stopped_early = True


class _Select:
    """collate_fn: a list of row indices -> those rows of the pooled batch (no per-sample work)."""

    def __init__(self, pool: MultimodalBatch) -> None:
        self.pool = pool

    def __call__(self, rows: list[int]) -> MultimodalBatch:
        return self.pool.select(torch.tensor(rows))


def model_config(method: Method, dim: int) -> ModelConfig:
    return ModelConfig(
        modalities={m: EncoderConfig(dim, method.width, method.encoder, dict(method.encoder_options))
                    for m in method.modalities},
        fusion=FusionConfig(method.fusion, method.width, dict(method.options)),
        head=HeadConfig(num_classes=2, hidden=32),
    )


def train_one(method: Method, data: dict, args: argparse.Namespace) -> tuple[MultimodalModel, dict]:
    """Train ``method`` with the shared Trainer (constant LR, validation every ``--eval-every``
    steps, stop on a validation plateau after ``--min-steps``), then restore its best weights."""
    train_set: SyntheticFactorDataset = data["train"]
    pool = data["pool"]
    n_train = len(train_set)
    train_rows = torch.arange(n_train)
    val_rows = torch.arange(n_train, pool.batch_size)
    if len(method.modalities) == 1:    # a unimodal model learns from the rows that have its modality
        m = method.modalities[0]
        train_rows = train_rows[pool.present[m][train_rows]]
        val_rows = val_rows[pool.present[m][val_rows]]
    torch.manual_seed(args.seed)
    config = model_config(method, train_set.dim)
    model = MultimodalModel.from_config(config)
    from torchmetrics.classification import MulticlassAccuracy

    from ..train import load_weights

    batch = method.batch_size or args.batch_size
    max_steps = round(args.max_steps * method.steps_scale)
    stop = StopOnPlateau(round(args.min_steps * method.steps_scale), args.patience, args.min_delta)
    cfg = TrainConfig(out_dir=str(Path(args.runs) / method.name), epochs=-(-max_steps // args.eval_every),
                      max_steps=max_steps, batch_size=batch, lr=method.lr or args.lr, schedule="constant",
                      seed=args.seed, device="cpu", progress=False, monitor="val_accuracy", monitor_mode="max",
                      log_every=50, keep_checkpoints=1, grad_clip=1.0, eval_batch_size=1024)
    # foreach AdamW: one fused update over all tensors (the per-tensor loop dominates tiny models)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    trainer = Trainer(model, cfg, _Rows(train_rows, args.eval_every * batch), _Rows(val_rows),
                      collate_fn=_Select(pool), metrics=MulticlassAccuracy(2), callbacks=[stop],
                      optimizer=optimizer, extra_config={"model": config.to_dict()})
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = trainer.fit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    best = Path(result.run_dir) / "best" / "model.safetensors"
    if best.exists():
        load_weights(model, best)
    return model.eval(), {"train_seconds": seconds, "train_cpu_seconds": cpu, "steps": result.step, "best_step": result.best_step,
                          "best_val_accuracy": result.best_metric, "stopped_early": result.stopped_early}


def _concat(a: MultimodalBatch, b: MultimodalBatch) -> MultimodalBatch:
    return MultimodalBatch(
        tensors={m: torch.cat([a.tensors[m], b.tensors[m]]) for m in a.tensors},
        present={m: torch.cat([a.present[m], b.present[m]]) for m in a.present},
        fields={k: torch.cat([a.fields[k], b.fields[k]]) for k in a.fields},
    )


def part_accuracies(model, batch: MultimodalBatch, test: SyntheticFactorDataset) -> dict[str, float]:
    from ..eval.robustness import predict

    hit = (predict(model, batch).argmax(-1) == batch.fields["label"]).float()
    return {p: float(hit[test.part_of(p)].mean()) for p in ("shared", "unique", "interaction")}


def run_training(args: argparse.Namespace) -> dict:
    train = SyntheticFactorDataset(args.n_train, MODALITIES, missing_rate=0.15, seed=args.seed)
    val = SyntheticFactorDataset(args.n_val, MODALITIES, missing_rate=0.15, seed=args.seed + 1)
    test = SyntheticFactorDataset(args.n_test, MODALITIES, seed=args.seed + 2)
    data = {"train": train, "pool": _concat(train.to_batch(), val.to_batch())}
    test_batch = test.to_batch()
    wanted = [m for m in methods() if not args.methods or m.name in args.methods.split(",")]
    if not wanted:
        raise SystemExit(f"no method matches --methods {args.methods}; known: {[m.name for m in methods()]}")
    rows = {}
    for method in wanted:
        model, fit = train_one(method, data, args)
        report = evaluate_robustness(model, test_batch, seed=args.seed, modalities=list(MODALITIES))
        rows[method.name] = {
            "kind": "unimodal" if method.name.startswith("unimodal") else "fusion",
            "fusion": method.fusion, "options": method.options, **fit,
            "parts": part_accuracies(model, test_batch, test), **report.to_dict(),
        }
        log.info(f"{method.name:<22} clean {report.clean:.3f}  interaction {rows[method.name]['parts']['interaction']:.3f}"
                 f"  RR {report.relative:.3f}  ({fit['train_seconds']:.1f}s, {fit['steps']} steps)")
    if "late" in rows:
        for row in rows.values():
            row["effective"] = effective_robustness(row["curve"], rows["late"]["curve"])
    return rows


def checks(rows: dict) -> list[tuple[str, bool, str]]:
    out = []
    fus = {k: v["clean"] for k, v in rows.items() if v["kind"] == "fusion"}
    uni = {k: v["clean"] for k, v in rows.items() if v["kind"] == "unimodal"}
    if fus and uni:
        bf, bu = max(fus, key=fus.get), max(uni, key=uni.get)
        gap = 100 * (fus[bf] - uni[bu])
        out.append((f"best fusion ({bf} {fus[bf]:.3f}) beats best unimodal ({bu} {uni[bu]:.3f}) by >= 10 points",
                    gap >= 10, f"{gap:+.1f} points"))
    if "late" in rows:
        late = rows["late"]["parts"]["interaction"]
        for name in INTERACTION_CAPABLE:
            if name in rows:
                got = rows[name]["parts"]["interaction"]
                out.append((f"{name} beats late fusion on the interaction part", got > late + 0.05,
                            f"{got:.3f} vs {late:.3f}"))
    return out


def table(rows: dict) -> str:
    subsets = list(next(iter(rows.values()))["subsets"])
    head = ["method", "clean", "shared", "unique", "interact."] + [f"only {s}" for s in subsets[1:]]
    head += ["RR", "ER", "steps", "train s", "CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{r['clean']:.3f}", *(f"{r['parts'][p]:.3f}" for p in ("shared", "unique", "interaction"))]
        cells += [f"{r['subsets'][s]:.3f}" for s in subsets[1:]]
        cells += [f"{r['relative']:.3f}", "" if r.get("effective") is None else f"{r['effective']:+.3f}",
                  str(r.get("steps", "")), f"{r['train_seconds']:.1f}",
                  f"{r['train_cpu_seconds']:.1f}" if "train_cpu_seconds" in r else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mm bench fusion", description=__doc__.split("\n")[0])
    p.add_argument("--attention-only", action="store_true", help="only time cross-modal attention vs nn.MultiheadAttention")
    p.add_argument("--skip-attention", action="store_true", help="skip the attention timing")
    p.add_argument("--methods", default="", help="comma-separated subset of methods")
    p.add_argument("--max-steps", type=int, default=1200,
                   help="most optimizer steps per method (x its steps_scale: 3 to 4 for the attention models)")
    p.add_argument("--min-steps", type=int, default=300, help="no plateau stop before this many steps (x steps_scale)")
    p.add_argument("--patience", type=int, default=3, help="validations without a --min-delta gain before stopping")
    p.add_argument("--min-delta", type=float, default=0.005, help="validation accuracy gain that resets the patience")
    p.add_argument("--eval-every", type=int, default=100, help="optimizer steps between validations")
    p.add_argument("--epochs", type=float, default=None,
                   help="shortcut: cap every method at this many passes over the training set (sets --max-steps)")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training (tiny models: 1 is fastest, and robust on a shared machine); "
                        "the attention timing uses --timing-threads")
    p.add_argument("--timing-threads", type=int, default=0, help="torch threads for the timing (0 = torch default)")
    p.add_argument("--out", default="benchmarks/results/fusion")
    p.add_argument("--runs", default="runs/bench-fusion", help="trainer run directories")
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--timing-batch", type=int, default=32)
    p.add_argument("--timing-tokens", type=int, default=128)
    p.add_argument("--timing-width", type=int, default=256)
    p.add_argument("--strict", action="store_true", help="exit 1 when an acceptance check fails")
    args = p.parse_args(argv)
    if args.epochs is not None:
        args.max_steps = max(1, round(args.epochs * args.n_train / args.batch_size))
        args.min_steps = min(args.min_steps, args.max_steps)
    args.eval_every = max(1, min(args.eval_every, args.max_steps))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    t0, cpu0 = time.perf_counter(), time.process_time()
    load_start = _load_average()
    failed = False
    default_threads = torch.get_num_threads()
    timing_seconds = 0.0
    if not args.skip_attention:
        torch.set_num_threads(args.timing_threads or default_threads)
        try:
            timing = time_attention(batch=args.timing_batch, tokens=args.timing_tokens, width=args.timing_width,
                                    repeats=args.timing_repeats, seed=args.seed)
        finally:
            torch.set_num_threads(default_threads)
        timing["load_average"] = {"start": load_start, "end": _load_average()}
        atomic_write_json(out / "attention_timing.json", timing)
        timing_seconds = time.perf_counter() - t0
        if args.attention_only:
            return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = run_training(args)
    finally:
        torch.set_num_threads(default_threads)
    load_end = _load_average()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    results = {"rows": rows, "checks": [], "seconds": wall, "cpu_seconds": cpu, "attention_timing_seconds": timing_seconds,
               "training_seconds": sum(r["train_seconds"] for r in rows.values()),
               "load_average": {"start": load_start, "end": load_end}, "cpu_count": os.cpu_count(),
               "threads": args.threads or default_threads, "args": vars(args)}
    print("\n" + table(rows))
    print("\nrelative robustness RR = trapezoid area under accuracy vs noise (11 levels, dx 0.1); "
          "effective robustness ER = sum over levels of the gap to late fusion shifted to the same clean accuracy")
    for text, ok, detail in checks(rows):
        print(f"[{'PASS' if ok else 'FAIL'}] {text}: {detail}")
        results["checks"].append({"check": text, "pass": ok, "detail": detail})
        failed |= not ok
    footer = (f"total wall time {wall:.0f} s (attention timing {timing_seconds:.0f} s, training "
              f"{results['training_seconds']:.0f} s), process CPU time {cpu:.0f} s, "
              f"{results['threads']} training thread(s); load average "
              f"(1/5/15 min) {_fmt_load(load_start)} at start, {_fmt_load(load_end)} at end, {os.cpu_count()} CPUs")
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", "# mm bench fusion\n\n" + table(rows) + "\n\n"
                      + "\n".join(f"- {'PASS' if c['pass'] else 'FAIL'}: {c['check']}: {c['detail']}" for c in results["checks"])
                      + f"\n\n{footer}\n")
    plot_noise_curves({k: v["curve"] for k, v in rows.items()}, out / "noise_curves.png")
    plot_subset_accuracies({k: v["subsets"] for k, v in rows.items()}, out / "missing_subsets.png")
    print(f"\n{footer}\nwrote {out}/results.json, results.md, noise_curves.png, missing_subsets.png")
    return 1 if (failed and args.strict) else 0


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):          # not on every platform
        return None


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if load is None else " / ".join(f"{v:.2f}" for v in load)


if __name__ == "__main__":
    raise SystemExit(main())
