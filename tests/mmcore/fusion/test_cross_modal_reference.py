"""Cross-modal attention against a float64 naive reference written from the paper's equations."""
from __future__ import annotations

import math

import torch

from mmcore.fusion import CrossModalAttention, MultimodalTransformer

DIMS = {"a": 6, "b": 5, "c": 7}
TOKENS = {"a": 4, "b": 3, "c": 5}


def layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def linear(x, lin):
    return x @ lin.weight.double().T + lin.bias.double()


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def naive_cross_modal(module, feats, present, token_mask):
    """Loops over samples, targets, sources, heads, queries; float64 throughout."""
    names = list(feats)
    heads = module.layers[0].heads
    d = module.out_dim
    dh = d // heads
    out = torch.zeros(next(iter(feats.values())).shape[0], d, dtype=torch.float64)
    for b in range(out.shape[0]):
        h = {m: linear(feats[m][b].double(), module.proj[m]) + module.pos_emb[m][: feats[m].shape[1]].double()
             for m in names}
        valid = {m: token_mask[m][b] for m in names}
        here = {m: bool(present[m][b]) and bool(valid[m].any()) for m in names}
        for layer in module.layers:
            new = {}
            for t in names:
                x = h[t].clone()
                srcs = [s for s in names if s != t and here[s]]
                if srcs:
                    q = linear(layer_norm(h[t], layer.norm_q[t]), layer.q[t])
                    mixed = torch.zeros_like(x)
                    for s in srcs:
                        kv = linear(layer_norm(h[s], layer.norm_kv[s]), layer.kv[s])
                        k, v = kv[:, :d], kv[:, d:]
                        for head in range(heads):
                            sl = slice(head * dh, (head + 1) * dh)
                            for i in range(x.shape[0]):
                                scores = torch.tensor([float(q[i, sl] @ k[j, sl]) / math.sqrt(dh) if valid[s][j]
                                                       else -math.inf for j in range(k.shape[0])], dtype=torch.float64)
                                w = torch.softmax(scores, 0)
                                mixed[i, sl] += (w.unsqueeze(1) * v[:, sl]).sum(0) / len(srcs)
                    x = x + linear(mixed, layer.o[t])
                mlp = layer.mlp[t]
                x = x + linear(gelu(linear(layer_norm(x, layer.norm_mlp[t]), mlp[0])), mlp[3])
                new[t] = x
            h = new
        pooled = []
        for t in names:
            if here[t]:
                y = layer_norm(h[t], module.norm[t])
                pooled.append(y[valid[t]].mean(0))
        if pooled:
            out[b] = torch.stack(pooled).mean(0)
    return out


def test_cross_modal_matches_float64_naive_reference():
    torch.manual_seed(0)
    module = CrossModalAttention(DIMS, out_dim=8, heads=2, depth=2).eval()
    g = torch.Generator().manual_seed(3)
    B = 5
    feats = {m: torch.randn(B, TOKENS[m], d, generator=g) for m, d in DIMS.items()}
    present = {m: torch.tensor([True, True, m != "b", m == "a", True]) for m in DIMS}
    token_mask = {m: torch.ones(B, TOKENS[m], dtype=torch.bool) for m in DIMS}
    token_mask["c"][0, 3:] = False
    token_mask["a"][4, 1:] = False
    with torch.no_grad():
        ours = module(feats, present, token_mask=token_mask)
        reference = naive_cross_modal(module, feats, present, token_mask)
    err = (ours.double() - reference).abs().max().item()
    assert err < 1e-5, f"max abs error {err:.3e}"


def test_cross_modal_handles_n_modalities_and_one_present():
    torch.manual_seed(0)
    dims = {f"m{i}": 4 for i in range(5)}
    module = CrossModalAttention(dims, out_dim=8, heads=2).eval()
    feats = {m: torch.randn(3, 2, 4) for m in dims}
    only_one = {m: torch.tensor([m == "m3"] * 3) for m in dims}
    with torch.no_grad():
        out = module(feats, only_one)
        alone = module({"m3": feats["m3"]}, {"m3": only_one["m3"]})
    torch.testing.assert_close(out, alone, atol=1e-6, rtol=0)


def test_transformer_early_mask_equals_sequence_without_tokens_float64():
    """The key-padding mask gives exactly zero weight: in float64 masked == omitted to 1e-12."""
    torch.manual_seed(0)
    module = MultimodalTransformer(DIMS, out_dim=8, heads=2, mode="early").double().eval()
    feats = {m: torch.randn(4, TOKENS[m], d, dtype=torch.float64) for m, d in DIMS.items()}
    present = {m: torch.ones(4, dtype=torch.bool) for m in DIMS}
    present["c"] = torch.zeros(4, dtype=torch.bool)
    with torch.no_grad():
        a = module(feats, present)
        b = module({m: feats[m] for m in ("a", "b")}, {m: present[m] for m in ("a", "b")})
    assert (a - b).abs().max().item() < 1e-12
