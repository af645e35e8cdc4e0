"""Typed configs of a :class:`~mmcore.models.multimodal.MultimodalModel`; saved as JSON beside
its weights, so a model is rebuilt from ``config.json`` alone.

Example::

    ModelConfig(
        modalities={"image": EncoderConfig(in_dim=16, out_dim=32),
                    "text": EncoderConfig(in_dim=8, out_dim=32)},
        fusion=FusionConfig(name="low_rank", out_dim=32, options={"rank": 4}),
        head=HeadConfig(num_classes=3, hidden=32),
    )
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _from_dict(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


@dataclass
class EncoderConfig:
    in_dim: int
    out_dim: int = 32
    kind: str = "mlp"                     # mlp | tokens | identity | any registered kind
    options: dict[str, Any] = field(default_factory=dict)   # e.g. hidden, layers, num_tokens, dropout

    def feature_dim(self) -> int:
        return self.in_dim if self.kind == "identity" else self.out_dim


@dataclass
class FusionConfig:
    name: str = "early"                   # any name of mmcore.fusion.available_fusions()
    out_dim: int = 32
    options: dict[str, Any] = field(default_factory=dict)   # e.g. rank, mode, heads, depth


@dataclass
class HeadConfig:
    num_classes: int = 2
    hidden: int | None = 32               # None: a single linear layer
    dropout: float = 0.0


@dataclass
class ModelConfig:
    modalities: dict[str, EncoderConfig]
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("a model needs at least one modality")
        self.modalities = {
            m: e if isinstance(e, EncoderConfig) else _from_dict(EncoderConfig, e, f"modalities.{m}")
            for m, e in self.modalities.items()
        }
        if isinstance(self.fusion, dict):
            self.fusion = _from_dict(FusionConfig, self.fusion, "fusion")
        if isinstance(self.head, dict):
            self.head = _from_dict(HeadConfig, self.head, "head")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data, "model config")
