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
object the round leaves in focus: the one asked about, for "the object closest to X" that
closest object, for "is there a red circle ?" / "how many red objects are there ?" the one object
when exactly one matches) which later "it" / "that one" / "the earlier <shape>" refer to.

Phrasing: each family has several templates (:data:`TEMPLATES`); the ``train`` set is used by
every split, the ``heldout`` set only when a dialogue is made with ``phrasing="heldout"`` (the
held-out phrasing column of the evaluation). Training dialogues use ``phrasing="paraphrase"``: the
train set plus :data:`EXTRA_TEMPLATES`, with fillers and unknown-word noise (:func:`embellish`).
Questions are then typed as people type (:func:`typed`): capitalised, "?" glued to the last word
or left out, "color" for "colour".
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


# ----------------------------------------------------------------------------- phrasing
# {a} attribute word, {ref} referent phrase, {rel} "closest to"/"furthest from", {sp} "left of"...,
# {art} a/an, {x} "red circle", {xs} "red circles" / "red objects"
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "seek": {"train": ("what {a} is {ref} ?", "which {a} is {ref} ?", "tell me the {a} of {ref}",
                       "{ref} is what {a} ?"),
             "heldout": ("what is the {a} of {ref} ?", "what {a} does {ref} have ?")},
    "relate": {"train": ("what {a} is the object {rel} {ref} ?", "which {a} is the object {rel} {ref} ?",
                         "tell me the {a} of the object {rel} {ref}"),
               "heldout": ("what is the {a} of the object {rel} {ref} ?", "the object {rel} {ref} is what {a} ?")},
    "count-spatial": {"train": ("how many objects are {sp} {ref} ?", "count the objects {sp} {ref}",
                                "what is the number of objects {sp} {ref} ?"),
                      "heldout": ("how many things are {sp} {ref} ?", "how many objects do you see {sp} {ref} ?")},
    "exist": {"train": ("is there {art} {x} ?", "are there any {xs} ?", "do you see {art} {x} ?"),
              "heldout": ("can you see {art} {x} ?", "is there {art} {x} in the image ?")},
    "count": {"train": ("how many {xs} are there ?", "count the {xs}", "what is the number of {xs} ?"),
              "heldout": ("how many {xs} do you see ?", "how many {xs} are in the image ?")},
}
# Training-only paraphrases (``phrasing="paraphrase"``: the train templates plus these, then
# :func:`embellish`); none uses a word that only the held-out templates use.
# Added in two generations: a generation's new words are appended to the vocabulary after the
# earlier generations' (see :func:`paraphrase_words`), so a saved model's word ids stay valid.
_EXTRA_V1: dict[str, tuple[str, ...]] = {
    "seek": ("name the {a} of {ref}", "{a} of {ref} ?"),
    "relate": ("name the {a} of the object {rel} {ref}", "{a} of the object {rel} {ref} ?"),
    "count-spatial": ("how many objects lie {sp} {ref} ?", "number of objects {sp} {ref} ?"),
    "exist": ("is there any {x} ?", "any {xs} ?"),
    "count": ("number of {xs} ?", "how many {xs} are shown ?", "give me the number of {xs}"),
}
_EXTRA_V2: dict[str, tuple[str, ...]] = {
    "seek": ("what would you say is the {a} of {ref} ?", "i wonder what {a} {ref} is",
             "which {a} would you say {ref} is ?"),
    "relate": ("what would you say is the {a} of the object {rel} {ref} ?",),
    "count-spatial": ("how many objects do you notice {sp} {ref} ?", "how many objects would you say are {sp} {ref} ?",
                      "how many items are {sp} {ref} ?"),
    "exist": ("do you notice {art} {x} ?", "do you spot any {xs} ?", "would you say there is {art} {x} ?",
              "is there {art} {x} shown ?"),
    "count": ("how many {xs} do you notice ?", "how many {xs} do you spot ?", "how many {xs} would you say there are ?",
              "how many {xs} are visible ?", "how many {xs} are in this picture ?"),
}
EXTRA_TEMPLATES: dict[str, tuple[str, ...]] = {k: _EXTRA_V1[k] + _EXTRA_V2[k] for k in _EXTRA_V1}
# Openers and trailing clauses that say nothing about the question family: training puts them on
# questions of *every* family, so a "do you ..." or "in the ..." clause at the end is not read as
# an existence question (the family is in the question's head: "how many", "is there", "what").
_PREFIXES_V1 = ("please", "now", "ok", "so", "and", "hey", "ok so", "now tell me ,")
_PREFIXES_V2 = ("i wonder ,", "look ,", "tell me ,", "quick question ,")
_SUFFIXES_V1 = ("please", "here", "now", "in this picture", "in the picture", "in this scene", "in the scene")
_SUFFIXES_V2 = ("that you see", "that you notice", "do you think", "would you say", "if you look", "in view",
                "you spot", "that is visible", "shown here", "at the moment")
