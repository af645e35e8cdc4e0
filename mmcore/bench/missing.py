"""`mm bench missing`: missing modalities, multimodal VAEs and domain adaptation on PolyDigits.

1. One fusion model (MLP encoders -> mask-aware early fusion -> head) tested as modalities go
   missing, under: zero-filling, mask-aware exclusion, modality dropout (+ learned missing
   tokens), mean / nearest-neighbour / learned imputation, and VAE completion.
2. The VAE family (MVAE, MMVAE, MoPoE, shared/private, conditional): ELBO and importance-sampled
   log-likelihood before/after training, cross-modal coherence of every ``A -> B``, conditional
   coherence, cross-generation and traversal grids as PNG.
3. Unsupervised domain adaptation to the ``target`` rendering: accuracy before/after CORAL, MMD,
   DANN.

Writes ``results.json``, ``results.md`` and PNGs to ``--out`` (default benchmarks/results/missing).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ..data.polydigits import IMAGE_SHAPE, NUM_CLASSES, PolyDigits
from ..encoders.mlp import MLPEncoder
from ..eval.robustness import accuracy
from ..fusion import EarlyFusion
from ..generative import MODELS, KLAnnealing
from ..generative.grids import cross_generation_grid, save_grid, traversal_grid
from ..generative.metrics import (
    coherence,
    conditional_coherence,
    elbo_and_likelihood,
    judge_accuracy,
    train_judges,
)
from ..generative.train import fit_vae
from ..missing import (
    DropoutCurriculum,
    DropoutModel,
    Imputed,
    LearnedImputer,
    MeanImputer,
    MissingTokenModel,
    ModalityDropout,
    NearestNeighbourImputer,
    ZeroFilled,
    adapt,
)
from ..models.multimodal import MultimodalModel, build_head
from ..train import TrainConfig, Trainer, atomic_write_json, atomic_write_text
from ..utils.device import resolve_device
from ..utils.seed import seed_everything

log = logging.getLogger(__name__)

FEATURE_DIM = 64


def fusion_model(modalities: list[str]) -> MultimodalModel:
    encoders = {m: MLPEncoder(64, FEATURE_DIM, hidden=128) for m in modalities}
    return MultimodalModel(encoders, EarlyFusion({m: FEATURE_DIM for m in modalities}, FEATURE_DIM),
                           build_head(FEATURE_DIM, NUM_CLASSES, hidden=64))


def train_classifier(model: nn.Module, train_ds, collate, run_dir: Path, args, callbacks=()) -> nn.Module:
    cfg = TrainConfig(out_dir=str(run_dir), epochs=args.epochs, batch_size=64, lr=2e-3, seed=args.seed,
                      device=args.device, progress=False, schedule="cosine")
    Trainer(model, cfg, train_ds, None, collate_fn=collate, callbacks=list(callbacks)).fit()
    return model.eval()


def scenarios(modalities: list[str]) -> dict[str, list[str]]:
    """Name -> available modalities: all, each one missing, each one alone."""
    out = {"all present": list(modalities)}
    out.update({f"{m} missing": [n for n in modalities if n != m] for m in modalities})
    out.update({f"only {m}": [m] for m in modalities})
    return out


def vae_settings(name: str, args) -> dict:
    """β (after annealing), latent size and epochs of one VAE.

    MVAE gets its own: nothing in its subsampled ELBO asks one modality's expert to explain
    another modality, and the only pull towards a latent code the experts share (what
    cross-generation needs) is the KL it saves, about (M - 1)·log(10) nats at β = 1 — too weak
    against the reconstruction terms, so each expert keeps the class in dimensions of its own
    and ``B`` generated from ``A`` alone is near chance.  β > 1, a smaller latent and longer
    training let the shared code form (see docs/missing.md for the measurements).
    """
    if name == "mvae":
        return {"beta": args.mvae_beta, "latent": args.mvae_latent, "epochs": args.mvae_epochs or 2 * args.vae_epochs}
    return {"beta": 1.0, "latent": args.latent, "epochs": args.vae_epochs}


def section_vaes(args, train_ds, val_ds, test_batch, judges, out: Path, work: Path) -> tuple[dict, dict]:
    dims = {m: 64 for m in train_ds.modalities}
    collate = train_ds.collator()
    results, models = {}, {}
    for name in args.vaes:
        seed_everything(args.seed)
        kw = {"num_classes": NUM_CLASSES} if name == "cvae" else {}
        settings = vae_settings(name, args)
        model = MODELS[name](dims, latent_dim=settings["latent"], hidden=128, likelihood="gaussian", sigma=0.2, **kw)
        model.to(resolve_device(args.device))
        test = test_batch.to(resolve_device(args.device))
        before = elbo_and_likelihood(model, test, samples=32)
        t0 = time.perf_counter()
        annealer = KLAnnealing("linear", warmup_steps=args.kl_warmup, beta_max=settings["beta"])
        fit_vae(model, train_ds, val_ds, collate, work / f"vae_{name}", epochs=settings["epochs"], batch_size=64,
                lr=2e-3, seed=args.seed, device=args.device, annealer=annealer)
        model.cpu().eval()
        after = elbo_and_likelihood(model, test_batch, samples=32)
        row = {"train_s": round(time.perf_counter() - t0, 1), "elbo_before": before["elbo"], "elbo_after": after["elbo"],
               "loglik_before": before["log_likelihood"], "loglik_after": after["log_likelihood"], "settings": settings}
        recon = model.reconstruct(test_batch)
        row["recon_mse"] = float(sum(((recon[m] - test_batch[m]) ** 2).mean() for m in dims) / len(dims))
        if name == "cvae":
            row["conditional_coherence"] = conditional_coherence(model, judges, NUM_CLASSES, per_class=50)
            labels = torch.arange(NUM_CLASSES).repeat(4)
            gen = model.sample(len(labels), labels)
            grid = torch.stack([gen[m].reshape(4, NUM_CLASSES, *IMAGE_SHAPE) for m in dims]).flatten(0, 1)
            save_grid(grid, out / "conditional_cvae.png")
        else:
            row["coherence"] = {f"{a}->{b}": coherence(model, test_batch, judges, [a], b)
                                for a in dims for b in dims if a != b}
            row["mean_coherence"] = sum(row["coherence"].values()) / len(row["coherence"])
            save_grid(cross_generation_grid(model, test_batch, IMAGE_SHAPE, n=10), out / f"cross_generation_{name}.png")
        save_grid(traversal_grid(model, test_batch, train_ds.modalities[0], IMAGE_SHAPE,
                                 dims=range(min(8, model.total_latent))), out / f"traversal_{name}.png")
        log.info(f"{name}: ELBO {before['elbo']:.1f} -> {after['elbo']:.1f}, "
                 f"coherence {row.get('mean_coherence', row.get('conditional_coherence'))} ({row['train_s']} s)")
        results[name], models[name] = row, model
    return results, models


def section_missing(args, train_ds, test_batch, train_batch, vaes: dict, work: Path) -> dict:
    mods, collate = train_ds.modalities, train_ds.collator()
    seed_everything(args.seed)
    plain = train_classifier(fusion_model(mods), train_ds, collate, work / "fusion_plain", args)
    seed_everything(args.seed)
    dropout = ModalityDropout(args.dropout_rate)
    tokens = MissingTokenModel(fusion_model(mods), {m: FEATURE_DIM for m in mods})
    robust = DropoutModel(tokens, dropout)
    curriculum = DropoutCurriculum(dropout, warmup_steps=max(1, len(train_ds) // 64 * args.epochs // 3))
    train_classifier(robust, train_ds, collate, work / "fusion_dropout_tokens", args, [curriculum])
    seed_everything(args.seed)
    dropout2 = ModalityDropout(args.dropout_rate)
    excl = DropoutModel(fusion_model(mods), dropout2)
    train_classifier(excl, train_ds, collate, work / "fusion_dropout", args)
    learned = LearnedImputer({m: 64 for m in mods}).fit(train_batch, steps=args.imputer_steps, seed=args.seed)
    strategies = {
        "zero-filling": ZeroFilled(plain),
        "mask-aware exclusion (no dropout)": plain,
        "modality dropout (exclusion)": excl.eval(),
        "modality dropout + learned tokens": robust.eval(),
        "mean imputation": Imputed(plain, MeanImputer().fit(train_batch)),
        "nearest-neighbour imputation": Imputed(plain, NearestNeighbourImputer(k=5).fit(train_batch)),
        "learned imputation": Imputed(plain, learned),
    }
    for name in args.completion_vaes:
        if name in vaes:
            strategies[f"VAE completion ({name})"] = Imputed(plain, vaes[name].complete)
    table = {}
    for label, keep in scenarios(mods).items():
        batch = test_batch.only(keep)
        table[label] = {s: accuracy(model, batch) for s, model in strategies.items()}
    one_missing = [k for k in table if k.endswith("missing")]
    full = table["all present"]
    drop = {s: full[s] - sum(table[k][s] for k in one_missing) / len(one_missing) for s in strategies}
    non_zero = {s: d for s, d in drop.items() if s != "zero-filling"}
    best = min(non_zero, key=lambda s: (drop[s], -full[s]))
    return {"accuracy": table, "mean_drop_one_missing": drop, "best": best,
            "best_drop": drop[best], "zero_fill_drop": drop["zero-filling"]}


def section_domain(args, test_batch, train_ds, work: Path) -> dict:
    mods, collate = train_ds.modalities, train_ds.collator()
    source_train = train_ds.full_batch()
    target_unlabelled = PolyDigits(args.n_train // 2, "train", len(mods), domain="target", seed=args.seed + 7).full_batch()
    target_test = PolyDigits(args.n_test, "test", len(mods), domain="target", seed=args.seed + 9).full_batch()
    seed_everything(args.seed)
    model = train_classifier(fusion_model(mods), train_ds, collate, work / "domain_source", args)
    out = {"source test accuracy": accuracy(model, test_batch), "target accuracy before": accuracy(model, target_test)}
    for method in ("coral", "mmd", "dann"):
        adapted = adapt(model, source_train, target_unlabelled, method=method, steps=args.adapt_steps,
                        weight={"coral": 10.0, "mmd": 1.0, "dann": args.dann_weight}[method],
                        lr={"dann": args.dann_lr}.get(method, 1e-3), critic_lr=args.dann_critic_lr, seed=args.seed)
        out[f"target accuracy after {method}"] = accuracy(adapted, target_test)
        out[f"source accuracy after {method}"] = accuracy(adapted, test_batch)
        log.info(f"adaptation {method}: target {out['target accuracy before']:.3f} -> "
                 f"{out[f'target accuracy after {method}']:.3f}")
    return out


def render_markdown(res: dict) -> str:
    lines = ["# mm bench missing — results", "", f"Device: {res['device']}; total {res['total_s']:.0f} s; "
             f"data: PolyDigits, {res['views']} views, {res['n_train']} train / {res['n_test']} test.", ""]
    if "missing" in res:
        mis = res["missing"]
        strategies = list(next(iter(mis["accuracy"].values())))
        lines += ["## Fusion model accuracy as test-time modalities go missing", "",
                  "| scenario | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
        for scen, row in mis["accuracy"].items():
            lines.append(f"| {scen} | " + " | ".join(f"{row[s]:.3f}" for s in strategies) + " |")
        lines.append("| **mean drop, one missing** | " + " | ".join(f"{mis['mean_drop_one_missing'][s]:.3f}"
                                                                  for s in strategies) + " |")
        lines += ["", f"Best method: **{mis['best']}** loses {mis['best_drop']:.3f} accuracy on average when one "
                  f"modality is missing; zero-filling loses {mis['zero_fill_drop']:.3f}.", ""]
    if "vaes" in res:
        lines += ["## Multimodal VAEs", "", "| model | ELBO before | ELBO after | log p(X) (IS) before | after | "
                  "recon MSE | mean coherence A->B | β / latent / epochs | train s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, row in res["vaes"].items():
            coh, cfg = row.get("mean_coherence"), row["settings"]
            coh_s = f"{coh:.3f}" if coh is not None else "conditional: " + ", ".join(
                f"{m} {v:.3f}" for m, v in row["conditional_coherence"].items())
            lines.append(f"| {name} | {row['elbo_before']:.1f} | {row['elbo_after']:.1f} | {row['loglik_before']:.1f} | "
                         f"{row['loglik_after']:.1f} | {row['recon_mse']:.4f} | {coh_s} | {cfg['beta']:g} / {cfg['latent']} / "
                         f"{cfg['epochs']} | {row['train_s']} |")
        lines += ["", f"Chance coherence: {1 / NUM_CLASSES:.2f}. Judges (real-data classifiers) test accuracy: "
                  + ", ".join(f"{m} {v:.3f}" for m, v in res["judges"].items()) + ".", ""]
        for name, row in res["vaes"].items():
            if "coherence" in row:
                lines.append(f"- {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row["coherence"].items()))
        lines += ["", "Grids: `cross_generation_<model>.png` (per source: real row, then every modality generated "
                  "from it), `traversal_<model>.png` (rows = latent dims), `conditional_cvae.png` (columns = class).", ""]
    if "domain" in res:
        lines += ["## Unsupervised domain adaptation (source rendering -> target rendering)", "",
                  "| measure | accuracy |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in res["domain"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mm bench missing", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/missing")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=600)
    p.add_argument("--epochs", type=int, default=15, help="fusion classifier epochs")
    p.add_argument("--vae-epochs", type=int, default=20)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--kl-warmup", type=int, default=300, help="optimiser steps of linear KL annealing")
    p.add_argument("--mvae-beta", type=float, default=4.0, help="MVAE's β after annealing (see vae_settings)")
    p.add_argument("--mvae-latent", type=int, default=8)
    p.add_argument("--mvae-epochs", type=int, default=0, help="MVAE epochs (0 = twice --vae-epochs)")
    p.add_argument("--vaes", default="mvae,mmvae,mopoe,dmvae,cvae")
    p.add_argument("--completion-vaes", default="mopoe,mmvae,mvae")
    p.add_argument("--dropout-rate", type=float, default=0.4)
    p.add_argument("--imputer-steps", type=int, default=800)
    p.add_argument("--adapt-steps", type=int, default=600)
    p.add_argument("--dann-weight", type=float, default=0.05)
    p.add_argument("--dann-lr", type=float, default=3e-4, help="DANN: the model's learning rate")
    p.add_argument("--dann-critic-lr", type=float, default=3e-3, help="DANN: the domain classifier's learning rate")
    p.add_argument("--judge-steps", type=int, default=200, help="training steps of the coherence classifiers")
    p.add_argument("--sections", default="vaes,missing,domain")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny MLPs: 1 is fastest; 0 = leave as is)")
    args = p.parse_args(argv)
    args.vaes = [v for v in args.vaes.split(",") if v]
    args.completion_vaes = [v for v in args.completion_vaes.split(",") if v]
    unknown = set(args.vaes) - set(MODELS)
    if unknown:
        p.error(f"unknown VAE(s) {sorted(unknown)}; choose from {', '.join(MODELS)}")
    sections = set(args.sections.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mm-bench-missing-"))
    t0 = time.perf_counter()
    try:
        train_ds = PolyDigits(args.n_train, "train", args.views, seed=args.seed)
        val_ds = PolyDigits(args.n_test // 2, "val", args.views, seed=args.seed + 1)
        test_batch = PolyDigits(args.n_test, "test", args.views, seed=args.seed + 2).full_batch()
        train_batch = train_ds.full_batch()
        res: dict = {"device": str(resolve_device(args.device)), "views": args.views, "n_train": args.n_train,
                     "n_test": args.n_test, "args": {k: v for k, v in vars(args).items()}}
        judges = train_judges(train_batch, num_classes=NUM_CLASSES, steps=args.judge_steps, seed=args.seed)
        res["judges"] = {m: judge_accuracy(j, test_batch[m], test_batch.fields["label"]) for m, j in judges.items()}
        vaes: dict = {}
        if "vaes" in sections:
            res["vaes"], vaes = section_vaes(args, train_ds, val_ds, test_batch, judges, out, work)
        if "missing" in sections:
            res["missing"] = section_missing(args, train_ds, test_batch, train_batch, vaes, work)
            m = res["missing"]
            log.info(f"best: {m['best']} drop {m['best_drop']:.3f} vs zero-filling {m['zero_fill_drop']:.3f}")
        if "domain" in sections:
            res["domain"] = section_domain(args, test_batch, train_ds, work)
        res["total_s"] = time.perf_counter() - t0
        atomic_write_json(out / "results.json", json.loads(json.dumps(res, default=str)))
        text = render_markdown(res)
        atomic_write_text(out / "results.md", text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
