"""PolyDigits: seeded, views share the label and not the instance, splits disjoint."""
import numpy as np
import pytest
import torch

from mmcore.data.polydigits import PolyDigits, _digit_pool


def test_seeded_and_views_share_only_the_class():
    a, b = PolyDigits(100, seed=3), PolyDigits(100, seed=3)
    assert torch.equal(a.data["m1"], b.data["m1"]) and torch.equal(a.labels, b.labels)
    assert (a.instance[0] != a.instance[1]).mean() > 0.8          # different handwriting per view
    images, labels = _digit_pool("train")
    assert np.all(labels[a.instance[0]] == a.labels.numpy()) and np.all(labels[a.instance[2]] == a.labels.numpy())
    s = a[0]
    assert s["m0"].shape == (64,) and 0 <= float(s["m0"].min()) and float(s["m0"].max()) <= 1


def test_splits_do_not_share_handwritten_instances():
    train, test = _digit_pool("train")[0], _digit_pool("test")[0]
    flat_train = {x.tobytes() for x in train}
    assert sum(x.tobytes() in flat_train for x in test) < 3          # sklearn digits has a few duplicates


def test_missingness_never_removes_everything_and_domain_changes_rendering():
    d = PolyDigits(300, missing_rate=0.6, seed=0)
    batch = d.full_batch()
    assert bool(torch.stack([batch.mask(m) for m in d.modalities]).any(0).all())
    assert 0.3 < 1 - batch.mask("m0").float().mean().item() < 0.7
    t = PolyDigits(300, domain="target", seed=0)
    assert float((t.data["m0"] - PolyDigits(300, seed=0).data["m0"]).abs().mean()) > 0.1
    with pytest.raises(ValueError, match="unknown split"):
        PolyDigits(10, split="dev")
    with pytest.raises(ValueError, match="domain"):
        PolyDigits(10, domain="other")
