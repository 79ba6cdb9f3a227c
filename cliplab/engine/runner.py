"""Run a method through a scenario and write the results layout (`cliplab.results`).

The run folder holds `metrics.json` + `accuracy_matrix.csv` (when finished), `loss_log.csv`,
`progress.json` (what is finished so far, written atomically after every task) and
`checkpoints/` (`task_<i>.safetensors` after each task, `mid_task.safetensors` during one).
Calling `run_scenario` again on the same folder resumes: finished tasks are not redone, a task
that was interrupted continues from its last mid-task checkpoint.
"""

from __future__ import annotations

import json
import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from cliplab.checkpoints import load_state_dict, save_model
from cliplab.engine import distributed
from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.evaluation import Evaluation, ScenarioEvaluator
from cliplab.engine.loop import clear_mid_task, task_steps, train_task
from cliplab.engine.scenario import Scenario, get_scenario
from cliplab.engine.student import frozen_copy
from cliplab.io import atomic_path, write_json_atomic
from cliplab.methods import Method, TaskContext, get_method
from cliplab.models import TOYCLIP, ClipBundle, load_model
from cliplab.results import RunResult, save_run
from cliplab.utils import resolve_device, seed_everything


@dataclass
class RunSpec:
    """What identifies a run; a folder holding a different spec is never resumed into."""

    scenario: str
    method: str
    model: str
    pretrained: str | None
    seed: int
    config: dict[str, Any]


def build_config(scenario: Scenario, method: str, overrides: list[str] | dict | None, seed: int | None) -> TrainConfig:
    """Protocol defaults of the scenario, then its method defaults, then the user's overrides."""
    config = apply_overrides(TrainConfig(), {k: v for k, v in scenario.defaults.items()})
    method_defaults = {f"method.{k}": v for k, v in scenario.method_defaults.get(method, {}).items()}
    config = apply_overrides(config, method_defaults)
    config = apply_overrides(config, overrides)
    return apply_overrides(config, {"seed": seed}) if seed is not None else config


_PROBE_SETTINGS = ("probe_size", "retrieval_size", "probe_seed")


def _scenario_and_config(scenario, method: str, overrides, seed, options: dict) -> tuple[Scenario, TrainConfig]:
    """Build the config from the scenario's defaults, then the scenario with the config's probe sizes."""
    built = get_scenario(scenario, **options) if isinstance(scenario, str) else scenario
    config = build_config(built, method, overrides, seed)
    wanted = {k: getattr(config, k) for k in _PROBE_SETTINGS}
    if isinstance(scenario, str) and set(built.options) >= set(wanted) and any(built.options[k] != v for k, v in wanted.items()):
        built = get_scenario(scenario, **options, **wanted)
    if config.max_tasks is not None:
        built.tasks = built.tasks[: config.max_tasks]
    return built, config


def _architecture(bundle: ClipBundle) -> str:
    return TOYCLIP if bundle.name == "toyclip" else bundle.name


class _Clock:
    """Wall-clock seconds spent training and evaluating, kept in progress.json across resumes."""

    def __init__(self, progress: "_Progress") -> None:
        self.seconds = progress.data.setdefault("seconds", {"train": 0.0, "evaluate": 0.0})

    @contextlib.contextmanager
    def __call__(self, what: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - began


# Bumped whenever the engine's defaults change the numbers of a run whose settings are unchanged
# (2: fused AdamW). The study records it, so it never reuses a run made by an older engine.
ENGINE_REVISION = 2

# Settings that change how a run is executed or shown, not its numbers: a run folder written
# with other values of these is still the same run (and is resumed / reused).
RUNTIME_ONLY = ("progress", "device", "num_workers", "eval_batch_size")


def _identity(spec: dict) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["config"] = {k: v for k, v in spec.get("config", {}).items() if k not in RUNTIME_ONLY}
    return spec


class _Progress:
    """The atomically written record of finished tasks (and the before-training evaluation)."""

    def __init__(self, path: Path, spec: RunSpec) -> None:
        self.path, self.spec = path, spec
        self.data: dict[str, Any] = {"spec": asdict(spec), "evaluations": [], "method_state": None}
        if path.exists():
            stored = json.loads(path.read_text())
            if _identity(stored["spec"]) != _identity(asdict(spec)):
                raise ValueError(
                    f"{path.parent} already holds a different run ({stored['spec']['method']} on "
                    f"{stored['spec']['scenario']}, seed {stored['spec']['seed']}, or other settings); "
                    "use a new --out folder, or delete this one to start over."
                )
            self.data = stored

    @property
    def evaluations(self) -> list[dict]:
        return self.data["evaluations"]

    def add(self, evaluation: Evaluation) -> None:
        self.evaluations.append(asdict(evaluation))
        write_json_atomic(self.path, self.data)


def run_scenario(
    scenario: str | Scenario,
    method: str | Method,
    out_dir: str | Path,
    model: str = "toyclip",
    pretrained: str | None = None,
    seed: int | None = None,
    overrides: list[str] | dict | None = None,
    scenario_options: dict | None = None,
    bundle: ClipBundle | None = None,
) -> RunResult:
    """Train `method` through `scenario`, evaluating before training and after every task."""
    method_name = method if isinstance(method, str) else method.name
    scenario, config = _scenario_and_config(scenario, method_name, overrides, seed, scenario_options or {})
    method = get_method(method_name, config.method) if isinstance(method, str) else method
    device = resolve_device(config.device)
    distributed.init_from_env(device)
    device = distributed.local_device(device)
    rank, _ = distributed.rank_and_world()
    seed_everything(config.seed)  # random-weight models start identical across runs and ranks
    bundle = bundle or load_model(model, pretrained=pretrained, device=device)
    run_dir = Path(out_dir)
    spec = RunSpec(scenario.name, method_name, bundle.name, pretrained, config.seed, config.to_dict())
    progress = _Progress(run_dir / "progress.json", spec)
    net = bundle.model.to(device)
    initial = frozen_copy(net)
    evaluator = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)
    clock = _Clock(progress)
    if not progress.evaluations and rank == 0:
        with clock("evaluate"):
            progress.add(evaluator.evaluate(net, after_task=-1))
    distributed.barrier()
    first = _completed(run_dir)
    if first > 0:
        _restore(net, method, run_dir, first - 1)
    for index in range(first, len(scenario.tasks)):
        with clock("train"):
            _run_task(scenario, method, bundle, config, device, initial, index, run_dir)
        distributed.barrier()
        if rank == 0:
            _save_task(net, method, bundle, run_dir, index, config)
            with clock("evaluate"):
                evaluation = evaluator.evaluate(net, after_task=index)
            progress.add(evaluation)
            clear_mid_task(run_dir)
        distributed.barrier()
    return _finish(progress, scenario, spec, run_dir) if rank == 0 else None


