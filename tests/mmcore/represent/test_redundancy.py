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


@pytest.mark.parametrize("loss_fn", [barlow_twins_loss, vicreg_loss], ids=["barlow", "vicreg"])
def test_present_mask_masked_equals_omitted(loss_fn):
    """Issue 14 defect 9: rows missing either view are left out, whatever they hold."""
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randn(12, 4, generator=g, dtype=torch.float64)
    p1 = torch.tensor([1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    p2 = torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1], dtype=torch.bool)
    keep = p1 & p2
    omitted = loss_fn(z1[keep], z2[keep])
    junk1 = torch.where(p1.unsqueeze(-1), z1, torch.full_like(z1, float("nan"))).requires_grad_()
    junk2 = torch.where(p2.unsqueeze(-1), z2, torch.full_like(z2, float("inf"))).requires_grad_()
    masked = loss_fn(junk1, junk2, present=(p1, p2))
    assert masked.item() == pytest.approx(omitted.item(), rel=1e-12)
    assert loss_fn(z1, z2, present=keep).item() == pytest.approx(omitted.item(), rel=1e-12)
    masked.backward()
    assert torch.isfinite(junk1.grad).all() and torch.isfinite(junk2.grad).all()
    assert junk1.grad[~keep].abs().sum() == 0 and junk2.grad[~keep].abs().sum() == 0
    one_row = loss_fn(z1, z2, present=torch.arange(12) == 0)           # nothing to standardise: 0, not NaN
    assert one_row.item() == 0.0
    with pytest.raises(ValueError, match="present"):
        loss_fn(z1, z2, present=torch.ones(11, dtype=torch.bool))
