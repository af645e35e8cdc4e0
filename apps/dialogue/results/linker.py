"""Entity linking against the context: accounts, hashtags, numbers, diagnosis classes, modalities.

``link(question, ctx)`` -> (normalised text with ``<user>``/``<tag>``/``<num>``/``<cls>``/``<mod>``
placeholders, slots found in order).  The parser's classifier reads the normalised text, so it
never depends on the names of one result's accounts or hashtags (held-out results work).

In a context with accounts, expressions that refer back to accounts become ``<ref>`` (one account:
"that account", "her", "the same user", "that one") or ``<refs>`` (two: "both of them", "those two",
"these accounts"); :attr:`Linked.refs` counts the accounts each one stands for.  The parser resolves
them against its focus stack (the accounts in order of mention), so how far back the account was
named does not change what the classifier reads.  The list is closed-class English (personal
pronouns, demonstrative/definite determiners + an account noun), not learnt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .templates import CLASS_WORDS, MOD_WORDS

TOKEN = re.compile(r"[#@]?[\w\-]+(?:\.\d+)?|'s|[^\w\s]")
HU_WORDS = ("hu", "hounsfield")      # CT's intensity unit: names the modality without replacing the word
# a bare word shaped like an account id or a generated username ("u99999", "user_u00007"): an account,
# even when the report has none of that name (the executor then says so instead of guessing another)
ACCOUNT_SHAPE = re.compile(r"^(?:user_\w+|[a-z]\d{4,})$")
NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
                if i >= 2}      # "one" is a pronoun far more often ("that one") than a count
_GLOBAL: dict[tuple[str, ...], tuple[str, str]] = {}
_NOUN = ("account", "user", "one", "person", "profile", "handle")
_NOUNS = ("accounts", "users", "ones", "people", "profiles", "handles")
_REFERENCES: dict[tuple[str, ...], int] = {
    **{(p,): 1 for p in ("he", "him", "his", "she", "her", "it", "its", "they", "them", "their")},
    **{(d, n): 1 for d in ("this", "that", "the", "same") for n in _NOUN if (d, n) != ("the", "one")},
    **{("the", "same", n): 1 for n in _NOUN},
    **{(d, n): 2 for d in ("these", "those", "both", "the") for n in _NOUNS},
    **{(d, "two"): 2 for d in ("these", "those", "both")},     # not "the two": "the two most central accounts" is k
    **{(d, "two", n): 2 for d in ("these", "those", "the") for n in _NOUNS},
    ("both",): 2, ("both", "of", "them"): 2, ("them", "both"): 2, ("the", "two", "of", "them"): 2,
    ("both", "of", "those"): 2,
}
for _m, _words in MOD_WORDS.items():
    for _w in _words:
        _GLOBAL[tuple(_w.split())] = ("mod", _m)
for _c, _words in CLASS_WORDS.items():
    for _w in _words:
        _GLOBAL[tuple(_w.split())] = ("cls", _c)


@dataclass
class Linked:
    text: str                                   # normalised, placeholders in
    users: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)          # accounts referred back to: 1 or 2 per expression
    implied_modalities: list[str] = field(default_factory=list)   # "HU"/"Hounsfield" -> ct (text unchanged)


class Lexicon:
    """The surface forms of one context's entities (built once per context)."""

    def __init__(self, users: dict[str, str] | None = None, tags: list[str] | None = None) -> None:
        self.users = {k.lower(): v for k, v in (users or {}).items()}     # name or id -> user id
        self.tags = {t.lower().lstrip("#") for t in (tags or [])}

    @classmethod
    def of(cls, ctx) -> Lexicon:
        if getattr(ctx, "kind", None) != "social":
            return cls()
        users = {str(u): str(u) for u in ctx.users.user_id}
        users.update({str(n): str(u) for u, n in ctx.names.items()})
        return cls(users, ctx.hashtags)


def tokens(question: str) -> list[str]:
    text = question.lower().replace("\u2019", "'")
    out = []
    for t in TOKEN.findall(text):
        if t.endswith("'s") and len(t) > 2:
            out += [t[:-2], "'s"]
        else:
            out.append(t)
    return out


def link(question: str, lex: Lexicon) -> Linked:
    toks = tokens(question)
    out = Linked("")
    words, i = [], 0
    while i < len(toks):
        t = toks[i]
        hit = None
        if lex.users and not t.startswith("@") and t not in lex.users:   # a reference back to accounts
            for n in (4, 3, 2, 1):
                key = tuple(toks[i:i + n])
                if len(key) == n and key in _REFERENCES and not (i + n < len(toks) and toks[i + n].lstrip("@") in lex.users):
                    hit = (("ref", _REFERENCES[key]), n)
                    break
        for n in (3, 2, 1):                     # longest phrase first ("cat scan", "magnetic resonance")
            if hit is not None:
                break
            key = tuple(toks[i:i + n])
            if len(key) == n and key in _GLOBAL:
                hit = (_GLOBAL[key], n)
                break
        bare = t.lstrip("@#")
        if hit is None:
            if t.startswith("#") and bare in lex.tags:
                hit = (("tag", bare), 1)
            elif bare in lex.users:
                hit = (("user", lex.users[bare]), 1)
            elif bare in lex.tags:
                hit = (("tag", bare), 1)
            elif (t.startswith("@") and len(bare) > 1) or ACCOUNT_SHAPE.match(t):
                hit = (("user", "@" + bare), 1)           # an unknown account: kept, the executor says so
            elif t.startswith("#") and len(bare) > 1:
                hit = (("tag", bare), 1)
            elif t.isdigit() and len(t) < 4:
                hit = (("num", int(t)), 1)
            elif t in NUMBER_WORDS:
                hit = (("num", NUMBER_WORDS[t]), 1)
        if hit is None:
            if t in HU_WORDS and "ct" not in out.implied_modalities:
                out.implied_modalities.append("ct")
            words.append(t)
            i += 1
            continue
        (kind, value), n = hit
        if kind == "ref":
            words.append("<ref>" if value == 1 else "<refs>")
            out.refs.append(value)
            i += n
            continue
        words.append(f"<{kind}>")
        {"user": out.users, "tag": out.tags, "num": out.numbers, "cls": out.classes, "mod": out.modalities}[kind].append(value)
        i += n
    out.text = " ".join(words)
    return out
