"""Every fusion: a masked modality gives the same output as the modality left out, placeholder
rows are never read, gradients flow, and bad input is refused with a clear message."""
from __future__ import annotations

import pytest
import torch

from mmcore.fusion import available_fusions, build_fusion

DIMS = {"a": 6, "b": 5, "c": 4}
B = 10
VARIANTS = [(name, {}) for name in available_fusions() if name not in ("transformer", "late")]
VARIANTS += [("transformer", {"mode": m}) for m in ("early", "bottleneck", "late")]
VARIANTS += [("transformer", {"mode": m, "pool": "mean"}) for m in ("early", "bottleneck", "late")]
VARIANTS += [("transformer", {"mode": m, "pool_norm": "before"}) for m in ("early", "bottleneck")]
VARIANTS += [("late", {"mode": m}) for m in ("mean", "weighted")]
VARIANTS += [("modality_graph", {"conv": "gat"}), ("sample_graph", {"conv": "gat", "k": 3}), ("mfb", {"mlb": True})]
VARIANTS += [("sample_graph", {"mode": "inductive"})]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" if kw else n for n, kw in VARIANTS]


def make(name, kw, seed=0):
    torch.manual_seed(seed)
    if name == "sample_graph":
        kw = {"k": 3, **kw}
    module = build_fusion(name, DIMS, 8, **kw)
    module.eval()
    if kw.get("mode") == "inductive":                 # a stored reference set (the "training set")
        g = torch.Generator().manual_seed(seed + 100)
        module.set_reference({m: torch.randn(20, d, generator=g) for m, d in DIMS.items()},
                             {m: torch.rand(20, generator=g) > 0.2 for m in DIMS})
    return module


def inputs(module, seed=1, tokens=None):
    g = torch.Generator().manual_seed(seed)
    use_tokens = module.input_kind == "tokens" if tokens is None else tokens
    if use_tokens:
        feats = {m: torch.randn(B, 2 + i, d, generator=g) for i, (m, d) in enumerate(DIMS.items())}
    else:
        feats = {m: torch.randn(B, d, generator=g) for m, d in DIMS.items()}
    present = {m: torch.rand(B, generator=g) > 0.3 for m in DIMS}
    present["a"][0] = True
    return feats, present


def without(d, name):
    return {k: v for k, v in d.items() if k != name}


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_masked_equals_omitted(name, kw):
    module = make(name, kw)
    feats, present = inputs(module)
    with torch.no_grad():
        for drop in DIMS:
            masked = dict(present, **{drop: torch.zeros(B, dtype=torch.bool)})
            out_masked = module(feats, masked)
            out_omitted = module(without(feats, drop), without(present, drop))
            assert out_masked.shape == (B, module.out_dim if module.out_dim else 8)
            torch.testing.assert_close(out_masked, out_omitted, atol=1e-6, rtol=0)


PLACEHOLDERS = {"large": None, "nan": float("nan"), "inf": float("inf"), "-inf": -float("inf")}


def fill_absent(feats, present, value):
    """Absent rows hold ``value`` (or large random numbers for ``None``)."""
    out = {}
    for m, x in feats.items():
        junk = torch.randn_like(x) * 1e3 if value is None else torch.full_like(x, value)
        out[m] = torch.where(present[m].view(-1, *([1] * (x.dim() - 1))), x, junk)
    return out


@pytest.mark.parametrize("placeholder", list(PLACEHOLDERS))
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_placeholder_rows_are_never_read(name, kw, placeholder):
    """Whatever an absent row holds, NaN and ±inf included, the output is the same (issue 14,
    defect 7: a zero mask times inf is NaN, so 9 of 12 families gave non-finite outputs)."""
    module = make(name, kw)
    feats, present = inputs(module)
    noisy = fill_absent(feats, present, PLACEHOLDERS[placeholder])
    with torch.no_grad():
        torch.testing.assert_close(module(feats, present), module(noisy, present), atol=1e-6, rtol=0)


@pytest.mark.parametrize("placeholder", ["nan", "inf"])
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_non_finite_placeholders_give_finite_gradients_and_none_to_themselves(name, kw, placeholder):
    module = make(name, kw)
    module.train()
    feats, present = inputs(module)
    noisy = {m: x.requires_grad_() for m, x in fill_absent(feats, present, PLACEHOLDERS[placeholder]).items()}
    module(noisy, present).pow(2).sum().backward()
    for m, x in noisy.items():
        assert torch.isfinite(x.grad).all(), m
        assert x.grad[~present[m]].abs().sum().item() == 0.0, m
    for pname, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), pname


ROWWISE = [(v, i) for v, i in zip(VARIANTS, IDS) if v[0] != "sample_graph" or v[1].get("mode") == "inductive"]


