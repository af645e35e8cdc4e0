"""Generated dialogues about a result, each round with its gold program (independent of the parser).

An *inventory* is what a result lets questions name: for a social report its accounts (id and
username) and hashtags; for a medical result nothing beyond the fixed classes and modalities.
Training uses synthetic inventories (random account names and hashtags); evaluation uses real
result folders (held-out results) and the held-out phrasings.

Rules (the parser must learn/implement the same): an account a question does not name is the one
mentioned last (two for a path); a follow-up repeats the previous answered program with the new
slot; modality does not carry over between questions; ``top`` without a number means 5.
Coreference ``distance``: rounds back to the last mention of the account a pronoun refers to.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from .linker import HU_WORDS
from .program import Program
from .templates import (
    CLASS_WORDS,
    INTENTS,
    MOD_WORDS,
    MODALITY_INTENTS,
    PREFIXES,
    modality_suffixes,
    pair_pronouns,
    pronouns,
    templates,
)

CLASSES = tuple(CLASS_WORDS)
USER_INTENTS = ("community", "pagerank", "degree", "bot", "subgraph")
SOCIAL_OTHER = ("top_pagerank", "top_degree", "bridges", "timeline", "counts", "path")
MEDICAL = ("found", "volume", "location", "image", "intensity", "probabilities", "probability", "diagnosis",
           "registration", "modalities", "ood", "guard", "icv", "status", "withheld")


@dataclass
class Inventory:
    kind: str
    users: list[tuple[str, str]] = field(default_factory=list)      # (user id, username)
    tags: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, ctx) -> Inventory:
        if ctx.kind == "medical":
            return cls("medical")
        return cls("social", [(u, ctx.display(u)) for u in ctx.users.user_id], list(ctx.hashtags))

    def lexicon_users(self) -> dict[str, str]:
        return {**{u: u for u, _ in self.users}, **{n: u for u, n in self.users}}


def synthetic_inventory(rng: random.Random, kind: str) -> Inventory:
    if kind == "medical":
        return Inventory("medical")
    users = []
    for _ in range(rng.randint(20, 60)):
        uid = f"{rng.choice('uaid')}{rng.randrange(10**5):05d}"
        style = rng.randrange(4)
        stem = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
        name = [f"user_{uid}", stem, f"{stem}_{rng.randrange(100)}", f"{stem}{rng.choice(['bot', 'news', 'fan', 'x'])}"][style]
        users.append((uid, name))
    words = ("climate", "vaccine", "election", "economy", "football", "transit", "housing", "energy", "health", "music",
             "tech", "art", "rain", "budget", "school", "jobs", "cats", "war", "peace", "food")
    return Inventory("social", users, rng.sample(words, rng.randint(3, 8)))


def _user_word(rng: random.Random, uid: str, name: str) -> str:
    return rng.choice(["@" + name, name, "@" + name] if name != uid else ["@" + uid, uid])


def _fill(template: str, rng: random.Random, slots: dict) -> str:
    text = template.format(**{k: v for k, v in slots.items()})
    return rng.choice(PREFIXES) + text


class Dialogue:
    """Generates rounds for one inventory; keeps the gold dialogue state (mentions, last program)."""

    def __init__(self, inv: Inventory, rng: random.Random, phrasing: str = "train", p_abstain: float = 0.12,
                 p_other_kind: float = 0.04, p_pair_ref: float = 0.4) -> None:
        self.inv, self.rng, self.phrasing = inv, rng, phrasing
        self.p_abstain, self.p_other_kind = p_abstain, p_other_kind
        self.p_pair_ref = p_pair_ref                  # a two-account question refers back to the last two ("them")
        self.mentions: list[str] = []                 # user ids, last = focus
        self.when: dict[str, int] = {}                # user id -> round of last mention
        self.last: Program | None = None
        self.round = 0

    def _mention(self, uid: str) -> None:
        if uid in self.mentions:
            self.mentions.remove(uid)
        self.mentions.append(uid)
        self.when[uid] = self.round

    def _user(self) -> tuple[str, str]:
        return self.rng.choice(self.inv.users)

    def next(self) -> dict:
        rng, r = self.rng, self.rng.random()
        self.round += 1
        if r < self.p_abstain:
            out = self._abstain()
        elif r < self.p_abstain + self.p_other_kind:
            out = self._other_kind()
        elif self.last is not None and rng.random() < 0.2 and self._followup_ok():
            out = self._followup()
        else:
            out = self._medical() if self.inv.kind == "medical" else self._social()
        if out["program"].op != "abstain":
            self.last = out["program"]
        out["gold"], out["program"] = out["program"], str(out["program"])
        return out

    # ---------------------------------------------------------------- kinds of round
    def _abstain(self) -> dict:
        tpl = self.rng.choice(templates("abstain", self.phrasing, self.rng))
        slots = {}
        if "{u}" in tpl:
            uid, name = self._user() if self.inv.users else ("x", "someone")
            slots["u"] = _user_word(self.rng, uid, name) if self.inv.users else "someone"
            if self.inv.users:
                self._mention(uid)
        return {"question": _fill(tpl, self.rng, slots), "program": Program("abstain"), "intent": "abstain", "distance": 0}

    def _other_kind(self) -> dict:
        """A question for the other kind of result: unanswerable here."""
        intent = self.rng.choice(SOCIAL_OTHER[:5] if self.inv.kind == "medical" else MEDICAL)
        tpl = self.rng.choice([t for t in templates(intent, self.phrasing, self.rng) if "{u" not in t])
        slots = {"k": str(self.rng.randint(2, 10)), "tag": "#news", "cls": self.rng.choice(CLASSES), "mod": "ct"}
        # the classifier still sees its intent; the parser abstains because the result is of the other kind
        return {"question": _fill(tpl, self.rng, slots), "program": Program("abstain"), "intent": intent, "distance": 0,
                "other_kind": True}

    def _followup_ok(self) -> bool:
        op = self.last.op
        if op in ("lesion.volume", "lesion.location", "lesion.image", "lesion.intensity"):
            return True
        if op in ("community", "user.stat", "bot") and len(self.inv.users) > 1:
            return True
        return (op == "timeline" and len(self.inv.tags) > 1) or op == "top"

    def _followup(self) -> dict:
        rng, op = self.rng, self.last.op
        tpls = templates("followup", self.phrasing, self.rng)

        def pick(slot: str) -> str:     # the val quarter has no "top {k}" follow-up: that one comes from fit
            return rng.choice([t for t in tpls if slot in t] or [t for t in templates("followup", "fit", rng) if slot in t])
        if op.startswith("lesion."):
            m = rng.choice(("mr", "ct"))
            tpl = pick("{mod}")
            q, prog = _fill(tpl, rng, {"mod": rng.choice(MOD_WORDS[m])}), self.last.with_args(modality=m)
        elif op == "timeline":
            tag = rng.choice([t for t in self.inv.tags if t != self.last.get("hashtag")])
            tpl = pick("{tag}")
            q, prog = _fill(tpl, rng, {"tag": rng.choice(["#" + tag, tag])}), self.last.with_args(hashtag=tag)
        elif op == "top":
            k = rng.randint(2, 12)
            tpl = pick("{k}")
            q, prog = _fill(tpl, rng, {"k": str(k)}), self.last.with_args(k=k)
        else:
            uid, name = self._user()
            tpl = pick("{u}")
            q, prog = _fill(tpl, rng, {"u": _user_word(rng, uid, name)}), self.last.with_args(of=uid)
            self._mention(uid)
        return {"question": q, "program": prog, "intent": "followup", "distance": 0}

    def _medical(self) -> dict:
        rng = self.rng
        intent = rng.choice(MEDICAL)
        tpl = rng.choice(templates(intent, self.phrasing, self.rng))
        op, fixed = INTENTS[intent]
        args, slots = dict(fixed), {}
        if "{cls}" in tpl:
            c = rng.choice(CLASSES)
            slots["cls"], args["class"] = rng.choice(CLASS_WORDS[c]), c
        if "{mod}" in tpl:
            slots["mod"] = rng.choice(MOD_WORDS[rng.choice(("mr", "ct"))])
        if intent in MODALITY_INTENTS and any(w in tpl.split() for w in HU_WORDS):
            args["modality"] = "ct"                   # Hounsfield units are CT's: the question names the CT
        elif intent in MODALITY_INTENTS and rng.random() < 0.3:
            m = rng.choice(("mr", "ct"))
            tpl = tpl.rstrip(" ?") + rng.choice(modality_suffixes(self.phrasing)) + " ?"
            slots["mod"], args["modality"] = rng.choice(MOD_WORDS[m]), m
        return {"question": _fill(tpl, rng, slots), "program": Program.make(op, **args), "intent": intent, "distance": 0}

    def _social(self) -> dict:
        rng = self.rng
        intent = rng.choice(USER_INTENTS + SOCIAL_OTHER if len(self.inv.users) > 1 else SOCIAL_OTHER[:5])
        if intent == "timeline" and not self.inv.tags:
            intent = "counts"
        tpl = rng.choice(templates(intent, self.phrasing, self.rng))
        op, fixed = INTENTS[intent]
        args, slots, distance = {k: v for k, v in fixed.items() if v is not None}, {}, 0
        pron = pronouns(self.phrasing)
        if "{u2}" in tpl:
            paired = tpl.replace("{u} and {u2}", "{pair}").replace("{u} from {u2}", "{pair} from each other") \
                .replace("from {u} to {u2}", "between {pair}")
            if len(self.mentions) >= 2 and rng.random() < self.p_pair_ref and "{u" not in paired:
                pair, tpl = self.mentions[-2:], paired
                slots["pair"] = rng.choice(pair_pronouns(self.phrasing))
                distance = self.round - min(self.when[u] for u in pair)
                args["between"] = tuple(pair)
                for u in pair:
                    self.when[u] = self.round
            else:
                (a, na), (b, nb) = rng.sample(self.inv.users, 2)
                slots["u"], slots["u2"] = _user_word(rng, a, na), _user_word(rng, b, nb)
                args["between"] = (a, b)
                self._mention(a)
                self._mention(b)
        elif "{u}" in tpl:
            if self.mentions and rng.random() < 0.5:
                uid = self.mentions[-1]
                slots["u"] = rng.choice(pron)
                distance = self.round - self.when[uid]
                self.when[uid] = self.round
            else:
                uid, name = self._user()
                slots["u"] = _user_word(rng, uid, name)
                self._mention(uid)
            args["around" if op == "subgraph.image" else "of"] = (uid,) if op == "subgraph.image" else uid
        if "{tag}" in tpl:
            tag = rng.choice(self.inv.tags)
            slots["tag"], args["hashtag"] = rng.choice(["#" + tag, tag, "#" + tag]), tag
        if op == "top":
            k = rng.randint(2, 12) if "{k}" in tpl else 5
            slots["k"], args["k"] = rng.choice([str(k), str(k), _word(k)]), k
        return {"question": _fill(tpl, rng, slots), "program": Program.make(op, **args), "intent": intent,
                "distance": distance}


P_PAIR_REF_TRAIN = 0.4


def _word(k: int) -> str:
    words = "zero one two three four five six seven eight nine ten eleven twelve".split()
    return words[k] if k >= 2 else str(k)


def dialogue(inv: Inventory, rng: random.Random, rounds: int = 8, phrasing: str = "train", **kw) -> list[dict]:
    d = Dialogue(inv, rng, phrasing, **kw)
    return [d.next() for _ in range(rounds)]


def training_pairs(n_dialogues: int = 1500, seed: int = 0, rounds: int = 8, phrasing: str = "paraphrase",
                   p_pair_ref: float = P_PAIR_REF_TRAIN) -> tuple[list[str], list[str]]:
    """(linked questions, intents) from train phrasings over synthetic inventories of both kinds.
    ``p_pair_ref``: how often a two-account question refers back to the last two accounts instead of
    naming them (the evaluation dialogues keep 0.4; training sees more of these rarer questions)."""
    from .linker import Lexicon, link

    rng = random.Random(seed)
    texts, intents = [], []
    for i in range(n_dialogues):
        inv = synthetic_inventory(rng, "medical" if i % 2 == 0 else "social")
        lex = Lexicon(inv.lexicon_users(), inv.tags)
        for r in dialogue(inv, rng, rounds, phrasing, p_pair_ref=p_pair_ref):
            texts.append(link(r["question"], lex).text)
            intents.append(r["intent"])
    return texts, intents
