"""Train the fused model and every baseline with the shared Trainer, and measure what fusion adds.

Post task (one run each, ``runs/<out>/models/post-<name>/``):

| name        | sees                               | notes                                          |
|-------------|------------------------------------|------------------------------------------------|
| image       | pixels (SmallCNN, end to end)      | its CNN is then frozen as the image encoder    |
| text        | text features                      |                                                |
| graph       | user metadata + graph + post stats | no content                                     |
| text+image  | TFN(text, image)                   | no graph                                       |
| late_fusion | logistic regression on the val-set | sums per-modality scores: cannot express XOR    |
|             | logits of text, image, graph       |                                                |
| fused       | TFN(text, image) + hetero GNN      | the full model                                 |

User task (bots): text (mean of the user's post features), metadata, graph (metadata + GNN),
fused (text + metadata + GNN).  Each Trainer run keeps its best-validation weights; predictions
come from one full-graph forward pass in eval mode.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mmcore.eval.robustness import modality_subsets
from mmcore.train import TrainConfig, Trainer, load_weights
from mmcore.utils.io import atomic_write_json

from .dataset import SocialTensors, SubgraphCollator
from .image import image_features
from .model import ModelConfig, SocialModel

logger = logging.getLogger(__name__)
POST_MODELS = {
    "image": dict(use_image=True, image_dim=0),
    "text": dict(use_text=True),
    "graph": dict(use_graph=True, use_meta=True),
    "text+image": dict(use_text=True, use_image=True),
    "fused": dict(use_text=True, use_image=True, use_graph=True, use_meta=True),
}
USER_MODELS = {
    "text": dict(use_text=True),
    "metadata": dict(use_meta=True),
    "graph": dict(use_meta=True, use_graph=True),
    "fused": dict(use_text=True, use_meta=True, use_graph=True),
}


def _metrics(n_classes: int):
    import torchmetrics

    return torchmetrics.MetricCollection({
        "accuracy": torchmetrics.classification.MulticlassAccuracy(n_classes, average="micro"),
        "f1": torchmetrics.classification.MulticlassF1Score(n_classes, average="macro"),
    })


def train_one(store: SocialTensors, task: str, name: str, flags: dict, out_dir: Path, base: TrainConfig,
              fanouts: list[int]) -> tuple[SocialModel, dict]:
    classes = store.post_classes if task == "post" else store.user_classes
    image = store.post.tensors.get("image")
    dims = {"text_dim": store.post["text"].shape[1], "image_dim": image.shape[1] if image is not None else 0}
    cfg = ModelConfig(task=task, n_classes=len(classes), **{**dims, **flags})
    torch.manual_seed(base.seed)  # the initial weights depend on the seed alone, not on what ran before
    model = SocialModel(cfg, list(store.graph.edge_index))
    collate = SubgraphCollator(store, task, fanouts if cfg.use_graph else [], use_pixels=cfg.image_dim == 0)
    run_dir = out_dir / f"{task}-{name.replace('+', '_')}"
    n_train = len(store.seeds(task, "train"))
    # a few hundred accounts would be one optimiser step per epoch: keep at least ~4 steps per epoch.
    # Posts: at least ~16 steps per epoch.  The text x image (XOR) interaction is learned from a
    # saddle and needs optimiser steps, not epochs: at 3k posts a 512 batch gave 4 steps per epoch
    # (~50 in all, XOR posts near chance on 2 of 5 seeds); 20k posts keep batch 512 (23 per epoch).
    batch_size = max(16, min(base.batch_size, n_train // (16 if task == "post" else 4)))
    tcfg = replace(base, out_dir=str(run_dir), monitor="val_accuracy" if task == "post" else "val_f1",
                   monitor_mode="max", keep_checkpoints=1, batch_size=batch_size)
    trainer = Trainer(model, tcfg, store.seeds(task, "train"), store.seeds(task, "val"), collate_fn=collate,
                      metrics=_metrics(len(classes)), extra_config={"model": cfg.to_dict(), "task": task, "name": name,
                                                                     "fanouts": fanouts, "classes": classes,
                                                                     "sampler": collate.sampler_backend})
    import time

    t0 = time.perf_counter()
    result = trainer.fit(resume=False)
    seconds = time.perf_counter() - t0
    best = run_dir / "best" / "model.safetensors"
    if best.exists():
        load_weights(model, best)
    return model, {"best_val": result.best_metric, "steps": result.step, "seconds": round(seconds, 1),
                   "run_dir": str(run_dir)}


@torch.no_grad()
def predict(model: SocialModel, store: SocialTensors, task: str, chunk: int = 65536,
            post_content: Sequence[str] | None = None) -> np.ndarray:
    """Class probabilities for every node of the task's type: one full-graph pass (eval mode).

    ``post_content``: the post modalities available at test time (of ``"text"``, ``"image"``); the
    others are marked absent in every post (``MultimodalBatch.only``), as a user's data without them
    would be. ``None``: all of them."""
    model.eval()
    collate = SubgraphCollator(store, task, [], use_pixels=model.cnn is not None)

    def run(batch):
        if post_content is not None:
            keep = set(post_content) | {"stats"} | ({"pixels"} if "image" in post_content else set())
            batch = replace(batch, post=batch.post.only(keep))
        return torch.softmax(model(batch), -1)

    if model.cfg.use_graph:
        return run(collate.full()).numpy()
    n = len(store.post_label if task == "post" else store.user_label)
    return torch.cat([run(collate(list(range(s, min(n, s + chunk))))) for s in range(0, n, chunk)]).numpy()


def missing_modality_table(model: SocialModel, store: SocialTensors, rows: np.ndarray) -> dict[str, float]:
    """Test accuracy of the fused post model when only each subset of the post content (text, image)
    is there at test time (:func:`mmcore.eval.robustness.modality_subsets`; ``"none"``: the graph alone)."""
    labels = store.post_label.numpy()
    table = {}
    for subset in [*modality_subsets(["text", "image"]), ()]:
        pred = predict(model, store, "post", post_content=subset).argmax(1)
        table["+".join(subset) or "none"] = round(float((pred[rows] == labels[rows]).mean()), 4)
    return table


def late_fusion(probs: dict[str, np.ndarray], labels: np.ndarray, fit_rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Logistic regression on the unimodal log-probabilities, fitted on ``fit_rows`` (validation)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([np.log(np.clip(p, 1e-6, 1)) for p in probs.values()], 1)
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x[fit_rows], labels[fit_rows])
    out = np.zeros((len(x), probs[next(iter(probs))].shape[1]))
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def f1_threshold(p_positive: np.ndarray, is_positive: np.ndarray) -> float:
    """The probability threshold that maximises F1 of the positive class on these (validation) rows.

    A rare class (bots) under plain cross-entropy rarely passes 0.5; choosing the threshold on the
    validation rows (never the test rows) is how an F1 operating point is set.  0.5 if no positives."""
    from sklearn.metrics import precision_recall_curve

    if not is_positive.any() or is_positive.all():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(is_positive, p_positive)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _score(pred: np.ndarray, labels: np.ndarray, rows: np.ndarray, positive: int | None = None) -> dict:
    from sklearn.metrics import f1_score

    y, p = labels[rows], pred[rows]
    out = {"accuracy": float((y == p).mean()) if len(y) else float("nan"),
           "f1_macro": float(f1_score(y, p, average="macro")) if len(y) else float("nan")}
    if positive is not None and len(y):
        out["f1_positive"] = float(f1_score(y, p, pos_label=positive, average="binary", zero_division=0))
    return out


def default_train_config(**overrides) -> TrainConfig:
    values = dict(epochs=12, batch_size=512, lr=3e-3, weight_decay=0.05, progress=False, patience=4)
    return TrainConfig(**{**values, **overrides})


def train_all(store: SocialTensors, out_dir: str | Path, base: TrainConfig | None = None, fanouts=(15,),
              post_models=tuple(POST_MODELS), user_models=tuple(USER_MODELS), log=None) -> dict:
    """Train every model that the data's labels allow; return probabilities and test metrics.
    ``log``: a progress callable (default: this module's logger at INFO)."""
    log = log or logger.info
    out_dir = Path(out_dir)
    base = base or default_train_config()
    fanouts = list(fanouts)
    report: dict = {"post": {}, "user": {}, "post_probs": {}, "user_probs": {}, "runs": {}}
    if len(store.post_classes) >= 2 and len(store.seeds("post", "train")):
        labels = store.post_label.numpy()
        test = (store.post_split == "test") & (labels >= 0)
        val = (store.post_split == "val") & (labels >= 0)
        wanted = [m for m in POST_MODELS if m in post_models]
        if "image" in wanted or any(POST_MODELS[m].get("use_image") for m in wanted):
            model, info = train_one(store, "post", "image", POST_MODELS["image"], out_dir / "models", base, fanouts)
            report["runs"]["post/image"] = info
            if "image" in wanted:
                report["post_probs"]["image"] = predict(model, store, "post")
            present = store.post.present["pixels"]
            store.add_post_modality("image", torch.as_tensor(image_features(model.cnn, store.post["pixels"].numpy(),
                                                                            present.numpy())), present)
        for name in wanted:
            if name == "image":
                continue
            log(f"training post model '{name}'")
            model, info = train_one(store, "post", name, POST_MODELS[name], out_dir / "models", base, fanouts)
            report["runs"][f"post/{name}"] = info
            report["post_probs"][name] = predict(model, store, "post")
            if name == "fused":
                report["post_missing"] = missing_modality_table(model, store, test)
                log(f"fused post model with post content missing at test time: {report['post_missing']}")
        uni = {k: report["post_probs"][k] for k in ("text", "image", "graph") if k in report["post_probs"]}
        if len(uni) >= 2:
            report["post_probs"]["late_fusion"] = late_fusion(uni, labels, val)
        log(f"post runs: {report['runs']}")
        for name, probs in report["post_probs"].items():
            report["post"][name] = _score(probs.argmax(1), labels, test)
    if len(store.user_classes) >= 2 and len(store.seeds("user", "train")):
        labels = store.user_label.numpy()
        test = (store.user_split == "test") & (labels >= 0)
        val = (store.user_split == "val") & (labels >= 0)
        positive = store.user_classes.index("bot") if "bot" in store.user_classes else None
        for name in [m for m in USER_MODELS if m in user_models]:
            log(f"training user model '{name}'")
            model, info = train_one(store, "user", name, USER_MODELS[name], out_dir / "models", base, fanouts)
            report["runs"][f"user/{name}"] = info
            probs = report["user_probs"][name] = predict(model, store, "user")
            pred = probs.argmax(1)
            if positive is not None and len(store.user_classes) == 2:  # the F1 operating point, set on validation
                threshold = f1_threshold(probs[val, positive], labels[val] == positive)
                pred = np.where(probs[:, positive] >= threshold, positive, 1 - positive)
                info["threshold"] = threshold
            report["user"][name] = _score(pred, labels, test, positive)
    atomic_write_json(out_dir / "train_metrics.json", {k: report[k] for k in ("post", "user", "runs", "post_missing")
                                                       if k in report})
    return report
