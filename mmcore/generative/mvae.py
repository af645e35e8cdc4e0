"""MVAE (Wu & Goodman 2018): a product of experts with a prior expert, trained with the
subsampled ELBO.

Posterior of any set S of present modalities::

    q(z | X_S) ∝ p(z) · prod_{m in S} q(z | x_m)      (masked, log-space PoE, see experts.py)

Training objective per sample (``subsample`` random subsets of size >= 2 each step)::

    ELBO(X_present) + sum_m ELBO_m(x_m) + sum_{j <= subsample} ELBO_{S_j}(X_{S_j})

where ``ELBO_S`` encodes with the PoE of ``S`` and reconstructs the modalities of ``S``.  The
unimodal terms are what teaches each encoder to stand alone, which cross-generation needs.
An absent modality simply drops out of every term it would have been part of.

Why MVAE cross-generates poorly at β = 1 (and what helps).  No term of this objective asks
one modality's expert to explain another modality: each ELBO_S reconstructs only the members of
S.  When the views share only their content (PolyMNIST, PolyDigits), the experts are free to
write the class into latent dimensions of their own; decoder B then reads the class from B's
dimensions, which sit at the prior when only A is given, so B generated from A alone is close
to chance.  The only pull towards one shared class code is the KL it saves in the joint term,
about (M - 1)·log(10) nats per sample at β = 1 — weak next to the reconstruction terms.  A
larger β (with KL annealing), a smaller latent and longer training strengthen that pull: on
PolyDigits (3 views, σ = 0.2) mean A -> B coherence went from 0.24 (β 1, Z 16, 20 epochs) and
0.36 (β 1, 40 epochs) to 0.69 (β 4, Z 8, 40 epochs), while the β = 1 ELBO stayed within 10 nats.
β this large without annealing collapses the posterior (coherence 0.10).  The mixture-based
models (MMVAE, MoPoE) and the shared/private model cross-reconstruct and need none of this.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data import MultimodalBatch
from .base import MultimodalVAE, VAEOutput
from .distributions import DiagGaussian
from .experts import product_of_experts


class MVAE(MultimodalVAE):
    def __init__(self, dims, latent_dim: int = 16, hidden: int = 128, *, subsample: int = 1, **kw) -> None:
        super().__init__(dims, latent_dim, hidden, **kw)
        self.subsample = subsample

    def joint_gaussian(self, mu, logvar, mask) -> DiagGaussian:
        return DiagGaussian(*product_of_experts(mu, logvar, mask, prior=True))

    def posterior(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> DiagGaussian:
        mu, logvar, _, _ = self.experts(batch)
        return self.joint_gaussian(mu, logvar, self.mask(batch, source))

    def _subsets(self, present: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(encode mask, reconstruct mask) pairs of the subsampled ELBO, joint first."""
        M = len(self.modalities)
        terms = [(present, present)]
        eye = torch.eye(M, dtype=torch.bool, device=present.device)
        for i in range(M):
            only = present & eye[i].unsqueeze(1)
            terms.append((only, only))
        for _ in range(self.subsample if M > 2 else 0):
            pick = torch.zeros(M, dtype=torch.bool, device=present.device)
            size = int(torch.randint(2, M, ()))
            pick[torch.randperm(M, device=present.device)[:size]] = True
            sub = present & pick.unsqueeze(1)
            terms.append((sub, sub))
        return terms

    def loss(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        beta = self.beta if beta is None else beta
        mu, logvar, _, _ = self.experts(batch)
        present = self.mask(batch)
        cond = self.condition(batch)
        total = 0.0
        for k, (enc_mask, rec_mask) in enumerate(self._subsets(present)):
            rows = enc_mask.any(0).float()
            rec, kl = self.gaussian_elbo(batch, self.joint_gaussian(mu, logvar, enc_mask), rec_mask, beta, cond)
            total = total + rows * (rec - beta * kl)
            if k == 0:
                joint_rec, joint_kl = rec, kl
        return VAEOutput(-total.mean(), joint_rec - joint_kl, joint_rec, joint_kl)


class ConditionalVAE(MVAE):
    """A conditional multimodal VAE: q(z | X, y) and p(x_m | z, y), with y = ``batch.fields[condition_key]``.

    Same PoE posterior and subsampled ELBO as :class:`MVAE`; the label is concatenated (one-hot)
    to every encoder's input and every decoder's latent.  ``sample(n, labels)`` generates every
    modality for the given classes; a classifier should recognise the condition in them.
    """

    def __init__(self, dims, num_classes: int, latent_dim: int = 16, hidden: int = 128, **kw) -> None:
        if num_classes < 2:
            raise ValueError("a conditional VAE needs num_classes >= 2")
        super().__init__(dims, latent_dim, hidden, num_classes=num_classes, **kw)
