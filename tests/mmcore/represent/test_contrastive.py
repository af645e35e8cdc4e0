"""CLIP and SigLIP losses against reference numbers and explicit formulas; InfoNCE as an MI bound."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmcore.represent.contrastive import ClipLoss, SigLipLoss, infonce_mi_estimate


@pytest.fixture
def reference_pair():
    torch.manual_seed(1234)
    a = torch.randn(3, 5)
    b = torch.randn(3, 5)
    return a, b


def test_clip_reference_values(reference_pair):
    a, b = reference_pair
    loss = ClipLoss(init_temperature=0.07, normalize=False)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss(a, b).item() == pytest.approx(9.8753, abs=1e-3)
    assert ClipLoss(normalize=False, label_smoothing=0.1)(a, b).item() == pytest.approx(10.2524, abs=1e-3)
    # "loss" is the mean of the two directions (the sum would be 19.75)
    logits = a @ b.T / 0.07
    both = F.cross_entropy(logits, torch.arange(3)) + F.cross_entropy(logits.T, torch.arange(3))
    assert loss(a, b).item() == pytest.approx(both.item() / 2, abs=1e-4)


def test_clip_temperature_is_learnable_and_clamped(reference_pair):
    a, b = reference_pair
    loss = ClipLoss(max_scale=100.0)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad != 0
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    assert loss.scale.item() == pytest.approx(100.0)
    frozen = ClipLoss(learnable=False)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_clip_pair_mask_and_present_rows():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    loss = ClipLoss()
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = False                   # known false negatives
    logits = loss.logits(a, b).masked_fill(~mask, float("-inf"))
    expected = 0.5 * (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4)))
    assert loss(a, b, pair_mask=mask).item() == pytest.approx(expected.item(), abs=1e-5)
    # an absent row contributes nothing: same as removing it
    present = torch.tensor([True, False, True, True])
    assert loss(a, b, present=present).item() == pytest.approx(loss(a[present], b[present]).item(), abs=1e-6)
    a_leaf, b_leaf = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss(a_leaf, b_leaf, present=present).backward()
    assert torch.isfinite(a_leaf.grad).all() and torch.isfinite(b_leaf.grad).all()
    assert (a_leaf.grad[1] == 0).all() and (b_leaf.grad[1] == 0).all()   # the absent row contributes nothing
    # label smoothing with a mask spreads epsilon over valid columns only (stays finite)
    assert torch.isfinite(ClipLoss(label_smoothing=0.1)(a, b, pair_mask=mask))
    bad = mask.clone()
    bad[2, 2] = False
    with pytest.raises(ValueError, match="diagonal"):
        loss(a, b, pair_mask=bad)
    with pytest.raises(ValueError, match="same shape"):
        loss(a, b[:3])


def test_siglip_matches_explicit_sum():
    torch.manual_seed(0)
    a, b = torch.randn(5, 6), torch.randn(5, 6)
    loss = SigLipLoss()
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = 10.0 * an @ bn.T - 10.0
    labels = 2 * torch.eye(5) - 1
    expected = -F.logsigmoid(labels * logits).sum() / 5
    assert loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    present = torch.tensor([True, True, False, True, True])
    assert loss(a, b, present=present).item() == pytest.approx(loss(a[present], b[present]).item(), rel=1e-5)


def _gaussian_critic_scores(mi: float, d: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """scores[i, j] = log p(y_j | x_i) - log p(y_j) (+ terms constant in j) for per-dim correlation rho."""
    rho = math.sqrt(1 - math.exp(-2 * mi / d))     # I = -d/2 ln(1 - rho^2)
    x = torch.randn(batch, d, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(batch, d, generator=g, dtype=torch.float64)
    return (-((y[None] - rho * x[:, None]) ** 2).sum(-1) / (2 * (1 - rho**2)) + (y[None] ** 2).sum(-1) / 2)


def test_infonce_tracks_true_mi_then_saturates_at_log_batch():
    g = torch.Generator().manual_seed(0)
    batch = 256
    for true_mi in (0.5, 1.0, 2.0):
        est = sum(infonce_mi_estimate(_gaussian_critic_scores(true_mi, 4, batch, g)).item() for _ in range(8)) / 8
        assert abs(est - true_mi) < 0.1, (true_mi, est)
    est = sum(infonce_mi_estimate(_gaussian_critic_scores(20.0, 4, batch, g)).item() for _ in range(4)) / 4
    assert math.log(batch) - 0.01 < est <= math.log(batch) + 1e-9
