"""Knowing when the bot cannot answer: a guard around the embedded model's backend.

The model answers every question with one answer word; some questions have no such answer. Before
the model is asked, :class:`GuardedBackend` checks the question against what the bot *perceives*
(regions from :mod:`.objects`, colour names from the palette in CIELAB, shape and size from the
model's own attribute head) and answers in words instead:

=================  ==================================================  =======================================
case               detected by                                         answer
=================  ==================================================  =======================================
out of vocabulary  a word the tokenizer does not know                  :data:`OOV_ANSWER` (what it can answer)
not a scene        no region looks like a flat shape on a plain        :data:`NOT_A_SCENE`
                   background (:func:`looks_like_scene`)
absent referent    "the red triangle" matches no perceived object       "there is no red triangle"
ambiguous          "the circle" matches 2+ objects; "it" after          "which one? there are 2 circles"
                   "is there a red circle ?" when 2+ (or 0) match
wrong answer type  the model's word is not of the question's type       :data:`UNSURE`
                   (a colour question answered "large")
=================  ==================================================  =======================================

"it" / "that one" are checked against the dialogue so far: the guard replays the history's questions
and keeps what each left in focus (one object, none, several). Refused rounds are left out of the
history the model reads (it was never trained on sentences as answers).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .objects import extract_objects, palette_index, scene_statistics, srgb_to_lab
from .questions import ANSWERS, PLURAL
from .scenes import PALETTE, SHAPES, SIZES
from .tokenizer import vocabulary, words

OOV_ANSWER = ("i can only answer questions about the shapes in the image: their colour, shape, size, "
              "number and position")
NOT_A_SCENE = "i see no shapes i know in this image"
UNSURE = "i cannot tell"
REFUSAL_PREFIXES = ("i can only", "i see no", "i cannot", "there is no", "which one?")
_SINGULAR = {p: s for s, p in PLURAL.items()}
_COLOURS, _SIZES = set(PALETTE), set(SIZES)
_NUMBERS = {a for a in ANSWERS if a.isdigit()}


def is_refusal(answer: str) -> bool:
    return answer.strip().lower().startswith(REFUSAL_PREFIXES)


# ----------------------------------------------------------------------------- perception
def perceive(model, image, slots: int = 8) -> list[dict]:
    """The objects the bot sees: per region its colour name, shape, size (the model's attribute head)
    and geometry; ``[]`` when no region is found."""
    objs = extract_objects(image, slots=slots)
    mask = objs["object_mask"]
    if not bool(mask.any()):
        return []
    geo = objs["object_geometry"]
    colours = palette_index(geo[:, 6:9], torch.tensor(list(PALETTE.values()), dtype=torch.float32) / 255.0)
    with torch.no_grad():
        vision = model.vision_tower(objs["object_pixels"][None].float(), geo[None].float())
        logits = model.attribute_head(vision)[0]
    s = len(SHAPES)
    names = list(PALETTE)
    return [{"colour": names[int(colours[k])], "shape": SHAPES[int(logits[k, :s].argmax())],
             "size": list(SIZES)[int(logits[k, s:].argmax())], "geometry": geo[k].tolist()}
            for k in mask.nonzero().flatten().tolist()]


def looks_like_scene(image, objects: list[dict]) -> bool:
    """A plain background (>= 85% of the border one colour) holding 1-8 compact regions, each of a
    palette shade (CIELAB distance <= 40), 7-35% of the image side, roughly square bounding box,
    filled >= 40%, and no more than 40% of the image covered."""
    stats = scene_statistics(image)
    if stats["border_uniform"] < 0.85 or not 1 <= stats["regions"] <= 8 or stats["foreground"] > 0.4:
        return False
    if not objects:
        return False
    palette = srgb_to_lab(torch.tensor(list(PALETTE.values()), dtype=torch.float32) / 255.0)
    for o in objects:
        cx, cy, w, h, _area, fill, *rgb = o["geometry"]
        colour_gap = float(torch.cdist(srgb_to_lab(torch.tensor([rgb])), palette).min())
        side = max(w, h)
        if colour_gap > 40 or not 0.07 <= side <= 0.35 or not 0.6 <= w / max(h, 1e-6) <= 1.67 or fill < 0.4:
            return False
    return stats["flatness"] <= 30


# ----------------------------------------------------------------------------- the question
def noun_phrase(tokens: list[str], start: int) -> tuple[dict, str, int] | None:
    """Attributes named from ``tokens[start]`` on ("large red circle" -> size, colour, shape), the phrase
    and where it ends; a noun ("circle", "circles", "object(s)", "thing(s)") must close it."""
    attrs: dict[str, str] = {}
    i = start
    while i < len(tokens) and (tokens[i] in _COLOURS or tokens[i] in _SIZES):
        attrs["colour" if tokens[i] in _COLOURS else "size"] = tokens[i]
        i += 1
    if i >= len(tokens):
        return None
    noun = tokens[i]
    if noun in SHAPES or noun in _SINGULAR:
        attrs["shape"] = _SINGULAR.get(noun, noun)
    elif noun not in ("object", "objects", "thing", "things"):
        return None
    return attrs, " ".join(tokens[start:i + 1]), i + 1


def parse(question: str) -> dict:
    """What a question asks, as far as abstaining needs: ``kind`` (exist / count / about), the named
    set (``attrs``, ``phrase``) or ``coref`` ("it", "that one", "the earlier circle"), the answer type."""
    t = words(question)
    text = " ".join(t)
    out: dict = {"tokens": t, "kind": "about", "attrs": None, "phrase": None, "coref": None}
    if "colour" in t or "color" in t:
        out["type"] = "colour"
    elif "shape" in t:
        out["type"] = "shape"
    elif "size" in t:
        out["type"] = "size"
    elif "how many" in text or "count" in t or "number" in t:
        out["type"] = "number"
    elif t and t[0] in ("is", "are", "do", "does", "can"):
        out["type"] = "yesno"
    else:
        out["type"] = None
    spatial = any(w in t for w in ("left", "right", "above", "below", "closest", "nearest", "furthest", "farthest"))
    if out["type"] == "yesno" and not spatial:
        for i, w in enumerate(t):
            if w in ("a", "an", "any"):
                got = noun_phrase(t, i + 1)
                if got:
                    out.update(kind="exist", attrs=got[0], phrase=got[1])
                    return out
    if out["type"] == "number" and not spatial:
        for i, w in enumerate(t):
            if w in ("many", "the", "of"):
                got = noun_phrase(t, i + 1)
                if got:
                    out.update(kind="count", attrs=got[0], phrase=got[1])
                    return out
    if "it" in t or "that one" in text:
        out["coref"] = "it"
    for i, w in enumerate(t):
        if w == "the" and i + 1 < len(t) and t[i + 1] == "earlier":
            out["coref"] = "earlier"
        elif w == "the":
            got = noun_phrase(t, i + 1)
            # "the object closest to ..." names nothing by itself; "the red object" does
            if got and got[0]:
                out.update(attrs=got[0], phrase=got[1])
    return out


def matches(objects: list[dict], attrs: dict) -> int:
    return sum(all(o[k] == v for k, v in attrs.items()) for o in objects)


def _plural(phrase: str) -> str:
    *head, noun = phrase.split()
    noun = PLURAL.get(noun, noun if noun.endswith("s") else noun + "s")
    return " ".join([*head, noun])


def _singular(phrase: str) -> str:
    *head, noun = phrase.split()
    noun = _SINGULAR.get(noun, noun[:-1] if noun in ("objects", "things") else noun)
    return " ".join([*head, noun])


def focus_state(parsed: dict, objects: list[dict], previous: tuple | None) -> tuple:
    """What a round leaves in focus: ("one",), ("none", phrase), ("many", n, phrase) or ("unknown",)."""
    if parsed["kind"] in ("exist", "count") or (parsed["attrs"] and not parsed["coref"]):
        n = matches(objects, parsed["attrs"] or {})
        phrase = parsed["phrase"]
        return ("one",) if n == 1 else ("none", _singular(phrase)) if n == 0 else ("many", n, _plural(phrase))
    if parsed["coref"] == "it":
        return previous or ("unknown",)
    return ("one",)


def refusal(question: str, history: list[tuple[str, str]], objects: list[dict], scene_like: bool) -> str | None:
    """The abstention for ``question`` (see the module table), or None when the model should answer."""
    parsed = parse(question)
    vocab = set(vocabulary())
    if not parsed["tokens"] or any(w not in vocab for w in parsed["tokens"]):
        return OOV_ANSWER
    if not scene_like:
        return NOT_A_SCENE
    state = None
    for q, _a in history:
        state = focus_state(parse(q), objects, state)
    if parsed["kind"] in ("exist", "count"):
        return None                         # "no" / "0" are answers
    if parsed["attrs"] and parsed["coref"] != "it":
        n = matches(objects, parsed["attrs"])
        if n == 0:
            return f"there is no {_singular(parsed['phrase'])}"
        if n > 1:
            return f"which one? there are {n} {_plural(parsed['phrase'])}"
        return None
    if parsed["coref"] == "it":
        if state is None or state[0] == "unknown":
            return "which one? i do not know what 'it' refers to"
        if state[0] == "none":
            return f"there is no {state[1]}"
        if state[0] == "many":
            return f"which one? there are {state[1]} {state[2]}"
    return None


def answer_has_type(answer: str, kind: str | None) -> bool:
    allowed = {"colour": _COLOURS, "shape": set(SHAPES), "size": _SIZES, "number": _NUMBERS,
               "yesno": {"yes", "no"}}.get(kind)
    return allowed is None or answer.strip() in allowed


class GuardedBackend:
    """Wraps the embedded backend (``inner.model`` is a SceneVLM): abstains as the module table says,
    otherwise streams the model's answer. Everything else is the inner backend's."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self._seen: tuple[int, list[dict], bool] | None = None     # (id(image), objects, scene-like)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _perceive(self, image) -> tuple[list[dict], bool]:
        if self._seen is None or self._seen[0] != id(image):
            objects = perceive(self.inner.model, image, self.inner.model.config.num_image_tokens)
            self._seen = (id(image), objects, looks_like_scene(image, objects))
        return self._seen[1], self._seen[2]

    def stream(self, image, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        if image is None:
            yield from self.inner.stream(image, history, question)     # the inner backend says what is missing
            return
        objects, scene_like = self._perceive(image)
        refused = refusal(question, history, objects, scene_like)
        if refused is not None:
            yield refused
            return
        kept = [(q, a) for q, a in history if not is_refusal(a)]
        answer = "".join(self.inner.stream(image, kept, question)).strip()
        yield answer if answer_has_type(answer, parse(question)["type"]) else UNSURE


def guard(backend):
    """``backend`` wrapped in :class:`GuardedBackend` when it is the embedded SceneVLM, else unchanged."""
    model = getattr(backend, "model", None)
    return GuardedBackend(backend) if hasattr(model, "attribute_head") else backend


def natural_photos() -> list[tuple[str, object]]:
    """(name, RGB image) of the photos that ship inside scikit-image's wheel (read with Pillow; no
    download, scikit-image itself is not imported)."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    names = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "horse.png",
             "motorcycle_left.png", "rocket.jpg", "page.png", "moon.png", "brick.png", "phantom.png")
    return [(n, Image.open(folder / n).convert("RGB")) for n in names if (folder / n).is_file()]


