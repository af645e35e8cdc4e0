"""The interface every multimodal VAE of mmcore shares, and the parts they have in common.

A model has one encoder and one decoder per modality (small MLPs over flattened inputs) and
implements ``posterior(batch, source)`` (how experts are combined) and ``loss(batch, beta)``
(its training objective).  Everything else — ELBO, importance-sampled log-likelihood,
reconstruction, cross-generation, completion of missing modalities, prior samples — is written
once here on top of those two.

Every method is mask-aware: a modality that is absent for a sample (``batch.present[m]`` False)
contributes no expert to its posterior and no term to its likelihood.  Nothing is tied to a
device: tensors are created with ``like``/``device=`` of the inputs.

========================  ==============  ===================================================
name                      shape           meaning
========================  ==============  ===================================================
``batch[m]``              ``[B, F_m]``    modality m, flattened (``F_m = prod(shape)``)
expert ``mu, logvar``     ``[M, B, Z]``   one Gaussian per modality encoder
``mask``                  ``[M, B]``      present modalities (restricted to ``source``)
``z``                     ``[K, B, Z]``   K latent draws (Z = shared + private dims)
``decode(z)[m]``          ``[K, B, F_m]`` logits (Bernoulli) or means (Gaussian)
========================  ==============  ===================================================

Likelihoods: ``bernoulli`` (continuous-Bernoulli-free BCE with targets in [0, 1], the usual
choice for images) or ``gaussian`` with a fixed ``sigma``.  Per-modality ``likelihood_weights``
rescale a modality's log-likelihood (MMVAE-style balancing of unequal sizes).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import MultimodalBatch
from .distributions import DiagGaussian, GaussianMixture
from .experts import kl_to_standard_normal, standard_normal_log_prob

Posterior = DiagGaussian | GaussianMixture


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; every submodule's own mode is restored after,
    so a library call that evaluates never leaves a training model in eval mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@dataclass
class VAEOutput:
    """What ``loss(batch, beta)`` returns.  Only ``loss`` depends on ``beta``; the per-sample
    diagnostics are always the β = 1 quantities, so they compare between runs and schedules."""

    loss: Tensor          # scalar to minimise: the model's objective at the given beta
    elbo: Tensor          # [B] recon - kl: the one-sample (MC) ELBO at beta = 1, whatever beta the loss used
    recon: Tensor         # [B] reconstruction log-likelihood part
    kl: Tensor            # [B] KL part (or its Monte-Carlo estimate)
    iw_bound: Tensor | None = None  # [B] MMVAE: the stratified importance-weighted bound at beta = 1


class MultimodalVAE(nn.Module):
    """Base class.  Args:

    dims: modality name -> number of features (flattened).
    latent_dim: shared latent size Z.
    hidden: width of the encoder/decoder MLPs.
    private_dim: per-modality private latent size (the disentangled model), 0 otherwise.
    num_classes: if > 0, encoders and decoders are conditioned on ``one_hot(batch.fields[condition_key])``.
    likelihood: ``bernoulli`` | ``gaussian``.
    beta: default KL weight (annealing overrides it per step).
    """

    def __init__(self, dims: Mapping[str, int], latent_dim: int = 16, hidden: int = 128, *, private_dim: int = 0,
                 num_classes: int = 0, condition_key: str = "label", likelihood: str = "bernoulli",
                 sigma: float = 0.1, beta: float = 1.0, likelihood_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood '{likelihood}' (bernoulli, gaussian)")
        if not dims:
            raise ValueError("a multimodal VAE needs at least one modality")
        self.dims = dict(dims)
        self.modalities = list(self.dims)
        self.latent_dim, self.private_dim, self.hidden = latent_dim, private_dim, hidden
        self.num_classes, self.condition_key = num_classes, condition_key
        self.likelihood, self.sigma, self.beta = likelihood, sigma, beta
        self.likelihood_weights = {m: float((likelihood_weights or {}).get(m, 1.0)) for m in self.modalities}
        out = 2 * (latent_dim + private_dim)
        self.encoders = nn.ModuleDict({m: mlp([d + num_classes, hidden, hidden, out]) for m, d in self.dims.items()})
        self.decoders = nn.ModuleDict(
            {m: mlp([latent_dim + private_dim + num_classes, hidden, hidden, d]) for m, d in self.dims.items()})

    # ------------------------------------------------------------------ building blocks
    @property
    def total_latent(self) -> int:
        return self.latent_dim + self.private_dim * len(self.modalities)

    def config(self) -> dict:
        return {"class": type(self).__name__, "dims": self.dims, "latent_dim": self.latent_dim, "hidden": self.hidden,
                "private_dim": self.private_dim, "num_classes": self.num_classes, "likelihood": self.likelihood,
                "sigma": self.sigma, "beta": self.beta}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def condition(self, batch: MultimodalBatch) -> Tensor | None:
        if not self.num_classes:
            return None
        if self.condition_key not in batch.fields:
            raise KeyError(f"conditional model needs batch.fields['{self.condition_key}']")
        return F.one_hot(batch.fields[self.condition_key].long(), self.num_classes).float()

    def _input(self, batch: MultimodalBatch, m: str) -> Tensor:
        """``[B, F_m]`` inputs of modality m with every absent row set to 0 by selection.

        Absent rows are masked out of every term anyway; selecting (not multiplying) them away
        here means that no placeholder value, NaN and inf included, reaches an encoder, a
        likelihood or a gradient (``0 * nan`` is nan, ``where`` is exact).
        """
        x = batch.get(m)
        if x is None:
            return torch.zeros(batch.batch_size, self.dims[m], device=self._device())
        x = x.reshape(x.shape[0], -1).float()
        if x.shape[1] != self.dims[m]:
            raise ValueError(f"modality '{m}' has {x.shape[1]} features, the model expects {self.dims[m]}")
        keep = batch.mask(m).to(x.device).unsqueeze(-1)
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))

    def mask(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> Tensor:
        """``[M, B]`` present modalities, restricted to ``source`` if given."""
        unknown = set(source or ()) - set(self.modalities)
        if unknown:
            raise KeyError(f"unknown source modalities {sorted(unknown)}; the model has {self.modalities}")
        rows = [batch.mask(m) & (source is None or m in source) & (batch.get(m) is not None) for m in self.modalities]
        return torch.stack(rows).to(self._device())

    def experts(self, batch: MultimodalBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Shared ``(mu, logvar)`` ``[M, B, Z]`` and private ``(mu, logvar)`` ``[M, B, P]`` of every encoder."""
        cond = self.condition(batch)
        outs = []
        for m in self.modalities:
            x = self._input(batch, m)
            if cond is not None:
                x = torch.cat([x, cond], -1)
            outs.append(self.encoders[m](x))
        h = torch.stack(outs)                                            # [M, B, 2(Z+P)]
        Z, P = self.latent_dim, self.private_dim
        mu_s, lv_s, mu_p, lv_p = h.split([Z, Z, P, P], -1)
        clamp = lambda t: t.clamp(-12.0, 8.0)  # noqa: E731 - keeps exp() finite in sampling
        return mu_s, clamp(lv_s), mu_p, clamp(lv_p)

    def decode(self, z: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """``z [..., B, Z_total]`` -> per-modality logits/means ``[..., B, F_m]``."""
        shared = z[..., : self.latent_dim]
        outs = {}
        for i, m in enumerate(self.modalities):
            parts = [shared]
            if self.private_dim:
                lo = self.latent_dim + i * self.private_dim
                parts.append(z[..., lo: lo + self.private_dim])
            if cond is not None:
                parts.append(cond.expand(*z.shape[:-1], cond.shape[-1]))
            outs[m] = self.decoders[m](torch.cat(parts, -1))
        return outs

    def log_likelihood(self, batch: MultimodalBatch, outputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        """``sum_m mask[m] * w_m * log p(x_m | z)`` -> ``[..., B]`` (absent modalities add nothing)."""
        total = 0.0
        for i, m in enumerate(self.modalities):
            if not bool(mask[i].any()):
                continue
            x = self._input(batch, m).expand_as(outputs[m])
            if self.likelihood == "bernoulli":
                ll = -F.binary_cross_entropy_with_logits(outputs[m], x, reduction="none").sum(-1)
            else:
                ll = -0.5 * (((x - outputs[m]) / self.sigma) ** 2 + math.log(2 * math.pi * self.sigma ** 2)).sum(-1)
            total = total + torch.where(mask[i], ll * self.likelihood_weights[m], torch.zeros_like(ll))
        if isinstance(total, float):
            return torch.zeros(mask.shape[1], device=mask.device)
        return total

    def mean(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: torch.sigmoid(v) if self.likelihood == "bernoulli" else v for m, v in outputs.items()}

    # ------------------------------------------------------------------ to implement
    def posterior(self, batch: MultimodalBatch, source: Sequence[str] | None = None) -> Posterior:
        raise NotImplementedError

    def loss(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        raise NotImplementedError

    def forward(self, batch: MultimodalBatch, beta: float | None = None) -> VAEOutput:
        return self.loss(batch, beta)

    # ------------------------------------------------------------------ shared by all models
    def gaussian_elbo(self, batch: MultimodalBatch, q: DiagGaussian, recon_mask: Tensor, beta: float,
                      cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """One-sample reconstruction term and closed-form KL of a Gaussian posterior: ``[B]`` each."""
        z = q.rsample(1)
        rec = self.log_likelihood(batch, self.decode(z, cond), recon_mask)[0]
        return rec, kl_to_standard_normal(q.mu, q.logvar)

    def log_weights(self, batch: MultimodalBatch, samples: int = 1) -> Tensor:
        """``log p(X, z_k) - log q(z_k | X)`` for K draws from the model's joint posterior: ``[K, B]``."""
        q = self.posterior(batch)
        z = q.rsample(samples)
        out = self.decode(z, self.condition(batch))
        return self.log_likelihood(batch, out, self.mask(batch)) + standard_normal_log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def elbo(self, batch: MultimodalBatch, samples: int = 1) -> Tensor:
        """Monte-Carlo ELBO of the present modalities under the joint posterior: ``[B]``."""
        return self.log_weights(batch, samples).mean(0)

    @torch.no_grad()
    def importance_log_likelihood(self, batch: MultimodalBatch, samples: int = 64) -> Tensor:
        """``log p(X) ≈ logsumexp_k w_k - log K`` with the joint posterior as proposal: ``[B]``."""
        lw = self.log_weights(batch, samples)
        return torch.logsumexp(lw, 0) - math.log(samples)

    @torch.no_grad()
    def generate(self, batch: MultimodalBatch, source: Sequence[str] | None = None,
                 sample: bool = False) -> dict[str, Tensor]:
        """Every modality generated from ``source`` only (all present ones if None): ``{m: [B, F_m]}``.

        ``sample=False`` decodes the posterior mean (deterministic: two calls give the same
        bits, for the mixtures too); ``True`` decodes one draw from the posterior.
        """
        if source is not None and not bool(self.mask(batch, source).any(0).all()):
            raise ValueError(f"some samples have none of the source modalities {list(source)}")
        q = self.posterior(batch, source)
        z = q.rsample(1)[0] if sample else q.mean()
        return self.mean(self.decode(z, self.condition(batch)))

    def reconstruct(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        return self.generate(batch, None)

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """``n`` draws from the prior (conditioned on ``labels`` for a conditional model)."""
        z = torch.randn(n, self.total_latent, device=self._device())
        cond = None
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional model needs labels to sample")
            cond = F.one_hot(labels.long().to(z.device), self.num_classes).float()
        return self.mean(self.decode(z, cond))

    @torch.no_grad()
    def complete(self, batch: MultimodalBatch) -> MultimodalBatch:
        """A copy of ``batch`` where every absent modality is generated from the present ones.

        Present rows are kept as they are; completed rows are marked present.
        """
        gen = self.generate(batch, None)
        tensors, present = dict(batch.tensors), dict(batch.present)
        for m in self.modalities:
            have = batch.mask(m).to(gen[m].device)
            x = self._input(batch, m)
            tensors[m] = torch.where(have.unsqueeze(-1), x, gen[m]).reshape(batch.batch_size, -1)
            present[m] = torch.ones_like(have)
        return MultimodalBatch(tensors, present, dict(batch.fields), dict(batch.token_mask))
