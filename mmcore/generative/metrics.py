"""Evaluation of multimodal generative models.

* :func:`train_judges` — one small classifier per modality trained on *real* data.
* :func:`coherence` — the share of samples whose modality ``target``, generated from ``source``
  alone, is recognised by the target's judge as the sample's true label (chance = 1/classes).
* :func:`conditional_coherence` — the same for a conditional model sampled per class.
* :func:`elbo_and_likelihood` — mean ELBO and importance-sampled log-likelihood over a batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import MultimodalBatch
from .base import MultimodalVAE, evaluating, mlp


def train_judges(batch: MultimodalBatch, label_key: str = "label", num_classes: int | None = None,
                 hidden: int = 128, steps: int = 400, lr: float = 3e-3, seed: int = 0) -> dict[str, nn.Module]:
    """A per-modality MLP classifier on the present rows of ``batch`` (full-batch Adam).

    Seeded by ``seed`` (initialisation and input noise) inside a forked RNG: the caller's global
    torch RNG state is the same after the call as before it."""
    labels = batch.fields[label_key].long()
    k = int(num_classes or int(labels.max()) + 1)
    judges = {}
    for m in batch.modalities:
        x = batch.get(m)
        rows = batch.mask(m)
        if x is None or not bool(rows.any()):
            continue
        with torch.random.fork_rng(devices=[x.device.index or 0] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            net = nn.Sequential(nn.Flatten(), mlp([x[0].numel(), hidden, hidden, k])).to(x.device)
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
            xs, ys = x[rows].float(), labels[rows]
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(net(xs + 0.05 * torch.randn_like(xs)), ys).backward()
                opt.step()
        judges[m] = net.eval()
    return judges


@torch.no_grad()
def judge_accuracy(judge: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    return float((judge(x.reshape(x.shape[0], -1)).argmax(-1) == labels).float().mean())


@torch.no_grad()
def coherence(model: MultimodalVAE, batch: MultimodalBatch, judges: dict[str, nn.Module], source: Sequence[str],
              target: str, label_key: str = "label") -> float:
    """Accuracy of ``judges[target]`` on ``target`` generated from ``source`` only (the posterior
    mean, in eval mode; the model's training mode is restored afterwards)."""
    with evaluating(model):
        gen = model.generate(batch.only(source), source)[target]
    return judge_accuracy(judges[target], gen.cpu(), batch.fields[label_key].cpu())


@torch.no_grad()
def conditional_coherence(model: MultimodalVAE, judges: dict[str, nn.Module], num_classes: int,
                          per_class: int = 50) -> dict[str, float]:
    """Per modality: how often the judge recognises the condition in prior samples of the class."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    with evaluating(model):
        gen = model.sample(len(labels), labels)
    return {m: judge_accuracy(judges[m], gen[m].cpu(), labels) for m in judges if m in gen}


@torch.no_grad()
def elbo_and_likelihood(model: MultimodalVAE, batch: MultimodalBatch, samples: int = 64) -> dict[str, float]:
    with evaluating(model):
        return {"elbo": float(model.elbo(batch, samples=4).mean()),
                "log_likelihood": float(model.importance_log_likelihood(batch, samples).mean())}
