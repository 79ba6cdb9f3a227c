"""Settings shared by the study's notebooks: the SMOKE preset, run overrides, scenario options."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cliplab.scenarios import scenario_requires, scenario_spec

# SMOKE = True: every notebook end to end in seconds per run (tests, a first look on a laptop).
SMOKE_SETTINGS: dict[str, Any] = {
    "steps_per_task": 3,
    "batch_size": 8,
    "warmup_steps": 1,
    "lr": 5e-4,
    "probe_size": 32,
    "retrieval_size": 24,
    "max_eval_images": 40,
    "max_tasks": 2,
    "checkpoint_every": 0,
}


# Method options that only make the smoke settings cheaper (memory, reference texts, snapshots).
SMOKE_METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "zscl": {"n_reference_texts": 200},
    "icarl": {"memory_size": 40, "max_candidates": 200},
    "vr_lwf": {"vocab_size": 200},
    "moe_adapters": {"ddas_steps": 5, "ddas_reference_steps": 5},
}


SMOKE_ALIGNMENT_PROBE = 32  # image-caption pairs of the alignment probe under SMOKE


def study_settings(
    smoke: bool, steps_per_task: int | None = None, device: str | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """TrainConfig overrides shared by every run of the study (scenario defaults for the rest).

    `steps_per_task=None` keeps the scenario's default (SMOKE: `SMOKE_SETTINGS`). Progress bars
    are off: papermill logs and notebook cells stay readable. The device is only recorded when
    given, so runs made on "auto" resume on any machine.
    """
    settings: dict[str, Any] = {"progress": False}
    if smoke:
        settings.update(SMOKE_SETTINGS)
    if steps_per_task is not None:
        settings["steps_per_task"] = int(steps_per_task)
    if device not in (None, "auto"):
        settings["device"] = device
    settings.update(extra or {})
    return settings


def runs_root(runs_dir: str | Path, smoke: bool) -> Path:
    """The run store to use: `runs_dir`, or `<runs_dir>-smoke` for SMOKE runs.

    Smoke and full runs of the same (scenario, method, seed) have different settings, so they
    cannot share a folder; keeping them apart lets a notebook switch SMOKE on and off.
    """
    return Path(f"{runs_dir}-smoke") if smoke else Path(runs_dir)


STUDY_DIR = "../runs/study"  # the notebooks' default output folder, relative to notebooks/
SMOKE_STUDY_DIR = "../runs/study-smoke"  # ... under SMOKE: never beside the full study's results


def output_dirs(stem: str, out_dir: str | None, figures_dir: str | None, smoke: bool) -> tuple[str, str]:
    """(OUT_DIR, FIGURES_DIR) of a notebook: the given folders, or the defaults for None.

    The defaults are `../runs/study/<stem>` and `../runs/study/figures` (relative to
    notebooks/), and `../runs/study-smoke/...` under SMOKE — where `cliplab study --smoke` writes
    too — so that a notebook run by hand with SMOKE = True never overwrites the full study's
    metrics.json or figures. `cliplab study` always passes both folders explicitly.
    """
    root = SMOKE_STUDY_DIR if smoke else STUDY_DIR
    return (out_dir or f"{root}/{stem}", figures_dir or f"{root}/figures")


def scenario_options(
    scenario: str, data_root: str | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build options of a scenario: published ones read `data_root` plus `extra` (reference data,
    probes; for `tic-captions` `data_root` is the caption file); built-in ones take `extra` as
    given (e.g. toy-tic's `pool_size`; their probe sizes come from the run's settings)."""
    if not needs_data(scenario):
        return dict(extra or {})
    return {**({"root": data_root} if data_root else {}), **(extra or {})}


def needs_data(scenario: str) -> bool:
    """Whether a scenario reads local files (a dataset root or a caption file) rather than ToyWorld."""
    return bool(scenario_requires(scenario)) or scenario_spec(scenario).needs_root


def one_session_settings(settings: Mapping[str, Any], multi_session: str) -> dict[str, Any]:
    """Settings for the one-session twin of a multi-session scenario: the same total step budget.

    The single session trains for (steps per task x number of tasks) of `multi_session` under
    `settings`, so any STEPS_PER_TASK / max_tasks choice stays matched (defaults:
    toy-digits-ost 300 steps = 5 tasks x 60 of toy-digits-cil). Known before any run is
    trained, so both regimes can train side by side. Epoch-based protocols keep their epochs.
    """
    one = {k: v for k, v in settings.items() if k != "max_tasks"}  # one task anyway
    spec = scenario_spec(multi_session)
    defaults, n_tasks = spec.defaults, len(spec.tasks)
    if {**defaults, **settings}.get("epochs_per_task") is None:
        steps = settings.get("steps_per_task") or defaults["steps_per_task"]
        one["steps_per_task"] = int(steps) * min(settings.get("max_tasks") or n_tasks, n_tasks)
    return one


__all__ = [
    "SMOKE_ALIGNMENT_PROBE",
    "SMOKE_METHOD_OPTIONS",
    "SMOKE_SETTINGS",
    "SMOKE_STUDY_DIR",
    "STUDY_DIR",
    "needs_data",
    "one_session_settings",
    "output_dirs",
    "runs_root",
    "scenario_options",
    "study_settings",
]
