"""Training with the shared mmcore Trainer, in two stages.

Stage 1: DiceCE on the lesion + CE on the diagnosis (features pooled in the true lesion), whole-
modality dropout. Stage 2: segmentation frozen, the diagnosis head refitted on descriptors pooled
in the *predicted* lesion (what inference sees), again with modality dropout. Then temperature
calibration on the validation set and a MONAI-bundle-style export."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from .model import FusionSegDiagNet, keep_largest_lesion, lesion_descriptor
from .phantom import CLASS_NAMES
from .train_args import add_arguments  # noqa: F401  (re-exported)


def lose_one_modality(rate: float):
    """mmcore's :class:`~mmcore.missing.ModalityDropout` set so that a study with both MR and CT loses
    exactly one of them with probability ``rate``, each equally likely, and never both.

    Each modality drops independently with ``r = 1 - sqrt(1 - rate)``; when both drop, ``keep_one``
    gives one back at random, so P(a study loses one) = 1 - (1 - r)^2 = ``rate``."""
    import math

    from mmcore.missing import ModalityDropout

    return ModalityDropout(1.0 - math.sqrt(1.0 - rate), keep_one=True)


def make_step(modality_dropout: float = 0.35, seed: int = 0, lesion_weight: float = 5.0, anneal_steps: int = 0):
    """The Trainer's step: during training drop MR or CT from a row with probability ``modality_dropout``.

    Segmentation loss: MONAI ``DiceLoss`` (lesion channel, batch Dice) + cross-entropy whose lesion
    class weight starts at ``lesion_weight`` and falls linearly to 1 over ``anneal_steps`` training
    steps (0: constant).

    Why the weight: a lesion is ~0.15 % of a 4 mm volume (~0.5 % of a lesion-biased patch). With an
    unweighted CE term the net collapses to all-background within ~20 steps and the Dice gradient
    takes hundreds of steps to pull it back (measured: plain DiceCE still predicted nothing after
    320 patch steps). Why annealing: a constant weight of 20 kept the net firing but over-segmented
    (predicted ~3,200 voxels for ~180 true, Dice 0.06); once the lesion is found, an unweighted CE
    gives calibrated boundaries. The counter lives in the closure: a resumed run restarts the anneal.
    """
    from monai.losses import DiceLoss

    from mmcore.train import StepOutput

    dice_loss = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    gen = torch.Generator().manual_seed(seed)
    dropout = lose_one_modality(modality_dropout)
    calls = {"train": 0}

    def current_weight() -> float:
        if not anneal_steps:
            return float(lesion_weight)
        frac = min(1.0, calls["train"] / anneal_steps)
        return 1.0 + (float(lesion_weight) - 1.0) * (1.0 - frac)

    def step(model, batch) -> StepOutput:
        if model.training:
            calls["train"] += 1
        if model.training and len(getattr(model, "modalities", ())) > 1:
            batch = dropout(batch, generator=gen)
        target = batch.fields["seg"]
        # teacher forcing: pool the diagnosis features inside the true lesion while training
        out = model(batch, lesion_weight=target if model.training else None)
        label = batch.fields["label"]
        has_lesion = target.flatten(1).sum(1) > 0       # background-only patches teach segmentation only
        ce = F.cross_entropy(out["logits"][has_lesion], label[has_lesion]) if has_lesion.any() else out["logits"].sum() * 0
        w = current_weight() if model.training else 1.0
        seg_ce = F.cross_entropy(out["seg"], target[:, 0].long(), weight=out["seg"].new_tensor([1.0, w]))
        loss = dice_loss(out["seg"], target) + seg_ce + ce
        return StepOutput(loss, out["logits"].detach(), label)

    step.current_weight = current_weight
    return step


@torch.no_grad()
def collect_logits(model, dataset, batch_size: int = 4, drop: str | None = None):
    """Uncalibrated logits (temperature 1) and labels over a dataset, optionally without one modality."""
    from torch.utils.data import DataLoader

    from .datasets import collate_studies

    model.eval()
    temp = model.temperature.clone()
    model.temperature.fill_(1.0)
    logits, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_studies):
        if drop:
            batch = batch.drop_modality(drop)
        logits.append(model(batch)["logits"])
        labels.append(batch.fields["label"])
    model.temperature.copy_(temp)
    return torch.cat(logits), torch.cat(labels)


class DiagnosisHead(torch.nn.Module):
    """The network's diagnosis part (descriptor GMU + MLP) on precomputed per-modality descriptors."""

    def __init__(self, net: FusionSegDiagNet) -> None:
        super().__init__()
        self.desc_fuse, self.classifier = net.desc_fuse, net.classifier
        self.names = list(net.desc_fuse.in_dims)

    def forward(self, batch):
        feats = {m: batch[m] for m in self.names if batch.get(m) is not None}
        return self.classifier(self.desc_fuse(feats, {m: batch.mask(m) for m in feats}))


