"""Linear CCA, MCCA and GCCA against a float64 closed form, scikit-learn and the population."""
import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from sklearn.cross_decomposition import CCA

from mmcore.represent.cca import LinearCCA, canonical_correlations
from mmcore.represent.latent_views import LatentViews
from mmcore.represent.mcca import GCCA, MCCA


def closed_form(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Textbook CCA: singular values of C_xx^{-1/2} C_xy C_yy^{-1/2} with symmetric square roots."""
    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x)
    cxx, cyy, cxy = x.T @ x / (n - 1), y.T @ y / (n - 1), x.T @ y / (n - 1)
    t = np.linalg.inv(np.real(sqrtm(cxx))) @ cxy @ np.linalg.inv(np.real(sqrtm(cyy)))
    return np.linalg.svd(t, compute_uv=False)


@pytest.fixture(scope="module")
def views():
    gen = LatentViews.random(dims=(8, 6), latent=3, noise=1.0, seed=0)
    return gen, gen.sample(500, seed=1)


def test_matches_closed_form_and_sklearn(views):
    gen, (x, y) = views
    model = LinearCCA(n_components=3).fit(x, y)
    ref = closed_form(x.numpy(), y.numpy())
    np.testing.assert_allclose(model.correlations_.numpy(), ref[:3], atol=1e-4)
    np.testing.assert_allclose(canonical_correlations(x, y).numpy(), ref, atol=1e-10)
    sk = CCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(x.numpy(), y.numpy())
    a, b = sk.transform(x.numpy(), y.numpy())
    sk_corr = [np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(3)]
    np.testing.assert_allclose(model.correlations_.numpy(), sk_corr, atol=1e-4)
    # the variates are what CCA promises: unit variance, uncorrelated, correlated pairwise by rho_k
    zx, zy = model.transform(x, y)
    np.testing.assert_allclose(torch.cov(zx.T).numpy(), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(torch.cov(zy.T).numpy(), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(model.score(x, y).numpy(), ref[:3], atol=1e-8)


def test_approaches_population_correlations(views):
    gen, _ = views
    pop = gen.population_correlations()[:3]
    errors = []
    for n in (200, 50_000):
        x, y = gen.sample(n, seed=n)
        errors.append((canonical_correlations(x, y, k=3) - pop).abs().max().item())
    assert errors[1] < 0.01, errors
    assert errors[1] < errors[0], errors
    assert gen.population_correlations()[3:].abs().max() < 1e-8  # rank = latent width


def test_batched_fit_equals_loop(views):
    gen, _ = views
    batch = [gen.sample(300, seed=s) for s in range(3)]
    x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    batched = LinearCCA(2, reg=1e-3).fit(x, y).correlations_
    looped = torch.stack([LinearCCA(2, reg=1e-3).fit(bx, by).correlations_ for bx, by in batch])
    torch.testing.assert_close(batched, looped)


def test_regularisation_shrinks_and_new_data_generalises(views):
    gen, (x, y) = views
    plain = LinearCCA(3).fit(x, y).correlations_
    ridge = LinearCCA(3, reg=10.0).fit(x, y).correlations_
    assert (ridge < plain).all()
    xt, yt = gen.sample(2000, seed=7)
    held_out = LinearCCA(3).fit(x, y).score(xt, yt)
    assert (held_out - gen.population_correlations()[:3]).abs().max() < 0.05


def test_two_view_mcca_and_gcca_reduce_to_cca(views):
    _, (x, y) = views
    rho = LinearCCA(3).fit(x, y).correlations_
    torch.testing.assert_close(MCCA(3).fit([x, y]).eigenvalues_ - 1, rho, atol=1e-8, rtol=0)
    torch.testing.assert_close(GCCA(3).fit([x, y]).eigenvalues_ - 1, rho, atol=1e-8, rtol=0)


def test_three_views_share_the_latent():
    gen = LatentViews.random(dims=(7, 6, 5), latent=2, noise=0.5, seed=3)
    train, test = gen.sample(1000, seed=0), gen.sample(1000, seed=1)
    for model in (MCCA(2), GCCA(2, reg=1e-3)):
        z = model.fit(train).transform(test)
        for i in range(3):
            for j in range(i + 1, 3):
                corr = torch.corrcoef(torch.stack([z[i][:, 0], z[j][:, 0]]))[0, 1]
                assert corr > 0.8, (type(model).__name__, i, j, corr)
    rank_limited = GCCA(2, view_rank=3).fit(train)
    assert all(w.shape == (p, 2) for w, p in zip(rank_limited.weights_, (7, 6, 5)))


def test_bad_input():
    with pytest.raises(ValueError, match="samples"):
        LinearCCA(2).fit(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(ValueError, match="n_components"):
        LinearCCA(5).fit(torch.randn(10, 3), torch.randn(10, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearCCA(2).transform(torch.randn(4, 3))
    with pytest.raises(ValueError, match="view 1"):
        MCCA(1).fit([torch.randn(10, 3), torch.randn(9, 3)])
