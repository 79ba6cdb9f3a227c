"""Continual-learning metrics computed from an accuracy matrix.

Convention used everywhere in cliplab: ``A[i, j]`` is the top-1 accuracy **in percent** on task
``j`` after training task ``i``; rows are training steps in order, columns are tasks in training
order (so ``A`` is T x T). Formulas below use 1-based indices as in the papers; the code is
0-based. The pre-training (zero-shot) accuracies are **not** a row of ``A`` — that is how ZSCL
defines MTIL (reference §3.1, pitfall P17); keep them separately (see ``zero_shot_retention``).

Sources: MTIL Transfer / Avg / Last — ZSCL (Zheng et al., ICCV 2023, ``mtil/results.ipynb``);
average incremental accuracy — Rebuffi et al. 2017 (iCaRL), used by ZSCL's CIL tables;
backward transfer — Lopez-Paz & Ranzato 2017 (GEM); average forgetting — Chaudhry et al. 2018
(RWalk), in the "since the task was learned" variant described in ``average_forgetting``.

Which formulas summarise a run depends on its protocol (``protocol_summary``,
``PROTOCOL_SUMMARY_KEYS``): MTIL's Transfer / Avg / Last for task-incremental runs, the average
incremental accuracy and the last step's accuracy on all seen classes for class-incremental ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SUMMARY_KEYS = ("transfer", "avg", "last", "bwt", "forgetting")
TIME_CONTINUAL_KEYS = ("id", "backward", "forward")  # TiC-CLIP's summaries of a time x time matrix

# The summary metrics each protocol defines; the others are stored as null (NaN) in its summary.
# Class-incremental Avg / Last are the average incremental accuracy and the last step's accuracy on
# all seen classes (not the MTIL formulas); Transfer (accuracy before a task is learned, averaged
# per task) is not defined there. One session has a single task: no Transfer, BWT or forgetting.
PROTOCOL_SUMMARY_KEYS = {
    "task_incremental": ("transfer", "avg", "last", "bwt", "forgetting"),
    "class_incremental": ("avg", "last", "bwt", "forgetting"),
    "one_session": ("avg", "last"),
}


def as_accuracy_matrix(matrix: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Return ``matrix`` as a float T x T array after checking shape and range.

    NaN marks "not evaluated" and is allowed here; each metric checks that the cells it needs are
    present. Raises ``ValueError`` for ragged or non-numeric input, non-square shapes, an empty
    matrix, or finite/infinite values outside [0, 100] (accuracies must be percentages).
    """
    try:
        array = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"accuracy matrix must be a rectangular array of numbers: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D (T x T), got {array.ndim}-D shape {array.shape}")
    rows, cols = array.shape
    if rows != cols:
        raise ValueError(
            f"accuracy matrix must be square T x T (row i = after training task i, column j = task j), "
            f"got {rows} x {cols}"
        )
    if rows == 0:
        raise ValueError("accuracy matrix is empty (T = 0)")
    bad = ~np.isnan(array) & ((array < 0) | (array > 100))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"accuracies must be percentages in [0, 100]; A[{i}, {j}] = {array[i, j]!r} "
            f"({int(bad.sum())} value(s) out of range)"
        )
    return array