def _completed(run_dir: Path) -> int:
    path = run_dir / "progress.json"
    return len(json.loads(path.read_text())["evaluations"]) - 1 if path.exists() else 0


def _run_task(scenario, method, bundle, config, device, initial, index: int, run_dir: Path) -> None:
    task = scenario.tasks[index]
    seed_everything(config.seed * 1000 + index)
    train_data = task.train_data(bundle.train_transform if config.augment else bundle.eval_transform)
    class_tokens = bundle.tokenizer([_prompt(task.train_template, c) for c in task.classnames]).to(device)
    ctx = TaskContext(
        model=bundle.model, tokenizer=bundle.tokenizer, train_transform=bundle.train_transform,
        eval_transform=bundle.eval_transform, scenario=scenario, task=task, task_index=index, config=config,
        device=device, initial_model=initial, start_model=frozen_copy(bundle.model), train_data=train_data,
        steps=task_steps(config, len(train_data)), seed=config.seed * 1000 + index, class_tokens=class_tokens,
    )
    if method.trains and ctx.steps > 0:
        train_task(method, ctx, run_dir)
    else:
        method.end_task(ctx)
    bundle.model.eval()


def _prompt(template, classname: str) -> str:
    return template(classname) if callable(template) else template.format(classname)


def _save_task(net, method: Method, bundle: ClipBundle, run_dir: Path, index: int, config: TrainConfig) -> None:
    folder = run_dir / "checkpoints"
    save_model(net, folder / f"task_{index}.safetensors", _architecture(bundle), extra={"task_index": index})
    if method.persists_across_tasks:  # e.g. an exemplar memory; a weight ensemble restarts each task
        with atomic_path(folder / f"method_{index}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in method.state_tensors().items()}, str(tmp))
    if config.keep_checkpoints == "last" and index > 0:
        for old in (folder / f"task_{index - 1}.safetensors", folder / f"method_{index - 1}.safetensors"):
            old.unlink(missing_ok=True)


def _restore(net, method: Method, run_dir: Path, index: int) -> None:
    """Load the model (and method memory) as they were after task `index`."""
    folder = run_dir / "checkpoints"
    net.load_state_dict(load_state_dict(folder / f"task_{index}.safetensors"))
    method_path = folder / f"method_{index}.safetensors"
    if method_path.exists():
        method.load_state_tensors(load_file(str(method_path)))


def _finish(progress: _Progress, scenario: Scenario, spec: RunSpec, run_dir: Path) -> RunResult:
    evaluations = progress.evaluations
    before, after = evaluations[0], evaluations[1:]
    zero_shot = {k: [e["zero_shot"][k] for e in evaluations] for k in before["zero_shot"]}
    retrieval = {
        probe: {m: [e["retrieval"][probe][m] for e in evaluations] for m in before["retrieval"][probe]}
        for probe in before["retrieval"]
    }
    extra = {"protocol": scenario.protocol, "pretrained": spec.pretrained, "zero_shot_row": before["accuracy"],
             "seconds": {k: round(v, 2) for k, v in progress.data.get("seconds", {}).items()}}
    if scenario.protocol == "class_incremental":
        extra["class_incremental_accuracy"] = [e["seen_accuracy"] for e in after]
    result = RunResult(
        method=spec.method, scenario=spec.scenario, model=spec.model, seed=spec.seed, tasks=scenario.task_names,
        accuracy_matrix=[e["accuracy"] for e in after], config=spec.config, zero_shot=zero_shot, retrieval=retrieval,
        extra=extra,
    )
    save_run(result, run_dir)
    return result


__all__ = ["RunSpec", "build_config", "run_scenario"]
