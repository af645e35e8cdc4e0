"""Evaluation helpers: the robustness harness (missing modalities, noise, MultiBench metrics)."""
from .robustness import (
    LEVELS,
    RobustnessReport,
    accuracy,
    effective_robustness,
    evaluate_robustness,
    gaussian_noise,
    modality_subsets,
    noise_curve,
    plot_noise_curves,
    plot_subset_accuracies,
    predict,
    relative_robustness,
    subset_accuracies,
)

__all__ = [
    "LEVELS", "RobustnessReport", "accuracy", "effective_robustness", "evaluate_robustness", "gaussian_noise",
    "modality_subsets", "noise_curve", "plot_noise_curves", "plot_subset_accuracies", "predict",
    "relative_robustness", "subset_accuracies",
]
