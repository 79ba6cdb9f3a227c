"""A finished run opened again for evaluation: its scenario, settings, final model and evaluator.

What a run was is read from its folder (`progress.json`'s identity: scenario, build options,
training settings), so a diagnostic measures the very model and test sets the run was scored
on, e.g. MoE-Adapters' experts with the task given (`ScenarioEvaluator.task_identity_row`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.extended import load_model
from cliplab.engine.runner import build_scenario
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.models import ClipBundle
from cliplab.results.layout import RunFolder, RunIdentity
from cliplab.scenarios import Scenario


@dataclass
class ReopenedRun:
    identity: RunIdentity
    config: TrainConfig
    scenario: Scenario
    bundle: ClipBundle  # the model after the run's last task
    evaluator: ScenarioEvaluator


def _config(identity: RunIdentity) -> TrainConfig:
    settings = dict(identity.config)
    method = settings.pop("method", {}) or {}
    return apply_overrides(TrainConfig(), {**settings, **{f"method.{k}": v for k, v in method.items()}})


def reopen_run(
    folder: str | Path, scenario_options: dict[str, Any] | None = None, device: str | None = None
) -> ReopenedRun:
    """Scenario, settings, last-task model and an evaluator of the finished run in `folder`.

    `scenario_options`: what the run was given beyond its settings (e.g. `root` of a published
    scenario's local data); the probe sizes come from the run's own settings."""
    run = RunFolder(folder)
    identity = run.identity() if run.finished else None
    if identity is None:
        raise FileNotFoundError(f"{folder} holds no finished run (no metrics.json with its identity); run it first")
    checkpoints = run.task_checkpoints()
    if not checkpoints:
        raise FileNotFoundError(f"{folder} holds no task checkpoint, so its final model cannot be evaluated again")
    config = _config(identity)
    scenario = build_scenario(identity.scenario, config, scenario_options)
    if config.max_tasks is not None:
        scenario.tasks = scenario.tasks[: config.max_tasks]
    bundle = load_model(str(checkpoints[-1]), device=device)
    bundle.model.eval()
    evaluator = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)
    return ReopenedRun(identity, config, scenario, bundle, evaluator)


__all__ = ["ReopenedRun", "reopen_run"]
