"""Accuracy rows of the open-domain and online protocols (see `cliplab.scenarios.base`).

Both are evaluated by `ScenarioEvaluator` through the functions here, on the evaluator's cached
test batches and classifiers.

Open domain (CoLeCLIP, `engine/trainer.py` evaluation): after learning domain i, domain j is
classified
- TIL: among its own classes, seen or not;
- CIL: if j <= i, among the union of the classes of domains 0..i, de-duplicated by *name* in
  first-occurrence order (a name shared by two domains is one label); if j > i, among its own
  classes (the union never holds unseen domains' classes, so CIL = TIL on unseen domains).
A class's prompts are its (first) domain's evaluation templates.

Online (Si-Blurry; SIT's `online_evaluate`): labels are exposure ranks, so the classes exposed
after n samples are the prefix 0..k-1. Anytime accuracy: the test images of exposed classes among
exposed classes (sample-averaged). After task i, A[i, j] = the test images of the classes task j
exposed first, among the classes exposed by the end of task max(i, j) (CIL's convention); the
accuracy over all exposed classes (SIT's end-of-task accuracy, for A_avg / A_last) and the
per-class accuracies (0 for classes not exposed yet, for F_last) go beside the row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cliplab.evaluation.zeroshot import accuracy_from_logits


def seen_union(tasks: Sequence[Any], last: int) -> tuple[list[str], list[int]]:
    """Class names of tasks 0..last de-duplicated by name (first occurrence), and each name's first task."""
    names: dict[str, int] = {}
    for index, task in enumerate(tasks[: last + 1]):
        for name in task.classnames:
            names.setdefault(name, index)
    return list(names), list(names.values())


def _rows(routes: Tensor | None, keep: Tensor) -> Tensor | None:
    return None if routes is None else routes[keep]


def grouped_logits(evaluator, model, x: Tensor, routes, names: Sequence[str], owners: Sequence[int]) -> Tensor:
    """x @ classifier where class c uses the evaluation templates of task `owners[c]` (one
    cached classifier per owner task, columns reassembled in `names` order)."""
    logits = x.new_empty(len(x), len(names))
    for owner in sorted(set(owners)):
        columns = [c for c, o in enumerate(owners) if o == owner]
        task = evaluator.scenario.tasks[owner]
        logits[:, columns] = evaluator.logits(model, x, routes, [names[c] for c in columns], task.templates)
    return logits


def open_domain_rows(evaluator, model, after_task: int) -> tuple[list[float], list[float]]:
    """The TIL and CIL rows after `after_task` (-1: before training, where every domain is unseen)."""
    tasks = evaluator.scenario.tasks
    union, owners = seen_union(tasks, after_task) if after_task >= 0 else ([], [])
    position = {name: c for c, name in enumerate(union)}
    til, cil = [], []
    for j, (task, data) in enumerate(zip(tasks, evaluator.tests)):
        x, y, routes = evaluator.features(model, data, task.name)
        own = accuracy_from_logits(evaluator.logits(model, x, routes, task.classnames, task.templates), y, (1,))["top1"]
        til.append(own)
        if j > after_task:
            cil.append(own)
            continue
        targets = torch.tensor([position[n] for n in task.classnames])[y]
        logits = grouped_logits(evaluator, model, x, routes, union, owners)
        cil.append(accuracy_from_logits(logits, targets, (1,))["top1"])
    return til, cil


def _stream_test(evaluator):
    if getattr(evaluator, "_stream_test", None) is None:
        stream = evaluator.scenario.stream
        evaluator._stream_test = evaluator.capped(stream.test_data(evaluator.eval_transform))
    return evaluator._stream_test


def _exposed_predictions(evaluator, model, n_exposed: int) -> tuple[Tensor, Tensor]:
    """Predicted and true labels of the test images of the first `n_exposed` classes."""
    x, y, routes = evaluator.features(model, _stream_test(evaluator), "stream")
    keep = y < n_exposed
    names = list(evaluator.scenario.stream.classnames[:n_exposed])
    logits = evaluator.logits(model, x[keep], _rows(routes, keep), names, evaluator.scenario.tasks[0].templates)
    return logits.argmax(dim=1), y[keep]


def anytime_accuracy(evaluator, model, n_exposed: int) -> float:
    """Accuracy (percent) on the test images of the exposed classes, among the exposed classes."""
    if n_exposed <= 0:
        return math.nan
    predicted, truth = _exposed_predictions(evaluator, model, n_exposed)
    return 100.0 * (predicted == truth).double().mean().item() if len(truth) else math.nan


def online_row(evaluator, model, after_task: int) -> tuple[list[float], float | None, dict[str, Any]]:
    """A[after_task, :], the accuracy on every exposed class, and the per-class accuracies."""
    tasks = evaluator.scenario.tasks
    sizes = [t.n_classes for t in tasks]
    ends = [sum(sizes[: j + 1]) for j in range(len(tasks))]
    x, y, routes = evaluator.features(model, _stream_test(evaluator), "stream")
    names = list(evaluator.scenario.stream.classnames)
    templates = tasks[0].templates
    row = []
    for j in range(len(tasks)):
        mine = (y >= ends[j] - sizes[j]) & (y < ends[j])
        if sizes[j] == 0 or not mine.any():
            row.append(math.nan)
            continue
        space = ends[max(after_task, j)]
        logits = evaluator.logits(model, x[mine], _rows(routes, mine), names[:space], templates)
        row.append(accuracy_from_logits(logits, y[mine], (1,))["top1"])
    if after_task < 0:
        return row, None, {}
    exposed = ends[after_task]
    predicted, truth = _exposed_predictions(evaluator, model, exposed)
    per_class = [0.0] * len(names)
    for c in range(exposed):
        hits = truth == c
        per_class[c] = 100.0 * (predicted[hits] == c).double().mean().item() if hits.any() else 0.0
    seen = 100.0 * (predicted == truth).double().mean().item() if len(truth) else None
    return row, seen, {"class_accuracy": per_class, "exposed_classes": exposed}


__all__ = ["anytime_accuracy", "grouped_logits", "online_row", "open_domain_rows", "seen_union"]
