"""Accuracy by family, round and coreference distance, under both history protocols, plus ranking.

* ``true`` protocol: the history holds the true answers (one forward pass per dialogue).
* ``own`` protocol: the history holds the model's own answers - round r is answered after the
  model's answers to rounds < r were written into the prompt (R passes), as a bot lives.

Ranking: every candidate answer (:data:`questions.ANSWERS`) is scored by its logit; the true
answer's rank gives MRR and R@1/R@5.  Accuracy is greedy decoding's first token (the answer).
"""
from __future__ import annotations

import json
from collections import defaultdict

import torch
from torch.utils.data import DataLoader

from .answers import answer_ids, own_answers
from .data import DIALOGUE_FAMILIES, SOC_FAMILIES, collator
from .model import SceneVLMForConditionalGeneration
from .tokenizer import vocabulary


def _vlm_inputs(batch, blind: bool = False) -> dict:
    text = batch["text"]
    b, q, t = text.shape
    mask = batch.fields["object_mask"] & batch.present["image"][:, None]
    if blind:
        mask = torch.zeros_like(mask)
    pad = vocabulary().index("<pad>")
    flat = text.reshape(b * q, t)
    return dict(input_ids=flat, attention_mask=(flat != pad).long(), object_pixels=batch["image"],
                object_geometry=batch.fields["geometry"], object_mask=mask,
                image_index=torch.arange(b, device=text.device).repeat_interleave(q))


def answer_logits(model, batch, input_ids: torch.Tensor | None = None, blind: bool = False,
                  mention_slots: torch.Tensor | None = None, with_mentions: bool = False):
    """``[M, V]`` logits of every answer in the batch, in (image, sequence, round) order.

    Models with a mention memory resolve each round's focus themselves unless ``mention_slots`` is
    given; ``with_mentions`` also returns the focus they used (``[N, R]``, or None).
    """
    if not isinstance(model, SceneVLMForConditionalGeneration):
        return (model(batch), None) if with_mentions else model(batch)
    inputs = _vlm_inputs(batch, blind)
    if input_ids is not None:
        inputs["input_ids"] = input_ids
    out = model(**inputs, mention_slots=mention_slots)
    logits = out.logits[batch.fields["answer_mask"].flatten(0, 1)]
    return (logits, out.mentions) if with_mentions else logits


def _own_history_logits(model, batch, blind: bool) -> torch.Tensor:
    mask = batch.fields["answer_mask"].flatten(0, 1)                  # [N, T]
    ids = _vlm_inputs(batch, blind)["input_ids"].clone()
    rows, cols = mask.nonzero(as_tuple=True)
    rnd = (mask.cumsum(1) - 1)[rows, cols]
    out, mentions = None, None
    for r in range(int(rnd.max()) + 1 if len(rnd) else 0):
        # the focus memory does not read answers: resolve it once, then reuse it for every round
        logits, mentions = answer_logits(model, batch, input_ids=ids, blind=blind, mention_slots=mentions,
                                         with_mentions=True)
        if out is None:
            out = torch.zeros(len(rows), logits.shape[-1], device=ids.device)
        this = rnd == r
        out[this] = logits[this].float()
        ids[rows[this], cols[this] + 1] = own_answers(logits[this])   # the model's own answer enters the history
    return out