PREFIXES = _PREFIXES_V1 + _PREFIXES_V2
SUFFIXES = _SUFFIXES_V1 + _SUFFIXES_V2
# function words a paraphrase may lose to an unknown word without changing what is asked
_REPLACEABLE = ("the", "is", "are", "a", "an", "of", "there", "me", "what", "which")
# generic nouns that stand for "any object": an unknown word may stand in for them ("how many <unk>
# are left of it ?" reads as "things", "items", "shapes" people use)
_GENERIC = ("object", "objects", "items")
# words a paraphrase may drop without changing what is asked ("how many objects left of it ?")
_DROPPABLE = ("the", "is", "are", "there", "a", "an", "please")
RELATIONS = {"near": ("closest to", "nearest to"), "far": ("furthest from", "farthest from")}
ATTRIBUTE_WORDS = {"colour": ("colour", "color"), "shape": ("shape",), "size": ("size",)}
TOTAL = "how many objects are there in total ?"


def template_words() -> list[str]:
    """Every word the phrasing layer can produce (the tokenizer's vocabulary must hold them)."""
    words = TOTAL.split() + [w for rel in RELATIONS.values() for r in rel for w in r.split()]
    words += [w for ws in ATTRIBUTE_WORDS.values() for w in ws] + ["thing", "things"]
    for fam in TEMPLATES.values():
        for group in fam.values():
            for t in group:
                words += [w for w in t.split() if not w.startswith("{")]
    return list(dict.fromkeys(words))


def paraphrase_words() -> list[str]:
    """The words of the training-only paraphrases (appended to the vocabulary after the templates')."""
    groups = (*_EXTRA_V1.values(), _PREFIXES_V1, _SUFFIXES_V1, *_EXTRA_V2.values(), _PREFIXES_V2, _SUFFIXES_V2,
              _GENERIC)
    words = [w for group in groups for t in group for w in t.split() if not w.startswith("{")]
    return list(dict.fromkeys(words))


def phrase(kind: str, rng: random.Random, phrasing: str = "train", **parts: str) -> str:
    """One template of family ``kind`` from the ``phrasing`` set ("train", "heldout", or "paraphrase":
    the train set plus :data:`EXTRA_TEMPLATES`), filled with ``parts``."""
    if phrasing == "paraphrase":
        return rng.choice(TEMPLATES[kind]["train"] + EXTRA_TEMPLATES[kind]).format(**parts)
    return rng.choice(TEMPLATES[kind][phrasing]).format(**parts)


def embellish(question: str, rng: random.Random, unknown: str = "<unk>") -> str:
    """Training noise for phrasings never seen: an optional prefix / suffix (:data:`PREFIXES`,
    :data:`SUFFIXES`, either on any family), and at times an ``unknown`` token inserted anywhere or
    standing in for a function word or a generic noun ("objects"), or a function word dropped, so
    that the model learns to read past words it does not know."""
    words = question.split()
    mark = words[-1:] if words and words[-1] == "?" else []
    body = words[: len(words) - len(mark)]
    roll = rng.random()
    if roll < 0.2:
        body = rng.choice(PREFIXES).split() + body
    elif roll < 0.5:
        body = body + rng.choice(SUFFIXES).split()
    elif roll < 0.55:
        body = rng.choice(PREFIXES).split() + body + rng.choice(SUFFIXES).split()
    if rng.random() < 0.2:
        body.insert(rng.randrange(len(body) + 1), unknown)
    if rng.random() < 0.1:
        spots = [i for i, w in enumerate(body) if w in _REPLACEABLE]
        if spots:
            body[rng.choice(spots)] = unknown
    if rng.random() < 0.15:
        spots = [i for i, w in enumerate(body) if w in _GENERIC]
        if spots:
            body[rng.choice(spots)] = unknown
    if rng.random() < 0.1:
        spots = [i for i, w in enumerate(body) if w in _DROPPABLE]
        if spots and len(body) > 3:
            del body[rng.choice(spots)]
    return " ".join(body + mark)


def typed(question: str, rng: random.Random) -> str:
    """As people type: sometimes capitalised, "?" glued to the last word or dropped."""
    q = question
    roll = rng.random()
    if q.endswith(" ?") and roll < 0.3 and not q[:-2].endswith(">"):    # "<unk>?" would not read as <unk>
        q = q[:-2] + "?"
    elif q.endswith(" ?") and roll < 0.4:
        q = q[:-2]
    if rng.random() < 0.3:
        q = q[0].upper() + q[1:]
    return q


def _attr_word(attr: str, rng: random.Random) -> str:
    return rng.choice(ATTRIBUTE_WORDS[attr])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


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


def _about(target: dict, ref: str, rng: random.Random, objs: list[dict], phrasing: str = "train"
           ) -> tuple[str, str, str, dict | None] | None:
    """A question about the object ``target`` named by ``ref``: (question, answer, family, new mention)."""
    choice = rng.random()
    if choice < 0.4:
        attr = _unrevealed(ref, rng)
        return phrase("seek", rng, phrasing, a=_attr_word(attr, rng), ref=ref), target[attr], f"seek-{attr}", target
    if choice < 0.7:
        far = rng.random() < 0.5
        other = _nearest(target, objs, far)
        if other is None:
            return None
        attr = rng.choice(("colour", "shape", "size"))
        rel = rng.choice(RELATIONS["far" if far else "near"])
        q = phrase("relate", rng, phrasing, a=_attr_word(attr, rng), rel=rel, ref=ref)
        return q, other[attr], f"relate-{'far' if far else 'near'}", other
    axis = rng.choice(list(_REL))
    if not _unambiguous_rel(target, objs, axis):
        return None
    sp, test = _REL[axis]
    n = sum(test(target, p) for p in objs if p is not target)
    return phrase("count-spatial", rng, phrasing, sp=sp, ref=ref), str(n), "count-spatial", target


