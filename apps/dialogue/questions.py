"""Questions and dialogues about a scene graph, each with its exact answer.

Every answer is one word (``yes``/``no``, a colour, a shape, a size or a count), so a model can
be scored by exact match and every candidate answer can be ranked.

Sort-of-CLEVR (Santoro et al. 2017), per image and per colour ``c``:

=============  =========  ===================================================  ==============
kind           subtype    question                                             answer
=============  =========  ===================================================  ==============
non-relational shape      what shape is the red object ?                       square / circle
non-relational horizontal is the red object on the left ?                      yes / no
non-relational vertical   is the red object on the top ?                       yes / no
relational     closest    what shape is the object closest to the red object ? square / circle
relational     furthest   what shape is the object furthest from the red ... ? square / circle
relational     count      how many other objects have the same shape as ... ?  0 .. 5
=============  =========  ===================================================  ==============

Dialogues (CLEVR-Dialog's families plus spatial relations) carry per round a ``family``, the
coreference ``distance`` (rounds back to the referent's last mention; 0 when the question has
no coreference), the answer, and for questions about one object the ``mention`` (the id of the
object the round leaves in focus: the one asked about, or for "the object closest to X" that
closest object) which later "it" / "that one" / "the earlier <shape>" refer to.
"""
from __future__ import annotations

import math
import random

from .scenes import PALETTE, SHAPES, SIZES

PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
ANSWERS: tuple[str, ...] = ("yes", "no", *PALETTE, *SHAPES, *SIZES, *(str(i) for i in range(9)))


def _dist(a: dict, b: dict) -> float:
    return math.hypot(a["x"] - b["x"], a["y"] - b["y"])


# ----------------------------------------------------------------------------- Sort-of-CLEVR
def sort_of_clevr_questions(scene: dict, rng: random.Random, per_kind: int = 10) -> list[dict]:
    """``per_kind`` non-relational then ``per_kind`` relational questions (colour drawn at random)."""
    objs = scene["objects"]
    half = scene["width"] / 2
    out = []
    for kind in ("nonrel", "rel"):
        for _ in range(per_kind):
            o = rng.choice(objs)
            c = o["colour"]
            sub = rng.randrange(3)
            if kind == "nonrel":
                if sub == 0:
                    q, a, name = f"what shape is the {c} object ?", o["shape"], "shape"
                elif sub == 1:
                    q, a, name = f"is the {c} object on the left ?", "yes" if o["x"] < half else "no", "horizontal"
                else:
                    q, a, name = f"is the {c} object on the top ?", "yes" if o["y"] < half else "no", "vertical"
            else:
                others = [p for p in objs if p is not o]
                if sub == 0:
                    near = min(others, key=lambda p: _dist(o, p))
                    q, a, name = f"what shape is the object closest to the {c} object ?", near["shape"], "closest"
                elif sub == 1:
                    far = max(others, key=lambda p: _dist(o, p))
                    q, a, name = f"what shape is the object furthest from the {c} object ?", far["shape"], "furthest"
                else:
                    n = sum(p["shape"] == o["shape"] for p in others)
                    q, a, name = f"how many other objects have the same shape as the {c} object ?", str(n), "count"
            out.append({"question": q, "answer": a, "family": f"{kind}-{name}", "kind": kind, "distance": 0,
                        "mention": o["id"], "referent": o["id"]})
    return out


