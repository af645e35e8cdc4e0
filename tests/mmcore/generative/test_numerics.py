"""Numerics of the multimodal VAEs under inputs the training tests do not make: a row with no
modality at all, non-finite placeholders, the posterior mean, β-independent diagnostics, and
library calls that must leave the caller's RNG and training mode as they found them."""
import pytest
import torch

from mmcore.data import collate_multimodal
from mmcore.generative import MODELS
from mmcore.generative.grids import cross_generation_grid, traversal_grid
from mmcore.generative.metrics import coherence, conditional_coherence, elbo_and_likelihood, train_judges

DIMS = {"m0": 64, "m1": 64}
B = 12
EMPTY = 3          # the row that has neither modality


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    samples = [{"m0": torch.rand(8, 8, generator=g), "m1": torch.rand(8, 8, generator=g), "label": torch.tensor(i % 10)}
               for i in range(B)]
    return collate_multimodal(samples, list(DIMS))


def build(name, **kw):
    torch.manual_seed(0)
    if name == "cvae":
        kw["num_classes"] = 10
    return MODELS[name](DIMS, latent_dim=6, hidden=24, likelihood="gaussian", sigma=0.2, **kw)


VARIANTS = [(n, {}) for n in MODELS if n != "mmvae"] + [("mmvae", {"estimator": e}) for e in ("iwae", "dreg", "elbo")]
IDS = [n + ("-" + kw["estimator"] if kw else "") for n, kw in VARIANTS]


def poisoned(batch, value, rows):
    """``batch`` with modality rows ``rows[m]`` absent and holding ``value`` (nan, inf, ...)."""
    tensors, present = dict(batch.tensors), dict(batch.present)
    for m, r in rows.items():
        present[m] = present[m] & ~r
        tensors[m] = torch.where(r.view(-1, *([1] * (tensors[m].dim() - 1))), torch.full_like(tensors[m], value),
                                 tensors[m])
    return type(batch)(tensors, present, dict(batch.fields))


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_a_row_with_no_modality_adds_nothing_and_every_weight_stays_finite(name, kw, batch):
    """Issue 14 defect 2: MMVAE's gradient norm was NaN (and every weight NaN after one AdamW
    step) when one row had no modality, while the loss printed finite."""
    model = build(name, **kw)
    empty = torch.arange(B) == EMPTY
    b = poisoned(batch, 0.0, {"m0": empty, "m1": empty})
    torch.manual_seed(3)
    out = model.loss(b, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for n, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"
    for field in ("elbo", "recon", "kl"):
        assert getattr(out, field)[EMPTY].item() == 0.0, field          # the empty row adds nothing
        assert torch.isfinite(getattr(out, field)).all(), field
    with torch.no_grad():                                               # one optimiser step
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-1e-3)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # its posterior is the prior: it decodes the prior mean z = 0 (the private codes too)
    model.eval()
    gen = model.generate(b)
    zero = torch.zeros(1, model.total_latent)
    cond = model.condition(b.select(torch.tensor([EMPTY])))
    expected = model.mean(model.decode(zero, cond))
    for m in DIMS:
        torch.testing.assert_close(gen[m][EMPTY:EMPTY + 1], expected[m])
    assert torch.isfinite(model.elbo(b, samples=2)).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_non_finite_placeholders_change_nothing(name, kw, value, batch):
    """Any value in an absent row, NaN and inf included, gives the same loss and gradients."""
    model = build(name, **kw)
    rows = {"m1": torch.arange(B) % 3 == 0, "m0": torch.arange(B) == 1}
    clean = poisoned(batch, 0.0, rows)
    dirty = poisoned(batch, value, rows)
    results = []
    for b in (clean, dirty):
        model.zero_grad()
        torch.manual_seed(5)
        out = model.loss(b, 1.0)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, c) for a, c in zip(results[0][1], results[1][1]))


@pytest.mark.parametrize("name", ["mmvae", "mopoe"])
def test_generate_without_sampling_is_the_deterministic_posterior_mean(name, batch):
    """Issue 14 defect 10: ``generate(sample=False)`` drew a random mixture component."""
    model = build(name).eval()
    b = poisoned(batch, 0.0, {"m1": torch.arange(B) % 4 == 0})
    torch.manual_seed(0)
    first = model.generate(b)
    torch.manual_seed(1)
    second = model.generate(b)
    q = model.posterior(b)
    mean = (q.mu * q.mask.unsqueeze(-1)).sum(0) / q.mask.sum(0).unsqueeze(-1)
    expected = model.mean(model.decode(mean))
    for m in DIMS:
        assert torch.equal(first[m], second[m])
        torch.testing.assert_close(first[m], expected[m])


def test_mmvae_diagnostics_mean_the_same_whatever_beta(batch):
    """Issue 14 defect 10: ``MMVAE.loss(...).elbo`` was the IWAE bound at β = 1 and a one-sample
    ELBO otherwise.  Now ``elbo`` is always the β = 1 ELBO and ``iw_bound`` the β = 1 IWAE bound."""
    model = build("mmvae", estimator="iwae", samples=4)
    outs = {}
    for beta in (1.0, 0.25):
        torch.manual_seed(2)
        outs[beta] = model.loss(batch, beta)
    torch.testing.assert_close(outs[1.0].elbo, outs[0.25].elbo)
    torch.testing.assert_close(outs[1.0].iw_bound, outs[0.25].iw_bound)
    assert not torch.allclose(outs[1.0].loss, outs[0.25].loss)            # only the loss uses β
    assert (outs[1.0].iw_bound >= outs[1.0].elbo - 1e-3).float().mean() > 0.5


def test_metrics_and_grids_leave_the_rng_and_the_training_mode_alone(batch):
    """Issue 14 defect 6: ``train_judges`` reseeded the global RNG; ``coherence`` & co. and the
    grids left the model in eval mode."""
    model = build("mmvae").train()
    before = torch.get_rng_state()
    judges = train_judges(batch, num_classes=10, hidden=8, steps=2, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    again = train_judges(batch, num_classes=10, hidden=8, steps=2, seed=4)      # still seeded
    x = batch["m0"][:2]
    assert torch.equal(judges["m0"](x), again["m0"](x))
    calls = [lambda: coherence(model, batch, judges, ["m0"], "m1"),
             lambda: elbo_and_likelihood(model, batch, samples=2),
             lambda: cross_generation_grid(model, batch, (8, 8), n=2),
             lambda: traversal_grid(model, batch, "m0", (8, 8), steps=2)]
    for call in calls:
        call()
        assert model.training and all(m.training for m in model.modules())
    cvae = build("cvae").train()
    conditional_coherence(cvae, judges, num_classes=10, per_class=1)
    assert cvae.training
