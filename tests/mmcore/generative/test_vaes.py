"""Each multimodal VAE trains on PolyDigits, improves its ELBO, and cross-generates coherently;
every one of them ignores absent modalities and round-trips through safetensors."""
import pytest
import torch

from mmcore.data.polydigits import PolyDigits
from mmcore.generative import MODELS, KLAnnealing
from mmcore.generative.metrics import coherence, conditional_coherence, train_judges
from mmcore.train import load_weights, save_weights

DIMS = {"m0": 64, "m1": 64}


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    train = PolyDigits(800, "train", num_views=2, seed=0).full_batch()
    test = PolyDigits(300, "test", num_views=2, seed=1).full_batch()
    judges = train_judges(train, num_classes=10, hidden=64, steps=120)
    return train, test, judges


# MVAE needs a pull towards a latent code its experts share before it cross-generates: β > 1,
# a smaller latent and more steps (see the MVAE docstring); the others train at β = 1.
TRAINING = {"mvae": {"latent_dim": 8, "beta": 3.0, "steps": 400, "lr": 8e-3}}


def build(name, latent_dim=12):
    kw = {"num_classes": 10} if name == "cvae" else {}
    return MODELS[name](DIMS, latent_dim=latent_dim, hidden=96, likelihood="gaussian", sigma=0.1, **kw)


def train(model, batch, steps=300, bs=64, beta=1.0, lr=5e-3):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    annealer = KLAnnealing("linear", warmup_steps=50, beta_max=beta)
    model.train()
    for step in range(steps):
        b = batch.select(torch.randint(batch.batch_size, (bs,), generator=g))
        out = model.loss(b, annealer.value(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(data):
    train_batch = data[0]
    models = {}
    for name in MODELS:
        setting = TRAINING.get(name, {})
        torch.manual_seed(0)
        models[name] = build(name, setting.get("latent_dim", 12))
        torch.manual_seed(1)
        before = float(models[name].elbo(data[1], samples=2).mean())
        train(models[name], train_batch, steps=setting.get("steps", 300), beta=setting.get("beta", 1.0),
              lr=setting.get("lr", 5e-3))
        models[name].elbo_before = before
    return models


@pytest.mark.parametrize("name", list(MODELS))
def test_vae_elbo_improves_and_it_reconstructs(name, data, trained):
    model, test = trained[name], data[1]
    torch.manual_seed(1)
    after = float(model.elbo(test, samples=2).mean())
    assert after > model.elbo_before + 500, (model.elbo_before, after)
    rec = model.reconstruct(test)
    for m in DIMS:
        mse = float(((rec[m] - test[m]) ** 2).mean())
        baseline = float(((test[m] - test[m].mean(0)) ** 2).mean())
        assert mse < 0.85 * baseline, (m, mse, baseline)


# chance is 0.1; mvae measured 0.59 here (0.25 with the others' settings: β = 1, latent 12, 300 steps)
FLOOR = {"mvae": 0.4, "mmvae": 0.4, "mopoe": 0.3, "dmvae": 0.3}


@pytest.mark.parametrize("name", list(FLOOR))
def test_cross_generation_is_coherent_far_above_chance(name, data, trained):
    _, test, judges = data
    torch.manual_seed(0)
    scores = [coherence(trained[name], test, judges, [a], b) for a, b in (("m0", "m1"), ("m1", "m0"))]
    assert sum(scores) / 2 > FLOOR[name], f"{name} coherence m0->m1, m1->m0 = {scores} (chance 0.1)"


def test_conditional_generation_is_coherent_with_the_condition(data, trained):
    scores = conditional_coherence(trained["cvae"], data[2], num_classes=10, per_class=20)
    assert min(scores.values()) > 0.6, scores


@pytest.mark.parametrize("name", list(MODELS))
def test_absent_modalities_are_never_read(name, data):
    """Garbage in the placeholder rows of an absent modality changes nothing, in loss or gradient."""
    model = build(name)
    batch = data[0].select(torch.arange(16)).drop_modality("m1", torch.arange(16) % 3 == 0)
    poisoned_t = dict(batch.tensors)
    poisoned_t["m1"] = torch.where(batch.mask("m1").unsqueeze(-1), batch["m1"], torch.full_like(batch["m1"], 1e4))
    poisoned = type(batch)(poisoned_t, dict(batch.present), dict(batch.fields))
    results = []
    for b in (batch, poisoned):
        model.zero_grad()
        torch.manual_seed(5)
        out = model.loss(b, 1.0)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_dreg_changes_only_the_encoder_gradient(data):
    batch = data[0].select(torch.arange(32))
    grads = {}
    for estimator in ("iwae", "dreg"):
        torch.manual_seed(0)
        model = MODELS["mmvae"](DIMS, latent_dim=8, hidden=32, samples=8, estimator=estimator)
        torch.manual_seed(7)
        out = model.loss(batch)
        out.loss.backward()
        grads[estimator] = ({n: p.grad.clone() for n, p in model.decoders.named_parameters()},
                            {n: p.grad.clone() for n, p in model.encoders.named_parameters()}, out.iw_bound)
    assert torch.allclose(grads["iwae"][2], grads["dreg"][2], atol=1e-4)        # same bound value
    for n, g in grads["iwae"][0].items():
        assert torch.allclose(g, grads["dreg"][0][n], atol=1e-5), n
    assert any(not torch.allclose(g, grads["dreg"][1][n], atol=1e-5) for n, g in grads["iwae"][1].items())


def test_complete_fills_only_missing_rows_and_weights_round_trip(tmp_path, data, trained):
    model = trained["mopoe"]
    batch = data[1].select(torch.arange(20)).drop_modality("m0", torch.arange(20) < 10)
    done = model.complete(batch)
    assert bool(done.mask("m0").all())
    assert torch.equal(done["m0"][10:], batch["m0"][10:]) and torch.equal(done["m1"], batch["m1"])
    assert float(done["m0"][:10].abs().sum()) > 0
    save_weights(model, tmp_path / "w.safetensors")
    clone = build("mopoe")
    load_weights(clone, tmp_path / "w.safetensors")
    clone.eval()
    assert torch.equal(clone.generate(batch, ["m1"])["m0"], model.generate(batch, ["m1"])["m0"])


def test_generation_from_a_source_no_sample_has_is_refused(data):
    model = build("mvae")
    batch = data[1].select(torch.arange(4)).drop_modality("m0")
    with pytest.raises(ValueError, match="none of the source"):
        model.generate(batch, ["m0"])
    with pytest.raises(KeyError, match="unknown source"):
        model.generate(batch, ["audio"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_models_run_on_cuda(data):
    for name in MODELS:
        model = build(name).cuda()
        out = model.loss(data[0].select(torch.arange(8)).to("cuda"))
        assert out.loss.is_cuda and torch.isfinite(out.loss)
