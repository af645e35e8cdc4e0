"""Programs (a function and its arguments) and answers; the function set they name.

A program prints as a call, e.g. ``lesion.volume()``, ``lesion.image(modality=ct)``,
``top(accounts, by=pagerank, k=5)``, ``community(of=user_u00038)``,
``path(between=user_u00001,user_u00002)``.  ``abstain()`` is the program of a question the
analysis cannot answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ABSTAIN_TEXT = "The analysis does not contain that."

# op -> (domain, argument names it takes)
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lesion.found": ("medical", ()),
    "lesion.volume": ("medical", ("modality",)),
    "lesion.location": ("medical", ("modality",)),
    "lesion.image": ("medical", ("modality",)),
    "lesion.intensity": ("medical", ("modality",)),
    "probabilities": ("medical", ()),
    "probability": ("medical", ("class",)),
    "diagnosis": ("medical", ()),
    "registration.quality": ("medical", ()),
    "modalities": ("medical", ()),
    "out_of_domain": ("medical", ()),
    "guard": ("medical", ()),
    "intracranial_volume": ("medical", ()),
    "status": ("medical", ()),
    "withheld": ("medical", ()),
    "community": ("social", ("of",)),
    "user.stat": ("social", ("of", "by")),
    "bot": ("social", ("of",)),
    "top": ("social", ("by", "k")),
    "bridges": ("social", ()),
    "path": ("social", ("between",)),
    "timeline": ("social", ("hashtag",)),
    "counts": ("social", ()),
    "subgraph.image": ("social", ("around",)),
    "abstain": ("any", ()),
}


@dataclass(frozen=True)
class Program:
    op: str
    args: tuple[tuple[str, object], ...] = ()

    @classmethod
    def make(cls, op: str, **args) -> Program:
        if op not in FUNCTIONS:
            raise ValueError(f"unknown function {op!r}")
        allowed = FUNCTIONS[op][1]
        clean = []
        for k in allowed:
            v = args.get(k)
            if v is None or v == () or v == []:
                continue
            clean.append((k, tuple(v) if isinstance(v, list) else v))
        return cls(op, tuple(clean))

    def get(self, name: str, default=None):
        return dict(self.args).get(name, default)

    def with_args(self, **args) -> Program:
        merged = dict(self.args)
        merged.update({k: v for k, v in args.items() if v is not None})
        return Program.make(self.op, **merged)

    @property
    def domain(self) -> str:
        return FUNCTIONS[self.op][0]

    def __str__(self) -> str:
        parts = ["accounts"] if self.op == "top" else []
        for k, v in self.args:
            parts.append(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")
        return f"{self.op}({', '.join(parts)})"


@dataclass
class Answer:
    text: str
    program: Program
    value: object = None                    # the number(s) quoted, machine-readable
    unit: str | None = None
    image_png: bytes | None = None          # a picture where it helps
    image_caption: str | None = None
    abstained: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "program": str(self.program), "value": self.value, "unit": self.unit,
                "abstained": self.abstained, "has_image": self.image_png is not None,
                "image_caption": self.image_caption}


def abstain(program: Program | None = None, why: str | None = None) -> Answer:
    text = ABSTAIN_TEXT if why is None else f"{ABSTAIN_TEXT[:-1]}: {why}."
    return Answer(text, program or Program("abstain"), abstained=True)
