"""Linear probe: separable features reach ~100 %, random labels stay at chance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cliplab.evaluation.linear_probe import linear_probe

CS = (0.01, 1.0, 100.0)


def _blobs(n_per_class: int, n_classes: int, dim: int, seed: int, spread: float = 0.3):
    """Gaussian blobs around well-separated random centres (unit-norm centres scaled by 5)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres = 5.0 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return features.astype(np.float32), labels


def test_separable_features_reach_full_accuracy():
    x_train, y_train = _blobs(30, 4, 16, seed=0)
    x_test, y_test = _blobs(25, 4, 16, seed=0)  # same centres (same seed), fresh noise below
    x_test = x_test + 0.3 * np.random.default_rng(1).normal(size=x_test.shape).astype(np.float32)
    result = linear_probe(x_train, y_train, x_test, y_test, Cs=CS, seed=0)
    assert result["accuracy"] >= 99.0
    assert result["C"] in CS
    assert [point["C"] for point in result["val_curve"]] == sorted(CS)
    assert result["n_train"] == 120 and result["n_test"] == 100 and result["n_classes"] == 4


def test_random_labels_stay_near_chance():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(300, 8)), rng.normal(size=(400, 8))
    y_train, y_test = rng.integers(0, 4, 300), rng.integers(0, 4, 400)
    result = linear_probe(x_train, y_train, x_test, y_test, Cs=CS, seed=0)
    # chance = 25 %; 400 test points give a binomial sd of ~2.2 points.
    assert 15.0 <= result["accuracy"] <= 35.0


def test_refit_on_all_training_features_with_the_chosen_C():
    x_train, y_train = _blobs(20, 3, 6, seed=2, spread=3.0)
    x_test, y_test = _blobs(20, 3, 6, seed=2, spread=3.0)
    result = linear_probe(x_train, y_train, x_test, y_test, Cs=CS, seed=3)
    direct = LogisticRegression(C=result["C"], max_iter=1000).fit(x_train.astype(np.float64), y_train)
    assert result["accuracy"] == pytest.approx(100.0 * np.mean(direct.predict(x_test) == y_test))
    assert result["val_accuracy"] == max(point["val_accuracy"] for point in result["val_curve"])


def test_seeded_and_deterministic():
    x, y = _blobs(20, 3, 6, seed=4, spread=3.0)
    first = linear_probe(x, y, x, y, Cs=CS, seed=7)
    second = linear_probe(x, y, x, y, Cs=CS, seed=7)
    assert first == second


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    x, y = _blobs(10, 2, 4, seed=5)
    result = linear_probe(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x), torch.from_numpy(y), Cs=(1.0,))
    assert result["accuracy"] == 100.0 and result["C"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"Cs": ()}, "Cs"),
        ({"Cs": (0.0, 1.0)}, "positive"),
    ],
)
def test_argument_errors(kwargs, message):
    x, y = _blobs(10, 2, 4, seed=6)
    with pytest.raises(ValueError, match=message):
        linear_probe(x, y, x, y, **kwargs)


def test_data_errors():
    x, y = _blobs(10, 2, 4, seed=6)
    with pytest.raises(ValueError, match=">= 2 training samples"):
        linear_probe(x[:11], y[:11], x, y)  # class 1 has a single sample
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="dimensions differ"):
        linear_probe(x, y, x[:, :3], y)
