"""Numbers of runs shaped for reading and drawing: per-run quantities and the frames figures draw.

* `final_accuracy`, `final_zero_shot`, `final_retrieval`: one number of one run after its last task;
* `accuracy_matrix_frame`: the T x T accuracy matrix (mean over seeds) and the before-training row;
* `task_curves_frame`: each task's accuracy before training and after every task;
* `stability_plasticity_frame`: new-task accuracy (the matrix diagonal) against held-out zero-shot
  accuracy after the last task, per run;
* `ost_mst_frame`: Ding et al.'s one-session vs multi-session comparison;
* `time_matrix_frame`: a time-continual run's time x time matrix (retrieval R@1, zero-shot
  classification, or one retrieval direction) and its row before training, mean over seeds;
* `run_matrices`: every matrix one run records, named for what it holds under the run's protocol
  (the explorer's matrix panel), and `STEP_NOUNS`: what one task of a protocol is called.

`cliplab.plots` draws these frames; it computes nothing of its own. Percent throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from cliplab.results.record import RunResult

BEFORE = "before"  # label of the before-training evaluation on step axes


def _same_tasks(results: Sequence[RunResult]) -> list[str]:
    if not results:
        raise ValueError("no runs given")
    tasks = results[0].tasks
    if any(r.tasks != tasks for r in results):
        raise ValueError("runs cover different task lists; average only runs of one scenario and setting")
    return tasks


def step_labels(tasks: Sequence[str]) -> list[str]:
    """Axis labels of the evaluation points: before training, then after each task."""
    return [BEFORE] + [f"after {t}" for t in tasks]


def accuracy_matrix_frame(results: Sequence[RunResult]) -> tuple[pd.DataFrame, pd.Series | None]:
    """Mean over runs (seeds) of the accuracy matrix and of the before-training row.

    Returns (matrix, zero_shot_row): matrix rows "after <task i>", columns tasks; the row is
    None when the runs do not store `zero_shot_row` (runs written before it existed).
    """
    tasks = _same_tasks(results)
    matrix = np.mean([np.asarray(r.accuracy_matrix, dtype=float) for r in results], axis=0)
    frame = pd.DataFrame(matrix, index=step_labels(tasks)[1:], columns=tasks)
    rows = [r.extra.get("zero_shot_row") for r in results]
    if any(row is None for row in rows):
        return frame, None
    return frame, pd.Series(np.mean(np.asarray(rows, dtype=float), axis=0), index=tasks, name=BEFORE)


def task_curves_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long table (seed, task, step, point, accuracy): each task's accuracy at every evaluation.

    `step` 0 is before training (from `zero_shot_row`, when stored), step i after task i;
    `point` is the matching axis label.
    """
    tasks = _same_tasks(results)
    labels = step_labels(tasks)
    rows = []
    for result in results:
        before = result.extra.get("zero_shot_row")
        curve_rows = ([before] if before is not None else []) + list(result.accuracy_matrix)
        first = 0 if before is not None else 1
        for step, row in enumerate(curve_rows, start=first):
            rows += [(result.seed, task, step, labels[step], value) for task, value in zip(tasks, row)]
    return pd.DataFrame(rows, columns=["seed", "task", "step", "point", "accuracy"])


def _diagonal_mean(run: pd.DataFrame) -> float:
    """Mean of A[i, i] from one run's tidy accuracy rows (task order = order of appearance)."""
    tasks = list(dict.fromkeys(run["task"]))
    cells = run[run["step"] == run["task"].map({t: i + 1 for i, t in enumerate(tasks)})]
    return float(cells["value"].mean())


