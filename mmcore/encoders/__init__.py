"""Per-modality encoders.  ``build_encoder(kind, in_dim, out_dim, **options)`` makes one by name;
apps register their own kinds with :func:`register_encoder`."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .mlp import MLPEncoder
from .tokens import TokenEncoder

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLPEncoder,
    "tokens": TokenEncoder,
    "identity": lambda in_dim, out_dim=None, **_: nn.Identity(),
}


def register_encoder(kind: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``kind`` buildable from configs: ``factory(in_dim, out_dim, **options) -> nn.Module``."""
    ENCODERS[kind] = factory


def build_encoder(kind: str, in_dim: int, out_dim: int, **options) -> nn.Module:
    try:
        factory = ENCODERS[kind]
    except KeyError:
        raise KeyError(f"unknown encoder kind '{kind}'; known: {', '.join(sorted(ENCODERS))}") from None
    return factory(in_dim, out_dim, **options)


__all__ = ["ENCODERS", "MLPEncoder", "TokenEncoder", "build_encoder", "register_encoder"]
