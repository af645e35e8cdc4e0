"""Zero-shot post labelling from label names through the sentence encoder (no training).

    e_post = MiniLM(text)                       [N, 384], unit length
    e_c    = mean_k MiniLM(template_k(name_c))  [C, 384], re-normalised
    p(c | post) = softmax_c( cos(e_post, e_c) / temperature )

Posts without text get no label (``-1``) rather than a guess.
"""
from __future__ import annotations

import numpy as np

from .text import MiniLMEncoder

TEMPLATES = ("This post is {}.", "A social media post about {}.", "{}")


def label_embeddings(encoder: MiniLMEncoder, labels: list[str], descriptions: dict | None = None) -> np.ndarray:
    descriptions = descriptions or {}
    out = []
    for name in labels:
        phrase = descriptions.get(name, name.replace("_", " "))
        emb, _ = encoder.encode([t.format(phrase) for t in TEMPLATES])
        v = emb.mean(0)
        out.append(v / (np.linalg.norm(v) + 1e-12))
    return np.stack(out)


def zero_shot(texts: list, labels: list[str], encoder: MiniLMEncoder | None = None, descriptions: dict | None = None,
              temperature: float = 0.05, cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted index per post, -1 without text; probabilities [N, C])."""
    encoder = encoder or MiniLMEncoder(cache_dir)
    emb, present = encoder.encode(list(texts))
    lab = label_embeddings(encoder, labels, descriptions)
    logits = emb @ lab.T / temperature
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    pred = np.where(present, probs.argmax(1), -1)
    probs[~present] = np.nan
    return pred, probs
