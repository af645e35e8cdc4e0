"""The function set as OpenAI-style ``tools`` and the execution of a tool call (for a chat model
that calls tools instead of our parser; the start of "bring your own LLM").

    specs = tool_specs("medical")                          # [{"type": "function", "function": {...}}, ...]
    answer = call_tool(ctx, "lesion_volume", '{"modality": "ct"}')   # -> Answer (program lesion.volume(modality=ct))

Tool names are the program names with ``.`` -> ``_``; arguments are checked against the schema
(unknown function, unknown or ill-typed argument -> ``ToolError`` naming it).
"""
from __future__ import annotations

import json

from .program import FUNCTIONS, Answer, Program
from .templates import CLASS_WORDS

DESCRIPTIONS = {
    "lesion.found": "Whether the analysis found a lesion.",
    "lesion.volume": "The lesion's volume in mL (and voxels).",
    "lesion.location": "Where the lesion is (hemisphere, offsets from the intracranial centroid, RAS centre in mm).",
    "lesion.image": "A PNG of the axial slice with the most lesion, its contour in red, on MR or CT.",
    "lesion.intensity": "Mean intensity inside the lesion and around it (HU on CT).",
    "probabilities": "The model's class probabilities (withheld when the diagnosis is withheld).",
    "probability": "The probability of one class.",
    "diagnosis": "The predicted class, or why the model withheld it.",
    "registration.quality": "Whether CT-to-MR registration passed, mutual information before/after, motion corrected.",
    "modalities": "Modalities used and missing.",
    "out_of_domain": "Whether the out-of-domain check flagged the study.",
    "guard": "What the intracranial guard removed.",
    "intracranial_volume": "The intracranial volume (mL) and how the intracranial mask was made.",
    "status": "The analysis status, its warnings/messages and how long it took.",
    "withheld": "Why the diagnosis was withheld (or that it was not).",
    "community": "The Leiden community of an account.",
    "user.stat": "An account's PageRank or degree and its rank.",
    "bot": "The account model's bot/human prediction for an account.",
    "top": "The top k accounts by PageRank or degree.",
    "bridges": "Accounts bridging communities (participation coefficient).",
    "path": "The shortest path between two accounts in the account graph.",
    "timeline": "Posts per day using a hashtag.",
    "counts": "Numbers of posts, accounts, communities, coordination clusters.",
    "subgraph.image": "A PNG of the accounts within one hop of the named accounts.",
}
SCHEMAS = {
    "modality": {"type": "string", "enum": ["mr", "ct"], "description": "imaging modality (default: the reference one)"},
    "class": {"type": "string", "enum": list(CLASS_WORDS)},
    "of": {"type": "string", "description": "account id or username"},
    "by": {"type": "string", "enum": ["pagerank", "degree"]},
    "k": {"type": "integer", "minimum": 1, "maximum": 100},
    "between": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
    "around": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "hashtag": {"type": "string", "description": "hashtag without '#'"},
}
REQUIRED = {"probability": ["class"], "community": ["of"], "user.stat": ["of", "by"], "bot": ["of"],
            "path": ["between"], "timeline": ["hashtag"], "subgraph.image": ["around"]}


class ToolError(ValueError):
    pass


def tool_specs(kind: str) -> list[dict]:
    out = []
    for op, (domain, args) in FUNCTIONS.items():
        if domain != kind:
            continue
        out.append({"type": "function", "function": {
            "name": op.replace(".", "_"), "description": DESCRIPTIONS[op],
            "parameters": {"type": "object", "properties": {a: SCHEMAS[a] for a in args},
                           "required": REQUIRED.get(op, []), "additionalProperties": False}}})
    return out


def program_of(name: str, arguments: str | dict) -> Program:
    ops = {op.replace(".", "_"): op for op in FUNCTIONS if op != "abstain"}
    if name not in ops:
        raise ToolError(f"unknown tool '{name}'")
    op = ops[name]
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments or {})
    except json.JSONDecodeError as exc:
        raise ToolError(f"{name}: arguments are not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise ToolError(f"{name}: arguments must be a JSON object")
    allowed = FUNCTIONS[op][1]
    for key, value in args.items():
        if key not in allowed:
            raise ToolError(f"{name}: unknown argument '{key}' (takes {', '.join(allowed) or 'none'})")
        schema = SCHEMAS[key]
        kind = {"string": str, "integer": int, "array": list}[schema["type"]]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ToolError(f"{name}: argument '{key}' must be {schema['type']}")
        if "enum" in schema and value not in schema["enum"]:
            raise ToolError(f"{name}: argument '{key}' must be one of {schema['enum']}")
    for key in REQUIRED.get(op, []):
        if key not in args:
            raise ToolError(f"{name}: argument '{key}' is required")
    return Program.make(op, **args)


def call_tool(ctx, name: str, arguments: str | dict) -> Answer:
    from .session import execute

    return execute(ctx, program_of(name, arguments))
