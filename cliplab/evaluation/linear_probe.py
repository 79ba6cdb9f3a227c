"""Linear probe on frozen image features (multinomial logistic regression).

Protocol follows CLIP's linear-probe evaluation (Radford et al. 2021, appendix A.3): scikit-learn
L-BFGS logistic regression, the L2 strength chosen on a validation split held out from the
training features, then a refit on all training features with the chosen strength and a single
evaluation on the test features. CLIP sweeps C over 1e-6..1e6; the default grid here is coarser.
Features are used as given (no normalisation): L2-normalised CLIP features need large C.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 4, 9))


def _to_numpy(array: Any, name: str, ndim: int) -> np.ndarray:
    """Convert a NumPy array, list or torch tensor (any device) to NumPy, checking its rank."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    result = np.asarray(array)
    if result.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {result.shape}")
    return result


def _fit(
    features: np.ndarray, labels: np.ndarray, C: float, max_iter: int, seed: int
) -> tuple[LogisticRegression, bool]:
    """Fit one L-BFGS logistic regression; return it and whether it converged.

    With >= 3 classes scikit-learn's lbfgs fits the multinomial (softmax) model; with 2 classes it
    fits the equivalent single-logit model (the ``multi_class`` argument no longer exists).
    """
    model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, labels)
    converged = True
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            converged = False
        else:  # pass every other warning on to the caller
            warnings.warn(warning.message, warning.category, stacklevel=2)
    return model, converged


def _accuracy(model: LogisticRegression, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(model.predict(features) == labels) * 100.0)


def _stratified_split(
    features: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified (fit, validation) split of the training set, with readable errors."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"a linear probe needs at least 2 classes in train_labels, got {len(classes)}")
    if counts.min() < 2:
        rare = classes[counts < 2][:5].tolist()
        raise ValueError(
            f"each class needs >= 2 training samples for a stratified validation split; classes {rare} have 1"
        )
    try:
        return train_test_split(features, labels, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as error:
        raise ValueError(
            f"cannot make a stratified validation split with val_fraction={val_fraction} "
            f"({len(labels)} samples, {len(classes)} classes): {error}"
        ) from None


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    Cs: Sequence[float] = DEFAULT_CS,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    return_model: bool = False,
) -> dict[str, Any]:
    """Train a linear probe on frozen features and report its test accuracy (percent).

    For each ``C`` in ``Cs`` (inverse L2 strength), fit on ``1 - val_fraction`` of the training
    features and score on the seeded stratified rest; pick the best validation accuracy (ties ->
    the smallest C, i.e. the strongest regularisation); refit on all training features and
    evaluate once on the test set. Returns ``accuracy``, ``C``, ``val_accuracy`` (best),
    ``val_curve`` (list of ``{"C", "val_accuracy"}``), ``converged`` (final fit), ``n_train``,
    ``n_test``, ``n_classes``, and ``model`` when ``return_model``. Inputs may be NumPy arrays,
    lists or torch tensors (``N x D`` features, ``N`` integer or string labels).
    """
    x_train = _to_numpy(train_features, "train_features", 2).astype(np.float64)
    y_train = _to_numpy(train_labels, "train_labels", 1)
    x_test = _to_numpy(test_features, "test_features", 2).astype(np.float64)
    y_test = _to_numpy(test_labels, "test_labels", 1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"features and labels differ in length: train {len(x_train)} vs {len(y_train)}, "
            f"test {len(x_test)} vs {len(y_test)}"
        )
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test feature dimensions differ: {x_train.shape[1]} vs {x_test.shape[1]}")
    grid = sorted(float(c) for c in Cs)
    if not grid or min(grid) <= 0:
        raise ValueError(f"Cs must be a non-empty sequence of positive numbers, got {list(Cs)}")

    x_fit, x_val, y_fit, y_val = _stratified_split(x_train, y_train, val_fraction, seed)
    curve = [{"C": c, "val_accuracy": _accuracy(_fit(x_fit, y_fit, c, max_iter, seed)[0], x_val, y_val)} for c in grid]
    best = max(curve, key=lambda point: point["val_accuracy"])  # first maximum = smallest C
    model, converged = _fit(x_train, y_train, best["C"], max_iter, seed)
    result: dict[str, Any] = {
        "accuracy": _accuracy(model, x_test, y_test),
        "C": best["C"],
        "val_accuracy": best["val_accuracy"],
        "val_curve": curve,
        "converged": converged,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_classes": len(np.unique(y_train)),
    }
    if return_model:
        result["model"] = model
    return result