@torch.no_grad()
def lesion_descriptors(model: FusionSegDiagNet, dataset) -> list[dict]:
    """Per case: each present modality's descriptor pooled in the *predicted* lesion (as at inference)."""
    from .datasets import collate_studies

    model.eval()
    rows = []
    for i in range(len(dataset)):
        batch = collate_studies([dataset[i]])
        images, present = model.inputs(batch)
        seg, maps = model.segment(images, present)
        weight = keep_largest_lesion(seg.softmax(1)[:, 1:2])     # exactly what inference pools in
        row = {"label": int(batch.fields["label"][0])}
        for m, x in maps.items():
            ok = model.fusion != "gated" or bool(present[m][0])
            row[m] = lesion_descriptor(x, weight)[0] if ok else None
        rows.append(row)
    return rows


def fit_diagnosis_head(model: FusionSegDiagNet, train_ds, val_ds, out_dir: Path, *, epochs: int = 150,
                       modality_dropout: float = 0.35, seed: int = 0) -> dict:
    """Stage 2: the segmentation is frozen; the head learns from lesion descriptors pooled in the
    predicted lesion (exactly what inference pools), with whole-modality dropout, via the Trainer."""
    import torchmetrics

    from mmcore.data import MultimodalCollator
    from mmcore.train import StepOutput, TrainConfig, Trainer

    names = list(model.desc_fuse.in_dims)
    train_rows, val_rows = lesion_descriptors(model, train_ds), lesion_descriptors(model, val_ds)
    head = DiagnosisHead(model)
    gen = torch.Generator().manual_seed(seed)
    dropout = lose_one_modality(modality_dropout)

    def step(m, batch):
        if m.training and len(names) > 1:
            batch = dropout(batch, generator=gen)
        logits = m(batch)
        return StepOutput(F.cross_entropy(logits, batch.fields["label"]), logits.detach(), batch.fields["label"])

    cfg = TrainConfig(out_dir=str(out_dir), epochs=epochs, batch_size=16, lr=3e-3, weight_decay=1e-3, device="cpu",
                      monitor="val_loss", monitor_mode="min", seed=seed, progress=False, log_every=20)
    metrics = torchmetrics.MetricCollection({"auroc": torchmetrics.classification.MulticlassAUROC(4),
                                             "accuracy": torchmetrics.classification.MulticlassAccuracy(4)})
    shapes = {m: tuple(next(r[m] for r in train_rows if r.get(m) is not None).shape) for m in names}
    trainer = Trainer(head, cfg, train_rows, val_rows, collate_fn=MultimodalCollator(names, shapes=shapes),
                      step_fn=step, metrics=metrics)
    result = trainer.fit()
    best = Path(result.run_dir) / "best" / "model.safetensors"
    if best.exists():
        from mmcore.train import load_weights

        load_weights(head, best)
    return {"head_" + k: v for k, v in trainer.evaluate(val_rows).items()}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising validation NLL of ``logits / T``."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def export_bundle(model: FusionSegDiagNet, out: Path, metrics: dict | None = None, note: str = "") -> Path:
    """MONAI bundle layout: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.safetensors``."""
    from mmcore.train import atomic_write_json, atomic_write_text, save_weights

    from .transforms import CT_WINDOW, ROI, SPACING

    out = Path(out)
    save_weights(model, out / "models" / "model.safetensors", metadata={"format": "apps.medical.FusionSegDiagNet"})
    atomic_write_json(out / "configs" / "metadata.json", {
        "name": "mmcore medical CT+MR fusion (demo phantoms)", "version": "0.1.0",
        "task": "lesion segmentation + 4-class diagnosis from MR and/or CT",
        "network_data_format": {"inputs": {"mr": {"shape": [1, *ROI], "spacing_mm": SPACING},
                                           "ct": {"shape": [1, *ROI], "window_hu": CT_WINDOW}},
                                "outputs": {"seg": {"channels": 2}, "logits": {"classes": 4}}},
        "class_names": list(CLASS_NAMES), "metrics": metrics or {},
    })
    atomic_write_json(out / "configs" / "inference.json", {"model": model.config, "roi": list(ROI), "spacing": list(SPACING),
                                                          "temperature": float(model.temperature)})
    if note:
        atomic_write_text(out / "docs" / "README.md", note)
    return out


