"""MultimodalTransformer pooling: with pool="mean" the final LayerNorm runs once on the pooled
vector (pool_norm="after"), or on every token before averaging (pool_norm="before", the old
layout, kept so old checkpoints load)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcore.fusion import MultimodalTransformer

DIMS = {"a": 3, "b": 4}


def _inputs():
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(5, d, generator=g) for m, d in DIMS.items()}
    present = {"a": torch.ones(5, dtype=torch.bool), "b": torch.tensor([True, False, True, False, True])}
    return feats, present


@pytest.mark.parametrize("pool_norm", ["after", "before"])
def test_early_mean_pool_matches_a_hand_computation(pool_norm):
    torch.manual_seed(0)
    module = MultimodalTransformer(DIMS, out_dim=8, heads=2, depth=0, pool="mean", pool_norm=pool_norm).eval()
    feats, present = _inputs()
    with torch.no_grad():
        out = module(feats, present)
        cls = module.cls.expand(5, -1)
        a, b = (module.embed(m, feats[m])[:, 0] for m in ("a", "b"))
        ln = lambda x: F.layer_norm(x, (8,), module.norm.weight, module.norm.bias)  # noqa: E731
        both = present["b"].unsqueeze(-1)
        if pool_norm == "after":
            want = torch.where(both, ln((cls + a + b) / 3), ln((cls + a) / 2))
        else:
            want = torch.where(both, (ln(cls) + ln(a) + ln(b)) / 3, (ln(cls) + ln(a)) / 2)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


def test_pool_norm_before_keeps_the_old_parameter_layout():
    old = MultimodalTransformer(DIMS, out_dim=8, heads=2, mode="late", pool_norm="before").state_dict()
    new = MultimodalTransformer(DIMS, out_dim=8, heads=2, mode="late").state_dict()
    assert "norms.a.weight" in old and "norm.weight" not in old
    assert "norm.weight" in new and not any(k.startswith("norms.") for k in new)
    with pytest.raises(ValueError, match="pool_norm"):
        MultimodalTransformer(DIMS, out_dim=8, pool_norm="middle")


def test_late_mode_without_any_modality_gives_zeros():
    module = MultimodalTransformer(DIMS, out_dim=8, heads=2, mode="late", pool="mean").eval()
    feats, present = _inputs()
    present = {m: torch.zeros(5, dtype=torch.bool) for m in DIMS}
    with torch.no_grad():
        assert module(feats, present).abs().max() == 0
