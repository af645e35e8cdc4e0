"""`mm medical ...`: analyze, train, eval, calibrate, generate, demo. Heavy imports stay inside functions."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from .train_args import add_arguments, add_device_argument, device_from_arg

log = logging.getLogger(__name__)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def cmd_analyze(args: argparse.Namespace) -> int:
    from .stagetimes import TIMES, process_age, stage

    started, cpu_started = process_age(), time.process_time()   # interpreter start + `mm` CLI import
    with stage("imports (torch, MONAI, app)"):
        from .lean_import import import_monai_lean

        import_monai_lean()                  # MONAI without transformers & co. (not used here)
        from .analyze import analyze_path, load_model

        _threads(args.threads)
    try:
        with stage("model load (safetensors)"):
            model = load_model(args.bundle, _device(args.device))
    except FileNotFoundError as exc:
        print(f"mm medical analyze: {exc}")
        return 2
    results = analyze_path(Path(args.study), Path(args.out), model, register=not args.no_register,
                           progress=not args.no_progress)
    bad = [r for r in results if r["status"] != "ok"]
    log.info("%d/%d studies analysed; outputs under %s", len(results) - len(bad), len(results), Path(args.out).resolve())
    if getattr(args, "timings", None):
        import os

        from mmcore.train import atomic_write_json

        atomic_write_json(Path(args.timings), {"process_age_at_start_s": started, "process_age_at_end_s": process_age(),
                                               "cpu_s_at_start": cpu_started, "cpu_s": sum(os.times()[:2]),
                                               "stages": {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in TIMES.items()}})
    if _one_shot_process():
        # the process ends here: keep the interpreter's teardown from walking every object of torch, MONAI,
        # highdicom... through the cyclic GC (~1.5 s on 2 cores); objects are still freed by reference counting
        import gc

        gc.freeze()
    return 1 if bad and len(bad) == len(results) else 0


def _one_shot_process() -> bool:
    """True when this process is the `mm` command itself (not a test or a server calling cmd_analyze)."""
    import sys

    argv0 = Path(sys.argv[0] if sys.argv else "")
    return argv0.name == "mm" or argv0.as_posix().endswith("mmcore/cli.py")


def _device(name: str) -> str:
    """``--device``: ``auto`` is CUDA when a GPU is visible, else the CPU (mmcore's one rule)."""
    return device_from_arg(name)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import MedicalTrainConfig, train

    config = MedicalTrainConfig.from_args(args)
    config.trainer.device = _device(config.trainer.device)
    result = train(config)
    log.info("trained: bundle %s", result["bundle"])
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .analyze import load_model
    from .datasets import read_datalist
    from .evaluate import evaluate
    from .scoring import format_table

    _threads(args.threads)
    model = load_model(args.bundle, _device(args.device))
    summaries = {}
    for i, data in enumerate(args.data):
        entries = read_datalist(Path(data) / "datalist.json")[args.split]
        if args.limit:
            entries = entries[: args.limit]
        out = Path(args.out) if len(args.data) == 1 else Path(args.out) / f"set{i}-{Path(data).name}"
        summaries[Path(data).name] = evaluate(model, entries, out, register=not args.no_register,
                                              guard=not args.no_guard)
    if args.json:
        print(json.dumps(summaries, indent=2))
    print(format_table(summaries))
    return 0


def cmd_fit_ood(args: argparse.Namespace) -> int:
    """Refit the bundle's out-of-domain statistics on cached training/validation studies."""
    from .analyze import load_model
    from .bundle import DEFAULT_BUNDLE
    from .datasets import prepare_cases, read_datalist
    from .ood import fit_for_bundle, save

    _threads(args.threads)
    bundle = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    lists = read_datalist(Path(args.data) / "datalist.json")
    for split in ("training", "validation"):      # study entries (mm medical generate) are preprocessed once, cached
        if not all("cache" in it for it in lists.get(split, [])):
            lists[split] = prepare_cases(lists.get(split, []), Path(args.data) / "cache")
    stats = fit_for_bundle(load_model(bundle, "cpu"), lists["training"], lists.get("validation", []),
                           source=f"{args.data}: {len(lists['training'])} train / {len(lists.get('validation', []))} val")
    path = save(stats, bundle)
    print(json.dumps({k: {kk: v[kk] for kk in ("threshold", "train_studies", "validation_studies", "validation_flag_rate")}
                      for k, v in stats["patterns"].items()}, indent=2))
    print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .bundle import DEFAULT_BUNDLE
    from .calibration import calibrate

    _threads(args.threads)
    report = calibrate(Path(args.bundle) if args.bundle else DEFAULT_BUNDLE, [Path(d) for d in args.data], args.split,
                       Path(args.cache) if args.cache else None, device=_device(args.device))
    print(json.dumps(report, indent=2))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .demo_data import generate

    n = [int(x) for x in args.n.split(",")]
    if args.family:
        from .eval_family import generate_family

        generate_family(Path(args.out), sum(n), seed=args.seed)
    else:
        generate(Path(args.out), *n, seed=args.seed, dicom_every=args.dicom_every, drop_every=args.drop_every)
    log.info("wrote %d studies and datalist.json under %s", sum(n), Path(args.out).resolve())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    report = demo(Path(args.out), args.device)
    print(json.dumps(report, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("medical", help="MRI/CT fusion: analyze studies, train, evaluate, demo")
    sub = p.add_subparsers(dest="medical_cmd", required=True)

    a = sub.add_parser("analyze", help="analyse one study folder (DICOM or NIfTI) or a folder of studies")
    a.add_argument("study")
    a.add_argument("--out", required=True)
    a.add_argument("--bundle", default=None, help="model bundle (default: the shipped data/medical/model)")
    a.add_argument("--no-register", action="store_true", help="header-only alignment (no MI registration)")
    add_device_argument(a)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--no-progress", action="store_true")
    a.add_argument("--timings", default=None, metavar="FILE",
                   help="write wall/CPU seconds per stage of this process as JSON (mm bench medical reads it)")
    a.set_defaults(func=cmd_analyze)

    t = sub.add_parser("train", help="train the fusion model (generates demo data if asked)")
    add_arguments(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="held-out metrics: TRE, Dice, HD95, AUROC (fused/single/late), ECE")
    e.add_argument("--data", required=True, action="append",
                   help="folder with datalist.json; repeat for one table column per set (e.g. in-distribution and "
                        "the evaluation family)")
    e.add_argument("--split", default="test")
    e.add_argument("--no-guard", action="store_true", help="keep lesion predicted outside the intracranial volume")
    e.add_argument("--json", action="store_true", help="also print the full summaries as JSON")
    e.add_argument("--bundle", default=None)
    e.add_argument("--out", default="runs/medical-eval")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--no-register", action="store_true")
    e.add_argument("--threads", type=int, default=1)
    add_device_argument(e)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("calibrate", help="refit the bundle's temperature on held-out studies (rewrites the bundle)")
    c.add_argument("--data", required=True, action="append", help="folder with datalist.json (repeatable)")
    c.add_argument("--split", default="validation")
    c.add_argument("--bundle", default=None, help="bundle to recalibrate (default: the shipped data/medical/model)")
    c.add_argument("--cache", default=None, help="preprocessed-case cache (default DATA/cache)")
    c.add_argument("--threads", type=int, default=1)
    add_device_argument(c)
    c.set_defaults(func=cmd_calibrate)

    o = sub.add_parser("fit-ood", help="refit the bundle's out-of-domain statistics (rewrites configs/ood.json)")
    o.add_argument("--data", required=True, help="folder with datalist.json: training studies give the statistics, "
                                                  "validation studies the thresholds (the model's own training distribution)")
    o.add_argument("--bundle", default=None, help="default: the shipped data/medical/model")
    o.add_argument("--threads", type=int, default=1)
    o.set_defaults(func=cmd_fit_ood)

    g = sub.add_parser("generate", help="write demo studies from nilearn's MNI152 template")
    g.add_argument("--out", required=True)
    g.add_argument("--n", default="0,0,8", help="N_TRAIN,N_VAL,N_TEST")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dicom-every", type=int, default=4)
    g.add_argument("--drop-every", type=int, default=0)
    g.add_argument("--family", action="store_true",
                   help="the evaluation family instead (independent analytic heads, lobulated lesions, no-lesion, "
                        "MR-only and CT-only studies; all N as test studies)")
    g.set_defaults(func=cmd_generate)

    from .pacs.cli import register as register_pacs

    register_pacs(sub)

    d = sub.add_parser("demo", help="generate a few studies, analyse them with the shipped model, score them")
    d.add_argument("--out", default="runs/medical-demo")
    add_device_argument(d)
    d.set_defaults(func=cmd_demo)


def demo(out_dir: Path, device: str = "cpu") -> dict:
    """Generate 4 demo studies (NIfTI, DICOM with decoys, MR-only, CT-only) plus a bad one, analyse them all."""
    import numpy as np

    from .analyze import load_model
    from .demo_data import write_study
    from .evaluate import evaluate

    _threads(1)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    data = out_dir / "data"
    entries = [write_study(data, "demo_nifti", 900_001, label=1),
               write_study(data, "demo_dicom", 900_002, label=2, fmt="dicom", decoys=True),
               write_study(data, "demo_mr_only", 900_003, label=3, drop="ct"),
               write_study(data, "demo_ct_only", 900_004, label=0, drop="mr")]
    bad = data / "studies" / "demo_bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "mr.nii.gz").write_bytes(b"\x1f\x8b truncated")
    entries.append({"id": "demo_bad", "study": str(bad), "truth": entries[0]["truth"], "mask": entries[0]["mask"]})
    model = load_model(None, _device(device))
    summary = evaluate(model, entries, out_dir / "results", progress=False)
    rows = json.loads((out_dir / "results" / "eval_rows.json").read_text())
    ok = [r for r in rows if r["status"] == "ok"]
    correct = sum(int(np.argmax(r["probs"]) == r["label"]) for r in ok)
    # what fusion adds: the true class's probability with both modalities and with one removed, on
    # the studies that have both (the same preprocessed tensors; `evaluate` removes each in turn)
    both = [r for r in ok if "probs_without_mr" in r and "probs_without_ct" in r]
    p_true = {key: round(float(np.mean([r[key][r["label"]] for r in both])), 3) if both else float("nan")
              for key in ("probs", "probs_without_ct", "probs_without_mr")}
    return {"studies": len(rows), "analysed": len(ok), "correct_diagnoses": correct,
            "p_true_fused": p_true["probs"], "p_true_mr_only": p_true["probs_without_ct"],
            "p_true_ct_only": p_true["probs_without_mr"], "studies_with_both": len(both),
            "dice_mean": float(np.mean([r["dice"] for r in ok])) if ok else float("nan"),
            "tre_mm_mean": summary.get("tre_mm_mean", float("nan")),
            "header_only_tre_mm": (summary.get("tre_header_only_mm_range") or [float("nan")])[0],
            "refused": len(rows) - len(ok), "seconds": time.perf_counter() - t0,
            "outputs": str((out_dir / "results").resolve())}
