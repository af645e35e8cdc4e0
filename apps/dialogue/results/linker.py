"""Entity linking against the context: accounts, hashtags, numbers, diagnosis classes, modalities.

``link(question, ctx)`` -> (normalised text with ``<user>``/``<tag>``/``<num>``/``<cls>``/``<mod>``
placeholders, slots found in order).  The parser's classifier reads the normalised text, so it
never depends on the names of one result's accounts or hashtags (held-out results work).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .templates import CLASS_WORDS, MOD_WORDS

TOKEN = re.compile(r"[#@]?[\w\-]+(?:\.\d+)?|'s|[^\w\s]")
NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
                if i >= 2}      # "one" is a pronoun far more often ("that one") than a count
_GLOBAL: dict[tuple[str, ...], tuple[str, str]] = {}
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
        for n in (3, 2, 1):                     # longest phrase first ("cat scan", "magnetic resonance")
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
            elif t.startswith("@") and len(bare) > 1:
                hit = (("user", "@" + bare), 1)           # an unknown account: kept, the executor says so
            elif t.startswith("#") and len(bare) > 1:
                hit = (("tag", bare), 1)
            elif t.isdigit() and len(t) < 4:
                hit = (("num", int(t)), 1)
            elif t in NUMBER_WORDS:
                hit = (("num", NUMBER_WORDS[t]), 1)
        if hit is None:
            words.append(t)
            i += 1
            continue
        (kind, value), n = hit
        words.append(f"<{kind}>")
        {"user": out.users, "tag": out.tags, "num": out.numbers, "cls": out.classes, "mod": out.modalities}[kind].append(value)
        i += n
    out.text = " ".join(words)
    return out
