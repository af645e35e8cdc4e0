"""Training with the shared mmcore Trainer, in two stages.

Stage 1: DiceCE on the lesion + CE on the diagnosis (features pooled in the true lesion), whole-
modality dropout. Stage 2: segmentation frozen, the diagnosis head refitted on descriptors pooled
in the *predicted* lesion (what inference sees), again with modality dropout. Then temperature
calibration on the validation set and a MONAI-bundle-style export."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from .bundle import export_bundle, init_weights, load_bundle  # noqa: F401  (load_bundle re-exported)
from .calibration import calibrate, collect_logits, fit_temperature  # noqa: F401  (calibrate re-exported)
from .model import FusionSegDiagNet, keep_largest_lesion, lesion_descriptor
from .train_args import MedicalTrainConfig, add_arguments  # noqa: F401  (add_arguments re-exported)

log = logging.getLogger(__name__)


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
        # background-only patches and no-lesion studies (label -1) teach segmentation only
        has_lesion = (target.flatten(1).sum(1) > 0) & (label >= 0)
        ce = F.cross_entropy(out["logits"][has_lesion], label[has_lesion]) if has_lesion.any() else out["logits"].sum() * 0
        w = current_weight() if model.training else 1.0
        seg_ce = F.cross_entropy(out["seg"], target[:, 0].long(), weight=out["seg"].new_tensor([1.0, w]))
        loss = dice_loss(out["seg"], target) + seg_ce + ce
        return StepOutput(loss, out["logits"].detach(), label)

    step.current_weight = current_weight
    return step


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
    device = model.temperature.device
    rows = []
    for i in range(len(dataset)):
        batch = collate_studies([dataset[i]]).to(device)
        images, present = model.inputs(batch)
        seg, maps = model.segment(images, present)
        weight = keep_largest_lesion(seg.softmax(1)[:, 1:2])     # exactly what inference pools in
        row = {"label": int(batch.fields["label"][0])}
        for m, x in maps.items():
            ok = model.fusion != "gated" or bool(present[m][0])
            row[m] = lesion_descriptor(x, weight)[0].cpu() if ok else None
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
    train_rows = [r for r in lesion_descriptors(model, train_ds) if r["label"] >= 0]
    val_rows = [r for r in lesion_descriptors(model, val_ds) if r["label"] >= 0]
    model.cpu()     # the descriptors ran on the model's device; the head (a small MLP) trains on the CPU
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


def train(config: MedicalTrainConfig) -> dict:
    """`mm medical train`: data (generated if asked) -> cache -> Trainer -> calibration -> bundle.

    Stage 1 and the descriptor pass run on ``config.trainer.device`` (``auto``: CUDA when present);
    the diagnosis head, the temperature fit and the export run on the CPU."""
    import torchmetrics

    from mmcore.data import MultimodalBatch  # noqa: F401 - documents what collate_studies returns
    from mmcore.train import Trainer
    from mmcore.utils.device import resolve_device
    from mmcore.utils.seed import seed_everything

    from .datasets import PATCH, cached_dataset, collate_studies, prepare_cases, read_datalist

    torch.set_num_threads(max(1, config.threads))
    import warnings

    # MONAI's RandAffined on the stacked modalities re-sets the affine it has just applied: harmless
    warnings.filterwarnings("ignore", message="Setting affine, but the applied meta contains an affine")
    cfg = config.trainer
    cfg.device = str(resolve_device(cfg.device))
    data = Path(config.data)
    if config.randomized:
        from .randomized import build_cache

        lists = build_cache(data, *config.randomized, seed=config.data_seed)
        datalist = {"training": [], "validation": []}
    elif not (data / "datalist.json").exists():
        if not config.generate:
            raise SystemExit(f"{data}: no datalist.json; pass --generate N_TRAIN,N_VAL,N_TEST to create demo data")
        from .demo_data import generate

        generate(data, *config.generate, seed=config.data_seed, dicom_every=5, drop_every=8)
    if config.randomized:
        train_items, val_items = lists["training"], lists["validation"]
    else:
        datalist = read_datalist(data / "datalist.json")
        cache = Path(config.cache or data / "cache")
        train_items = prepare_cases(datalist["training"], cache)
        val_items = prepare_cases(datalist.get("validation", []), cache)
    for extra in map(Path, config.extra_data):
        if not (extra / "datalist.json").exists():
            raise SystemExit(f"--extra-data {extra}: no datalist.json there")
        more = read_datalist(extra / "datalist.json")
        train_items = train_items + prepare_cases(more["training"], extra / "cache")
        val_items = val_items + prepare_cases(more.get("validation", []), extra / "cache")
    seed_everything(cfg.seed)
    model = FusionSegDiagNet(tuple(config.modalities), config.fusion)
    if config.init:
        init_weights(model, Path(config.init))
    # label -1: a study without a lesion (randomised data) teaches segmentation only
    metrics = torchmetrics.MetricCollection({"auroc": torchmetrics.classification.MulticlassAUROC(4, ignore_index=-1),
                                             "accuracy": torchmetrics.classification.MulticlassAccuracy(4, ignore_index=-1)})
    train_ds = cached_dataset(train_items, augment=True, patch=PATCH if config.patches else None)
    val_ds = cached_dataset(val_items, augment=False)
    trainer = Trainer(model, cfg, train_ds, val_ds, collate_fn=collate_studies,
                      step_fn=make_step(config.modality_dropout, cfg.seed, config.lesion_weight, config.anneal_steps),
                      metrics=metrics,
                      extra_config={"model": model.config, "modality_dropout": config.modality_dropout,
                                    "lesion_weight": config.lesion_weight, "anneal_steps": config.anneal_steps,
                                    "data": str(data), "data_seed": config.data_seed,
                                    "extra_data": list(config.extra_data)})
    if not config.head_only:
        result = trainer.fit(resume=config.resume)
    else:
        from mmcore.train import TrainResult

        result = TrainResult(Path(cfg.out_dir), 0, 0, None, None)
    best = Path(result.run_dir) / "best" / "model.safetensors"
    if best.exists():
        from mmcore.train import load_weights

        load_weights(model, best, device=cfg.device)
    head_metrics = fit_diagnosis_head(model, cached_dataset(train_items, augment=False), val_ds,
                                      Path(result.run_dir) / "head", epochs=config.head_epochs,
                                      modality_dropout=config.modality_dropout, seed=cfg.seed)
    result.last_metrics.update(head_metrics)
    logits, labels = collect_logits(model, val_ds)
    model.temperature.fill_(fit_temperature(logits[labels >= 0], labels[labels >= 0]))
    bundle = export_bundle(model, Path(result.run_dir) / "bundle", {**result.last_metrics, "temperature": float(model.temperature)},
                           note=f"Trained by `mm medical train` on {data} ({len(train_items)} train / {len(val_items)} val studies).\n")
    from .ood import fit_for_bundle, save

    save(fit_for_bundle(model, train_items, val_items, source=f"{data}: {len(train_items)} train / {len(val_items)} val"),
         bundle)
    if config.export:
        dst = Path(config.export)
        if dst.exists():
            shutil.rmtree(dst / "models", ignore_errors=True)
        shutil.copytree(bundle, dst, dirs_exist_ok=True)
    log.info("trained: %s; temperature %.3f; bundle %s", result.last_metrics, float(model.temperature), bundle)
    return {"run_dir": str(result.run_dir), "bundle": str(bundle), **result.last_metrics}
