"""A disentangled shared/private multimodal VAE (DMVAE, Lee & Pavlovic 2021, in spirit).

Each encoder splits its code in a *shared* part, combined across modalities by the masked PoE
(with the prior expert), and a *private* part that only its own decoder reads::

    z = [ z_s ,  z_p^(m0), z_p^(m1), ... ]       z_s ~ PoE(present),  z_p^(m) ~ q(z_p | x_m)
    x_m ~ p(x_m | z_s, z_p^(m))

Objective: the joint ELBO plus, for every present modality n, an ELBO whose shared code comes
from n alone and in which every present modality is reconstructed — n with its own private
code, the others with private codes drawn from the prior.  Only the shared code can then tell
modality m what n saw, which is what cross-generation needs (with their own private codes the
other decoders would ignore the shared code altogether).
A missing modality's private code is the prior, so it adds no KL and no likelihood.

Cross-generation of B from A decodes ``z_s`` from A with B's private code at the prior mean;
traversing ``z_s`` changes the content (the digit), traversing ``z_p`` the style of one view.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data import MultimodalBatch
from .base import MultimodalVAE, VAEOutput
from .distributions import DiagGaussian
from .experts import product_of_experts


class DisentangledVAE(MultimodalVAE):
    def __init__(self, dims, latent_dim: int = 12, hidden: int = 128, *, private_dim: int = 4, **kw) -> None:
        if private_dim < 1:
            raise ValueError("the disentangled model needs private_dim >= 1")
        super().__init__(dims, latent_dim, hidden, private_dim=private_dim, **kw)

    def _joint(self, mu_s, lv_s, mu_p, lv_p, shared_mask, private_mask) -> DiagGaussian:
        mu, lv = product_of_experts(mu_s, lv_s, shared_mask, prior=True)
        keep = private_mask.unsqueeze(-1)
        zero = torch.zeros((), device=mu_p.device)
        pm = torch.where(keep, mu_p, zero)                                  # prior N(0, I) where absent
        pl = torch.where(keep, lv_p, zero)
        M, B, P = mu_p.shape
        flat = lambda t: t.permute(1, 0, 2).reshape(B, M * P)  # noqa: E731
        return DiagGaussian(torch.cat([mu, flat(pm)], -1), torch.cat([lv, flat(pl)], -1))

    def posterior(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> DiagGaussian:
        mu_s, lv_s, mu_p, lv_p = self.experts(batch)
        mask = self.mask(batch, source)
        return self._joint(mu_s, lv_s, mu_p, lv_p, mask, mask)

    def loss(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        beta = self.beta if beta is None else beta
        mu_s, lv_s, mu_p, lv_p = self.experts(batch)
        present = self.mask(batch)
        cond = self.condition(batch)
        eye = torch.eye(len(self.modalities), dtype=torch.bool, device=present.device)
        total = 0.0
        shared_masks = [present] + [present & eye[i].unsqueeze(1) for i in range(len(self.modalities))]
        for k, shared in enumerate(shared_masks):
            rows = shared.any(0).float()
            q = self._joint(mu_s, lv_s, mu_p, lv_p, shared, present if k == 0 else shared)
            rec, kl = self.gaussian_elbo(batch, q, present, beta, cond)
            total = total + rows * (rec - beta * kl)
            if k == 0:
                joint = (rec, kl)
        return VAEOutput(-total.mean(), joint[0] - joint[1], joint[0], joint[1])
