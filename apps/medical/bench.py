"""`mm bench medical`: data time (plain MONAI Dataset vs our cache), step time, analyze time.

Side by side in one run on the same studies (timings on a shared CPU drift; compare ratios):

* data time per epoch: a plain ``monai.data.Dataset`` running the whole deterministic pipeline
  (load, orient, register, resample, normalise, crop) every epoch vs ``CacheDataset`` +
  ``ThreadDataLoader`` (pipeline once, random flips per epoch);
* training step time of the shipped network beside MONAI ``UNet``s of similar width, the shipped
  training configuration's batch (whole 48x56x48 volumes), interleaved (:mod:`apps.medical.bench_step`);
* cold single-study `mm medical analyze` in a fresh process, wall and CPU, per stage
  (:mod:`apps.medical.bench_cold`);
* whole-study analyze time (ours: intake + MI registration + model + inversion + all writers) vs
  the plain MONAI tutorial recipe (``LoadImaged`` -> ``Orientationd`` -> ``Spacingd`` ->
  ``ResampleToMatchd`` on headers -> model -> ``Invertd``), with the CT->MR TRE of each.

Writes ``benchmarks/results/medical/bench.{md,json}``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "medical"


def _tutorial_recipe(model, study, truth):
    """The usual MONAI way: header-only alignment of CT onto MR, stacked channels, Invertd."""
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        Orientationd,
        ResampleToMatchd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    from .phantom import tre_mm
    from .transforms import CT_WINDOW, ROI, SPACING

    t0 = time.perf_counter()
    pipe = Compose([
        LoadImaged(["mr", "ct"], image_only=True), EnsureChannelFirstd(["mr", "ct"]),
        Orientationd(["mr", "ct"], axcodes="RAS"), Spacingd("mr", pixdim=SPACING), ResampleToMatchd("ct", key_dst="mr"),
        ScaleIntensityRangePercentilesd("mr", 1, 99, 0, 1, clip=True), ScaleIntensityRanged("ct", *CT_WINDOW, 0, 1, clip=True),
        ResizeWithPadOrCropd(["mr", "ct"], ROI),
    ])
    d = pipe({"mr": str(study / "mr.nii.gz"), "ct": str(study / "ct.nii.gz")})
    present = {"mr": torch.ones(1, dtype=torch.bool), "ct": torch.ones(1, dtype=torch.bool)}
    with torch.no_grad():
        seg = sliding_window_inference(torch.cat([d["mr"], d["ct"]])[None], ROI, 1,
                                       lambda x: model.segment({"mr": x[:, :1], "ct": x[:, 1:]}, present)[0])
    from monai.data import MetaTensor

    d["pred"] = MetaTensor(seg[0].softmax(0)[1:], affine=d["mr"].affine, applied_operations=list(d["mr"].applied_operations))
    Invertd("pred", pipe, orig_keys="mr")(d)
    return time.perf_counter() - t0, tre_mm(np.eye(4), truth)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mm bench medical")
    p.add_argument("--studies", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs timed for each data path")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--bundle", default=None)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--pacs-studies", type=int, default=3, help="demo studies timed in watch mode (0: skip)")
    p.add_argument("--only-pacs", action="store_true", help="time only the PACS watch mode (cold call vs warm watcher)")
    p.add_argument("--cold-repeats", type=int, default=3, help="cold analyze runs timed (after one file-cache warm-up)")
    p.add_argument("--only", choices=["cold", "step"], default=None,
                   help="only the cold-analyze breakdown or only the training-step comparison (bench_cold.json / "
                        "bench_step.json)")
    args = p.parse_args(argv)
    if args.only_pacs:
        return _pacs_only(args)
    torch.set_num_threads(1)
    if args.only:
        return _only(args)

    from monai.data import CacheDataset, Dataset, ThreadDataLoader

    from mmcore.train import atomic_write_json, atomic_write_text

    from .analyze import analyze_study, load_model
    from .datasets import collate_studies, prepare_cases, train_transforms
    from .demo_data import write_study
    from .phantom import load_truth, tre_mm
    from .transforms import MODALITIES, on_stack, preprocess

    tmp = Path(tempfile.mkdtemp(prefix="mm-bench-medical-"))
    entries = [write_study(tmp, f"b{i}", 777_000 + i, label=i % 4) for i in range(args.studies)]
    dicom_entry = write_study(tmp, "cold_dicom", 900_002, label=2, fmt="dicom", decoys=True)   # the demo's DICOM study
    results: dict = {"studies": args.studies, "threads": 1}

    # 1. data time per epoch: plain Dataset (whole pipeline each epoch) vs cache
    from monai.transforms import Compose, RandFlipd

    # the flip acts on the stacked modalities, as in train_transforms (``image`` exists only inside on_stack: a
    # bare RandFlipd on it raised KeyError in the loader's thread and the epoch ended early, unnoticed)
    plain_pipe = Compose([preprocess(register=True, with_mask=True),
                          on_stack(RandFlipd(keys=["image", "mask"], prob=0.5, spatial_axis=0))])
    plain = Dataset([{**{m: str(Path(e["study"]) / f"{m}.nii.gz") for m in MODALITIES}, "mask": e["mask"], "label": e["label"]}
                     for e in entries], transform=plain_pipe)
    plain_times = []
    for _ in range(max(1, args.epochs - 1)):
        t0 = time.perf_counter()
        for _ in ThreadDataLoader(plain, batch_size=2, num_workers=0, collate_fn=collate_studies):
            pass
        plain_times.append(time.perf_counter() - t0)
    items = prepare_cases(entries, tmp / "cache", progress=False)
    cached = CacheDataset(items, transform=train_transforms(True), cache_rate=1.0, progress=False)
    cached_times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for _ in ThreadDataLoader(cached, batch_size=2, num_workers=0, collate_fn=collate_studies):
            pass
        cached_times.append(time.perf_counter() - t0)
    results["data_seconds_per_epoch"] = {"plain_monai_dataset": statistics.median(plain_times),
                                         "cache_dataset_thread_loader": statistics.median(cached_times)}
    results["data_speedup"] = results["data_seconds_per_epoch"]["plain_monai_dataset"] / max(
        results["data_seconds_per_epoch"]["cache_dataset_thread_loader"], 1e-9)

    # 2. training step time beside MONAI UNets (shipped training batch, interleaved)
    from .bench_step import compare

    results["train_step"] = compare(args.bundle, steps=args.steps)

    # 3. whole-study analyze: ours vs the tutorial recipe, same study
    shipped = load_model(args.bundle)
    ours, recipe, tre_ours, tre_recipe = [], [], [], []
    for e in entries:
        truth = load_truth(e["truth"])
        t0 = time.perf_counter()
        f = analyze_study(Path(e["study"]), tmp / "analyze" / e["id"], shipped)
        ours.append(time.perf_counter() - t0)
        tre_ours.append(tre_mm(np.asarray(f["registration"]["ct_from_mr"]), truth))
        secs, tre = _tutorial_recipe(shipped, Path(e["study"]), truth)
        recipe.append(secs)
        tre_recipe.append(tre)
    results["analyze_seconds"] = {"ours_all_outputs": statistics.median(ours), "monai_tutorial_recipe": statistics.median(recipe)}
    results["ct_to_mr_tre_mm"] = {"ours": float(np.mean(tre_ours)), "monai_tutorial_recipe": float(np.mean(tre_recipe))}

    # 4. cold single-study analyze (fresh process), per stage; the first DICOM study
    from .bench_cold import cold_analyze
    from .bench_cold import table as cold_table

    results["cold_analyze"] = cold_analyze(Path(dicom_entry["study"]), args.cold_repeats, args.bundle, tmp / "cold")

    # 5. PACS watch mode: cold single call vs the warm watcher on the same local Orthanc
    if args.pacs_studies:
        from .pacs.bench import watch_latency

        results["pacs_watch"] = watch_latency(tmp, args.bundle, args.pacs_studies)

    out = Path(args.out)
    atomic_write_json(out / "bench.json", results)
    d = results
    table = "\n".join([
        "# mm bench medical", "", f"{args.studies} demo studies, 1 torch thread; medians. Machine load varies: compare ratios.", "",
        "| measure | plain MONAI | ours |", "| --- | --- | --- |",
        f"| data time per epoch (s) | {d['data_seconds_per_epoch']['plain_monai_dataset']:.2f} | "
        f"{d['data_seconds_per_epoch']['cache_dataset_thread_loader']:.4f} ({d['data_speedup']:.0f}x) |",
        f"| whole-study analyze (s) | {d['analyze_seconds']['monai_tutorial_recipe']:.2f} (no registration, mask only) | "
        f"{d['analyze_seconds']['ours_all_outputs']:.2f} (registration + NIfTI + JSON + report) |",
        f"| CT->MR TRE (mm) | {d['ct_to_mr_tre_mm']['monai_tutorial_recipe']:.2f} | {d['ct_to_mr_tre_mm']['ours']:.2f} |", ""])
    table += "\n" + _step_rows(results["train_step"]) + "\n" + cold_table(results["cold_analyze"])
    table += _pacs_rows(results.get("pacs_watch"))
    atomic_write_text(out / "bench.md", table)
    print(table)
    return 0


def _step_rows(r: dict) -> str:
    """Training step table: ours beside each MONAI UNet (seconds and CPU seconds, medians, interleaved)."""
    from .bench_step import UNETS

    lines = [f"Training step (forward + loss + backward + AdamW), batch {r['batch_size']} whole volumes {r['roi']}, "
             f"{r['threads']} thread, interleaved, median of {r['steps']} after a warm-up:", "",
             "| model | parameters | step s | CPU s | ours / this (wall, CPU) |", "| --- | --- | --- | --- | --- |",
             f"| ours (shipped config) | {r['params']['ours']:,} | {r['seconds_median']['ours']:.2f} | "
             f"{r['cpu_seconds_median']['ours']:.2f} | |"]
    for name in UNETS:
        k = f"monai_unet_{name}"
        lines.append(f"| MONAI {r['monai_unets'][name].split(' + ')[0]} ({name.replace('_', ' ')}) | {r['params'][k]:,} | "
                     f"{r['seconds_median'][k]:.2f} | {r['cpu_seconds_median'][k]:.2f} | "
                     f"{r['ratio_ours_over_unet'][name]:.1f}x, {r['cpu_ratio_ours_over_unet'][name]:.1f}x |")
    return "\n".join(lines) + "\n"


def _only(args) -> int:
    """``--only cold`` / ``--only step``: one section, written to bench_cold.* / bench_step.*."""
    import os

    from mmcore.train import atomic_write_json, atomic_write_text

    out = Path(args.out)
    if args.only == "step":
        from .bench_step import compare
        from .lean_import import import_monai_lean

        import_monai_lean()
        r = {"load_avg_1min_before": os.getloadavg()[0], **compare(args.bundle, steps=args.steps)}
        r["load_avg_1min_after"] = os.getloadavg()[0]
        text = (_step_rows(r) + f"\n1-min load average {r['load_avg_1min_before']:.1f} -> {r['load_avg_1min_after']:.1f} "
                f"on {os.cpu_count()} cores\n")
    else:
        from .bench_cold import cold_analyze, table
        from .demo_data import write_study

        tmp = Path(tempfile.mkdtemp(prefix="mm-bench-cold-"))
        study = write_study(tmp / "data", "cold_dicom", 900_002, label=2, fmt="dicom", decoys=True)
        r = cold_analyze(Path(study["study"]), args.cold_repeats, args.bundle, tmp / "runs")
        text = table(r)
    atomic_write_json(out / f"bench_{args.only}.json", r)
    atomic_write_text(out / f"bench_{args.only}.md", "# mm bench medical --only " + args.only + "\n\n" + text)
    print(text)
    return 0


def _pacs_rows(r: dict | None) -> str:
    if not r:
        return ""
    if "cold_single_call_seconds" not in r:
        return f"\nPACS watch mode: {r.get('skipped') or r.get('error')}\n"
    rows = (f"\n| PACS, per demo study (registration on) | cold single call | warm watcher |\n| --- | --- | --- |\n"
            f"| seconds (median of {r['studies_warm']} warm) | {r['cold_single_call_seconds']:.1f} (new process: imports, "
            f"model load, pull, analyse, push) | {r['warm_worker_seconds_median']:.1f} pull + analyse + push "
            f"({', '.join(f'{v:.1f}' for v in r['warm_worker_seconds'])}); "
            f"{r['warm_upload_to_results_seconds_median']:.1f} upload to results (Orthanc StableAge 1 s, 0.5 s polls) |\n")
    if "warm_cpu_seconds_median" in r:
        rows += (f"| CPU seconds per warm study (watcher + Orthanc, median) | | {r['warm_cpu_seconds_median']:.1f} "
                 f"(load average {r['load_average_1min'][0]:.1f} -> {r['load_average_1min'][1]:.1f} on {r['cpu_count']} cores) |\n")
    stages = r.get("warm_stages_seconds_median")
    if stages:
        rows += "\n| warm study, stage | seconds (median) |\n| --- | --- |\n" + "".join(
            f"| {k} | {v:.2f} |\n" for k, v in stages.items())
    return rows


def _pacs_only(args) -> int:
    import json

    from mmcore.train import atomic_write_json

    from .pacs.bench import watch_latency

    torch.set_num_threads(1)
    r = watch_latency(Path(tempfile.mkdtemp(prefix="mm-bench-pacs-")), args.bundle, max(1, args.pacs_studies))
    atomic_write_json(Path(args.out) / "bench_pacs.json", r)
    print(json.dumps(r, indent=2) + _pacs_rows(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
