"""The masked product of experts against the closed form, masking = omission, extreme values."""
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from mmcore.generative.experts import kl_to_standard_normal, mixture_log_prob, product_of_experts, subsets


def analytic_poe(mu, logvar, mask, prior=True):
    """Precision-weighted product written the textbook way (float64, per sample)."""
    E, B, D = mu.shape
    out_mu, out_var = torch.zeros(B, D, dtype=torch.float64), torch.zeros(B, D, dtype=torch.float64)
    for b in range(B):
        precisions = [torch.ones(D, dtype=torch.float64)] if prior else []
        weighted = [torch.zeros(D, dtype=torch.float64)] if prior else []
        for e in range(E):
            if mask[e, b]:
                t = 1.0 / torch.exp(logvar[e, b].double())
                precisions.append(t)
                weighted.append(t * mu[e, b].double())
        T = torch.stack(precisions).sum(0)
        out_mu[b] = torch.stack(weighted).sum(0) / T
        out_var[b] = 1.0 / T
    return out_mu, out_var


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_masked_poe_equals_precision_weighted_product_with_prior(dtype):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 32, 6, generator=g, dtype=torch.float64).to(dtype) * 3
    logvar = (torch.randn(4, 32, 6, generator=g, dtype=torch.float64) * 2).to(dtype)
    mask = torch.rand(4, 32, generator=g) < 0.6
    mask[:, 0] = False                                   # a sample with no expert: the prior alone
    got_mu, got_lv = product_of_experts(mu, logvar, mask, prior=True)
    ref_mu, ref_var = analytic_poe(mu, logvar, mask)
    assert torch.allclose(got_mu.double(), ref_mu, atol=1e-6, rtol=1e-6 if dtype == torch.float64 else 1e-5)
    assert torch.allclose(torch.exp(got_lv.double()), ref_var, atol=1e-6, rtol=1e-6 if dtype == torch.float64 else 1e-5)
    assert torch.equal(got_mu[0], torch.zeros_like(got_mu[0])) and torch.equal(got_lv[0], torch.zeros_like(got_lv[0]))


def test_masked_expert_is_exactly_the_same_as_omitting_it():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 16, 5, generator=g), torch.randn(3, 16, 5, generator=g)
    mask = torch.ones(3, 16, dtype=torch.bool)
    mask[1] = False
    poisoned_mu, poisoned_lv = mu.clone(), logvar.clone()
    poisoned_mu[1], poisoned_lv[1] = float("nan"), float("-inf")       # placeholders must never be read
    with_masked = product_of_experts(poisoned_mu, poisoned_lv, mask)
    omitted = product_of_experts(mu[[0, 2]], logvar[[0, 2]], mask[[0, 2]])
    assert torch.equal(with_masked[0], omitted[0]) and torch.equal(with_masked[1], omitted[1])


def test_gradients_do_not_reach_masked_experts_and_stay_finite():
    mu = torch.randn(2, 4, 3, requires_grad=True)
    logvar = torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[True] * 4, [False, True, False, True]])
    m, lv = product_of_experts(mu, logvar, mask)
    (m.sum() + lv.sum()).backward()
    assert torch.equal(mu.grad[1, 0], torch.zeros(3)) and torch.equal(logvar.grad[1, 2], torch.zeros(3))
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_extreme_log_variances_stay_finite_and_correct():
    # float64 reference survives exp(±300); the log-space product must match it
    mu = torch.tensor([[[1.0, -2.0]], [[5.0, 3.0]], [[-4.0, 0.5]]], dtype=torch.float64)
    logvar = torch.tensor([[[-300.0, 250.0]], [[200.0, -250.0]], [[-299.0, 10.0]]], dtype=torch.float64)
    mask = torch.ones(3, 1, dtype=torch.bool)
    got_mu, got_lv = product_of_experts(mu, logvar, mask)
    ref_mu, ref_var = analytic_poe(mu, logvar, mask)
    assert torch.allclose(got_mu, ref_mu, atol=1e-6)
    assert torch.allclose(got_lv, torch.log(ref_var), atol=1e-6)
    # float32, where exp(-logvar) itself would overflow: finite, dominated by the sharpest expert
    lv32 = torch.tensor([[[-150.0]], [[120.0]], [[-1e4]]])
    mu32 = torch.tensor([[[2.0]], [[7.0]], [[-3.0]]])
    m, lv = product_of_experts(mu32, lv32, torch.ones(3, 1, dtype=torch.bool))
    assert torch.isfinite(m).all() and torch.isfinite(lv).all()
    assert m.item() == pytest.approx(-3.0) and lv.item() == pytest.approx(-1e4)


def test_without_prior_a_single_expert_is_returned_unchanged_and_empty_rows_get_n01():
    mu, logvar = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    m, lv = product_of_experts(mu, logvar, mask, prior=False)
    assert torch.allclose(m[0], mu[0, 0]) and torch.allclose(lv[0], logvar[0, 0])
    assert torch.equal(m[1], torch.zeros(4)) and torch.equal(lv[1], torch.zeros(4))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="mask must be"):
        product_of_experts(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[E, B, D\]"):
        product_of_experts(torch.zeros(3, 4), torch.zeros(3, 4))


def test_mixture_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(3, 5, 2, generator=g), torch.randn(3, 5, 2, generator=g) * 0.5
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 1, 1, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    z = torch.randn(7, 5, 2, generator=g)
    got = mixture_log_prob(z, mu, logvar, mask)
    for b in range(5):
        idx = mask[:, b].nonzero().squeeze(1)
        mix = MixtureSameFamily(Categorical(torch.ones(len(idx))),
                                Independent(Normal(mu[idx, b], torch.exp(0.5 * logvar[idx, b])), 1))
        assert torch.allclose(got[:, b], mix.log_prob(z[:, b]), atol=1e-5)


def test_kl_matches_torch_and_subsets_enumerate():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), ref, atol=1e-5)
    assert subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
