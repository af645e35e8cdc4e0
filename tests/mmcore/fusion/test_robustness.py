"""Robustness metrics checked against hand computation, and the harness on a hand-made model."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmcore.data import MultimodalBatch
from mmcore.eval import (
    LEVELS,
    effective_robustness,
    evaluate_robustness,
    gaussian_noise,
    modality_subsets,
    noise_curve,
    plot_noise_curves,
    plot_subset_accuracies,
    relative_robustness,
    subset_accuracies,
)


def test_relative_robustness_by_hand():
    # a line from 1.0 down to 0.5 over 11 levels: area = mean height 0.75 * width 1.0
    line = [1.0 - 0.05 * i for i in range(11)]
    assert relative_robustness(line) == pytest.approx(0.75, abs=1e-12)
    # a flat curve at 0.8: area 0.8
    assert relative_robustness([0.8] * 11) == pytest.approx(0.8, abs=1e-12)
    # a step: 1.0 for levels 0..5, 0.0 for 6..10; trapezoids: 5 full (0.5) + one half (0.05) = 0.55
    step = [1.0] * 6 + [0.0] * 5
    assert relative_robustness(step) == pytest.approx(0.55, abs=1e-12)
    # the trapezoid rule by hand on an irregular three-point curve with dx 0.5
    assert relative_robustness([0.9, 0.6, 0.5], dx=0.5) == pytest.approx((0.9 + 0.6) / 4 + (0.6 + 0.5) / 4)
    with pytest.raises(ValueError):
        relative_robustness([1.0])


def test_effective_robustness_by_hand():
    late = [0.80, 0.70, 0.60]
    model = [0.90, 0.85, 0.75]
    # late shifted to the model's clean accuracy: [0.90, 0.80, 0.70]; gaps: [0, 0.05, 0.05]
    assert effective_robustness(model, late) == pytest.approx(0.10, abs=1e-12)
    assert effective_robustness(model, late, reduce="trapezoid", dx=0.5) == pytest.approx(
        (0 + 0.05) / 2 * 0.5 + (0.05 + 0.05) / 2 * 0.5, abs=1e-12)
    # a model that degrades exactly like late fusion has zero effective robustness, whatever its offset
    assert effective_robustness([0.95, 0.85, 0.75], late) == pytest.approx(0.0, abs=1e-12)
    # faster degradation is negative
    assert effective_robustness([0.9, 0.7, 0.5], late) < 0
    # late fusion against itself
    assert effective_robustness(late, late) == 0.0
    with pytest.raises(ValueError):
        effective_robustness([1.0, 0.9], [1.0])


class SignOfA(nn.Module):
    """Predicts class 1 iff a[:, 0] > 0 when 'a' is present, else iff b[:, 0] > 0, else class 0."""

    def forward(self, batch):
        a, b = batch["a"][:, 0], batch["b"][:, 0]
        use_a, use_b = batch.present["a"], batch.present["b"]
        score = torch.where(use_a, a, torch.where(use_b, b, torch.full_like(a, -1.0)))
        return torch.stack([-score, score], 1)


def hand_batch():
    # labels: 1,1,0,0; 'a' right on rows 0-3; 'b' right on rows 0,2 only
    a = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]])
    b = torch.tensor([[1.0], [-2.0], [-1.0], [3.0]])
    present = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}
    return MultimodalBatch({"a": a, "b": b}, present, fields={"label": torch.tensor([1, 1, 0, 0])})


def test_subset_accuracies_on_a_hand_made_model():
    got = subset_accuracies(SignOfA(), hand_batch())
    assert list(got) == [("a", "b"), ("a",), ("b",)]
    assert got[("a", "b")] == 1.0 and got[("a",)] == 1.0 and got[("b",)] == 0.5
    assert modality_subsets(["x", "y", "z"])[0] == ("x", "y", "z") and len(modality_subsets(["x", "y", "z"])) == 7


def test_noise_curve_starts_clean_and_report_is_consistent(tmp_path):
    torch.manual_seed(0)
    n = 400
    a = torch.randn(n, 1)
    batch = MultimodalBatch({"a": a, "b": a.clone()}, {"a": torch.ones(n, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)},
                            fields={"label": (a[:, 0] > 0).long()})
    curve = noise_curve(SignOfA(), batch)
    assert len(curve) == 11 and curve[0] == 1.0
    assert curve[-1] < 0.9                                     # noise at std 1 x signal flips many signs
    assert noise_curve(SignOfA(), batch, seed=0) == curve      # seeded
    report = evaluate_robustness(SignOfA(), batch, late_curve=curve)
    assert report.clean == 1.0 and report.curve == curve
    assert report.relative == pytest.approx(relative_robustness(curve))
    assert report.effective == pytest.approx(0.0)
    assert report.subsets == {"a+b": 1.0, "a": 1.0, "b": 1.0}
    assert math.isclose(LEVELS[-1], 1.0)
    png = plot_noise_curves({"sign": curve}, tmp_path / "curves.png")
    heat = plot_subset_accuracies({"sign": report.subsets}, tmp_path / "subsets.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and heat.stat().st_size > 1000


def test_gaussian_noise_touches_only_present_rows():
    batch = hand_batch().drop_modality("b", rows=torch.tensor([True, False, False, False]))
    noisy = gaussian_noise()(batch, 1.0, torch.Generator().manual_seed(0))
    assert noisy["b"][0].abs().sum() == 0                       # absent row stays a zero placeholder
    assert not torch.equal(noisy["a"], batch["a"])
    assert torch.equal(gaussian_noise()(batch, 0.0, torch.Generator())["a"], batch["a"])