def _require(array: np.ndarray, mask: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` if any cell selected by ``mask`` is NaN (a value ``what`` needs)."""
    missing = np.argwhere(mask & np.isnan(array))
    if len(missing):
        cells = ", ".join(f"A[{i}, {j}]" for i, j in missing[:5].tolist())
        raise ValueError(f"{what} needs {cells}{' ...' if len(missing) > 5 else ''}, which is NaN")


def mtil_transfer(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """ZSCL Transfer: ``mean_{j=2..T} ( mean_{i<j} A[i, j] )``.

    Accuracy on task j *before* it is learned (strict upper triangle), averaged per task first,
    then over tasks 2..T. Task 1 has no entry — even for the zero-shot baseline, whose Transfer
    therefore differs from its Avg/Last (69.4 vs 65.3 on MTIL Order I, reference §3.1).
    NaN for T = 1 (no task has a "before").
    """
    array = as_accuracy_matrix(matrix)
    size = len(array)
    _require(array, np.triu(np.ones_like(array, dtype=bool), k=1), "Transfer (strict upper triangle)")
    if size == 1:
        return math.nan
    return float(np.mean([array[:j, j].mean() for j in range(1, size)]))


def mtil_avg(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """ZSCL Avg: ``mean_j ( mean_{i=1..T} A[i, j] )`` — every cell counts, before and after learning."""
    array = as_accuracy_matrix(matrix)
    _require(array, np.ones_like(array, dtype=bool), "Avg (all cells)")
    return float(array.mean(axis=0).mean())


def mtil_last(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """ZSCL Last: ``mean_j A[T, j]`` — the final model on every task."""
    array = as_accuracy_matrix(matrix)
    _require(array, np.arange(len(array))[:, None] == len(array) - 1, "Last (last row)")
    return float(array[-1].mean())


def backward_transfer(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): ``1/(T-1) sum_{j<T} (A[T, j] - A[j, j])``.

    Negative = forgetting. Uses only the diagonal and the last row. NaN for T = 1.
    """
    array = as_accuracy_matrix(matrix)
    size = len(array)
    needed = np.eye(size, dtype=bool)
    needed[-1] = True
    _require(array, needed, "BWT (diagonal and last row)")
    if size == 1:
        return math.nan
    return float(np.mean(array[-1, :-1] - np.diag(array)[:-1]))


def average_forgetting(matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Average forgetting: ``1/(T-1) sum_{j<T} ( max_{i in [j, T-1]} A[i, j] - A[T, j] )``.

    Chaudhry et al. 2018 (RWalk), "since learned" variant: the max runs only over steps at or after
    task j was trained. RWalk writes ``max_{l<T}``, which for CLIP would also count the zero-shot
    accuracy *before* task j was learned as something that can be forgotten. Not clipped at 0: a
    negative value means the final model beats every earlier one on the old tasks. NaN for T = 1.
    """
    array = as_accuracy_matrix(matrix)
    size = len(array)
    _require(array, np.tril(np.ones_like(array, dtype=bool)), "forgetting (lower triangle)")
    if size == 1:
        return math.nan
    return float(np.mean([array[j:-1, j].max() - array[-1, j] for j in range(size - 1)]))


def continual_summary(matrix: Sequence[Sequence[float]] | np.ndarray) -> dict[str, float]:
    """All scalar metrics of a T x T accuracy matrix (percent): Transfer, Avg, Last, BWT, forgetting.

    Returns ``{"transfer", "avg", "last", "bwt", "forgetting"}`` as floats (see each function for
    the formula). For T = 1, ``transfer``, ``bwt`` and ``forgetting`` are NaN. Every cell is needed
    (Avg uses all of them), so any NaN raises ``ValueError`` naming the metric and the cell.
    """
    array = as_accuracy_matrix(matrix)
    return {
        "transfer": mtil_transfer(array),
        "avg": mtil_avg(array),
        "last": mtil_last(array),
        "bwt": backward_transfer(array),
        "forgetting": average_forgetting(array),
    }


def time_continual_summary(matrix: Sequence[Sequence[float]] | np.ndarray, averaging: str = "flat") -> dict[str, float]:
    """TiC-CLIP's summaries of a time x time matrix E[i, j] (model after step i, data of step j).

    - ``id`` (in-distribution): mean of the diagonal, ``1/T sum_i E[i, i]``;
    - ``backward``: mean of the strict lower triangle (j < i: models on *earlier* steps' data);
    - ``forward``: mean of the strict upper triangle (j > i: models on *later* steps' data).

    These are average *performances*, not differences (GEM's BWT is ``bwt``). TiC's text does
    not say whether the triangles are averaged flat or per row first: ``averaging="flat"`` (the
    default) weighs every cell equally; ``"row"`` averages each row's cells, then the rows
    (``1/(T-1) sum_{i>=2} mean_{j<i} E[i, j]`` for backward; forward likewise over rows 1..T-1).
    ``backward`` and ``forward`` are NaN for T = 1. NaN cells are errors.
    """
    if averaging not in ("flat", "row"):
        raise ValueError(f"averaging must be 'flat' or 'row', got {averaging!r}")
    array = as_accuracy_matrix(matrix)
    _require(array, np.ones_like(array, dtype=bool), "the time-continual summary (all cells)")
    size = len(array)

    def triangle(lower: bool) -> float:
        rows = [array[i, :i] if lower else array[i, i + 1 :] for i in range(size)]
        rows = [r for r in rows if len(r)]
        if not rows:
            return math.nan
        return float(np.concatenate(rows).mean() if averaging == "flat" else np.mean([r.mean() for r in rows]))

    return {"id": float(np.diag(array).mean()), "backward": triangle(True), "forward": triangle(False)}


def mtil_per_task(matrix: Sequence[Sequence[float]] | np.ndarray) -> dict[str, list[float]]:
    """Per-task Transfer_j / Avg_j / Last_j (ZSCL's per-dataset table); Transfer_1 is NaN."""
    array = as_accuracy_matrix(matrix)
    _require(array, np.ones_like(array, dtype=bool), "per-task metrics (all cells)")
    transfer = [math.nan] + [float(array[:j, j].mean()) for j in range(1, len(array))]
    return {"transfer": transfer, "avg": array.mean(axis=0).tolist(), "last": array[-1].tolist()}


def _as_percent_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """1-D float array in [0, 100] without NaN, or ``ValueError``."""
    try:
        vector = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {error}") from None
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {vector.shape}")
    if np.isnan(vector).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(vector))[0])}")
    if ((vector < 0) | (vector > 100)).any():
        raise ValueError(f"{name} must be percentages in [0, 100], got {vector.tolist()}")
    return vector


def step_accuracies_from_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray, class_counts: Sequence[float]
) -> np.ndarray:
    """Class-incremental ``acc_t = sum_{j<=t} n_j A[t, j] / sum_{j<=t} n_j`` (accuracy on all seen classes).

    ``A[t, j]`` must be measured with the class-incremental classifier (all classes seen so far,
    no task id); only the lower triangle is used. Exact when ``n_j`` is the number of *test
    images* of task j; class counts are equivalent when every class has the same number of test
    images (CIFAR-100: 100, TinyImageNet val: 50).
    """
    array = as_accuracy_matrix(matrix)
    counts = np.asarray(class_counts, dtype=float)
    if counts.shape != (len(array),) or (counts <= 0).any() or np.isnan(counts).any():
        raise ValueError(
            f"class_counts (test images or classes per task) must be {len(array)} positive numbers, "
            f"got {list(class_counts)}"
        )
    _require(array, np.tril(np.ones_like(array, dtype=bool)), "step accuracies (lower triangle)")
    return np.array([np.average(array[t, : t + 1], weights=counts[: t + 1]) for t in range(len(array))])


def class_incremental_summary(
    accuracies: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    class_counts: Sequence[float] | None = None,
) -> dict[str, float | list[float]]:
    """Average incremental accuracy ``Avg = mean_{t=1..T} acc_t`` and ``Last = acc_T`` (Rebuffi et al. 2017).

    ``accuracies`` is either the vector of per-step accuracies ``acc_t`` (percent on all classes
    seen after step t) or a T x T matrix, in which case ``class_counts`` is required and ``acc_t``
    comes from ``step_accuracies_from_matrix``. ZSCL's CIL tables include the first step in Avg.
    Returns ``{"avg", "last", "step_accuracies"}``.
    """
    if np.ndim(accuracies) == 2:
        if class_counts is None:
            raise ValueError("a class-incremental accuracy matrix needs class_counts (classes or test images per task)")
        steps = step_accuracies_from_matrix(accuracies, class_counts)
    else:
        if class_counts is not None:
            raise ValueError("class_counts is only used with a T x T matrix, not with per-step accuracies")
        steps = _as_percent_vector(accuracies, "per-step accuracies")
    return {"avg": float(steps.mean()), "last": float(steps[-1]), "step_accuracies": steps.tolist()}


def protocol_summary(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    protocol: str = "task_incremental",
    class_incremental_accuracy: Sequence[float] | None = None,
    task_test_sizes: Sequence[float] | None = None,
) -> dict[str, float]:
    """The summary of a run under its protocol's formulas: every key of ``SUMMARY_KEYS``.

    - ``task_incremental`` and ``one_session``: ``continual_summary`` (ZSCL's MTIL Transfer / Avg /
      Last, BWT, forgetting).
    - ``class_incremental``: ``avg`` = mean of the per-step accuracies on all seen classes, ``last``
      = the last of them (Rebuffi et al.; ZSCL's CIL tables), ``transfer`` = NaN (not defined),
      ``bwt`` / ``forgetting`` from the task matrix. The per-step accuracies are
      ``class_incremental_accuracy`` when given, else ``step_accuracies_from_matrix(matrix,
      task_test_sizes)``; one of the two is required.
    """
    if protocol not in PROTOCOL_SUMMARY_KEYS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {sorted(PROTOCOL_SUMMARY_KEYS)}")
    if protocol != "class_incremental":
        return continual_summary(matrix)
    array = as_accuracy_matrix(matrix)
    if class_incremental_accuracy is not None:
        steps = _as_percent_vector(class_incremental_accuracy, "class_incremental_accuracy")
        if len(steps) != len(array):
            raise ValueError(
                f"class_incremental_accuracy has {len(steps)} entries; expected one per task (T = {len(array)})"
            )
    elif task_test_sizes is not None:
        steps = step_accuracies_from_matrix(array, task_test_sizes)
    else:
        raise ValueError(
            "a class-incremental summary needs class_incremental_accuracy (per-step accuracy on all seen "
            "classes) or task_test_sizes (test images per task, to weight the accuracy matrix)"
        )
    return {
        "transfer": math.nan,
        "avg": float(steps.mean()),
        "last": float(steps[-1]),
        "bwt": backward_transfer(array),
        "forgetting": average_forgetting(array),
    }


def zero_shot_retention(before: float, after: Sequence[float] | np.ndarray) -> dict[str, float | list[float]]:
    """Change of a held-out zero-shot probe against the pre-trained model.

    ``delta_t = after_t - before`` (percentage points) and ``retention_t = 100 * after_t / before``
    (percent of the pre-trained accuracy kept; NaN when ``before`` is 0). ``after`` lists the probe
    after each training step. Returns per-step lists plus ``final_delta`` / ``final_retention``.
    """
    base = float(_as_percent_vector([before], "before")[0])
    steps = _as_percent_vector(after, "after")
    delta = steps - base
    retention = steps / base * 100.0 if base > 0 else np.full_like(steps, math.nan)
    return {
        "delta": delta.tolist(),
        "retention": retention.tolist(),
        "final_delta": float(delta[-1]),
        "final_retention": float(retention[-1]),
    }