@pytest.mark.parametrize("name,kw", [v for v, _ in ROWWISE], ids=[i for _, i in ROWWISE])
def test_rowwise_masking_matches_a_batch_without_the_modality(name, kw):
    """Row b with modality m absent gives the output of a batch where m is omitted (rows
    independent; the transductive sample graph is not: its graph is built inside the batch)."""
    module = make(name, kw)
    feats, present = inputs(module)
    with torch.no_grad():
        full = module(feats, present)
        for drop in DIMS:
            rows = (~present[drop]).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            sub_f = {m: x[rows] for m, x in without(feats, drop).items()}
            sub_p = {m: p[rows] for m, p in without(present, drop).items()}
            torch.testing.assert_close(full[rows], module(sub_f, sub_p), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_gradients_are_finite_with_missing_rows(name, kw):
    module = make(name, kw)
    module.train()
    feats, present = inputs(module)
    feats = {m: x.requires_grad_() for m, x in feats.items()}
    module(feats, present).pow(2).sum().backward()
    for m, x in feats.items():
        assert torch.isfinite(x.grad).all()
        absent = ~present[m]
        # nothing flows into placeholder rows
        assert x.grad[absent].abs().max().item() == 0.0 if absent.any() else True


@pytest.mark.parametrize("name", ["tensor", "low_rank"])
def test_every_parameter_of_tfn_and_lmf_gets_a_gradient(name):
    module = make(name, {})
    module.train()
    feats, _ = inputs(module)
    module(feats, None).pow(2).sum().backward()
    params = dict(module.named_parameters())
    assert params, "no parameters registered"
    if name == "low_rank":
        assert {f"factors.{m}" for m in DIMS} <= set(params), sorted(params)
    for pname, p in params.items():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_lmf_factors_train():
    module = make("low_rank", {})
    feats, _ = inputs(module)
    before = {k: v.detach().clone() for k, v in module.factors.items()}
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    module(feats, None).pow(2).sum().backward()
    opt.step()
    for m in DIMS:
        assert not torch.equal(before[m], module.factors[m].detach()), f"factor {m} did not move"


def test_tfn_equals_the_explicit_outer_product():
    module = make("tensor", {"activation": False})
    feats, present = inputs(module)
    with torch.no_grad():
        out = module(feats, present)
        for b in range(B):
            z = torch.ones(1)
            for m in DIMS:
                v = torch.cat([torch.ones(1), feats[m][b] if present[m][b] else torch.zeros(DIMS[m])])
                z = torch.outer(z, v).flatten()
            torch.testing.assert_close(out[b], module.out(z), atol=1e-5, rtol=1e-5)


def test_lmf_equals_tfn_with_the_reconstructed_weight():
    torch.manual_seed(0)
    lmf = build_fusion("low_rank", DIMS, 3, rank=2, activation=False)
    tfn = build_fusion("tensor", DIMS, 3, activation=False)
    names = list(DIMS)
    with torch.no_grad():
        w = 0
        for r in range(2):
            f = [lmf.factors[m][r] for m in names]                    # [D_m+1, out]
            w = w + lmf.rank_weights[r] * torch.einsum("io,jo,ko->ijko", *f).reshape(-1, 3)
        tfn.out.weight.copy_(w.T)
        tfn.out.bias.copy_(lmf.bias)
        feats, present = inputs(tfn)
        torch.testing.assert_close(lmf(feats, present), tfn(feats, present), atol=1e-5, rtol=1e-5)


def test_late_and_attention_weighted_renormalise_over_present():
    late = build_fusion("late", list(DIMS), mode="mean", out_dim=None)
    logits = {m: torch.full((2, 3), float(i)) for i, m in enumerate(DIMS)}
    present = {"a": torch.tensor([True, True]), "b": torch.tensor([True, False]), "c": torch.tensor([True, False])}
    out = late(logits, present)
    torch.testing.assert_close(out, torch.tensor([[1.0] * 3, [0.0] * 3]))
    attn = make("attention_weighted", {})
    feats, present = inputs(attn)
    _, weights = attn(feats, present, return_weights=True)
    mask = torch.stack([present[m] for m in DIMS], 1)
    torch.testing.assert_close(weights.sum(1), mask.any(1).float())
    assert (weights[~mask] == 0).all()


def test_no_modality_present_gives_zeros_where_documented():
    for name in ("late", "attention_weighted", "gmu", "mfb", "modality_graph"):
        module = make(name, {})
        feats, present = inputs(module)
        none = {m: torch.zeros(B, dtype=torch.bool) for m in DIMS}
        assert module(feats, none).abs().max() == 0, name


def test_bad_input_is_refused_with_the_modality_named():
    module = make("early", {})
    feats, present = inputs(module)
    with pytest.raises(KeyError, match="audio"):
        module({**feats, "audio": torch.randn(B, 3)}, {**present, "audio": torch.ones(B, dtype=torch.bool)})
    with pytest.raises(ValueError, match="'b'"):
        module(feats, {**present, "b": torch.ones(B)})
    with pytest.raises(ValueError, match="batch size"):
        module({**feats, "b": torch.randn(B + 1, 5)}, None)
    with pytest.raises(KeyError, match="unknown fusion"):
        build_fusion("nope", DIMS, 8)
    with pytest.raises(ValueError, match="project"):
        build_fusion("tensor", {"a": 200, "b": 200, "c": 200}, 8)


def test_token_mask_padding_is_ignored():
    """Padding tokens (token_mask False) change nothing, for the token-based fusions."""
    for name, kw in [("transformer", {"mode": "early"}), ("transformer", {"mode": "bottleneck"}),
                     ("cross_modal", {}), ("nl_gate", {})]:
        module = make(name, kw)
        feats, present = inputs(module, tokens=True)
        padded = {m: torch.cat([x, torch.randn(B, 3, x.shape[-1]) * 100], 1) for m, x in feats.items()}
        mask = {m: torch.cat([torch.ones(B, x.shape[1], dtype=torch.bool), torch.zeros(B, 3, dtype=torch.bool)], 1)
                for m, x in feats.items()}
        with torch.no_grad():
            torch.testing.assert_close(module(feats, present), module(padded, present, token_mask=mask),
                                       atol=1e-5, rtol=0, msg=name)
            nan_padded = {m: torch.where(mask[m].unsqueeze(-1), x, torch.full_like(x, float("nan")))
                          for m, x in padded.items()}
            torch.testing.assert_close(module(feats, present), module(nan_padded, present, token_mask=mask),
                                       atol=1e-5, rtol=0, msg=f"{name} with NaN padding")
