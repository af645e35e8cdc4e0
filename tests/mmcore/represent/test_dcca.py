"""Deep CCA objectives on analytic cases, stable gradients, and learning."""
import warnings

import pytest
import torch

from mmcore.represent.cca import canonical_correlations
from mmcore.represent.dcca import DCCA, DCCAE, mlp
from mmcore.represent.dcca_objectives import corr_sq_sum, corr_sum, corr_topk, dcca_objective, ey
from mmcore.represent.latent_views import LatentViews


def test_identical_views_give_minus_latent_width():
    h = torch.randn(500, 10, dtype=torch.float64)
    assert corr_sq_sum(h, h).item() == pytest.approx(-10, abs=1e-3)
    assert corr_sum(h, h).item() == pytest.approx(-10, abs=1e-3)
    assert corr_topk(h, h, k=4).item() == pytest.approx(-4, abs=1e-3)
    # all ten correlations equal 1 (repeated singular values): gradients must stay finite
    leaf = h.clone().requires_grad_()
    for objective in (corr_sum, corr_sq_sum):
        leaf.grad = None
        objective(leaf, leaf).backward()
        assert torch.isfinite(leaf.grad).all()


def test_independent_views_sum_of_squares_is_pq_over_n():
    g = torch.Generator().manual_seed(0)
    n, p, q = 2000, 100, 100
    values = [-corr_sq_sum(torch.randn(n, p, generator=g, dtype=torch.float64),
                           torch.randn(n, q, generator=g, dtype=torch.float64), reg=0.0).item() for _ in range(3)]
    expected = p * q / (n - 1)                       # 5.0025
    assert abs(sum(values) / 3 - expected) < 0.15, values


def test_objectives_agree_with_linear_cca():
    x, y = LatentViews.random((6, 5), latent=3, seed=1).sample(400, seed=0)
    rho = canonical_correlations(x, y)
    assert -corr_sum(x, y, reg=0).item() == pytest.approx(rho.sum().item(), abs=1e-8)
    assert -corr_sq_sum(x, y, reg=0).item() == pytest.approx(rho.square().sum().item(), abs=1e-8)
    assert -corr_topk(x, y, 2, reg=0).item() == pytest.approx(rho[:2].sum().item(), abs=1e-8)


@pytest.mark.parametrize("name", ["corr_sum", "corr_topk", "corr_sq_sum", "ey"])
def test_rank_deficient_batch_has_finite_gradients(name):
    """Collinear, duplicated and constant columns make the covariances singular."""
    base = torch.randn(16, 2)
    h1 = (base @ torch.randn(2, 6)).requires_grad_()      # rank 2 of 6 columns
    h2 = torch.cat([base, base, torch.zeros(16, 2)], 1).requires_grad_()  # duplicated + constant columns
    loss = dcca_objective(name, h1, h2, k=2)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(h1.grad).all() and torch.isfinite(h2.grad).all()