# ----------------------------------------------------------------------------- dialogues
def describe(obj: dict, objs: list[dict]) -> str | None:
    """The shortest attribute phrase that picks ``obj`` alone out of ``objs`` ("the large circle")."""
    for keys in (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")):
        match = [p for p in objs if all(p[k] == obj[k] for k in keys)]
        if len(match) == 1:
            return "the " + " ".join(obj[k] for k in keys)
    return None


def _unrevealed(desc: str, rng: random.Random) -> str:
    """An attribute the reference phrase does not already give away."""
    words = desc.split()
    options = [a for a, vocab in (("colour", PALETTE), ("size", SIZES), ("shape", SHAPES))
               if not any(w in vocab for w in words)]
    return rng.choice(options) if options else "colour"


_REL = {"left": ("left of", lambda o, p: p["x"] < o["x"] - 2), "right": ("right of", lambda o, p: p["x"] > o["x"] + 2),
        "above": ("above", lambda o, p: p["y"] < o["y"] - 2), "below": ("below", lambda o, p: p["y"] > o["y"] + 2)}


def _unambiguous_rel(o: dict, objs: list[dict], axis: str) -> bool:
    key = "x" if axis in ("left", "right") else "y"
    return all(abs(p[key] - o[key]) > 2 for p in objs if p is not o)


def _nearest(o: dict, objs: list[dict], far: bool) -> dict | None:
    others = sorted((p for p in objs if p is not o), key=lambda p: _dist(o, p), reverse=far)
    if len(others) >= 2 and abs(_dist(o, others[0]) - _dist(o, others[1])) < 3:
        return None  # a near tie: the question would have no clear answer
    return others[0] if others else None


def _about(target: dict, ref: str, rng: random.Random, objs: list[dict]) -> tuple[str, str, str, dict | None] | None:
    """A question about the object ``target`` named by ``ref``: (question, answer, family, new mention)."""
    choice = rng.random()
    if choice < 0.4:
        attr = _unrevealed(ref, rng)
        return f"what {attr} is {ref} ?", target[attr], f"seek-{attr}", target
    if choice < 0.7:
        far = rng.random() < 0.5
        other = _nearest(target, objs, far)
        if other is None:
            return None
        attr = rng.choice(("colour", "shape", "size"))
        word = "furthest from" if far else "closest to"
        return f"what {attr} is the object {word} {ref} ?", other[attr], f"relate-{'far' if far else 'near'}", other
    axis = rng.choice(list(_REL))
    if not _unambiguous_rel(target, objs, axis):
        return None
    phrase, test = _REL[axis]
    n = sum(test(target, p) for p in objs if p is not target)
    return f"how many objects are {phrase} {ref} ?", str(n), "count-spatial", target


def make_dialogue(scene: dict, rng: random.Random, rounds: int = 10) -> list[dict]:
    """``rounds`` question/answer rounds with coreference to earlier mentions, labelled by distance."""
    objs = scene["objects"]
    mentions: list[tuple[int, dict]] = []  # (round, object), most recent last
    out: list[dict] = []
    while len(out) < rounds:
        r = len(out)
        roll = rng.random()
        item = None
        if mentions and roll < 0.4:
            # coreference to an earlier mention: "it"/"that one" (previous round) or "the earlier <shape>"
            last_round, last_obj = mentions[-1]
            latest_by_shape = {}
            for rr, o in mentions:
                latest_by_shape[o["shape"]] = (rr, o)
            if last_round == r - 1 and rng.random() < 0.35:
                ref, (rr, target) = rng.choice(("it", "that one")), mentions[-1]
            else:
                rr, target = rng.choice(list(latest_by_shape.values()))
                ref = f"the earlier {target['shape']}"
            got = _about(target, ref, rng, objs)
            if got is not None:
                q, a, fam, new = got
                item = {"question": q, "answer": a, "family": f"coref-{fam}", "distance": r - rr, "referent": target["id"],
                        "mention": new["id"]}
                mentions.append((r, new))
        elif roll < 0.58:
            target = rng.choice(objs)
            ref = describe(target, objs)
            if ref is not None:
                got = _about(target, ref, rng, objs)
                if got is not None:
                    q, a, fam, new = got
                    item = {"question": q, "answer": a, "family": fam, "distance": 0, "referent": target["id"],
                            "mention": new["id"]}
                    mentions.append((r, new))
        elif roll < 0.8:
            combos = {(o["colour"], o["shape"]) for o in objs}
            absent = [(c, s) for c in PALETTE for s in SHAPES if (c, s) not in combos]
            # balanced: half the questions ask about an object that is there, half about one that is not
            colour, shape = rng.choice(sorted(combos)) if rng.random() < 0.5 or not absent else rng.choice(absent)
            present = any(p["colour"] == colour and p["shape"] == shape for p in objs)
            item = {"question": f"is there a {colour} {shape} ?", "answer": "yes" if present else "no",
                    "family": "exist", "distance": 0}
        else:
            kind = rng.choice(("all", "colour", "shape", "size"))
            if kind == "all":
                q, n = "how many objects are there ?", len(objs)
            elif kind == "colour":
                value = rng.choice([o["colour"] for o in objs] + list(PALETTE)[:2])
                q, n = f"how many {value} objects are there ?", sum(o["colour"] == value for o in objs)
            elif kind == "shape":
                value = rng.choice(SHAPES)
                q, n = f"how many {PLURAL[value]} are there ?", sum(o["shape"] == value for o in objs)
            else:
                value = rng.choice(list(SIZES))
                q, n = f"how many {value} objects are there ?", sum(o["size"] == value for o in objs)
            item = {"question": q, "answer": str(n), "family": "count", "distance": 0}
        if item is not None:
            item["round"] = r
            out.append(item)
    return out
