"""`metrics.json`: the one record of a finished run that every table and notebook reads.

``save_run`` writes ``metrics.json`` (authoritative, written last, so its presence marks a finished
run) and ``accuracy_matrix.csv`` (a human-readable copy: index column ``after_task``, one column per
task); file names come from ``cliplab.results.layout``. All accuracies are percent.
Curves (``zero_shot``, ``retrieval``) have T + 1 entries: before training, then after each task.
NaN is stored as JSON ``null`` and read back as NaN.

The summary follows the run's protocol (``extra["protocol"]``; ``protocol_summary``). A
class-incremental run also stores ``class_incremental_accuracy`` (per step, all seen classes) and
``task_test_sizes`` (test images per task), which must agree with the matrix:
``class_incremental_accuracy[t] = sum_{j<=t} n_j A[t][j] / sum_{j<=t} n_j``.

Schema 2 (this one) summarises class-incremental runs with the class-incremental formulas. A
schema-1 file (written before) summarised them with MTIL's; ``load_run`` recomputes such a
summary from the file's ``class_incremental_accuracy`` (which schema-1 files already stored), so
old run folders load with the right numbers and need no ``task_test_sizes``. A schema-1
class-incremental file without per-step accuracies cannot be summarised: its Avg and Last load
as NaN, with a warning naming the file.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliplab.evaluation.metrics import (
    SUMMARY_KEYS,
    as_accuracy_matrix,
    protocol_summary,
    step_accuracies_from_matrix,
)
from cliplab.io import atomic_path, jsonable, write_json_atomic
from cliplab.results.layout import MATRIX_FILE, METRICS_FILE

SCHEMA_VERSION = 2
CLASS_INCREMENTAL = "class_incremental"


def _floats(values: Any, name: str) -> list[float]:
    """A 1-D list of floats (``None`` -> NaN) or ``ValueError`` naming the field."""
    try:
        array = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a list of numbers: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got shape {array.shape}")
    return array.tolist()


@dataclass(eq=False)
class RunResult:
    """Everything one run reports. Row i of ``accuracy_matrix`` = after training ``tasks[i]``.

    ``zero_shot``: ``{probe: [before, after task 1, ..., after task T]}``; ``retrieval``:
    ``{probe: {"i2t_r1": [...T+1], "t2i_r1": [...], ...}}``; ``summary`` is filled by
    ``run_summary`` (the protocol's formulas) on save when left ``None``; ``extra`` keeps any
    other JSON keys (``protocol``, ``class_incremental_accuracy``, ``task_test_sizes``, ...).
    Fields are normalised (NumPy -> lists of floats) and validated on construction.
    Equality compares ``to_json_dict()``, so NaN == NaN.
    """

    method: str
    scenario: str
    model: str
    seed: int
    tasks: list[str]
    accuracy_matrix: list[list[float]]
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] | None = None
    zero_shot: dict[str, list[float]] = field(default_factory=dict)
    retrieval: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = [str(task) for task in self.tasks]
        self.accuracy_matrix = [_floats(row, f"accuracy_matrix row {i}") for i, row in enumerate(self.accuracy_matrix)]
        self.zero_shot = {str(k): _floats(v, f"zero_shot[{k!r}]") for k, v in self.zero_shot.items()}
        self.retrieval = {
            str(p): {str(m): _floats(v, f"retrieval[{p!r}][{m!r}]") for m, v in curves.items()}
            for p, curves in self.retrieval.items()
        }
        if self.summary is not None:
            self.summary = {str(k): math.nan if v is None else float(v) for k, v in self.summary.items()}
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message if the fields do not fit together."""
        for name in ("method", "scenario", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        self.seed = int(self.seed)
        n_tasks = len(self.tasks)
        if n_tasks == 0 or len(set(self.tasks)) != n_tasks:
            raise ValueError(f"tasks must be a non-empty list of distinct names, got {self.tasks}")
        shape = (len(self.accuracy_matrix), *{len(row) for row in self.accuracy_matrix})
        if shape != (n_tasks, n_tasks):
            raise ValueError(
                f"accuracy_matrix must be T x T = {n_tasks} x {n_tasks} (one row and column per task), got rows x cols {shape}"
            )
        as_accuracy_matrix(self.accuracy_matrix)
        curves = [(f"zero_shot[{p!r}]", c) for p, c in self.zero_shot.items()]
        curves += [(f"retrieval[{p!r}][{m!r}]", c) for p, cs in self.retrieval.items() for m, c in cs.items()]
        for name, curve in curves:
            if len(curve) != n_tasks + 1:
                raise ValueError(
                    f"{name} has {len(curve)} entries; expected T + 1 = {n_tasks + 1} "
                    f"(before training, then after each of the {n_tasks} tasks)"
                )
        if self.summary is not None and not set(SUMMARY_KEYS) <= set(self.summary):
            raise ValueError(f"summary must contain {list(SUMMARY_KEYS)}, got {sorted(self.summary)}")
        self._validate_class_incremental(n_tasks)
        if not isinstance(self.config, dict):
            raise ValueError(f"config must be a dict, got {type(self.config).__name__}")
        reserved = {f.name for f in fields(self)} | {"schema_version"}
        if reserved & set(self.extra):
            raise ValueError(f"extra must not repeat the standard keys {sorted(reserved & set(self.extra))}")

    @property
    def protocol(self) -> str:
        """The scenario's protocol as recorded (``task_incremental`` when the record names none)."""
        return str(self.extra.get("protocol") or "task_incremental")

    def _validate_class_incremental(self, n_tasks: int) -> None:
        """Per-step accuracies and test sizes: one per task, and consistent with the matrix."""
        accuracies, sizes = self.extra.get("class_incremental_accuracy"), self.extra.get("task_test_sizes")
        if accuracies is not None:
            values = _floats(accuracies, "class_incremental_accuracy")
            if len(values) != n_tasks or any(math.isnan(v) or not 0 <= v <= 100 for v in values):
                raise ValueError(
                    f"class_incremental_accuracy must hold T = {n_tasks} percentages (one per step), got {accuracies}"
                )
        sizes_ok = sizes is None or (
            len(sizes) == n_tasks and all(isinstance(n, (int, np.integer)) and n > 0 for n in sizes)
        )
        if not sizes_ok:
            raise ValueError(
                f"task_test_sizes must hold T = {n_tasks} positive integers (test images per task), got {sizes}"
            )
        if accuracies is not None and sizes is not None:
            expected = step_accuracies_from_matrix(self.accuracy_matrix, sizes)
            worst = int(np.argmax(np.abs(expected - np.asarray(values))))
            if abs(expected[worst] - values[worst]) > 1e-6:
                raise ValueError(
                    f"class_incremental_accuracy[{worst}] = {values[worst]} but the test-size-weighted mean of "
                    f"accuracy_matrix row {worst} is {expected[worst]}: the matrix, the per-step accuracies and "
                    "task_test_sizes must come from the same evaluation"
                )

    def to_json_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` content: plain JSON types, NaN as ``None``."""
        data = {"schema_version": SCHEMA_VERSION}
        data.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        data.update(self.extra)
        return jsonable(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunResult) and self.to_json_dict() == other.to_json_dict()

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Inverse of ``to_json_dict``; unknown keys go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = {"method", "scenario", "model", "seed", "tasks", "accuracy_matrix"} - set(data)
        if missing:
            raise ValueError(f"metrics.json lacks required keys {sorted(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "schema_version"}
        return cls(**known, extra=extra)


def run_summary(result: RunResult) -> dict[str, float]:
    """The summary of ``result`` under its protocol's formulas (``protocol_summary``).

    Class-incremental: Avg / Last from ``class_incremental_accuracy`` (else from the matrix
    weighted by ``task_test_sizes``), Transfer NaN, BWT and forgetting from the matrix; other
    protocols: ``continual_summary``. Raises ``ValueError`` when the record lacks what is needed.
    """
    return protocol_summary(
        result.accuracy_matrix,
        result.protocol,
        result.extra.get("class_incremental_accuracy"),
        result.extra.get("task_test_sizes"),
    )


def save_run(result: RunResult, folder: str | os.PathLike) -> Path:
    """Validate ``result`` and write ``accuracy_matrix.csv`` then ``metrics.json`` atomically.

    ``summary`` is computed with ``run_summary`` (the protocol's formulas) when it is ``None``.
    The config must be JSON-serialisable. Returns the path of ``metrics.json``.
    """
    result.validate()
    if result.summary is None:
        try:
            result = replace(result, summary=run_summary(result))
        except ValueError as error:
            raise ValueError(f"cannot compute the summary (pass summary= for a partial matrix): {error}") from None
    data = result.to_json_dict()
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"run result is not JSON-serialisable (check config): {error}") from None
    folder = Path(folder)
    table = pd.DataFrame(result.accuracy_matrix, columns=result.tasks, index=pd.Index(result.tasks, name="after_task"))
    with atomic_path(folder / MATRIX_FILE) as tmp:
        table.to_csv(tmp)
    write_json_atomic(folder / METRICS_FILE, data)
    return folder / METRICS_FILE


def load_run(folder: str | os.PathLike) -> RunResult:
    """Read a run folder (or its ``metrics.json``) back into a ``RunResult``.

    A schema-1 class-incremental record gets its summary recomputed with the class-incremental
    formulas (see the module docstring).
    """
    path = Path(folder)
    path = path if path.name == METRICS_FILE else path / METRICS_FILE
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    try:
        result = RunResult.from_json_dict(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if data.get("schema_version", 1) < 2 and result.protocol == CLASS_INCREMENTAL:
        result.summary = _upgraded_summary(result, path)
    return result


def _upgraded_summary(result: RunResult, path: Path) -> dict[str, float]:
    """The class-incremental summary of a schema-1 record (whose stored one used MTIL's formulas)."""
    try:
        return run_summary(result)
    except ValueError:
        warnings.warn(
            f"{path}: a class-incremental run written before per-step accuracies were recorded; its Avg and "
            "Last cannot be computed and load as NaN (run it again to get them)",
            stacklevel=3,
        )
        kept = {k: v for k, v in (result.summary or {}).items() if k in ("bwt", "forgetting")}  # same formulas then
        return {**{key: math.nan for key in SUMMARY_KEYS}, **kept}
