"""Metrics of online continual learning (Si-Blurry) and of open-domain continual learning (ODCL).

Online (Koh et al. 2022 "CLIB"; Moon et al. 2023 "MVP"; SIT's code `methods/_trainer.py`): the
model is evaluated every `eval_period` stream samples on the test images of the classes exposed so
far (label space: those classes), and at the end of every task.

- ``A_auc``: the area under the anytime-accuracy curve, normalised to percent. The reference code
  takes the plain mean of the anytime accuracies (equal sample intervals); with ``weighting=
  "interval"`` each accuracy is weighted by the stream samples since the previous evaluation
  (``Σ a_i Δn_i / Σ Δn_i``, CLIB's sum ``Σ f(i·Δn)·Δn`` normalised), which differs only when
  intervals differ.
- ``A_avg``: mean of the end-of-task accuracies; ``A_last``: the last one.
- ``F_last``: per-class forgetting, ``mean_c [max_{t<T} acc_t(c) − acc_T(c)]`` over the classes
  whose best end-of-task accuracy before the last task is > 0 (classes first exposed in the last
  task are left out because their earlier accuracies are 0, as in the reference code).

ODCL (CoLeCLIP, Li et al. 2024, `tools/eval_metric.py`), on the T x T matrix R (row k: after
learning domain k; column j: domain j), for TIL and CIL alike: Transfer, Avg and Last are ZSCL's
(`cliplab.evaluation.metrics`), plus ``SeenAvg = mean_j ( mean_{k>=j} R[k, j] )`` (the lower
triangle with the diagonal: every evaluation of a domain once it has been learned).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cliplab.evaluation.metrics import _require, as_accuracy_matrix, mtil_avg, mtil_last, mtil_transfer

ONLINE_KEYS = ("a_auc", "a_avg", "a_last", "f_last")
ODCL_KEYS = ("transfer", "avg", "last", "seen_avg")
AUC_WEIGHTINGS = ("mean", "interval")


def _percent(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of accuracies, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(array))[0])}")
    if ((array < 0) | (array > 100)).any():
        raise ValueError(f"{name} must be percentages in [0, 100], got {array.tolist()}")
    return array


def anytime_auc(accuracies: Sequence[float], samples: Sequence[float] | None = None, weighting: str = "mean") -> float:
    """A_auc in percent: the mean anytime accuracy, or weighted by sample intervals (see module doc).

    `samples[i]` is the number of stream samples seen at evaluation i (increasing); needed only for
    ``weighting="interval"``. NaN for an empty curve (a stream shorter than one eval period).
    """
    if weighting not in AUC_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {AUC_WEIGHTINGS}, got {weighting!r}")
    acc = _percent(accuracies, "anytime accuracies")
    if acc.size == 0:
        return math.nan
    if weighting == "mean":
        return float(acc.mean())
    if samples is None:
        raise ValueError('weighting="interval" needs the sample counts of the evaluations')
    counts = np.asarray(samples, dtype=float)
    if counts.shape != acc.shape:
        raise ValueError(f"{len(counts)} sample counts for {len(acc)} accuracies")
    steps = np.diff(np.concatenate([[0.0], counts]))
    if (steps <= 0).any():
        raise ValueError(f"sample counts must increase from > 0, got {counts.tolist()}")
    return float((acc * steps).sum() / steps.sum())


def class_forgetting(class_accuracies: Sequence[Sequence[float]]) -> float:
    """F_last from end-of-task per-class accuracies (rows: tasks, columns: classes; 0 = not exposed).

    ``mean_c [max_{t<T-1} acc[t, c] − acc[T-1, c]]`` over classes whose earlier max is > 0; NaN when
    there is a single task or no such class.
    """
    array = np.asarray(class_accuracies, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"per-class accuracies must be tasks x classes, got shape {array.shape}")
    if len(array) < 2:
        return math.nan
    best = array[:-1].max(axis=0)
    keep = best > 0
    if not keep.any():
        return math.nan
    return float((best[keep] - array[-1, keep]).mean())


def online_summary(
    anytime: Sequence[float],
    task_accuracies: Sequence[float],
    class_accuracies: Sequence[Sequence[float]] | None = None,
    samples: Sequence[float] | None = None,
    weighting: str = "mean",
) -> dict[str, float]:
    """``{"a_auc", "a_avg", "a_last", "f_last"}`` of an online run (percent; F_last NaN without classes)."""
    tasks = _percent(task_accuracies, "end-of-task accuracies")
    if tasks.size == 0:
        raise ValueError("an online run needs at least one end-of-task accuracy")
    return {
        "a_auc": anytime_auc(anytime, samples, weighting),
        "a_avg": float(tasks.mean()),
        "a_last": float(tasks[-1]),
        "f_last": class_forgetting(class_accuracies) if class_accuracies is not None else math.nan,
    }


def seen_average(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """CoLeCLIP's SeenAvg: ``mean_j ( mean_{k>=j} R[k, j] )`` (lower triangle with the diagonal)."""
    array = as_accuracy_matrix(matrix)
    _require(array, np.tril(np.ones_like(array, dtype=bool)), "SeenAvg (lower triangle)")
    return float(np.mean([array[j:, j].mean() for j in range(len(array))]))


def odcl_summary(matrix: Sequence[Sequence[float]] | np.ndarray) -> dict[str, float]:
    """``{"transfer", "avg", "last", "seen_avg"}`` of an ODCL matrix (TIL or CIL), as CoLeCLIP reports them."""
    array = as_accuracy_matrix(matrix)
    return {
        "transfer": mtil_transfer(array),
        "avg": mtil_avg(array),
        "last": mtil_last(array),
        "seen_avg": seen_average(array),
    }


__all__ = [
    "AUC_WEIGHTINGS",
    "ODCL_KEYS",
    "ONLINE_KEYS",
    "anytime_auc",
    "class_forgetting",
    "odcl_summary",
    "online_summary",
    "seen_average",
]
