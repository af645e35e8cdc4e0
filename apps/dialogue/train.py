"""Training with the shared :class:`mmcore.train.Trainer`: SceneVLM, its blind / no-history
variants, and the Sort-of-CLEVR CNN+MLP and Relation Network baselines.

The VLM's loss is next-token cross-entropy on answer tokens only (the answer word and ``</s>``).
With ``mix_own > 0`` each training batch first answers every round itself (no gradient) and a
fraction of the history's answers is replaced by those predictions before the loss pass, so the
model learns to follow up on its own, possibly wrong, answers.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mmcore.train import StepOutput, TrainConfig, Trainer, atomic_write_json, atomic_write_text

from . import data as D
from .evaluate import _vlm_inputs, evaluate, own_answers, summary_line
from .model import SceneVLMConfig, SceneVLMForConditionalGeneration
from .tokenizer import vocabulary

log = logging.getLogger(__name__)

MODELS = ("vlm", "blind", "nohistory", "cnn_mlp", "rn")


def vlm_step(mix_own: float = 0.0, blind: bool = False, aux_weight: float = 1.0,
             count_families: dict[int, int] | None = None):
    """Answer-token loss, plus (models with a reasoner / attribute words) the focus-pointer and
    object-attribute losses from the scene graph, weighted by ``aux_weight``; ``count_families``
    maps a family index to the reasoner count (0 tally, 1 relate gate) its numeric answer supervises."""
    def step(model, batch) -> StepOutput:
        inputs = _vlm_inputs(batch, blind)
        targets = batch.fields["targets"].flatten(0, 1)
        amask = batch.fields["answer_mask"].flatten(0, 1)
        slots = model.config.num_image_tokens
        mention = batch.fields.get("mention")
        true_focus = None
        if mention is not None and model.config.reasoner_layers:
            mention = mention.flatten(0, 1)                                       # [N, R]
            true_focus = torch.where((mention >= 0) & (mention < slots), mention, torch.full_like(mention, -1))
            inputs["mention_slots"] = true_focus
        if mix_own > 0 and model.training:
            with torch.no_grad():
                own_out = model(**{**inputs, "mention_slots": None})
                own = own_answers(own_out.logits[amask])
            rows, cols = amask.nonzero(as_tuple=True)
            swap = torch.rand(len(rows), device=own.device) < mix_own
            ids = inputs["input_ids"].clone()
            ids[rows[swap], cols[swap] + 1] = own[swap]
            inputs["input_ids"] = ids
            if true_focus is not None:   # the memory also follows the model's own focus at times
                own_focus = own_out.mentions[:, : true_focus.shape[1]]
                pick = torch.rand(true_focus.shape, device=own_focus.device) < mix_own
                inputs["mention_slots"] = torch.where(pick, own_focus, true_focus)
        out = model(**inputs)
        logits = out.logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        loss = loss + aux_weight * auxiliary_loss(out, batch, mention, count_families)
        return StepOutput(loss, logits[amask].detach().float(), targets[amask])
    return step


def auxiliary_loss(out, batch, mention: torch.Tensor | None, count_families: dict[int, int] | None = None
                   ) -> torch.Tensor:
    """Focus pointer (which object the round puts in focus, or none), referent pointer (which object the
    question names, the anchor of a relation), the hand-off gate, the counts + attributes of each object slot.

    ``mention`` ``[N, R]`` is the batch's focus labels, flattened as the step's sequences are."""
    loss = out.logits.new_zeros(())
    referent = batch.fields.get("referent")
    referent = referent.flatten(0, 1) if referent is not None else None
    for logits, labels in ((out.pointer_logits, mention), (out.anchor_logits, referent)):
        if logits is None or labels is None:
            continue
        label = per_group(labels, out)
        # a slot the model cannot see (blind baseline, a missed region) is not asked for
        masked = logits.gather(1, label.clamp(min=0)[:, None]).squeeze(1) <= -1e30
        label = torch.where(masked, torch.full_like(label, -100), label)
        if bool((label != -100).any()):
            loss = loss + F.cross_entropy(logits.float(), label, ignore_index=-100)
    if out.relation_logits is not None and mention is not None and referent is not None:
        # the round asks about an object related to the one it names when its focus is not its referent
        focus, named = per_group(mention, out), per_group(referent, out)
        known = (focus >= 0) & (named >= 0)
        if bool(known.any()):
            loss = loss + F.binary_cross_entropy_with_logits(out.relation_logits[known].float(),
                                                             (focus != named)[known].float())
    if out.counts is not None and count_families:
        loss = loss + count_loss(out, batch, count_families)
    if out.attribute_logits is not None and "slot_attributes" in batch.fields:
        from .scenes import SHAPES

        attrs, logits = batch.fields["slot_attributes"], out.attribute_logits.float()
        s = len(SHAPES)
        if bool((attrs[..., 0] != -100).any()):
            loss = loss + F.cross_entropy(logits[..., :s].flatten(0, 1), attrs[..., 0].flatten(), ignore_index=-100)
            loss = loss + F.cross_entropy(logits[..., s:].flatten(0, 1), attrs[..., 1].flatten(), ignore_index=-100)
    return loss


DIALOGUE_COUNTS = {"count": 0, "count-spatial": 1, "coref-count-spatial": 1}


def count_families_for(mode: str) -> dict[int, int]:
    """Family index -> reasoner count its answer supervises (dialogues only: Sort-of-CLEVR's count is of
    objects *of the same shape*, which neither count measures)."""
    if mode != "dialogue":
        return {}
    return {D.DIALOGUE_FAMILIES.index(f): which for f, which in DIALOGUE_COUNTS.items()}


def count_loss(out, batch, count_families: dict[int, int]) -> torch.Tensor:
    """Huber loss between a counting round's numeric answer and the reasoner's soft count for it
    (the tally for "how many red objects", the relate gate for "how many objects are left of it"):
    the count heads learn from the number itself, not only through the language model."""
    fam, ans = per_group(batch.fields["family"].flatten(0, 1), out), per_group(batch.fields["answer"].flatten(0, 1), out)
    which = torch.full_like(fam, -1)
    for f, w in count_families.items():
        which[fam == f] = w
    value = _answer_numbers().to(ans.device)[ans.clamp(min=0)]
    got = out.counts.float().gather(1, which.clamp(min=0)[:, None]).squeeze(1)
    keep = (which >= 0) & (ans >= 0) & (value >= 0) & ~got.isnan()     # NaN: a count this model lacks
    if not bool(keep.any()):
        return out.counts.new_zeros(())
    return F.smooth_l1_loss(got[keep], value[keep])


def per_group(labels: torch.Tensor, out) -> torch.Tensor:
    """``[N, R]`` per-round labels -> ``[G]`` one per image group (its row and round); -100 for a
    group before any question."""
    label = labels[out.group_row, out.group_round.clamp(min=0, max=labels.shape[1] - 1)]
    return torch.where(out.group_round >= 0, label, torch.full_like(label, -100))


@functools.cache
def _answer_numbers() -> torch.Tensor:
    """``[V]``: the number each vocabulary word means (-1 for words that are not numbers)."""
    return torch.tensor([float(w) if w.isdigit() else -1.0 for w in vocabulary()])


def baseline_step(model, batch) -> StepOutput:
    logits = model(batch)
    target = batch.fields["targets"].flatten(0, 1)[batch.fields["answer_mask"].flatten(0, 1)]
    return StepOutput(F.cross_entropy(logits.float(), target), logits.detach().float(), target)


def build_model(kind: str, model_config: dict | None = None):
    if kind in ("vlm", "blind", "nohistory"):
        # object_identity on unless asked off (configs saved before it existed load with it off)
        # new models: the question-aware reasoner with mention memory + attribute words (configs saved
        # before these existed load with them off)
        defaults = {"object_identity": True, "reasoner_layers": 3, "attribute_words": True, "word_match": True,
                    "relate": True, "relate_gate": True, "handoff": True, "tally": True}
        cfg = {**defaults, **(model_config or {})}
        # the reasoner's extras need the reasoner (and grounding the words it matches): a config that
        # turns those off gets them off too unless it asks for them explicitly
        asked = model_config or {}
        if not cfg["reasoner_layers"]:
            cfg["relate"] = asked.get("relate", False)
            cfg["tally"] = asked.get("tally", False)
        if not cfg["relate"]:
            cfg["relate_gate"] = cfg["handoff"] = False
        if not (cfg["reasoner_layers"] and cfg["object_identity"] and cfg["attribute_words"]):
            cfg["word_match"] = asked.get("word_match", False)
        return SceneVLMForConditionalGeneration(SceneVLMConfig(**cfg))
    from .baselines import CNNMLP, RelationNetwork

    return CNNMLP() if kind == "cnn_mlp" else RelationNetwork()


class TimeToAccuracy:
    """Every ``every`` steps: evaluate on ``data``; remember when each target was first reached."""

    def __init__(self, data, every: int, target: float, device, out_csv: Path, blind: bool = False,
                 time_limit: float | None = None) -> None:
        self.data, self.every, self.target, self.device, self.out_csv = data, every, target, device, out_csv
        self.blind, self.time_limit = blind, time_limit
        self.t0 = time.perf_counter()
        self.eval_s = 0.0
        self.rows: list[dict] = []
        self.reached: dict | None = None

    def _fit_schedule_to_time(self, trainer) -> None:
        """After 100 steps, shorten the run (and its LR schedule) so it ends by ``time_limit``."""
        from mmcore.train.trainer import _lr_lambda

        rate = trainer.step / max(1e-6, time.perf_counter() - self.t0 - self.eval_s)
        # evaluations cost time too: budget them at their share so far (at least 10%)
        total = int(rate * self.time_limit * 0.9)
        if total < trainer.total_steps:
            trainer.total_steps = max(total, trainer.step + 1)
            trainer.config.max_steps = trainer.total_steps
            trainer.scheduler.lr_lambdas = [_lr_lambda(trainer.config, trainer.total_steps)]
            log.info(f"{rate:.1f} steps/s: the run ends at step {trainer.total_steps} to fit {self.time_limit:.0f}s")

    def on_step_end(self, trainer) -> None:
        if self.time_limit and trainer.step == 100:
            self._fit_schedule_to_time(trainer)
        if self.time_limit and time.perf_counter() - self.t0 > self.time_limit and trainer.step < trainer.total_steps:
            trainer.config.max_steps = trainer.step  # hard stop: time is up
        if trainer.step % self.every:
            return
        t = time.perf_counter()
        rep = evaluate(trainer.model, self.data, blind=self.blind, device=trainer.device, batch_images=256)
        self.eval_s += time.perf_counter() - t
        row = {"step": trainer.step, "wall_s": round(t - self.t0, 2), "train_s": round(t - self.t0 - self.eval_s + (time.perf_counter() - t), 2),
               "accuracy": rep["accuracy"], **{f"acc_{k}": v for k, v in rep.get("kind", {}).items()}}
        self.rows.append(row)
        key = "acc_rel" if "acc_rel" in row else "accuracy"
        log.info(f"step {trainer.step} wall {row['wall_s']}s " + " ".join(f"{k}={v}" for k, v in row.items() if k.startswith("acc")))
        if self.reached is None and row[key] >= self.target:
            self.reached = row
        self.save()

    def save(self) -> None:
        if not self.rows:
            return
        self.out_csv.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "step", k))
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.out_csv, buf.getvalue())


def run_training(kind: str, mode: str, config: TrainConfig, train_images: int, val_images: int, test_images: int,
                 mix_own: float = 0.0, eval_every: int = 200, target: float = 0.94, workers: int = 0,
                 model_config: dict | None = None, resume: bool = False, export: str | Path | None = None,
                 time_limit: float | None = None, init_from: str | Path | None = None,
                 init_fresh: tuple[str, ...] = (), view: str | None = None) -> dict:
    """Generate data, fit, evaluate on the test split (and held-out split in dialogue mode).

    ``view="randomised"`` trains (and validates) on render-randomised pixels (:mod:`.augment`)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model '{kind}' (choose from {', '.join(MODELS)})")
    t_data = time.perf_counter()
    history = kind != "nohistory"
    raw = kind in ("cnn_mlp", "rn")
    layout = (model_config or {}).get("image_layout", "per_turn")
    train = D.build(mode, "train", train_images, history=history, with_raw=raw, workers=workers, layout=layout,
                    view=view)
    val = D.build(mode, "val", val_images, history=history, with_raw=raw, workers=workers, layout=layout, view=view)
    data_s = time.perf_counter() - t_data
    log.info(f"generated {train_images}+{val_images} {mode} images in {data_s:.1f}s")
    model = build_model(kind, model_config)
    if init_from is not None:
        warm_start(model, init_from, init_fresh)
    blind = kind == "blind"
    # the numeric answers supervise the counts of models with the tally (configs from before it train as they did)
    counted = count_families_for(mode) if getattr(model.config, "tally", False) else {}
    step = vlm_step(mix_own, blind, count_families=counted) if kind in ("vlm", "blind", "nohistory") else baseline_step
    import torchmetrics

    metrics = torchmetrics.MetricCollection({"accuracy": torchmetrics.classification.MulticlassAccuracy(
        num_classes=len(vocabulary()), average="micro")})
    out = Path(config.out_dir)
    timer = TimeToAccuracy(val, eval_every, target, None, out / "time_to_accuracy.csv", blind=blind,
                           time_limit=time_limit)
    extra = {"model": {"kind": kind, "mode": mode, "config": model_config or {}, "mix_own": mix_own,
                       "train_images": train_images, "val_images": val_images,
                       "init_from": str(init_from) if init_from else None, "init_fresh": list(init_fresh),
                       "view": view}}
    trainer = Trainer(model, config, train, val, collate_fn=D.collator(), step_fn=step, metrics=metrics,
                      callbacks=[timer], extra_config=extra)
    timer.device = trainer.device
    timer.t0 = time.perf_counter()
    result = trainer.fit(resume=resume)
    fit_s = time.perf_counter() - timer.t0
    timer.save()
    report = {"kind": kind, "mode": mode, "train_wall_s": round(fit_s, 1), "data_s": round(data_s, 1),
              "device": str(trainer.device), "steps": result.step, "val": result.last_metrics,
              "time_to_target": timer.reached, "target": target}
    if test_images:
        test = D.build(mode, "test", test_images, history=history, with_raw=raw, workers=workers, layout=layout)
        for protocol in (("true", "own") if mode == "dialogue" and kind != "nohistory" else ("true",)):
            rep = evaluate(trainer.model, test, protocol=protocol, blind=blind, device=trainer.device)
            report[f"test_{protocol}"] = rep
            log.info(f"test ({protocol} history): {summary_line(rep)}")
        if mode == "dialogue":
            held = D.build(mode, "heldout", max(50, test_images // 4), history=history, workers=workers, layout=layout)
            rep = evaluate(trainer.model, held, protocol="own" if kind != "nohistory" else "true", blind=blind,
                           device=trainer.device)
            report["heldout_combos"] = rep
            log.info(f"held-out attribute combinations: {summary_line(rep)}")
    if kind in ("vlm", "nohistory", "blind"):
        report["unseen_words"] = tie_unseen_words(trainer.model, train.text)
    atomic_write_json(out / "report.json", report)
    if export and kind in ("vlm", "nohistory", "blind"):
        export_pretrained(trainer.model, export, note=json.dumps({k: report[k] for k in ("kind", "mode", "steps")}))
    return report


def tie_unseen_words(model: SceneVLMForConditionalGeneration, text: torch.Tensor) -> list[str]:
    """Give every vocabulary word that never occurs in the training ``text`` (token ids) the ``<unk>``
    embedding, and return those words.

    Such a word (one only the held-out phrasings use, or a Sort-of-CLEVR word in a dialogue model)
    keeps its random initial embedding, which the model reads as some arbitrary signal; as ``<unk>``
    it reads as the unknown words that training inserts into questions (:func:`questions.embellish`).
    """
    from .tokenizer import SPECIALS, UNK

    vocab = vocabulary()
    seen = set(torch.unique(text).tolist())
    unseen = [i for i, w in enumerate(vocab) if i not in seen and w not in SPECIALS]
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[unseen] = emb[vocab.index(UNK)].detach().clone()
    names = [vocab[i] for i in unseen]
    log.info(f"{len(names)} words never seen in training read as {UNK}: {' '.join(names)}")
    return names


LEGACY_PREFIXES = ("film_",)   # the FiLM question conditioning, removed (unused once the reasoner existed)
VOCAB_ROWS = ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")


def warm_start(model: torch.nn.Module, source: str | Path, fresh: tuple[str, ...] = ()) -> list[str]:
    """Load the weights of a ``save_pretrained`` directory (or a ``.safetensors`` file) into ``model``.

    Every tensor of the source must fit the new model (same name and shape); tensors the new model
    adds (a newly switched-on part), and those whose names start with one of ``fresh``, keep their
    fresh initialisation and are returned by name. Two exceptions: word embeddings and the LM head
    may have fewer rows than the new vocabulary (words are only ever appended: the old rows are
    copied, the new ones start fresh), and the removed FiLM conditioning's ``film_*`` tensors are
    dropped.
    """
    from safetensors.torch import load_file

    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"--init-from: no model.safetensors in {source}")
    weights = {k: v for k, v in load_file(str(file)).items() if not k.startswith(LEGACY_PREFIXES)}
    own = model.state_dict()
    for name in VOCAB_ROWS:
        if name in weights and name in own and weights[name].shape[0] < own[name].shape[0] \
                and weights[name].shape[1:] == own[name].shape[1:]:
            grown = own[name].clone()
            grown[: weights[name].shape[0]] = weights[name].to(grown.dtype)
            weights[name] = grown
    unknown = sorted(k for k in weights if k not in own)
    wrong = sorted(k for k in weights if k in own and own[k].shape != weights[k].shape)
    if unknown or wrong:
        raise ValueError(f"--init-from {file}: does not fit this model (unknown tensors {unknown[:5]}, "
                         f"shape mismatches {wrong[:5]}); use the same --hidden/--layers/--heads")
    weights = {k: v for k, v in weights.items() if not k.startswith(tuple(fresh))}
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=False)
    fresh = sorted(k for k in own if k not in weights)
    log.info(f"initialised from {file}; {len(fresh)} new tensors start fresh: "
             f"{', '.join(fresh) if fresh else 'none'}")
    return fresh


def export_pretrained(model: SceneVLMForConditionalGeneration, out_dir: str | Path, note: str = "",
                      half: bool = True) -> Path:
    """``save_pretrained`` the model (fp16 weights, to ship small) with its tokenizer."""
    from .tokenizer import make_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu")
    if half:
        model = model.half()
    model.save_pretrained(out)
    model.float()
    make_tokenizer(model.config.image_layout).save_pretrained(out)
    if note:
        atomic_write_text(out / "TRAINED_WITH.txt", note + "\n")
    return out
