"""Skip-gram word embeddings, optionally grounded in vision (multimodal skip-gram, Lazaridou et al. 2015).

Text objective (skip-gram with negative sampling, Mikolov et al. 2013): for a centre word w with
input vector u_w, a context word c within the window (output vector o_c) and K negatives drawn from
the unigram distribution raised to 3/4,

    L_text = −log σ(u_wᵀ o_c) − Σ_k log σ(−u_wᵀ o_{n_k})

Visual objective (MMSKIP-gram-A): when w names a thing with visual feature v_w, a linear map M
sends u_w into visual space and a max-margin loss ranks its own look above K' other looks:

    L_vis = Σ_k max(0, γ − cos(M u_w, v_w) + cos(M u_w, v_{n_k}))
    L     = L_text + α · L_vis           (α = 0 gives text-only skip-gram)

    =============  ============  =============================
    name           shape         meaning
    =============  ============  =============================
    input_vectors  [V, D]        u: the word embeddings
    visual         [V_g, F]      features of grounded words
    pairs          [P, 2]        (centre, context) indices
    =============  ============  =============================
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .text_encoder import Vocabulary


def skipgram_pairs(texts: Sequence[str], vocab: Vocabulary, window: int = 2) -> torch.Tensor:
    """All (centre, context) index pairs within ``window`` words, [P, 2]."""
    pairs = []
    for text in texts:
        ids = vocab.encode(text)
        for i, centre in enumerate(ids):
            for j in range(max(0, i - window), min(len(ids), i + window + 1)):
                if j != i:
                    pairs.append((centre, ids[j]))
    if not pairs:
        raise ValueError("no skip-gram pairs: the corpus has no sentence of two or more words")
    return torch.tensor(pairs, dtype=torch.long)


class MultimodalSkipGram(nn.Module):
    def __init__(self, vocab: Vocabulary, dim: int = 32, visual: Mapping[str, torch.Tensor] | None = None,
                 visual_weight: float = 1.0, margin: float = 0.5) -> None:
        super().__init__()
        self.vocab = vocab
        self.input_vectors = nn.Embedding(len(vocab), dim)
        self.output_vectors = nn.Embedding(len(vocab), dim)
        nn.init.uniform_(self.input_vectors.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.output_vectors.weight)
        visual = dict(visual or {})
        missing = [w for w in visual if w not in vocab.index]
        if missing:
            raise ValueError(f"visual features given for words not in the vocabulary: {missing}")
        self.visual_weight = visual_weight if visual else 0.0
        self.margin = margin
        grounded = torch.full((len(vocab),), -1, dtype=torch.long)
        if visual:
            feats = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in visual.values()])
            grounded[torch.tensor([vocab.index[w] for w in visual])] = torch.arange(len(visual))
            # centre first: raw image features share a large common component (all colours are
            # positive RGB, all silhouettes overlap) that would make every look "similar"
            self.register_buffer("visual", F.normalize(feats - feats.mean(0), dim=1))
            self.to_visual = nn.Linear(dim, feats.shape[1], bias=False)
        self.register_buffer("grounded", grounded)

    def text_loss(self, pairs: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        u = self.input_vectors(pairs[:, 0])
        pos = (u * self.output_vectors(pairs[:, 1])).sum(-1)
        neg = torch.einsum("bd,bkd->bk", u, self.output_vectors(negatives))
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()

    def visual_loss(self, centres: torch.Tensor, g: torch.Generator, num_negatives: int = 5) -> torch.Tensor:
        rows = self.grounded[centres]
        keep = rows >= 0
        if not keep.any():
            return self.input_vectors.weight.sum() * 0
        mapped = F.normalize(self.to_visual(self.input_vectors(centres[keep])), dim=-1)
        own = rows[keep]
        draw = torch.randint(self.visual.shape[0] - 1, (len(own), num_negatives), generator=g)
        draw = draw + (draw >= own[:, None]).long()
        pos = (mapped * self.visual[own]).sum(-1, keepdim=True)
        neg = torch.einsum("bd,bkd->bk", mapped, self.visual[draw])
        return F.relu(self.margin - pos + neg).sum(-1).mean()

    def word_vectors(self, words: Sequence[str]) -> torch.Tensor:
        idx = torch.tensor([self.vocab.index[w] for w in words])
        return self.input_vectors.weight[idx].detach()


def train_skipgram(model: MultimodalSkipGram, texts: Sequence[str], epochs: int = 5, window: int = 2,
                   num_negatives: int = 5, batch_size: int = 512, lr: float = 0.01, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    pairs = skipgram_pairs(texts, model.vocab, window)
    counts = torch.bincount(pairs[:, 0], minlength=len(model.vocab)).float()
    noise = counts.pow(0.75)
    noise[0] = 0                                   # never sample <unk> as a negative
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        total, batches = 0.0, 0
        for idx in torch.randperm(len(pairs), generator=g).split(batch_size):
            batch = pairs[idx]
            negatives = torch.multinomial(noise, len(batch) * num_negatives, replacement=True, generator=g)
            loss = model.text_loss(batch, negatives.view(len(batch), num_negatives))
            if model.visual_weight:
                loss = loss + model.visual_weight * model.visual_loss(batch[:, 0], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / batches)
    return history


def similarity_correlation(vectors: torch.Tensor, reference: torch.Tensor) -> float:
    """Spearman correlation between pairwise cosine similarities and a reference matrix (upper triangle)."""
    from scipy.stats import spearmanr

    v = F.normalize(vectors, dim=1)
    cos = v @ v.T
    iu = torch.triu_indices(len(v), len(v), offset=1)
    return float(spearmanr(cos[iu[0], iu[1]].numpy(), reference[iu[0], iu[1]].numpy()).statistic)
