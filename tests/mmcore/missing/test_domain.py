"""CORAL / MMD against their formulas, gradient reversal, and unsupervised adaptation."""
import numpy as np
import pytest
import torch
from torch import nn

from mmcore.data import collate_multimodal
from mmcore.encoders.mlp import MLPEncoder
from mmcore.eval.robustness import accuracy
from mmcore.fusion import EarlyFusion
from mmcore.missing import GradientReversal, adapt, coral_loss, mmd_loss
from mmcore.models.multimodal import MultimodalModel, build_head


def test_coral_matches_the_formula():
    g = np.random.default_rng(0)
    x, y = g.normal(size=(50, 4)), g.normal(size=(40, 4)) * 2
    ref = ((np.cov(x, rowvar=False) - np.cov(y, rowvar=False)) ** 2).sum() / (4 * 16)
    assert float(coral_loss(torch.tensor(x), torch.tensor(y))) == pytest.approx(ref, rel=1e-8)


def test_mmd_matches_the_formula_and_separates_distributions():
    g = np.random.default_rng(1)
    x, y = g.normal(size=(30, 3)), g.normal(size=(20, 3)) + 1.0
    k = lambda a, b: sum(np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s * s)) for s in (0.7, 1.5))  # noqa: E731
    ref = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    got = float(mmd_loss(torch.tensor(x), torch.tensor(y), bandwidths=[0.7, 1.5]))
    assert got == pytest.approx(ref, rel=1e-8)
    same = float(mmd_loss(torch.tensor(x), torch.tensor(x)))
    assert abs(same) < 1e-9 and float(mmd_loss(torch.tensor(x), torch.tensor(y))) > 0.05


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(5, requires_grad=True)
    (GradientReversal(0.3)(x) * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full((5,), -0.6))


def shifted(n, seed, shift):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    means = torch.randn(3, 6, generator=torch.Generator().manual_seed(7)) * 2
    a = means[y] + torch.randn(n, 6, generator=g)
    b = means[y][:, :4] + torch.randn(n, 4, generator=g)
    a = a + shift                                      # the new domain: a different "scanner"
    b = b * (1 + shift / 3)
    samples = [{"a": a[i], "b": b[i], "label": y[i]} for i in range(n)]
    return collate_multimodal(samples, ["a", "b"])


@pytest.mark.parametrize("method", ["mmd", "dann"])
def test_adaptation_recovers_accuracy_on_the_target_domain_without_its_labels(method):
    torch.manual_seed(0)
    model = MultimodalModel({"a": MLPEncoder(6, 16, hidden=32), "b": MLPEncoder(4, 16, hidden=32)},
                            EarlyFusion({"a": 16, "b": 16}, 16), build_head(16, 3, hidden=None))
    src, tgt, tgt_test = shifted(600, 0, 0.0), shifted(600, 1, 6.0), shifted(400, 2, 6.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(600, (64,))
        loss = nn.functional.cross_entropy(model(src.select(idx)), src.fields["label"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = accuracy(model, tgt_test)
    weights = [p.clone() for p in model.parameters()]
    adapted = adapt(model, src, tgt, method=method, steps=250, batch_size=64, lr=2e-3)
    after = accuracy(adapted, tgt_test)
    assert after > before + 0.1, (before, after)
    assert accuracy(adapted, src) > 0.8
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))     # original untouched
    with pytest.raises(ValueError, match="unknown adaptation"):
        adapt(model, src, tgt, method="magic")


@pytest.mark.parametrize("method", ["coral", "dann"])
def test_adapt_leaves_the_global_rng_alone_and_stays_seeded(method):
    """Issue 14 defect 6: ``adapt`` called ``torch.manual_seed(seed)`` on the caller's RNG."""
    torch.manual_seed(0)
    model = MultimodalModel({"a": MLPEncoder(6, 8, hidden=8), "b": MLPEncoder(4, 8, hidden=8)},
                            EarlyFusion({"a": 8, "b": 8}, 8), build_head(8, 3, hidden=None))
    src, tgt = shifted(40, 0, 0.0), shifted(40, 1, 6.0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = adapt(model, src, tgt, method=method, steps=3, batch_size=8, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    second = adapt(model, src, tgt, method=method, steps=3, batch_size=8, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
