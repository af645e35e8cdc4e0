"""Linear probe: how linearly decodable a label is from frozen features.

Standardise features on the training split, fit multinomial logistic regression (scikit-learn,
L2, ``C`` inverse strength), report accuracy on held-out features.  The majority-class rate of the
test split is returned beside it as the baseline to beat.
"""
from __future__ import annotations

import numpy as np
import torch


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def linear_probe(train_features, train_labels, test_features, test_labels, C: float = 1.0,
                 max_iter: int = 1000) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _numpy(train_features), _numpy(test_features)
    ytr, yte = _numpy(train_labels).astype(int), _numpy(test_labels).astype(int)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {xtr.shape} and {xte.shape}")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError("features and labels disagree on the number of rows")
    if len(np.unique(ytr)) < 2:
        raise ValueError("a linear probe needs at least two classes in the training labels")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(xtr, ytr)
    values, counts = np.unique(yte, return_counts=True)
    return {"accuracy": float((probe.predict(xte) == yte).mean()),
            "majority_baseline": float(counts.max() / len(yte)),
            "train_accuracy": float((probe.predict(xtr) == ytr).mean())}
