"""Sort-of-CLEVR baselines of Santoro et al. (2017) in the same harness as SceneVLM.

Both read the raw image (``batch.fields["raw"]``, ``[B, 3, H, W]`` uint8) and the question as a
bag of words over the tokenizer's vocabulary, and return answer logits ``[N, V]`` over the same
vocabulary, one row per question (N = B * Q).

* :class:`CNNMLP` - 4 conv layers (24 channels, stride 2) -> flatten ++ question -> MLP.
* :class:`RelationNetwork` - the same CNN; its 5x5 cells plus (x, y) are "objects";
  ``f( sum_ij g(o_i, o_j, q) )``.  g's first layer is split per argument, which is the same
  linear map evaluated without materialising the pair concatenation.

The *blind* and *no-history* baselines are SceneVLM itself, trained with the image dropped
(``batch.drop_modality("image")``) or with one question per sequence (``history=False``).
"""
from __future__ import annotations

import torch
from torch import nn

from .tokenizer import ASSISTANT, EOS, IMAGE, PAD, USER, vocabulary


def _conv_stem() -> nn.Sequential:
    # batch statistics at evaluation too: with running averages, validation at lr 1e-3 swung between
    # the training accuracy and 0% (the stats lag the weights by ~10 steps); evaluation batches hold
    # dozens of images, so their own statistics are stable
    layers, c = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(c, 24, 3, stride=2, padding=1), nn.BatchNorm2d(24, track_running_stats=False), nn.ReLU()]
        c = 24
    return nn.Sequential(*layers)


def question_bow(text: torch.Tensor) -> torch.Tensor:
    """``[B, Q, T]`` token ids -> ``[B*Q, V]`` word counts of the question (specials and answer excluded)."""
    vocab = vocabulary()
    ids = text.flatten(0, 1)
    bow = torch.zeros(ids.shape[0], len(vocab), device=ids.device)
    # the question only: the teacher-forced answer after ASSISTANT: would hand the model its target
    asked = (ids == vocab.index(ASSISTANT)).long().cumsum(1) == 0
    bow.scatter_add_(1, ids, asked.to(bow.dtype))
    special = [vocab.index(t) for t in (PAD, IMAGE, USER, ASSISTANT, EOS)]
    bow[:, special] = 0
    return bow


def _image(batch) -> torch.Tensor:
    return batch.fields["raw"].float() / 255.0


class CNNMLP(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        v = len(vocabulary())
        self.stem = _conv_stem()
        self.head = nn.Sequential(nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Dropout(0.1), nn.Linear(hidden, v))
        self.q = nn.Linear(v, 64)

    def forward(self, batch) -> torch.Tensor:
        text = batch["text"]
        feats = self.stem(_image(batch)).flatten(1)                        # [B, F]
        feats = feats.repeat_interleave(text.shape[1], dim=0)              # [N, F]
        return self.head(torch.cat([feats, self.q(question_bow(text))], dim=1))


class RelationNetwork(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        v = len(vocabulary())
        self.stem = _conv_stem()
        obj = 24 + 2
        self.q = nn.Linear(v, 64)
        self.g_i, self.g_j, self.g_q = nn.Linear(obj, hidden), nn.Linear(obj, hidden, bias=False), nn.Linear(64, hidden, bias=False)
        self.g = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, hidden), nn.ReLU())
        self.f = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Dropout(0.5), nn.Linear(hidden, v))

    def forward(self, batch) -> torch.Tensor:
        text = batch["text"]
        cells = self.stem(_image(batch))                                   # [B, 24, h, w]
        b, _, h, w = cells.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=cells.device),
                                torch.linspace(-1, 1, w, device=cells.device), indexing="ij")
        coords = torch.stack([xs, ys]).expand(b, 2, h, w)
        objs = torch.cat([cells, coords], 1).flatten(2).transpose(1, 2)    # [B, O, 26]
        q = self.q(question_bow(text))                                     # [N, 64]
        reps = text.shape[1]
        a = self.g_i(objs).repeat_interleave(reps, 0)                      # [N, O, H]
        c = self.g_j(objs).repeat_interleave(reps, 0)
        pairs = a[:, :, None] + c[:, None] + self.g_q(q)[:, None, None]    # [N, O, O, H]
        return self.f(self.g(pairs).sum(dim=(1, 2)))
