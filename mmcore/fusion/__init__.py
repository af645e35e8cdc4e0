"""Mask-aware fusion zoo: one method per file, one contract for all.

``fusion(features, present, token_mask=None) -> Tensor`` where ``features`` maps modality names
to ``[B, D_m]`` or ``[B, T_m, D_m]`` tensors and ``present`` maps them to ``[B]`` bool masks.
A missing modality (masked row, or key left out of ``features``) contributes nothing: it is
excluded, never zero-filled.  Build any method by name with :func:`build_fusion`.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from .attention_weighted import AttentionWeightedFusion
from .bilinear import MFBFusion
from .cross_modal import CrossModalAttention
from .early import EarlyFusion
from .gmu import GMUFusion
from .late import LateFusion
from .low_rank import LowRankFusion
from .nl_gate import NLGateFusion
from .tensor import TensorFusion
from .transformer import MultimodalTransformer

FUSIONS: dict[str, type[nn.Module]] = {
    "early": EarlyFusion,
    "late": LateFusion,
    "tensor": TensorFusion,
    "low_rank": LowRankFusion,
    "gmu": GMUFusion,
    "nl_gate": NLGateFusion,
    "attention_weighted": AttentionWeightedFusion,
    "mfb": MFBFusion,
    "transformer": MultimodalTransformer,
    "cross_modal": CrossModalAttention,
}


def available_fusions() -> list[str]:
    """Every fusion name :func:`build_fusion` accepts (graph ones included)."""
    _register_graph()
    return list(FUSIONS)


def build_fusion(name: str, in_dims: Mapping[str, int], out_dim: int, **options) -> nn.Module:
    """``build_fusion("low_rank", {"image": 16, "text": 8}, 32, rank=4)``."""
    if name not in FUSIONS:
        _register_graph()
    try:
        cls = FUSIONS[name]
    except KeyError:
        raise KeyError(f"unknown fusion '{name}'; known: {', '.join(sorted(FUSIONS))}") from None
    return cls(in_dims, out_dim, **options)


def _register_graph() -> None:
    """Graph fusions import torch_geometric, so they load on first use."""
    from .graph_modality import ModalityGraphFusion
    from .graph_sample import SampleGraphFusion

    FUSIONS.setdefault("modality_graph", ModalityGraphFusion)
    FUSIONS.setdefault("sample_graph", SampleGraphFusion)


def __getattr__(name: str):
    if name == "ModalityGraphFusion":
        from .graph_modality import ModalityGraphFusion
        return ModalityGraphFusion
    if name in ("SampleGraphFusion", "knn_graph"):
        from . import graph_sample
        return getattr(graph_sample, name)
    raise AttributeError(f"module 'mmcore.fusion' has no attribute '{name}'")


__all__ = [
    "FUSIONS", "available_fusions", "build_fusion", "EarlyFusion", "LateFusion", "TensorFusion", "LowRankFusion", "GMUFusion",
    "NLGateFusion", "AttentionWeightedFusion", "MFBFusion", "MultimodalTransformer", "CrossModalAttention",
]  # ModalityGraphFusion, SampleGraphFusion, knn_graph load torch_geometric on first access
