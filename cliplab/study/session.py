"""What every study notebook does before its first run, in one call (`study.setup`).

A notebook's parameters cell names its settings in capitals; `setup` turns them into what the
cells below use: the output folders (SMOKE writes apart, under `../runs/study-smoke`), the seeds
(SMOKE: the first), the run store (SMOKE: its own), the training overrides shared by its runs and
the keyword arguments of `run_batches`; it also sets the figures' theme and, under SMOKE, shows the
banner saying the numbers are meaningless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cliplab.plots.style import set_theme
from cliplab.study.settings import output_dirs, runs_root, study_settings
from cliplab.study.widgets import smoke_banner


class NotebookSetup(NamedTuple):
    """What `setup` returns, in the order notebooks unpack it."""

    out_dir: str  # this notebook's metrics.json folder
    figures_dir: str
    seeds: list[int]
    runs_dir: Path  # the run store
    settings: dict[str, Any]  # TrainConfig overrides of every run
    run_options: dict[str, Any]  # keyword arguments of `run_batches` / `run_requests`


# The parameters-cell names `setup` reads (name -> keyword of `_setup`); SMOKE, SEEDS and RUNS_DIR are required.
PARAMETER_NAMES = {
    "SMOKE": "smoke",
    "SEEDS": "seeds",
    "RUNS_DIR": "runs_dir",
    "OUT_DIR": "out_dir",
    "FIGURES_DIR": "figures_dir",
    "STEPS_PER_TASK": "steps_per_task",
    "DEVICE": "device",
    "OVERRIDES": "overrides",
    "MODEL": "model",
    "PRETRAINED": "pretrained",
    "DATA_ROOT": "data_root",
    "SCENARIO_OPTIONS": "scenario_options",
    "JOBS": "jobs",
}


def setup(stem: str, parameters: Mapping[str, Any], **changes: Any) -> NotebookSetup:
    """The set-up of notebook `stem` (e.g. "02_vr_lwf") from its parameters cell.

    `parameters`: the notebook's namespace (`globals()`); the names of `PARAMETER_NAMES` are read
    from it (SMOKE, SEEDS and RUNS_DIR must be there; the others default to None, MODEL to
    "toyclip"). `changes` replace a value by its keyword, e.g. `scenario_options=options` when the
    notebook adjusts its scenario options first.
    """
    missing = [name for name in ("SMOKE", "SEEDS", "RUNS_DIR") if name not in parameters]
    if missing:
        raise NameError(f"study.setup({stem!r}): the parameters cell must define {', '.join(missing)}")
    unknown = set(changes) - set(PARAMETER_NAMES.values())
    if unknown:
        raise TypeError(f"study.setup: unknown changes {sorted(unknown)}; known: {sorted(PARAMETER_NAMES.values())}")
    values = {key: parameters[name] for name, key in PARAMETER_NAMES.items() if name in parameters}
    return _setup(stem, **{**values, **changes})


def _setup(
    stem: str,
    *,
    smoke: bool,
    seeds: Sequence[int],
    runs_dir: str | Path,
    out_dir: str | None = None,
    figures_dir: str | None = None,
    steps_per_task: int | None = None,
    device: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    model: str = "toyclip",
    pretrained: str | None = None,
    data_root: str | None = None,
    scenario_options: Mapping[str, Any] | None = None,
    jobs: int | None = None,
) -> NotebookSetup:
    set_theme()
    out_dir, figures_dir = output_dirs(stem, out_dir, figures_dir, smoke)
    smoke_banner(smoke, out_dir)
    run_options = {
        "model": model,
        "pretrained": pretrained,
        "smoke": smoke,
        "data_root": data_root,
        "extra_options": dict(scenario_options or {}),
        "jobs": jobs,
    }
    return NotebookSetup(
        out_dir,
        figures_dir,
        list(seeds)[:1] if smoke else list(seeds),
        runs_root(runs_dir, smoke),
        study_settings(smoke, steps_per_task, device, overrides),
        run_options,
    )


__all__ = ["PARAMETER_NAMES", "NotebookSetup", "setup"]
