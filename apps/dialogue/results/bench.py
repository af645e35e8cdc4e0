"""Latency per turn of result conversations: parse (linker + parser + state) and execute, on real
result folders, with generated held-out-phrasing dialogues.

    mm dialogue results-bench --medical DIR --social DIR [--dialogues 10] [--rounds 8] [--out FILE]

The sentence encoder's cache is cleared before every turn unless ``--warm-cache``.  Turns whose
program draws a picture (``lesion.image``, ``subgraph.image``: image reading,
resampling, matplotlib) are timed and reported apart; every context is warmed up first (sentence
encoder, graph and images loaded once per conversation context, as the server keeps them).
"""
from __future__ import annotations

import random
import time

from .evaluate import IMAGE_OPS
from .generate import Dialogue, Inventory
from .program import abstain
from .session import ResultSession, execute


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(1000 * xs[len(xs) // 2], 2),
            "p95_ms": round(1000 * xs[min(len(xs) - 1, int(0.95 * len(xs)))], 2), "max_ms": round(1000 * xs[-1], 2)}


def run(contexts: list, parser, dialogues: int = 10, rounds: int = 8, seed: int = 0, cold: bool = True) -> dict:
    """``cold``: forget the sentence encoder's cached embeddings before every turn (every question is
    encoded, as for a question never asked before); otherwise repeated questions hit the cache."""
    out = {}
    encoder = getattr(parser.model, "encoder", None)
    for kind in ("medical", "social"):
        ctxs = [c for c in contexts if c.kind == kind]
        if not ctxs:
            continue
        parse, exe, turn, image = [], [], [], []
        for ci, ctx in enumerate(ctxs):
            warm = ResultSession(ctx, parser)
            warm.ask("show me the lesion" if kind == "medical" else "who are the top 3 accounts by pagerank?")
            if kind == "social":
                warm.ask(f"how are {ctx.display(ctx.users.user_id.iloc[0])} and "
                         f"{ctx.display(ctx.users.user_id.iloc[-1])} connected?")
            for d in range(dialogues):
                gen = Dialogue(Inventory.of(ctx), random.Random(seed * 7919 + ci * 101 + d), "heldout")
                chat = ResultSession(ctx, parser)
                for _ in range(rounds):
                    q = gen.next()["question"]
                    if cold and encoder is not None:
                        encoder.cache.clear()
                    t0 = time.perf_counter()
                    program, info = chat.parse(q)
                    t1 = time.perf_counter()
                    _ = abstain(program, info["why"]) if info.get("why") else execute(ctx, program)
                    t2 = time.perf_counter()
                    if program.op in IMAGE_OPS:
                        image.append(t2 - t0)
                        continue
                    parse.append(t1 - t0)
                    exe.append(t2 - t1)
                    turn.append(t2 - t0)
        out[kind] = {"results": len(ctxs), "turn": _stats(turn), "parse": _stats(parse), "execute": _stats(exe),
                     "picture_turns": _stats(image)}
    return out


def table(rep: dict) -> str:
    lines = ["| kind | results | turns | parse median | execute median | turn median | turn p95 | picture turns median |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, r in rep.items():
        if not isinstance(r, dict) or "turn" not in r:
            continue
        lines.append(f"| {kind} | {r['results']} | {r['turn']['n']} | {r['parse']['median_ms']} ms | "
                     f"{r['execute']['median_ms']} ms | {r['turn']['median_ms']} ms | {r['turn']['p95_ms']} ms | "
                     f"{r['picture_turns'].get('median_ms', '-')} ms (n={r['picture_turns']['n']}) |")
    return "\n".join(lines)
