"""The one results layout every run writes and every notebook reads.

A run folder holds ``metrics.json`` (authoritative, written last, so its presence marks a finished
run), ``accuracy_matrix.csv`` (a human-readable copy: index column ``after_task``, one column per
task) and optionally ``loss_log.csv`` (appended during training). All accuracies are percent.
Curves (``zero_shot``, ``retrieval``) have T + 1 entries: before training, then after each task.
NaN is stored as JSON ``null`` and read back as NaN.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from cliplab.io import atomic_path
from cliplab.metrics import SUMMARY_KEYS, as_accuracy_matrix, continual_summary

METRICS_FILE, MATRIX_FILE, LOSS_LOG_FILE = "metrics.json", "accuracy_matrix.csv", "loss_log.csv"
SCHEMA_VERSION = 1
TIDY_COLUMNS = ["run", "method", "scenario", "model", "seed", "kind", "probe", "task", "step", "metric", "value"]


def _floats(values: Any, name: str) -> list[float]:
    """A 1-D list of floats (``None`` -> NaN) or ``ValueError`` naming the field."""
    try:
        array = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a list of numbers: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got shape {array.shape}")
    return array.tolist()


def _to_json_value(value: Any) -> Any:
    """Recursively turn NaN/inf into ``None`` and NumPy scalars/arrays into plain Python."""
    if isinstance(value, Mapping):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(eq=False)
class RunResult:
    """Everything one run reports. Row i of ``accuracy_matrix`` = after training ``tasks[i]``.

    ``zero_shot``: ``{probe: [before, after task 1, ..., after task T]}``; ``retrieval``:
    ``{probe: {"i2t_r1": [...T+1], "t2i_r1": [...], ...}}``; ``summary`` is filled by
    ``continual_summary`` on save when left ``None``; ``extra`` keeps any other JSON keys.
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
            raise ValueError(f"accuracy_matrix must be T x T = {n_tasks} x {n_tasks} (one row and column per task), got rows x cols {shape}")
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
        if not isinstance(self.config, dict):
            raise ValueError(f"config must be a dict, got {type(self.config).__name__}")
        reserved = {f.name for f in fields(self)} | {"schema_version"}
        if reserved & set(self.extra):
            raise ValueError(f"extra must not repeat the standard keys {sorted(reserved & set(self.extra))}")

    def to_json_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` content: plain JSON types, NaN as ``None``."""
        data = {"schema_version": SCHEMA_VERSION}
        data.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        data.update(self.extra)
        return _to_json_value(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunResult) and self.to_json_dict() == other.to_json_dict()

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "RunResult":
        """Inverse of ``to_json_dict``; unknown keys go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = {"method", "scenario", "model", "seed", "tasks", "accuracy_matrix"} - set(data)
        if missing:
            raise ValueError(f"metrics.json lacks required keys {sorted(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "schema_version"}
        return cls(**known, extra=extra)


def _write_json(path: Path, data: Any) -> None:
    """Serialise into a temporary file and rename it onto ``path`` (never a truncated file)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, allow_nan=False)
        handle.write("\n")


def save_run(result: RunResult, folder: str | os.PathLike) -> Path:
    """Validate ``result`` and write ``accuracy_matrix.csv`` then ``metrics.json`` atomically.

    ``summary`` is computed with ``continual_summary`` when it is ``None``. The config must be
    JSON-serialisable. Returns the path of ``metrics.json``.
    """
    result.validate()
    if result.summary is None:
        try:
            result = replace(result, summary=continual_summary(result.accuracy_matrix))
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
    _write_json(folder / METRICS_FILE, data)
    return folder / METRICS_FILE


def load_run(folder: str | os.PathLike) -> RunResult:
    """Read a run folder (or its ``metrics.json``) back into a ``RunResult``."""
    path = Path(folder)
    path = path if path.name == METRICS_FILE else path / METRICS_FILE
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    try:
        return RunResult.from_json_dict(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _find_runs(root_or_folders: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """(run id, metrics.json path) for every run under the given roots, sorted, ids unique."""
    roots = [root_or_folders] if isinstance(root_or_folders, (str, os.PathLike)) else list(root_or_folders)
    found: dict[Path, str] = {}
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"no such results folder: {root}")
        paths = [root] if root.is_file() else sorted(root.rglob(METRICS_FILE))
        base = root.parent if root.is_file() else root
        for path in paths:
            relative = path.parent.relative_to(base).as_posix()
            found.setdefault(path.resolve(), relative if relative != "." else path.resolve().parent.name)
    if not found:
        raise FileNotFoundError(f"no {METRICS_FILE} found under {[str(r) for r in roots]}")
    ids = list(found.values())
    return [(run if ids.count(run) == 1 else str(path.parent), path) for path, run in found.items()]


def _tidy_rows(run: str, result: RunResult) -> list[tuple]:
    """All numbers of one run as (kind, probe, task, step, metric, value) rows plus run columns."""
    head = (run, result.method, result.scenario, result.model, result.seed)
    n_tasks = len(result.tasks)
    rows = [
        (*head, "accuracy", None, task, i + 1, "accuracy", value)
        for i, row in enumerate(result.accuracy_matrix)
        for task, value in zip(result.tasks, row)
    ]
    rows += [
        (*head, "zero_shot", probe, None, step, "accuracy", value)
        for probe, curve in result.zero_shot.items()
        for step, value in enumerate(curve)
    ]
    rows += [
        (*head, "retrieval", probe, None, step, metric, value)
        for probe, curves in result.retrieval.items()
        for metric, curve in curves.items()
        for step, value in enumerate(curve)
    ]
    rows += [(*head, "summary", None, None, n_tasks, key, value) for key, value in (result.summary or {}).items()]
    return rows


def load_runs(
    root_or_folders: str | os.PathLike | Iterable[str | os.PathLike], config_keys: Sequence[str] = ()
) -> pd.DataFrame:
    """Gather every run (``metrics.json`` found recursively) into one tidy long DataFrame.

    Columns: run, method, scenario, model, seed, kind (accuracy | zero_shot | retrieval |
    summary), probe, task, step (0 = before training, i = after task i; summary rows use T),
    metric, value — plus one column per dotted ``config_keys`` entry (e.g. ``"lr"``,
    ``"distill.weight"``). ``probe`` is missing for accuracy/summary rows, ``task`` for the rest.
    Runs without a summary in the file get one from ``continual_summary``.
    """
    frames = []
    for run, path in _find_runs(root_or_folders):
        result = load_run(path)
        if result.summary is None:
            result.summary = continual_summary(result.accuracy_matrix)
        frame = pd.DataFrame(_tidy_rows(run, result), columns=TIDY_COLUMNS)
        for key in config_keys:
            value: Any = result.config
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            frame[key] = [value] * len(frame)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"seed": int, "step": int, "value": float})


def _final_values(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per run and curve: the value at the run's last step and its change from step 0."""
    curves = df[df["kind"] == kind].sort_values("step")
    out = curves.groupby(["run", "probe", "metric"], sort=False)["value"].agg(final="last", first="first").reset_index()
    names = [p if kind == "zero_shot" else f"{p}/{m}" for p, m in zip(out["probe"], out["metric"])]
    finals = out.assign(quantity=[f"{kind}/{n}" for n in names], value=out["final"])
    deltas = out.assign(quantity=[f"{kind}_delta/{n}" for n in names], value=out["final"] - out["first"])
    return pd.concat([finals, deltas], ignore_index=True)[["run", "quantity", "value"]]


def summary_table(df: pd.DataFrame, by: Sequence[str] = ("method", "scenario")) -> pd.DataFrame:
    """Mean, sample std (ddof = 1; NaN for one seed) and n over seeds for each group in ``by``.

    Quantities: the summary metrics; ``zero_shot/<probe>`` (final value) and
    ``zero_shot_delta/<probe>`` (final − before training); ``retrieval/<probe>/<metric>`` and
    ``retrieval_delta/<probe>/<metric>``. Returns a DataFrame indexed by ``by`` with columns
    MultiIndex (quantity, stat ∈ {mean, std, n}). Raises if a group has the same seed twice.
    """
    by = list(by)
    runs = df[["run", *by, "seed"]].drop_duplicates()
    clash = runs[runs.duplicated([*by, "seed"], keep=False)]
    if len(clash):
        raise ValueError(
            f"the same seed appears in several runs of one group {by} (duplicate run, or add e.g. "
            f"'model' to by): {sorted(clash['run'])}"
        )
    summary = df[df["kind"] == "summary"][["run", "metric", "value"]].rename(columns={"metric": "quantity"})
    long = pd.concat([summary, _final_values(df, "zero_shot"), _final_values(df, "retrieval")], ignore_index=True)
    long = long.merge(runs, on="run")
    stats = long.groupby([*by, "quantity"], sort=False)["value"].agg(mean="mean", std="std", n="count")
    table = stats.unstack("quantity").swaplevel(axis=1)
    order = list(dict.fromkeys(long["quantity"]))
    return table.reindex(columns=pd.MultiIndex.from_product([order, ["mean", "std", "n"]]))


def format_summary(table: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """``summary_table`` output as "mean ± std" strings (std omitted for a single seed)."""
    cells = {}
    for quantity in dict.fromkeys(table.columns.get_level_values(0)):
        mean, std = table[(quantity, "mean")], table[(quantity, "std")]
        cells[quantity] = [
            f"{m:.{decimals}f}" if pd.isna(s) else f"{m:.{decimals}f} ± {s:.{decimals}f}" for m, s in zip(mean, std)
        ]
    return pd.DataFrame(cells, index=table.index)


def append_loss_log(folder: str | os.PathLike, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Path:
    """Append rows to ``loss_log.csv`` (header once, from the first row's keys), flush and fsync.

    Append-only (not atomic by design): each call is one ``write`` of whole lines, so a kill loses
    at most the rows of that call (a cut last line is dropped before the next append). Later rows
    must use the header's columns (missing -> empty); tensors are stored via ``.item()``.
    """
    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    path = Path(folder) / LOSS_LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        return path
    header = None
    if path.exists():
        _drop_partial_line(path)
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
    columns = header or list(rows[0])
    rows = [{k: v.item() if hasattr(v, "item") else v for k, v in row.items()} for row in rows]  # tensors
    unknown = sorted({key for row in rows for key in row} - set(columns))
    if unknown:
        raise ValueError(f"loss log columns are fixed by its header {columns}; unknown keys {unknown}")
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=columns, lineterminator="\n")
    if header is None:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(lines.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _drop_partial_line(path: Path) -> None:
    """Truncate a last line cut by a kill (no trailing newline): its numbers may be truncated."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = handle.seek(max(0, size - 65536))
        tail = handle.read()
        if tail and not tail.endswith(b"\n"):
            handle.truncate(start + tail.rfind(b"\n") + 1)


def load_loss_log(folder: str | os.PathLike) -> pd.DataFrame:
    """Read ``loss_log.csv``, skipping a last line cut by a kill (one without a trailing newline)."""
    path = Path(folder) / LOSS_LOG_FILE
    text = path.read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text if text.endswith("\n") else text[: text.rfind("\n") + 1]))