@torch.no_grad()
def evaluate(model, dataset, protocol: str = "true", blind: bool = False, batch_images: int = 64,
             device: str | torch.device = "cpu") -> dict:
    """Accuracy overall / by family / by round / by distance, and MRR, R@1, R@5."""
    was_training = model.training
    model.eval()
    families = SOC_FAMILIES if dataset.mode == "sort_of_clevr" else DIALOGUE_FAMILIES
    vocab = vocabulary()
    candidates = answer_ids(device)
    stats: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    rr_sum, r1, r5, total = 0.0, 0, 0, 0
    for batch in DataLoader(dataset, batch_size=batch_images, collate_fn=collator()):
        batch = batch.to(device)
        if protocol == "own" and isinstance(model, SceneVLMForConditionalGeneration):
            logits = _own_history_logits(model, batch, blind)
        else:
            logits = answer_logits(model, batch, blind=blind).float()
        answer = batch.fields["answer"]
        valid = answer != -100
        truth = answer[valid]
        family = batch.fields["family"][valid]
        distance = batch.fields["distance"][valid]
        followup = (batch.fields["followup"][valid] if "followup" in batch.fields
                    else torch.zeros_like(distance, dtype=torch.bool))
        rounds = valid.long().cumsum(-1)[valid] - 1
        correct = (logits.argmax(-1) == truth).cpu()
        cand = logits[:, candidates]
        true_score = logits.gather(1, truth[:, None])
        rank = (cand > true_score).sum(1) + 1
        rr_sum += float((1.0 / rank).sum())
        r1 += int((rank <= 1).sum())
        r5 += int((rank <= 5).sum())
        total += len(truth)
        for c, f, d, r, fu, t in zip(correct.tolist(), family.tolist(), distance.tolist(), rounds.tolist(),
                                     followup.tolist(), truth.tolist()):
            name = families[f]
            keys = [("family", name), ("round", str(r)), ("distance", str(d) if d < 4 else ">=4"), ("overall", "all")]
            if fu:       # "what size is it ?" right after "is there a red circle ?" / "how many ... ?"
                keys.append(("followup", "after exist/count"))
            if dataset.mode == "sort_of_clevr":
                keys.append(("kind", name.split("-")[0]))
            if name in ("rel-count", "count"):      # every count value must be answered, not just the common ones
                keys.append(("count_value", vocab[t]))
            for group, key in keys:
                stats[group][key][0] += c
                stats[group][key][1] += 1
    model.train(was_training)
    report = {group: {k: round(v[0] / v[1], 4) for k, v in sorted(vals.items())} for group, vals in stats.items()}
    counts = {group: {k: v[1] for k, v in sorted(vals.items())} for group, vals in stats.items()}
    report["accuracy"] = report.get("overall", {}).get("all", 0.0)
    report["mrr"] = round(rr_sum / max(1, total), 4)
    report["r@1"] = round(r1 / max(1, total), 4)
    report["r@5"] = round(r5 / max(1, total), 4)
    report["n"] = total
    report["counts"] = counts
    report["protocol"] = protocol
    return report


def bot_accuracy(backend, samples) -> dict:
    """Accuracy of the bot itself: each scene rendered to pixels, every question asked through a
    :class:`~apps.dialogue.session.Session` (greedy generation, the bot's own answers in its history;
    Sort-of-CLEVR questions each in a fresh session). No label reaches the model on this path, so it
    checks the teacher-forced figures of :func:`evaluate` end to end."""
    from .scenes import render
    from .session import Session

    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sample in samples:
        image = render(sample.scene)
        session = Session(backend, image)
        for item in sample.rounds:
            if sample.scene.get("mode") == "sort_of_clevr":
                session = Session(backend, image)
            ok = session.ask(item["question"]).strip() == item["answer"]
            for key in (item["family"], "all"):
                stats[key][0] += ok
                stats[key][1] += 1
    return {"accuracy": round(stats["all"][0] / max(1, stats["all"][1]), 4), "n": stats["all"][1],
            "family": {k: round(a / b, 4) for k, (a, b) in sorted(stats.items()) if k != "all"}}


def summary_line(report: dict) -> str:
    parts = [f"acc={report['accuracy']:.4f}", f"mrr={report['mrr']:.4f}", f"r@1={report['r@1']:.4f}",
             f"r@5={report['r@5']:.4f}", f"n={report['n']}"]
    for group in ("kind", "distance"):
        if group in report:
            parts.append(group + ":" + json.dumps(report[group]))
    return " ".join(parts)


def breakdown_table(reports: dict[str, dict]) -> str:
    """Accuracy (and count) by family, round and coreference distance, one column per protocol."""
    names = list(reports)
    lines = [f"{'group':<10} {'key':<22} " + " ".join(f"{n + ' history':>14}" for n in names) + f" {'n':>6}"]
    first = reports[names[0]]
    for group in ("kind", "family", "count_value", "round", "distance"):
        keys = first.get(group, {})
        for key in sorted(keys, key=lambda k: (len(k), k) if group in ("round", "distance") else k):
            accs = " ".join(f"{reports[n].get(group, {}).get(key, float('nan')) * 100:>13.1f}%" for n in names)
            lines.append(f"{group:<10} {key:<22} {accs} {first['counts'][group][key]:>6}")
    accs = " ".join(f"{reports[n]['accuracy'] * 100:>13.1f}%" for n in names)
    lines.append(f"{'overall':<10} {'all':<22} {accs} {first['n']:>6}")
    return "\n".join(lines)
