"""The question -> program parser: a trained intent classifier over linked text, plus dialogue state.

* :class:`IntentModel`: multinomial logistic regression on binary word uni/bigram and character
  2-5-gram features of the *linked* question (:mod:`.linker`: entities replaced by placeholders),
  trained on generated question/intent pairs (:mod:`.generate`).  Saved as JSON (vocabulary,
  labels) + ``.npz`` weights; no pickle.  Inference is a sparse dot product: well under 1 ms.
* :class:`Parser`: intent -> program.  Slots come from the linker; an account the question does
  not name is the one last mentioned ("which community is she in?"), two for a path ("how are
  they connected?"); ``followup`` re-runs the previous program with the new slot ("and on the
  CT?", "what about @bob?"); below ``threshold`` confidence, or for an intent of the other kind
  of result, the program is ``abstain()``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .linker import Lexicon, link
from .program import FUNCTIONS, Program
from .templates import DOMAIN, INTENTS

DEFAULT_K = 5


def features(text: str) -> set[str]:
    words = text.split()
    feats = {"w:" + w for w in words} | {f"b:{a} {b}" for a, b in zip(["<s>"] + words, words + ["</s>"])}
    # how many accounts the question is about, named or referred back to ("<user> and <user>", "<refs>")
    accounts = words.count("<user>") + words.count("<ref>") + 2 * words.count("<refs>")
    if accounts:
        feats.add(f"n:accounts={min(accounts, 2)}")
    for w in words:
        if w.startswith("<"):
            continue
        padded = f" {w} "
        for n in (2, 3, 4, 5):
            feats.update("c:" + padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
    return feats


PLACEHOLDER_WORDS = {"<user>": "the account", "<tag>": "the hashtag", "<num>": "five", "<cls>": "haemorrhage",
                     "<mod>": "ct", "<ref>": "that account", "<refs>": "the two accounts"}


def embed_text(text: str) -> str:
    """The linked text as words for the sentence encoder (placeholders -> ordinary words)."""
    return " ".join(PLACEHOLDER_WORDS.get(w, w) for w in text.split())


class IntentModel:
    """``coef`` [n_features, n_labels] over the sparse n-grams; with ``dense`` [384, n_labels] also over
    the all-MiniLM-L6-v2 embedding of the question (scaled by ``alpha``), given by ``encoder``."""

    def __init__(self, vocab: dict[str, int], labels: list[str], coef: np.ndarray, bias: np.ndarray,
                 dense: np.ndarray | None = None, alpha: float = 1.0, encoder=None) -> None:
        self.vocab, self.labels, self.coef, self.bias = vocab, labels, coef.astype(np.float32), bias.astype(np.float32)
        self.dense = None if dense is None else dense.astype(np.float32)
        self.alpha, self.encoder = alpha, encoder

    @property
    def kind(self) -> str:
        return "ngram+minilm" if self.dense is not None else "ngram"

    @classmethod
    def train(cls, texts: list[str], labels: list[str], c: float = 20.0, seed: int = 0, encoder=None,
              alpha: float = 1.0) -> IntentModel:
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        feats = [features(t) for t in texts]
        vocab: dict[str, int] = {}
        for fs in feats:
            for f in sorted(fs):
                vocab.setdefault(f, len(vocab))
        rows, cols = [], []
        for i, fs in enumerate(feats):
            idx = [vocab[f] for f in fs]
            rows += [i] * len(idx)
            cols += idx
        x = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
        x = sparse.diags(1.0 / np.sqrt(np.asarray(x.sum(1)).ravel())) @ x
        if encoder is not None:
            emb = np.asarray(encoder.encode([embed_text(t) for t in texts]), np.float32)
            x = sparse.hstack([x, sparse.csr_matrix(alpha * emb)]).tocsr()
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x, labels)
        w = clf.coef_.T.copy()
        n = len(vocab)
        return cls(vocab, list(clf.classes_), w[:n], clf.intercept_, w[n:] if encoder is not None else None, alpha, encoder)

    def probs(self, text: str) -> np.ndarray:
        fs = features(text)
        idx = [self.vocab[f] for f in fs if f in self.vocab]
        z = self.bias + (self.coef[idx].sum(0) / np.sqrt(max(len(fs), 1)) if idx else 0.0)
        if self.dense is not None:
            if self.encoder is None:
                raise RuntimeError("this parser reads sentence embeddings: give it an encoder (MiniLMEncoder)")
            z = z + self.alpha * (np.asarray(self.encoder.encode([embed_text(text)]), np.float32)[0] @ self.dense)
        z = np.exp(z - z.max())
        return z / z.sum()

    def predict(self, text: str) -> tuple[str, float]:
        p = self.probs(text)
        i = int(p.argmax())
        return self.labels[i], float(p[i])

    def save(self, path: str | Path) -> None:
        from mmcore.utils.io import atomic_path, atomic_write_json

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "parser.json", {"labels": self.labels, "kind": self.kind, "alpha": self.alpha,
                                                 "vocab": self.vocab})
        arrays = {"coef": self.coef.astype(np.float16), "bias": self.bias}
        if self.dense is not None:
            arrays["dense"] = self.dense
        with atomic_path(path / "parser.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path, encoder=None) -> IntentModel:
        path = Path(path)
        meta = json.loads((path / "parser.json").read_text())
        with np.load(path / "parser.npz", allow_pickle=False) as w:
            dense = w["dense"] if "dense" in w.files else None
            return cls(meta["vocab"], meta["labels"], w["coef"].astype(np.float32), w["bias"], dense,
                       meta.get("alpha", 1.0), encoder)


@dataclass
class DialogueState:
    users: list[str] = field(default_factory=list)      # accounts in order of mention (last = in focus)
    last: Program | None = None                          # the previous answered program
    programs: list[Program] = field(default_factory=list)   # every answered program, oldest first

    def remember(self, linked_users: list[str], program: Program) -> None:
        for u in linked_users:
            if u in self.users:
                self.users.remove(u)
            self.users.append(u)
        if program.op != "abstain":
            self.last = program
            self.programs = [*self.programs[-19:], program]


def _users_for(op: str, named: list[str], memory: list[str]) -> dict:
    if op == "path":
        pair = named[:2]
        if len(pair) < 2:
            rest = [u for u in memory if u not in pair]
            pair = rest[-(2 - len(pair)):] + pair if rest else pair
        return {"between": tuple(pair)}
    if op == "subgraph.image":
        return {"around": tuple(named) if named else tuple(memory[-1:])}
    return {"of": named[0] if named else (memory[-1] if memory else None)}


# words that clearly name one kind's data: a question of the other kind's intent gets the "that is a
# question for a ... result" message only when it names that kind's data; else the generic abstention
KIND_WORDS = {
    "social": frozenset("<user> <tag> <ref> <refs> account accounts user users post posts community communities "
                        "pagerank degree bot bots hashtag hashtags network graph bridge bridges followers retweets "
                        "cluster clusters connections".split()),
    "medical": frozenset("<mod> <cls> lesion lesions scan scans study patient diagnosis mask brain tumour tumor "
                         "intracranial registration modality modalities ml hu".split()),
}


def _names_kind(text: str, kind: str) -> bool:
    return bool(KIND_WORDS.get(kind, frozenset()) & set(text.split()))


class Parser:
    """``fast`` (optional, a cheaper model, e.g. n-grams only): its intent is taken when its confidence
    is at least ``fast_confidence``; otherwise ``model`` decides (the sentence encoder runs only then)."""

    def __init__(self, model: IntentModel, threshold: float = 0.35, fast: IntentModel | None = None,
                 fast_confidence: float = 0.9) -> None:
        self.model, self.threshold = model, threshold
        self.fast, self.fast_confidence = fast, fast_confidence

    @property
    def kind(self) -> str:
        return self.model.kind if self.fast is None else f"{self.fast.kind} >= {self.fast_confidence} else {self.model.kind}"

    def parse(self, question: str, state: DialogueState, kind: str, lex: Lexicon) -> tuple[Program, dict]:
        linked = link(question, lex)
        stage = "fast"
        intent, conf = self.fast.predict(linked.text) if self.fast is not None else (None, 0.0)
        if conf < self.fast_confidence:
            intent, conf = self.model.predict(linked.text)
            stage = "model"
        info = {"linked": linked.text, "intent": intent, "confidence": round(conf, 3), "stage": stage}
        unknown = [u.lstrip("@") for u in linked.users if u.startswith("@")] if lex.users else []
        if unknown and kind == "social":
            # an account the report does not have: say so, never answer about another account
            program = Program("abstain")
            info["why"] = f"there is no account {unknown[0]} in this report"
            state.remember([u for u in linked.users if not u.startswith("@")], program)
            return program, info
        program = self._program(intent, conf, linked, state, kind)
        if program.op == "abstain":
            info["why"] = self._why(intent, conf, kind, state, linked.text)
        state.remember(linked.users, program)
        return program, info

    def _why(self, intent: str, conf: float, kind: str, state: DialogueState, text: str = "") -> str | None:
        if intent == "abstain":
            return None
        if conf < self.threshold:
            return f"the question was not understood (confidence {conf:.2f} < {self.threshold})"
        if intent == "followup":
            return "no earlier question in this conversation takes what this follow-up changes"
        other = DOMAIN.get(intent)
        if other not in (None, kind) and _names_kind(text, other):
            return f"that is a question for a {other} result; this is a {kind} result"
        return None

    def _program(self, intent: str, conf: float, linked, state: DialogueState, kind: str) -> Program:
        if conf < self.threshold or intent == "abstain":
            return Program("abstain")
        if intent == "followup":
            if state.last is None:
                return Program("abstain")
            # the latest program that takes the new slot ("what about @bob?" after an unrelated question)
            base = state.last
            wanted = {"modality": bool(linked.modalities), "of": bool(linked.users), "hashtag": bool(linked.tags),
                      "k": bool(linked.numbers)}
            for prev in reversed(state.programs or [state.last]):
                takes = set(FUNCTIONS[prev.op][1]) | ({"of"} if {"around", "between"} & set(FUNCTIONS[prev.op][1]) else set())
                if any(wanted[k] and k in takes for k in wanted):
                    base = prev
                    break
            accepts = FUNCTIONS[base.op][1]
            new: dict = {}
            if linked.modalities and "modality" in accepts:
                new["modality"] = linked.modalities[0]
            if linked.users and {"of", "around", "between"} & set(accepts):
                new.update(_users_for(base.op, linked.users, state.users))
            if linked.tags and "hashtag" in accepts:
                new["hashtag"] = linked.tags[0]
            if linked.numbers and "k" in accepts:
                new["k"] = linked.numbers[0]
            return base.with_args(**new) if new else Program("abstain")
        if DOMAIN.get(intent) != kind:
            return Program("abstain")
        op, fixed = INTENTS[intent]
        accepts = FUNCTIONS[op][1]
        args = {k: v for k, v in fixed.items() if v is not None}
        if "modality" in accepts and (linked.modalities or linked.implied_modalities):
            args["modality"] = (linked.modalities or linked.implied_modalities)[0]
        if "class" in accepts and linked.classes:
            args["class"] = linked.classes[0]
        if {"of", "around", "between"} & set(accepts):
            args.update(_users_for(op, linked.users, state.users))
        if "hashtag" in accepts and linked.tags:
            args["hashtag"] = linked.tags[0]
        if "k" in accepts:
            args["k"] = linked.numbers[0] if linked.numbers else DEFAULT_K
        return Program.make(op, **args)
