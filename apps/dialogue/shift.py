"""The evaluation suite: in distribution, held-out combinations, image shifts, held-out phrasings and
follow-ups, one column each, every column scored with the model's *own* answers in the history.

=====================  ========  ====================  =========  =========================================
column                 split     pixels                phrasing   what it checks
=====================  ========  ====================  =========  =========================================
``test``               test      :func:`scenes.render`  train      in distribution
``heldout_combos``     heldout   render                train      (colour, shape) pairs never trained on
``antialiased`` ...    test      :data:`augment.SHIFTS` train      antialiased (4x LANCZOS), JPEG q75 / q50,
                                                                  2x bicubic up, 0.75x bicubic down,
                                                                  Gaussian noise sigma 8, and the second
                                                                  drawing routine (:mod:`.drawing_alt`)
``phrasing_heldout``   test      render                heldout    question templates never trained on
``followups``          test      render                train      every existence / count question that
                                                                  singles out one object is followed by
                                                                  "... it ?" (row ``followup``)
=====================  ========  ====================  =========  =========================================

The shift columns use the same scenes and dialogues as ``test`` (fixed seeds), so a column's drop is
the shift's alone. Abstention is scored through the bot (:mod:`.abstain`), not here.
"""
from __future__ import annotations

from . import data as D
from .augment import SHIFTS
from .evaluate import evaluate

# name -> (split, view, phrasing, followups)
COLUMNS: dict[str, tuple[str, str | None, str, float]] = {
    "test": ("test", None, "train", 0.5),
    "heldout_combos": ("heldout", None, "train", 0.5),
    **{name: ("test", name, "train", 0.5) for name in SHIFTS},
    "phrasing_heldout": ("test", None, "heldout", 0.5),
    "followups": ("test", None, "train", 1.0),
}


def column_dataset(name: str, n: int, layout: str = "per_turn", workers: int = 0):
    split, view, phrasing, followups = COLUMNS[name]
    return D.build("dialogue", split, n, view=view, phrasing=phrasing, followups=followups, layout=layout,
                   workers=workers)


def run_suite(model, n: int = 100, device="cpu", columns: list[str] | None = None, blind: bool = False,
              workers: int = 0, log=print) -> dict[str, dict]:
    """``{column: evaluate(...) report}`` with the model's own answers in the history."""
    reports = {}
    for name in columns or list(COLUMNS):
        ds = column_dataset(name, n, getattr(getattr(model, "config", None), "image_layout", "per_turn"), workers)
        reports[name] = evaluate(model, ds, protocol="own", blind=blind, device=device)
        if log:
            log(f"[suite] {name}: acc={reports[name]['accuracy']:.4f} n={reports[name]['n']}")
    return reports


def suite_table(reports: dict[str, dict], abstention: dict | None = None) -> str:
    """One table: rows = overall, coreference distance, follow-ups, families; one column per suite column
    (accuracy in %, own answers in the history), then the abstention figures when given."""
    names = list(reports)
    width = max(9, *(len(n) for n in names))
    head = f"{'row':<28}" + "".join(f"{n:>{width + 1}}" for n in names)
    lines = [head, "-" * len(head)]

    def row(label: str, group: str | None, key: str | None) -> None:
        cells = []
        for n in names:
            rep = reports[n]
            value = rep["accuracy"] if group is None else rep.get(group, {}).get(key)
            cells.append(f"{value * 100:>{width}.1f}%" if value is not None else f"{'-':>{width + 1}}")
        lines.append(f"{label:<28}" + "".join(cells))

    row("overall", None, None)
    row("  rounds", None, None)
    lines[-1] = f"{'  rounds':<28}" + "".join(f"{reports[n]['n']:>{width + 1}}" for n in names)
    for key in ("0", "1", "2", "3", ">=4"):
        row(f"coref distance {key}", "distance", key)
    row("follow-up after exist/count", "followup", "after exist/count")
    families = sorted({k for r in reports.values() for k in r.get("family", {})})
    for fam in families:
        row(f"family {fam}", "family", fam)
    values = sorted({k for r in reports.values() for k in r.get("count_value", {})}, key=int)
    for value in values:
        row(f"count answer {value}", "count_value", value)
    if abstention:
        lines.append("")
        lines.append(f"abstention (through the bot, {abstention['answerable']} answerable + "
                     f"{abstention['unanswerable']} unanswerable rounds)")
        lines.append(f"  precision {abstention['precision'] * 100:.1f}%  recall {abstention['recall'] * 100:.1f}%  "
                     f"answerable refused {abstention['refused_answerable'] * 100:.1f}%  "
                     f"answerable correct {abstention['answerable_correct'] * 100:.1f}%")
        for kind, (hit, total) in sorted(abstention["by_kind"].items()):
            lines.append(f"  {kind:<26} {hit}/{total} abstained")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- abstention
