"""Many runs as one tidy table, and mean ± std over seeds.

`load_runs` gathers every `metrics.json` under a folder into a long DataFrame (one row per
number); `summary_table` groups it (by method and scenario, say) into mean, sample std and n.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cliplab.evaluation.metrics import continual_summary
from cliplab.results.layout import METRICS_FILE
from cliplab.results.record import RunResult, load_run

TIDY_COLUMNS = ["run", "method", "scenario", "model", "seed", "kind", "probe", "task", "step", "metric", "value"]


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
    Runs without a summary in the file get one from ``continual_summary``. A ``metrics.json`` that
    cannot be read (damaged JSON, missing keys) is skipped with a warning naming it; when none can
    be read, a ValueError lists them.
    """
    frames, bad = [], []
    found = _find_runs(root_or_folders)
    for run, path in found:
        try:
            result = load_run(path)
        except (ValueError, OSError) as error:  # a damaged file (JSONDecodeError is a ValueError)
            reason = str(error).removeprefix(f"{path}: ")
            bad.append(f"{path} ({reason})")
            warnings.warn(f"skipping {path}: it cannot be read ({reason})", UserWarning, stacklevel=2)
            continue
        if result.summary is None:
            result.summary = continual_summary(result.accuracy_matrix)
        frame = pd.DataFrame(_tidy_rows(run, result), columns=TIDY_COLUMNS)
        for key in config_keys:
            value: Any = result.config
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            frame[key] = [value] * len(frame)
        frames.append(frame)
    if not frames:
        raise ValueError(f"none of the {len(found)} metrics.json files can be read: {'; '.join(bad)}")
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