def test_warns_when_batch_not_larger_than_width():
    with pytest.warns(RuntimeWarning, match="latent width"):
        corr_sq_sum(torch.randn(8, 8), torch.randn(8, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corr_sq_sum(torch.randn(64, 8), torch.randn(64, 4))
    with pytest.raises(ValueError, match="unknown DCCA objective"):
        dcca_objective("frobenius", torch.randn(9, 2), torch.randn(9, 2))


def test_ey_minimum_over_linear_maps_recovers_correlations():
    """Minimising EY over linear maps reaches -sum (1+rho_k)^2 without any decomposition."""
    torch.manual_seed(0)
    x, y = LatentViews.random((6, 5), latent=2, noise=1.0, seed=2).sample(1000, seed=0, dtype=torch.float32)
    rho = canonical_correlations(x.double(), y.double(), k=2)
    u, v = torch.nn.Linear(6, 2, bias=False), torch.nn.Linear(5, 2, bias=False)
    opt = torch.optim.Adam([*u.parameters(), *v.parameters()], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ey(u(x), v(y))
        loss.backward()
        opt.step()
    assert loss.item() == pytest.approx(-(1 + rho).square().sum().item(), rel=2e-3)
    with torch.no_grad():   # the split-batch (unbiased) form estimates the same value
        assert ey(u(x), v(y), unbiased=True).item() == pytest.approx(loss.item(), rel=0.05)
    learned = canonical_correlations(u(x).double(), v(y).double())
    torch.testing.assert_close(learned.float(), rho.float(), atol=5e-3, rtol=0)


def test_dcca_learns_nonlinear_shared_signal_and_dccae_reconstructs():
    torch.manual_seed(0)
    z = torch.rand(1024, 1) * 6 - 3
    x1 = torch.cat([torch.sin(z), torch.randn(1024, 3) * 0.3], 1)
    x2 = torch.cat([z**2 / 4, torch.randn(1024, 3) * 0.3], 1)      # nonlinearly related to x1
    linear_rho = canonical_correlations(x1.double(), x2.double(), k=1).item()
    model = DCCA(mlp([4, 32, 2]), mlp([4, 32, 2]), objective="corr_sum")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        for idx in torch.randperm(1024).split(256):
            opt.zero_grad()
            model(x1[idx], x2[idx]).backward()
            opt.step()
    model.fit_linear_cca(x1, x2)
    xt = torch.rand(512, 1) * 6 - 3
    t1 = torch.cat([torch.sin(xt), torch.randn(512, 3) * 0.3], 1)
    t2 = torch.cat([xt**2 / 4, torch.randn(512, 3) * 0.3], 1)
    deep_rho = model.cca.score(*[h.double() for h in model.encode(t1, t2)])[0].item()
    assert deep_rho > linear_rho + 0.2, (deep_rho, linear_rho)

    ae = DCCAE(mlp([4, 16, 2]), mlp([4, 16, 2]), mlp([2, 16, 4]), mlp([2, 16, 4]), reconstruction_weight=1.0)
    present = torch.ones(1024, dtype=torch.bool)
    present[::4] = False
    first = ae.loss_terms(x1, x2, present1=present)
    assert set(first) == {"correlation", "recon1", "recon2", "loss"}
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(100):
        opt.zero_grad()
        ae(x1, x2, present1=present).backward()
        opt.step()
    last = ae.loss_terms(x1, x2, present1=present)
    assert last["recon2"] < 0.7 * first["recon2"] and last["correlation"] < first["correlation"]


def test_ey_honours_reg_and_unbiased_and_the_dispatcher_passes_them():
    """Issue 14 defect 10: ``dcca_objective("ey", ...)`` ignored ``reg`` and had no ``unbiased``."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 3, generator=g, dtype=torch.float64)
    c1, c2 = z1 - z1.mean(0), z2 - z2.mean(0)
    a = (c1 + c2).T @ (c1 + c2) / 39
    b = c1.T @ c1 / 39 + c2.T @ c2 / 39 + 2 * 0.1 * torch.eye(3, dtype=torch.float64)
    expected = (-2 * torch.trace(a) + (b * b).sum()).item()
    assert ey(z1, z2, reg=0.1).item() == pytest.approx(expected, rel=1e-12)
    assert dcca_objective("ey", z1, z2, reg=0.1).item() == pytest.approx(expected, rel=1e-12)
    assert dcca_objective("ey", z1, z2, reg=0.0).item() != pytest.approx(expected, rel=1e-6)
    assert dcca_objective("ey", z1, z2, reg=0.1, unbiased=True).item() == ey(z1, z2, unbiased=True, reg=0.1).item()
    assert ey(z1, z2, unbiased=True).item() != ey(z1, z2).item()
    with pytest.raises(ValueError, match="'ey' objective only"):
        dcca_objective("corr_sum", z1, z2, unbiased=True)
    with pytest.raises(ValueError, match="'ey' objective only"):
        DCCA(torch.nn.Identity(), torch.nn.Identity(), objective="corr_sq_sum", unbiased=True)