def load_bundle(path: Path | str, device: str = "cpu") -> FusionSegDiagNet:
    from mmcore.train import load_weights

    path = Path(path)
    cfg = json.loads((path / "configs" / "inference.json").read_text())
    m = cfg["model"]
    # bundles written before ``gmu_levels`` existed fused levels 1 and 2 with a GMU
    model = FusionSegDiagNet(tuple(m["modalities"]), m["fusion"], tuple(m["channels"]), m["hidden"], m["n_classes"],
                             gmu_levels=tuple(m.get("gmu_levels", (1, 2))))
    load_weights(model, path / "models" / "model.safetensors", device=device)
    return model.to(device).eval()


def calibrate(bundle: Path, data: list[Path], split: str = "validation", cache: Path | None = None) -> dict:
    """Refit the bundle's temperature on ``split`` of one or more data sets and rewrite the bundle.

    Why a separate step: the temperature must come from studies like the ones the model will see.
    The demo's validation studies use coarser native grids than the test studies (to keep training
    quick); the model is more accurate on the finer ones, so a temperature fitted on the coarse
    split left it underconfident there."""
    from .datasets import cached_dataset, prepare_cases, read_datalist
    from .evaluate import expected_calibration_error

    model = load_bundle(bundle)
    items = []
    for d in data:
        entries = read_datalist(Path(d) / "datalist.json").get(split, [])
        items += prepare_cases(entries, Path(cache) if cache else Path(d) / "cache")
    if not items:
        raise SystemExit(f"no '{split}' studies in {', '.join(map(str, data))}")
    logits, labels = collect_logits(model, cached_dataset(items, augment=False))
    before = float(model.temperature)
    after = fit_temperature(logits, labels)

    def scores(t: float) -> dict:
        probs = (logits / t).softmax(-1)
        return {"nll": float(F.cross_entropy(logits / t, labels)),
                "ece": expected_calibration_error(probs, labels)}

    report = {"studies": len(items), "split": split, "data": [str(d) for d in data],
              "temperature_before": before, "temperature_after": after, "before": scores(before), "after": scores(after)}
    model.temperature.fill_(after)
    meta_path = Path(bundle) / "configs" / "metadata.json"
    metrics = json.loads(meta_path.read_text()).get("metrics", {}) if meta_path.exists() else {}
    export_bundle(model, Path(bundle), {**metrics, "temperature": after, "calibration": report})
    return report


def init_weights(model: FusionSegDiagNet, path: Path) -> list[str]:
    """Copy every tensor of ``path`` (bundle folder or .safetensors) whose name and shape fit ``model``;
    returns the names that did not fit (printed): fine-tuning from a related checkpoint."""
    from safetensors.torch import load_file

    file = path / "models" / "model.safetensors" if path.is_dir() else path
    if not file.exists():
        raise SystemExit(f"--init {path}: no weights at {file}")
    source, own = load_file(str(file)), model.state_dict()
    fit = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape and k != "temperature"}
    skipped = sorted(set(source) - set(fit) - {"temperature"})
    model.load_state_dict(fit, strict=False)
    print(f"[medical] initialised {len(fit)} tensors from {file}" + (f"; skipped {skipped}" if skipped else ""))
    return skipped


