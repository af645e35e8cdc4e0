"""Deep CCA and DCCAE: two encoders trained with a named correlation objective.

    ============  ===============  ==================================================
    name          shape            meaning
    ============  ===============  ==================================================
    x1, x2        [B, d_1], [B,…]  the two views (any shapes the encoders accept)
    h1, h2        [B, o]           encoder outputs (latent width o)
    loss          []               objective (+ λ·reconstruction MSE for DCCAE)
    ============  ===============  ==================================================

Rows where either view is absent (``present`` masks) are dropped before the objective: a missing
modality contributes nothing.  After training, :meth:`DCCA.fit_linear_cca` fits a final linear
CCA on the encoder outputs of a full pass (as Andrew et al. do) so ``transform`` returns
uncorrelated, unit-variance canonical variates.
"""
from __future__ import annotations

import torch
from torch import nn

from .cca import LinearCCA
from .dcca_objectives import OBJECTIVES, dcca_objective


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DCCA(nn.Module):
    def __init__(self, encoder1: nn.Module, encoder2: nn.Module, objective: str = "corr_sq_sum",
                 k: int | None = None, reg: float = 1e-5, unbiased: bool = False) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown DCCA objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
        if unbiased and objective != "ey":
            raise ValueError(f"unbiased=True applies to the 'ey' objective only, not {objective!r}")
        self.encoder1, self.encoder2 = encoder1, encoder2
        self.objective, self.k, self.reg, self.unbiased = objective, k, reg, unbiased
        self.cca: LinearCCA | None = None

    def encode(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder1(x1), self.encoder2(x2)

    @staticmethod
    def _both_present(n: int, present1: torch.Tensor | None, present2: torch.Tensor | None, device) -> torch.Tensor:
        keep = torch.ones(n, dtype=torch.bool, device=device)
        if present1 is not None:
            keep &= present1.to(device)
        if present2 is not None:
            keep &= present2.to(device)
        return keep

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, present1: torch.Tensor | None = None,
             present2: torch.Tensor | None = None) -> torch.Tensor:
        keep = self._both_present(x1.shape[0], present1, present2, x1.device)
        h1, h2 = self.encode(x1[keep], x2[keep])
        return dcca_objective(self.objective, h1, h2, k=self.k, reg=self.reg, unbiased=self.unbiased)

    def forward(self, x1, x2, present1=None, present2=None) -> torch.Tensor:
        return self.loss(x1, x2, present1, present2)

    @torch.no_grad()
    def fit_linear_cca(self, x1: torch.Tensor, x2: torch.Tensor, n_components: int | None = None) -> LinearCCA:
        h1, h2 = self.encode(x1, x2)
        k = n_components or min(h1.shape[1], h2.shape[1])
        self.cca = LinearCCA(k, reg=self.reg).fit(h1.double(), h2.double())
        return self.cca

    @torch.no_grad()
    def transform(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cca is None:
            raise RuntimeError("call fit_linear_cca(x1, x2) on training data before transform")
        h1, h2 = self.encode(x1, x2)
        z1, z2 = self.cca.transform(h1.double(), h2.double())
        return z1.float(), z2.float()


class DCCAE(DCCA):
    """DCCA plus decoders reconstructing each view from its own code (Wang et al. 2015)."""

    def __init__(self, encoder1: nn.Module, encoder2: nn.Module, decoder1: nn.Module, decoder2: nn.Module,
                 objective: str = "corr_sq_sum", reconstruction_weight: float = 1.0, k: int | None = None,
                 reg: float = 1e-5) -> None:
        super().__init__(encoder1, encoder2, objective, k, reg)
        self.decoder1, self.decoder2 = decoder1, decoder2
        self.reconstruction_weight = reconstruction_weight

    def loss_terms(self, x1, x2, present1=None, present2=None) -> dict[str, torch.Tensor]:
        """Correlation on rows with both views; each reconstruction on rows where its view exists."""
        n, device = x1.shape[0], x1.device
        keep = self._both_present(n, present1, present2, device)
        h1, h2 = self.encode(x1, x2)
        corr = dcca_objective(self.objective, h1[keep], h2[keep], k=self.k, reg=self.reg, unbiased=self.unbiased)
        terms = {"correlation": corr}
        for name, x, h, dec, present in (("recon1", x1, h1, self.decoder1, present1),
                                          ("recon2", x2, h2, self.decoder2, present2)):
            rows = torch.ones(n, dtype=torch.bool, device=device) if present is None else present.to(device)
            terms[name] = nn.functional.mse_loss(dec(h[rows]), x[rows]) if rows.any() else h.sum() * 0
        terms["loss"] = corr + self.reconstruction_weight * (terms["recon1"] + terms["recon2"])
        return terms

    def loss(self, x1, x2, present1=None, present2=None) -> torch.Tensor:
        return self.loss_terms(x1, x2, present1, present2)["loss"]
