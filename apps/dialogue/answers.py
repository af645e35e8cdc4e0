"""The bot's answer vocabulary: which token ids may be an answer, and the model's own answer.

Shared by generation (:mod:`.session`, :mod:`.engine`), evaluation and training, so none of them
has to import another to learn what an answer is.
"""
from __future__ import annotations

import torch

from .questions import ANSWERS
from .tokenizer import vocabulary


def answer_ids(device=None) -> torch.Tensor:
    """``[A]`` token ids of every candidate answer (:data:`questions.ANSWERS`)."""
    vocab = vocabulary()
    return torch.tensor([vocab.index(a) for a in ANSWERS], device=device)


def own_answers(logits: torch.Tensor) -> torch.Tensor:
    """The model's own answer ids from ``[M, V]`` answer logits, chosen among the candidate answers.

    Why not ``argmax`` over the whole vocabulary: an untrained (or confused) model may prefer a
    special token; written into the history, ``<image>`` breaks the image-token groups and
    ``USER:`` the round segmentation (the 4,000-step run's ``groups of 8`` crash).
    """
    candidates = answer_ids(logits.device)
    return candidates[logits[:, candidates].argmax(-1)]