def _exist(objs: list[dict], rng: random.Random, phrasing: str) -> dict:
    combos = {(o["colour"], o["shape"]) for o in objs}
    absent = [(c, s) for c in PALETTE for s in SHAPES if (c, s) not in combos]
    # balanced: half the questions ask about an object that is there, half about one that is not
    colour, shape = rng.choice(sorted(combos)) if rng.random() < 0.5 or not absent else rng.choice(absent)
    match = [p for p in objs if p["colour"] == colour and p["shape"] == shape]
    q = phrase("exist", rng, phrasing, art=_article(colour), x=f"{colour} {shape}", xs=f"{colour} {PLURAL[shape]}")
    item = {"question": q, "answer": "yes" if match else "no", "family": "exist", "distance": 0,
            "matches": len(match), "phrase": f"{colour} {shape}"}
    if len(match) == 1:       # "is there a red circle ?" - "yes" - "what size is it ?"
        item.update(mention=match[0]["id"], referent=match[0]["id"])
    return item


def _count(objs: list[dict], rng: random.Random, phrasing: str) -> dict:
    kind = rng.choice(("all", "colour", "shape", "size"))
    if kind == "all":
        match, xs = objs, "objects"
        q = TOTAL if rng.random() < 0.25 else phrase("count", rng, phrasing, xs=xs)
    else:
        if kind == "colour":
            value = rng.choice([o["colour"] for o in objs] + list(PALETTE)[:2])
            xs = f"{value} objects"
        elif kind == "shape":
            value = rng.choice(SHAPES)
            xs = PLURAL[value]
        else:
            value = rng.choice(list(SIZES))
            xs = f"{value} objects"
        match = [o for o in objs if o[kind] == value]
        q = phrase("count", rng, phrasing, xs=xs)
    item = {"question": q, "answer": str(len(match)), "family": "count", "distance": 0, "matches": len(match),
            "phrase": xs}
    if len(match) == 1 and kind != "all":
        item.update(mention=match[0]["id"], referent=match[0]["id"])
    return item


def make_dialogue(scene: dict, rng: random.Random, rounds: int = 10, phrasing: str = "train",
                  followups: float = 0.5) -> list[dict]:
    """``rounds`` question/answer rounds with coreference to earlier mentions, labelled by distance.

    ``phrasing`` picks the template set ("paraphrase", for training, also :func:`embellish`-es every
    question); ``followups`` is the chance that a round after an existence or count question that
    singled out one object asks about "it" (``followup: True``).
    """
    objs = scene["objects"]
    mentions: list[tuple[int, dict]] = []  # (round, object), most recent last
    out: list[dict] = []
    while len(out) < rounds:
        r = len(out)
        roll = rng.random()
        item = None
        after = out[-1] if out else None
        follow = (after is not None and after["family"] in ("exist", "count") and "mention" in after
                  and rng.random() < followups)
        if follow or (mentions and roll < 0.4):
            # coreference to an earlier mention: "it"/"that one" (previous round) or "the earlier <shape>"
            last_round, last_obj = mentions[-1]
            latest_by_shape = {}
            for rr, o in mentions:
                latest_by_shape[o["shape"]] = (rr, o)
            if follow or (last_round == r - 1 and rng.random() < 0.35):
                ref, (rr, target) = rng.choice(("it", "that one")), mentions[-1]
            else:
                rr, target = rng.choice(list(latest_by_shape.values()))
                ref = f"the earlier {target['shape']}"
            got = _about(target, ref, rng, objs, phrasing)
            if got is not None:
                q, a, fam, new = got
                item = {"question": q, "answer": a, "family": f"coref-{fam}", "distance": r - rr, "referent": target["id"],
                        "mention": new["id"], "followup": bool(follow)}
                mentions.append((r, new))
        elif roll < 0.58:
            target = rng.choice(objs)
            ref = describe(target, objs)
            if ref is not None:
                got = _about(target, ref, rng, objs, phrasing)
                if got is not None:
                    q, a, fam, new = got
                    item = {"question": q, "answer": a, "family": fam, "distance": 0, "referent": target["id"],
                            "mention": new["id"]}
                    mentions.append((r, new))
        else:
            item = _exist(objs, rng, phrasing) if roll < 0.8 else _count(objs, rng, phrasing)
            if "mention" in item:
                mentions.append((r, next(o for o in objs if o["id"] == item["mention"])))
        if item is not None:
            item["round"] = r
            if phrasing == "paraphrase":
                item["question"] = embellish(item["question"], rng)
            item["question"] = typed(item["question"], rng)
            out.append(item)
    return out
