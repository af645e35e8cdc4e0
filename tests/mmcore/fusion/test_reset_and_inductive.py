"""``reset_parameters()`` on every fusion, and the inductive mode of the sample-graph fusion."""
from __future__ import annotations

import pytest
import torch

from mmcore.fusion import available_fusions, build_fusion
from mmcore.train import load_weights, save_weights

DIMS = {"a": 6, "b": 5, "c": 4}
VARIANTS = [(name, {}) for name in available_fusions()]
VARIANTS += [("transformer", {"mode": m}) for m in ("bottleneck", "late")]
VARIANTS += [("late", {"mode": "weighted"}), ("modality_graph", {"conv": "gat"}),
             ("sample_graph", {"conv": "gat", "mode": "inductive"})]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" if kw else n for n, kw in VARIANTS]


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_reset_parameters_reinitialises_every_parameter_reproducibly(name, kw):
    """Issue 20 item 8: every fusion has ``reset_parameters()``, as PyG's layers do."""
    torch.manual_seed(0)
    module = build_fusion(name, DIMS, 8, **kw)
    params = dict(module.named_parameters())
    assert params
    with torch.no_grad():                  # move every parameter off anything an init could give
        for p in params.values():
            p.fill_(7.0)
    torch.manual_seed(1)
    module.reset_parameters()
    first = {n: p.detach().clone() for n, p in module.named_parameters()}
    for n, p in first.items():
        assert not (p == 7.0).any(), f"{name}: reset_parameters left {n} untouched"
        assert torch.isfinite(p).all(), n
    torch.manual_seed(1)
    module.reset_parameters()
    for n, p in module.named_parameters():
        assert torch.equal(p, first[n]), f"{name}: a re-seeded reset gave another {n}"
    torch.manual_seed(2)
    module.reset_parameters()
    assert any(not torch.equal(p, first[n]) for n, p in module.named_parameters())


def batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}
    present = {m: torch.rand(n, generator=g) > 0.25 for m in DIMS}
    return feats, present


def rows(feats, present, index):
    return {m: x[index] for m, x in feats.items()}, {m: p[index] for m, p in present.items()}


@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_inductive_sample_graph_answers_a_row_the_same_whatever_its_batch(conv, tmp_path):
    """Issue 14 defect 8: in the (default) transductive mode a row's output moves when the batch
    changes; in inductive mode it depends only on the row and the stored reference set."""
    torch.manual_seed(0)
    transductive = build_fusion("sample_graph", DIMS, 8, k=3, conv=conv).eval()
    torch.manual_seed(0)
    inductive = build_fusion("sample_graph", DIMS, 8, k=3, conv=conv, mode="inductive").eval()
    train_f, train_p = batch(40, 0)
    test_f, test_p = batch(16, 1)
    with pytest.raises(RuntimeError, match="set_reference"):
        inductive(test_f, test_p)
    inductive.set_reference(train_f, train_p)
    first_half = torch.arange(8)
    with torch.no_grad():
        full_t, half_t = transductive(test_f, test_p), transductive(*rows(test_f, test_p, first_half))
        assert (full_t[:8] - half_t).abs().max() > 1e-3                  # transductive: the batch matters
        full = inductive(test_f, test_p)
        half = inductive(*rows(test_f, test_p, first_half))
        torch.testing.assert_close(full[:8], half, atol=1e-5, rtol=0)
        for i in (0, 5, 11):                                            # one row alone, and reordered
            alone = inductive(*rows(test_f, test_p, torch.tensor([i])))
            torch.testing.assert_close(full[i:i + 1], alone, atol=1e-5, rtol=0)
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(full[perm], inductive(*rows(test_f, test_p, perm)), atol=1e-5, rtol=0)
    # masked == omitted, row by row (as for the other fusions)
    with torch.no_grad():
        absent = (~test_p["b"]).nonzero(as_tuple=True)[0]
        omitted = inductive({m: test_f[m][absent] for m in ("a", "c")}, {m: test_p[m][absent] for m in ("a", "c")})
        torch.testing.assert_close(full[absent], omitted, atol=1e-5, rtol=0)
    # the bank travels with the weights
    save_weights(inductive, tmp_path / "w.safetensors")
    torch.manual_seed(5)
    clone = build_fusion("sample_graph", DIMS, 8, k=3, conv=conv, mode="inductive").eval()
    load_weights(clone, tmp_path / "w.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(clone(test_f, test_p), full, atol=0, rtol=0)
    with pytest.raises(ValueError, match="transductive"):
        inductive(test_f, test_p, edge_index=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(RuntimeError, match="inductive"):
        transductive.set_reference(train_f, train_p)