def stability_plasticity_frame(df: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per run: `plasticity` = mean of the accuracy-matrix diagonal (each task right after
    training it) and `retention` = held-out zero-shot accuracy after the last task (mean over
    probes); `retention_before` is the pretrained value. Columns: by, scenario, seed, these three.
    """
    records = []
    for _, rows in df.groupby("run", sort=False):
        zs = rows[rows["kind"] == "zero_shot"]
        head = rows.iloc[0]
        records.append(
            {
                by: head[by],
                "scenario": head["scenario"],
                "seed": int(head["seed"]),
                "plasticity": _diagonal_mean(rows[rows["kind"] == "accuracy"]),
                "retention": float(zs[zs["step"] == zs["step"].max()]["value"].mean()),
                "retention_before": float(zs[zs["step"] == 0]["value"].mean()),
            }
        )
    return pd.DataFrame(records)


def final_accuracy(result: RunResult) -> float:
    """Accuracy on everything learned, after the last task.

    Class-incremental runs: accuracy on all seen classes (`class_incremental_accuracy[-1]`);
    others: mean of the last row of the matrix. For the digits, both mean "10-way accuracy".
    """
    cil = result.extra.get("class_incremental_accuracy")
    if cil:
        return float(cil[-1])
    return float(np.nanmean(result.accuracy_matrix[-1]))


def final_zero_shot(result: RunResult, step: int = -1) -> float:
    """Held-out zero-shot accuracy (mean over the run's probes) at `step` (0 = pretrained)."""
    if not result.zero_shot:
        return math.nan
    return float(np.mean([curve[step] for curve in result.zero_shot.values()]))


def final_retrieval(result: RunResult, metric: str = "i2t_r1") -> float:
    values = [curves[metric][-1] for curves in result.retrieval.values() if metric in curves]
    return float(np.mean(values)) if values else math.nan


def ost_mst_frame(runs: Mapping[str, Mapping[str, Sequence[RunResult]]]) -> pd.DataFrame:
    """Long table (method, regime, seed, metric, value) from `{regime: {method: [runs]}}`.

    Metrics: learned-task accuracy after training (`final_accuracy`), held-out zero-shot and
    retrieval I→T R@1 after training; regimes are e.g. "one session" and "multi session".
    """
    rows = []
    for regime, by_method in runs.items():
        for method, results in by_method.items():
            for r in results:
                rows += [
                    (method, regime, r.seed, "accuracy on learned classes", final_accuracy(r)),
                    (method, regime, r.seed, "held-out zero-shot", final_zero_shot(r)),
                    (method, regime, r.seed, "retrieval I→T R@1", final_retrieval(r)),
                ]
    return pd.DataFrame(rows, columns=["method", "regime", "seed", "metric", "value"])


TIME_MATRICES = ("retrieval", "classification", "i2t_r1", "t2i_r1")


def time_matrix_frame(results: Sequence[RunResult], which: str = "retrieval") -> tuple[pd.DataFrame, pd.Series]:
    """Mean over runs of a time-continual matrix E[i, j] (model after step i, data of step j).

    `which`: `retrieval` (mean R@1, the accuracy matrix), `classification` (zero-shot top-1),
    `i2t_r1` or `t2i_r1`. Returns (matrix with rows "after <step>", the row before training; for
    one direction, the mean of the two before-rows is not stored, so the row is NaN)."""
    if which not in TIME_MATRICES:
        raise ValueError(f"which must be one of {TIME_MATRICES}, got {which!r}")
    tasks = _same_tasks(results)
    if any(r.extra.get("protocol") != "time_continual" for r in results):
        raise ValueError("time_matrix_frame needs time-continual runs (protocol time_continual)")
    if which == "retrieval":
        return accuracy_matrix_frame(results)
    if which == "classification":
        matrices = [r.extra["classification_matrix"] for r in results]
        before = np.mean([np.asarray(r.extra["classification_zero_shot_row"], dtype=float) for r in results], axis=0)
    else:
        matrices = [r.extra["retrieval_matrices"][which] for r in results]
        before = np.full(len(tasks), math.nan)
    matrix = np.mean([np.asarray(m, dtype=float) for m in matrices], axis=0)
    frame = pd.DataFrame(matrix, index=step_labels(tasks)[1:], columns=tasks)
    return frame, pd.Series(before, index=tasks, name=BEFORE)


class MatrixView(NamedTuple):
    """One matrix of one run: `frame` (rows "after <task>", columns tasks; NaN = not measured), its
    row before training (None when not stored), what it is (`name`), its colour-bar label
    (`metric`) and, when the record leaves cells empty by design, what an empty cell means (`blank`)."""

    name: str
    frame: pd.DataFrame
    before: pd.Series | None
    metric: str
    blank: str = ""


# What one task of a protocol is called on a step axis ("after language 2").
STEP_NOUNS = {
    "open_domain_til": "domain",
    "open_domain_cil": "domain",
    "time_continual": "time step",
    "language_continual": "language",
}


def _view(result: RunResult, name: str, matrix, before, metric: str, blank: str = "") -> MatrixView:
    tasks = result.tasks
    frame = pd.DataFrame(np.asarray(matrix, dtype=float), index=step_labels(tasks)[1:], columns=tasks)
    row = None if before is None else pd.Series(np.asarray(before, dtype=float), index=tasks, name=BEFORE)
    return MatrixView(name, frame, row, metric, blank)


def run_matrices(result: RunResult) -> list[MatrixView]:
    """Every task x task matrix `result` records, named for what its cells hold (percent).

    Open domain: TIL (each domain among its own classes) and CIL (among every learned domain's
    classes), the run's own setting first. Online: each task's own classes (NaN where a task exposed
    none of its own). Time-continual: retrieval R@1 (the accuracy matrix) and zero-shot
    classification (NaN for steps without labelled images). Language-continual: text→image R@1
    (the accuracy matrix) and image→text R@1. Others: the accuracy matrix.
    """
    protocol, extra, row = result.protocol, result.extra, result.extra.get("zero_shot_row")
    if protocol.startswith("open_domain") and "odcl" in extra:
        odcl = extra["odcl"]
        names = {
            "til": "TIL: each domain among its own classes",
            "cil": "CIL: among every learned domain's classes",
        }
        order = sorted(("til", "cil"), key=lambda key: key != odcl.get("setting"))
        return [
            _view(
                result,
                names[key] + (" (this run's setting)" if key == odcl.get("setting") else ""),
                odcl[key]["accuracy_matrix"],
                odcl.get("zero_shot_row"),  # before training every domain is unseen: CIL = TIL
                "accuracy (%)",
            )
            for key in order
        ]
    if protocol == "online":
        blank = "blank: the task exposed no class of its own"
        return [
            _view(result, "accuracy on each task's own classes", result.accuracy_matrix, row, "accuracy (%)", blank)
        ]
    if protocol == "time_continual":
        views = [
            _view(result, "retrieval R@1, mean of both directions", result.accuracy_matrix, row, "retrieval R@1 (%)")
        ]
        if "classification_matrix" in extra:
            views.append(
                _view(
                    result,
                    "zero-shot classification of each step's labelled images",
                    extra["classification_matrix"],
                    extra.get("classification_zero_shot_row"),
                    "top-1 accuracy (%)",
                    "blank: the step has no labelled images",
                )
            )
        return views
    if protocol == "language_continual":
        views = [_view(result, "text→image R@1 in each language", result.accuracy_matrix, row, "text→image R@1 (%)")]
        if "i2t_r1" in extra.get("retrieval_matrices", {}):
            before = extra.get("retrieval_zero_shot_rows", {}).get("i2t_r1")
            i2t = extra["retrieval_matrices"]["i2t_r1"]
            views.append(_view(result, "image→text R@1 in each language", i2t, before, "image→text R@1 (%)"))
        return views
    name = {
        "class_incremental": "accuracy among every class seen so far",
        "task_incremental": "accuracy among each task's own classes",
    }.get(protocol, "accuracy")
    return [_view(result, name, result.accuracy_matrix, row, "accuracy (%)")]


__all__ = [
    "BEFORE",
    "STEP_NOUNS",
    "TIME_MATRICES",
    "MatrixView",
    "accuracy_matrix_frame",
    "final_accuracy",
    "final_retrieval",
    "final_zero_shot",
    "ost_mst_frame",
    "run_matrices",
    "stability_plasticity_frame",
    "step_labels",
    "task_curves_frame",
    "time_matrix_frame",
]
