"""Scores of the parser + executor on generated dialogues over real result folders.

Per round the parser sees only its *own* earlier parses (its dialogue state is built from its own
programs, never the gold ones), so an error early in a dialogue can cost later rounds.

* program accuracy: the parsed program equals the gold program;
* answer accuracy: the executed answer's text equals the gold program's answer (pictures: the
  programs must match, the rendering is deterministic);
* by coreference distance (rounds back to the account a pronoun refers to);
* abstention precision/recall: positives are the rounds whose gold program is ``abstain()``
  (unanswerable questions, and questions for the other kind of result).
"""
from __future__ import annotations

import random
import time
from collections import defaultdict

from .generate import Dialogue, Inventory
from .session import ResultSession, execute

IMAGE_OPS = ("lesion.image", "subgraph.image")


def evaluate(parser, contexts: list, dialogues: int = 20, rounds: int = 8, phrasing: str = "heldout",
             seed: int = 0) -> dict:
    cache: dict[tuple[int, str], str] = {}

    def answer(ci: int, ctx, program) -> str:
        key = (ci, str(program))
        if key not in cache:
            cache[key] = "<image>" if program.op in IMAGE_OPS else execute(ctx, program).text
        return cache[key]

    n = prog_ok = ans_ok = 0
    tp = fp = fn = 0
    by_dist: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_intent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors: list[dict] = []
    parse_s: list[float] = []
    for ci, ctx in enumerate(contexts):
        inv = Inventory.of(ctx)
        for d in range(dialogues):
            rng = random.Random(seed * 100_003 + ci * 1009 + d)
            gen = Dialogue(inv, rng, phrasing)
            chat = ResultSession(ctx, parser)
            for _ in range(rounds):
                gold = gen.next()
                t0 = time.perf_counter()
                pred, info = chat.parse(gold["question"])
                parse_s.append(time.perf_counter() - t0)
                p_ok = str(pred) == gold["program"]
                gold_answer = answer(ci, ctx, gold["gold"])          # every gold program runs on the real result
                a_ok = p_ok or (pred.op not in IMAGE_OPS and gold["gold"].op not in IMAGE_OPS
                                and answer(ci, ctx, pred) == gold_answer)
                n, prog_ok, ans_ok = n + 1, prog_ok + p_ok, ans_ok + a_ok
                gold_abs, pred_abs = gold["gold"].op == "abstain", pred.op == "abstain"
                tp, fp, fn = tp + (gold_abs and pred_abs), fp + (pred_abs and not gold_abs), fn + (gold_abs and not pred_abs)
                dist = gold["distance"]
                key = "none" if dist == 0 else str(dist) if dist < 3 else ">=3"
                by_dist[key][0] += p_ok
                by_dist[key][1] += 1
                by_intent[gold["intent"]][0] += p_ok
                by_intent[gold["intent"]][1] += 1
                if not p_ok and len(errors) < 30:
                    errors.append({"result": ctx.name, "question": gold["question"], "gold": gold["program"],
                                   "parsed": str(pred), "linked": info["linked"], "intent": info["intent"],
                                   "confidence": info["confidence"]})
    parse_s.sort()
    return {"rounds": n, "results": len(contexts), "phrasing": phrasing,
            "program_accuracy": prog_ok / max(n, 1), "answer_accuracy": ans_ok / max(n, 1),
            "abstention": {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "positives": tp + fn,
                           "tp": tp, "fp": fp, "fn": fn},
            "by_distance": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(by_dist.items())},
            "by_intent": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(by_intent.items())},
            "parse_ms_median": 1000 * parse_s[len(parse_s) // 2] if parse_s else None,
            "errors": errors}


def summary(rep: dict) -> str:
    d = rep["by_distance"]
    dist = ", ".join(f"{k}: {v['accuracy']:.3f} (n={v['n']})" for k, v in d.items())
    a = rep["abstention"]
    return (f"[{rep['phrasing']} phrasing, {rep['results']} results, {rep['rounds']} rounds, own history] "
            f"program {rep['program_accuracy']:.3f}  answer {rep['answer_accuracy']:.3f}  "
            f"abstention P {a['precision']:.3f} R {a['recall']:.3f} (n={a['positives']})  "
            f"by coref distance: {dist}  parse {rep['parse_ms_median']:.2f} ms median")


def validate(parser, n_dialogues: int = 200, seed: int = 10_000, rounds: int = 8, phrasing: str = "val") -> dict:
    """Program accuracy of the parser alone (its own earlier parses as history) on generated dialogues
    over *synthetic* inventories: the validation split for choices about the parser and its training
    data (``phrasing="val"``: train templates and patterns held back from ``fit``, never the held-out
    ones).  No result folders, no execution."""
    from .generate import dialogue, synthetic_inventory
    from .linker import Lexicon
    from .parser import DialogueState

    rng = random.Random(seed)
    n = ok = tp = fp = fn = 0
    by_dist: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors: list[dict] = []
    for i in range(n_dialogues):
        inv = synthetic_inventory(rng, "medical" if i % 2 == 0 else "social")
        lex, state = Lexicon(inv.lexicon_users(), inv.tags), DialogueState()
        history: list[str] = []
        for r in dialogue(inv, rng, rounds, phrasing):
            pred, info = parser.parse(r["question"], state, inv.kind, lex)
            good = str(pred) == r["program"]
            n, ok = n + 1, ok + good
            gold_abs, pred_abs = r["gold"].op == "abstain", pred.op == "abstain"
            tp, fp, fn = tp + (gold_abs and pred_abs), fp + (pred_abs and not gold_abs), fn + (gold_abs and not pred_abs)
            key = "none" if r["distance"] == 0 else str(r["distance"]) if r["distance"] < 3 else ">=3"
            by_dist[key][0] += good
            by_dist[key][1] += 1
            if not good:
                errors.append({"question": r["question"], "gold": r["program"], "parsed": str(pred), "intent": info["intent"],
                               "gold_intent": r["intent"], "distance": r["distance"], "history": history[-4:]})
            history.append(r["question"])
    return {"rounds": n, "program_accuracy": ok / max(n, 1),
            "abstention": {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)},
            "by_distance": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(by_dist.items())},
            "errors": errors}