def train(args) -> dict:
    """`mm medical train`: data (generated if asked) -> cache -> Trainer -> calibration -> bundle."""
    import torchmetrics

    from mmcore.data import MultimodalBatch  # noqa: F401 - documents what collate_studies returns
    from mmcore.train import TrainConfig, Trainer, config_from_args
    from mmcore.utils.seed import seed_everything

    from .datasets import PATCH, cached_dataset, collate_studies, prepare_cases, read_datalist

    torch.set_num_threads(max(1, args.threads))
    data = Path(args.data)
    if not (data / "datalist.json").exists():
        if not args.generate:
            raise SystemExit(f"{data}: no datalist.json; pass --generate N_TRAIN,N_VAL,N_TEST to create demo data")
        from .demo_data import generate

        n = [int(x) for x in args.generate.split(",")]
        generate(data, *n, seed=args.data_seed, dicom_every=5, drop_every=8)
    datalist = read_datalist(data / "datalist.json")
    cache = Path(args.cache or data / "cache")
    train_items = prepare_cases(datalist["training"], cache)
    val_items = prepare_cases(datalist.get("validation", []), cache)
    seed_everything(args.seed)
    model = FusionSegDiagNet(tuple(args.modalities.split(",")), args.fusion)
    if getattr(args, "init", None):
        init_weights(model, Path(args.init))
    cfg = config_from_args(args, base=TrainConfig(out_dir=args.out_dir, epochs=12, batch_size=4, lr=3e-3,
                                                  monitor="val_loss", monitor_mode="min", checkpoint_every=0))
    cfg.eval_every_epochs = max(1, getattr(args, "eval_every_epochs", 1))
    metrics = torchmetrics.MetricCollection({"auroc": torchmetrics.classification.MulticlassAUROC(4),
                                             "accuracy": torchmetrics.classification.MulticlassAccuracy(4)})
    train_ds = cached_dataset(train_items, augment=True, patch=PATCH if args.patches else None)
    val_ds = cached_dataset(val_items, augment=False)
    trainer = Trainer(model, cfg, train_ds, val_ds, collate_fn=collate_studies,
                      step_fn=make_step(args.modality_dropout, args.seed, args.lesion_weight, args.anneal_steps), metrics=metrics,
                      extra_config={"model": model.config, "modality_dropout": args.modality_dropout,
                                    "lesion_weight": args.lesion_weight, "anneal_steps": args.anneal_steps, "data": str(data), "data_seed": args.data_seed})
    if not args.head_only:
        result = trainer.fit(resume=args.resume)
    else:
        from mmcore.train import TrainResult

        result = TrainResult(Path(cfg.out_dir), 0, 0, None, None)
    best = Path(result.run_dir) / "best" / "model.safetensors"
    if best.exists():
        from mmcore.train import load_weights

        load_weights(model, best)
    head_metrics = fit_diagnosis_head(model, cached_dataset(train_items, augment=False), val_ds,
                                      Path(result.run_dir) / "head", epochs=args.head_epochs,
                                      modality_dropout=args.modality_dropout, seed=args.seed)
    result.last_metrics.update(head_metrics)
    logits, labels = collect_logits(model, val_ds)
    model.temperature.fill_(fit_temperature(logits, labels))
    bundle = export_bundle(model, Path(result.run_dir) / "bundle", {**result.last_metrics, "temperature": float(model.temperature)},
                           note=f"Trained by `mm medical train` on {data} ({len(train_items)} train / {len(val_items)} val studies).\n")
    if args.export:
        dst = Path(args.export)
        if dst.exists():
            shutil.rmtree(dst / "models", ignore_errors=True)
        shutil.copytree(bundle, dst, dirs_exist_ok=True)
    print(f"[medical] trained: {result.last_metrics}; temperature {float(model.temperature):.3f}; bundle {bundle}")
    return {"run_dir": str(result.run_dir), "bundle": str(bundle), **result.last_metrics}


