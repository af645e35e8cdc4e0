"""Imputers against scikit-learn, and the learned imputer against the mean."""
import numpy as np
import pytest
import torch
from sklearn.impute import KNNImputer, SimpleImputer

from mmcore.data import collate_multimodal
from mmcore.missing import Imputed, LearnedImputer, MeanImputer, NearestNeighbourImputer, ZeroFilled


def correlated(n, seed, missing=0.3):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    a = z @ torch.randn(2, 5, generator=torch.Generator().manual_seed(99)) + 0.1 * torch.randn(n, 5, generator=g)
    b = torch.tanh(z @ torch.randn(2, 4, generator=torch.Generator().manual_seed(98))) + 0.1 * torch.randn(n, 4, generator=g)
    drop = torch.rand(n, generator=g) < missing
    samples = [{"a": a[i], "b": None if drop[i] else b[i]} for i in range(n)]
    return collate_multimodal(samples, ["a", "b"], shapes={"a": (5,), "b": (4,)}), b


def test_mean_imputer_matches_sklearn_and_keeps_present_rows():
    batch, _ = correlated(300, 0)
    out = MeanImputer().fit(batch).impute(batch)
    x = batch["b"].numpy().copy()
    x[~batch.mask("b").numpy()] = np.nan
    ref = SimpleImputer(strategy="mean").fit_transform(x)
    assert np.allclose(out["b"].numpy(), ref, atol=1e-6)
    assert bool(out.mask("b").all())
    with pytest.raises(RuntimeError, match="before fit"):
        MeanImputer().impute(batch)


def test_nearest_neighbour_imputer_matches_sklearn_knn_with_complete_donors():
    train, _ = correlated(200, 1)
    query, _ = correlated(50, 2, missing=0.5)
    ours = NearestNeighbourImputer(k=3).fit(train).impute(query)["b"].numpy()
    donors = torch.cat([train["a"], train["b"]], 1)[train.mask("b")].numpy()
    q = torch.cat([query["a"], query["b"]], 1).numpy().copy()
    q[~query.mask("b").numpy(), 5:] = np.nan
    ref = KNNImputer(n_neighbors=3).fit(donors).transform(q)[:, 5:]
    assert np.allclose(ours, ref, atol=1e-5)


def test_learned_imputer_beats_the_mean_on_held_out_rows():
    train, _ = correlated(1500, 3, missing=0.1)
    test, truth = correlated(300, 4, missing=1.0 - 1e-9)
    learned = LearnedImputer({"a": 5, "b": 4}, hidden=64).fit(train, steps=400, batch_size=128)
    mse = lambda out: float(((out["b"] - truth) ** 2).mean())  # noqa: E731
    assert mse(learned.impute(test)) < 0.5 * mse(MeanImputer().fit(train).impute(test))


def test_wrappers_feed_the_model_completed_or_zero_filled_batches():
    batch, _ = correlated(10, 5, missing=0.5)
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, b):
            seen["b"] = b
            return torch.zeros(b.batch_size, 2)

    ZeroFilled(Spy())(batch)
    assert bool(seen["b"].mask("b").all()) and float(seen["b"]["b"][~batch.mask("b")].abs().sum()) == 0
    Imputed(Spy(), MeanImputer().fit(batch))(batch)
    assert bool(seen["b"].mask("b").all()) and float(seen["b"]["b"][~batch.mask("b")].abs().sum()) > 0
