"""A seeded synthetic benchmark with shared, modality-unique and interaction information
(in the spirit of FactorCL's synthetic data), built so that fusion measurably beats each
unimodal model and interaction-capable fusions beat additive (late) fusion.

Generative story.  Every sample draws fair random bits

* ``s``        shared bit, written into every modality;
* ``u_m``      unique bit of modality ``m``, written into ``m`` only;
* ``r_m``      interaction bit of modality ``m``, written into ``m`` only;

and a *part* ``k``, uniform over ``shared``, ``unique:<m>`` (one per modality) and
``interaction:<a>+<b>`` (one per pair of modalities).  The part is a cue visible in every
modality (a one-hot, so any single modality knows which question is asked); the label is

    shared          y = s                   any one modality suffices
    unique:m        y = u_m                 needs modality m
    interaction:ab  y = r_a XOR r_b         needs a and b *together*; every single modality,
                                            and any additive (late) fusion, is at chance

Each modality observes its latent code ``c_m = [onehot(k), s, u_m, r_m]`` through a fixed
random linear map plus Gaussian noise: ``x_m = A_m c_m + noise * eps``, ``A_m`` ``[dim, K+3]``
drawn from ``world_seed`` (the same "world" for every split) with unit-norm columns.

With M modalities there are ``K = 1 + M + M(M-1)/2`` parts; an ideal model with modality m
alone scores ``(2 + 0.5 (K - 2)) / K`` (0.64 for M = 3), ideal late fusion
``(1 + M + 0.5 M(M-1)/2) / K`` (0.79), an ideal joint model 1.0.

Samples are dicts (``{m: tensor | None, "label", "part"}``) for the shared trainer;
:meth:`SyntheticFactorDataset.to_batch` builds the whole split as one ``MultimodalBatch``.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch.utils.data import Dataset

from .batch import MultimodalBatch


def part_names(modalities: Sequence[str]) -> list[str]:
    return ["shared"] + [f"unique:{m}" for m in modalities] + [f"interaction:{a}+{b}" for a, b in combinations(modalities, 2)]


class SyntheticFactorDataset(Dataset):
    def __init__(
        self,
        n: int = 4096,
        modalities: Sequence[str] = ("a", "b", "c"),
        dim: int = 16,
        noise: float = 0.3,
        missing_rate: float = 0.0,
        seed: int = 0,
        world_seed: int = 1234,
    ) -> None:
        if len(modalities) < 2:
            raise ValueError("the synthetic benchmark needs at least two modalities")
        self.modalities = list(modalities)
        self.dim = dim
        self.parts = part_names(self.modalities)
        k = len(self.parts)
        g = torch.Generator().manual_seed(seed)
        world = torch.Generator().manual_seed(world_seed)
        n_mod = len(self.modalities)

        self.part = torch.randint(k, (n,), generator=g)
        shared = torch.randint(2, (n,), generator=g)
        unique = torch.randint(2, (n, n_mod), generator=g)
        inter = torch.randint(2, (n, n_mod), generator=g)
        label = shared.clone()
        for j in range(n_mod):
            label = torch.where(self.part == 1 + j, unique[:, j], label)
        for p, (a, b) in enumerate(combinations(range(n_mod), 2)):
            label = torch.where(self.part == 1 + n_mod + p, inter[:, a] ^ inter[:, b], label)
        self.labels = label
        self.latents = {"shared": shared, "unique": unique, "interaction": inter}

        cue = torch.nn.functional.one_hot(self.part, k).float()
        sign = lambda bits: bits.float() * 2 - 1  # noqa: E731
        self.data: dict[str, torch.Tensor] = {}
        self.mixing: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            code = torch.cat([cue, sign(shared)[:, None], sign(unique[:, j])[:, None], sign(inter[:, j])[:, None]], 1)
            a = torch.randn(dim, k + 3, generator=world)
            a = a / a.norm(dim=0, keepdim=True)
            self.mixing[m] = a
            self.data[m] = code @ a.T + noise * torch.randn(n, dim, generator=g)

        keep = torch.rand(n, n_mod, generator=g) >= missing_rate
        none_left = ~keep.any(dim=1)
        keep[none_left, torch.randint(n_mod, (int(none_left.sum()),), generator=g)] = True
        self.keep = keep

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        sample = {m: (self.data[m][i] if self.keep[i, j] else None) for j, m in enumerate(self.modalities)}
        sample["label"] = self.labels[i]
        sample["part"] = self.part[i]
        return sample

    @property
    def shapes(self) -> dict[str, tuple[int]]:
        return {m: (self.dim,) for m in self.modalities}

    def part_of(self, name: str) -> torch.Tensor:
        """Bool mask ``[N]`` of samples whose part is ``name`` or starts with ``name`` (e.g. 'unique')."""
        hits = [i for i, p in enumerate(self.parts) if p == name or p.split(":")[0] == name]
        if not hits:
            raise KeyError(f"unknown part '{name}'; parts: {self.parts}")
        return torch.isin(self.part, torch.tensor(hits))

    def to_batch(self) -> MultimodalBatch:
        """The whole split as one batch (absent rows zeroed), fields ``label`` and ``part``."""
        tensors = {m: self.data[m] * self.keep[:, j, None] for j, m in enumerate(self.modalities)}
        present = {m: self.keep[:, j].clone() for j, m in enumerate(self.modalities)}
        return MultimodalBatch(tensors, present, fields={"label": self.labels.clone(), "part": self.part.clone()})
