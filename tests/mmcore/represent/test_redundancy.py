"""Barlow Twins and VICReg against element-wise loops and on analytic cases."""
import pytest
import torch

from mmcore.represent.redundancy import barlow_twins_loss, vicreg_loss, vicreg_terms


def test_barlow_twins_matches_loops():
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)
    s1 = (z1 - z1.mean(0)) / z1.std(0, unbiased=False)
    s2 = (z2 - z2.mean(0)) / z2.std(0, unbiased=False)
    ref = 0.0
    for i in range(4):
        for j in range(4):
            c = sum(s1[b, i] * s2[b, j] for b in range(16)) / 16
            ref += (1 - c) ** 2 if i == j else 5e-3 * c**2
    assert barlow_twins_loss(z1, z2, eps=0).item() == pytest.approx(float(ref), rel=1e-8)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    q, _ = torch.linalg.qr(torch.randn(64, 8, dtype=torch.float64))
    z = (q - q.mean(0)) * 8 @ torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64))
    z = torch.linalg.qr(z - z.mean(0))[0] * 8
    assert barlow_twins_loss(z, z, eps=0).item() < 1e-2


def test_vicreg_terms_by_hand():
    torch.manual_seed(0)
    z1, z2 = 0.5 * torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
    t = vicreg_terms(z1, z2)
    assert t["invariance"].item() == pytest.approx(((z1 - z2) ** 2).mean().item())
    var = sum(torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean() for z in (z1, z2))
    cov = 0
    for z in (z1, z2):
        c = torch.cov(z.T)
        cov += (c**2).sum() - (c.diagonal() ** 2).sum()
    assert t["variance"].item() == pytest.approx(var.item())
    assert t["covariance"].item() == pytest.approx(cov.item() / 3)
    loss = vicreg_loss(z1, z2)
    assert loss.item() == pytest.approx(25 * t["invariance"].item() + 25 * var.item() + cov.item() / 3)
    collapsed = torch.zeros(32, 3)
    assert vicreg_terms(collapsed, collapsed)["variance"].item() == pytest.approx(2 * (1 - 1e-2), rel=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        barlow_twins_loss(z1, z2[:, :2])
