"""Zero-shot post labelling from label names through the suite's sentence encoder (no training),
with a batch prior correction and abstention.

    e_post = MiniLM(text)                        [N, 384], unit length
    e_c    = mean_k MiniLM(template_k(name_c))   [C, 384], re-normalised
    s_c    = cos(e_post, e_c) - median_posts cos(e_post', e_c)      (prior correction)
    p(c | post) = softmax_c( s_c / temperature )

The correction removes what every post shares with a label name (topic words lean towards one
name whatever the post claims; "calibrate before use", Zhao et al. 2021), using no labels.  A
post whose best corrected score beats the runner-up by less than ``abstain_margin`` (cosine units)
gets no label (``-1``): its text does not say, and a guess would be confident nonsense.  Posts
without text get no label either.  With one post (no batch) the correction is skipped.
"""
from __future__ import annotations

import numpy as np

from mmcore.represent.text_encoder import MiniLMEncoder

from .text import encode_minilm, minilm_encoder

TEMPLATES = ("This post is {}.", "A social media post about {}.", "{}")


def label_embeddings(encoder: MiniLMEncoder, labels: list[str], descriptions: dict | None = None) -> np.ndarray:
    descriptions = descriptions or {}
    out = []
    for name in labels:
        phrase = descriptions.get(name, name.replace("_", " "))
        v = encoder.encode([t.format(phrase) for t in TEMPLATES]).numpy().mean(0)
        out.append(v / (np.linalg.norm(v) + 1e-12))
    return np.stack(out)


def zero_shot(texts: list, labels: list[str], encoder: MiniLMEncoder | None = None, descriptions: dict | None = None,
              temperature: float = 0.05, cache_dir=None, abstain_margin: float = 0.0,
              correct_prior: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(predicted index per post, -1 without text or below the margin; probabilities [N, C])."""
    encoder = encoder or minilm_encoder(cache_dir)
    emb, present = encode_minilm(encoder, list(texts))
    lab = label_embeddings(encoder, labels, descriptions)
    scores = emb @ lab.T                                              # [N, C] cosine similarities
    if correct_prior and present.sum() > 1:
        scores = scores - np.median(scores[present], axis=0, keepdims=True)
    ranked = np.sort(scores, axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if scores.shape[1] > 1 else np.full(len(scores), np.inf)
    logits = scores / temperature
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    pred = np.where(present & (margin >= abstain_margin), probs.argmax(1), -1)
    probs[~present] = np.nan
    return pred, probs