OOV_QUESTIONS = ("what is the weather like ?", "who drew this picture ?", "what colour is the dog ?",
                 "how old is the red circle ?", "is the triangle happy ?", "what time is it ?",
                 "translate this into french", "why is the square blue ?")
PHOTO_QUESTIONS = ("what colour is the circle ?", "how many objects are there ?", "is there a red square ?")


def unanswerable_rounds(scene: dict, rng) -> list[tuple[list[str], str, str]]:
    """Labelled unanswerable rounds about ``scene``: (questions asked before it, the question, kind)."""
    from .questions import PLURAL, phrase
    from .scenes import PALETTE, SHAPES

    objs = scene["objects"]
    combos = {(o["colour"], o["shape"]) for o in objs}
    absent = sorted((c, s) for c in PALETTE for s in SHAPES if (c, s) not in combos)
    c, s = rng.choice(absent)
    out = [([], phrase("seek", rng, "train", a="size",
                       ref=f"the {c} {s}"), "absent"),
           ([f"is there a {c} {s} ?"], "what size is it ?", "absent-followup")]
    shapes = [o["shape"] for o in objs]
    shared = sorted({sh for sh in shapes if shapes.count(sh) >= 2})
    if shared:
        sh = rng.choice(shared)
        out.append(([], f"what colour is the {sh} ?", "ambiguous"))
        out.append(([f"how many {PLURAL[sh]} are there ?"], "what size is it ?", "ambiguous-followup"))
    out.append(([], rng.choice(OOV_QUESTIONS), "out-of-vocabulary"))
    return out


def abstention_suite(backend, n: int = 30, views: tuple[str | None, ...] = (None, "alt_renderer"), log=print) -> dict:
    """Precision / recall of abstaining through the guarded bot, and how often answerable rounds are refused.

    Answerable: the first ``n`` test dialogues under each of ``views`` (10 rounds each, own answers in the
    history). Unanswerable: per scene the rounds of :func:`unanswerable_rounds` (absent, ambiguous, "it"
    after a "no" or after several matches, out-of-vocabulary), and every natural photo shipped with
    scikit-image asked :data:`PHOTO_QUESTIONS`."""
    import random

    from .abstain import guard, is_refusal, natural_photos
    from .data import generate_samples, view_image
    from .session import Session

    bot = guard(backend)
    answerable = refused_ok = correct = 0
    by_kind: dict[str, list[int]] = {}
    samples = generate_samples("dialogue", "test", n)
    for view in views:
        for sample in samples:
            session = Session(bot, view_image(sample, view))
            for item in sample.rounds:
                answer = session.ask(item["question"])
                answerable += 1
                refused_ok += is_refusal(answer)
                correct += answer == item["answer"]
    for sample in samples:
        image = view_image(sample, None)
        for before, question, kind in unanswerable_rounds(sample.scene, random.Random(sample.seed)):
            session = Session(bot, image)
            for q in before:
                session.ask(q)
            hit = by_kind.setdefault(kind, [0, 0])
            hit[0] += is_refusal(session.ask(question))
            hit[1] += 1
    for _name, photo in natural_photos():
        for question in PHOTO_QUESTIONS:
            hit = by_kind.setdefault("natural photo", [0, 0])
            hit[0] += is_refusal(Session(bot, photo).ask(question))
            hit[1] += 1
    unanswerable = sum(t for _, t in by_kind.values())
    abstained = sum(h for h, _ in by_kind.values())
    result = {"answerable": answerable, "unanswerable": unanswerable,
              "precision": abstained / max(1, abstained + refused_ok), "recall": abstained / max(1, unanswerable),
              "refused_answerable": refused_ok / max(1, answerable), "answerable_correct": correct / max(1, answerable),
              "by_kind": {k: tuple(v) for k, v in by_kind.items()}, "views": [v or "render" for v in views]}
    if log:
        log(f"[suite] abstention: precision {result['precision']:.3f} recall {result['recall']:.3f} "
            f"answerable refused {result['refused_answerable']:.3f}")
    return result
