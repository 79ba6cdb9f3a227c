"""Run a method through a scenario and write the run folder (`cliplab.results.layout`).

Calling `run_scenario` again on the same folder resumes: finished tasks are not redone, a task
that was interrupted continues from its last mid-task checkpoint. A folder holding a run of
another identity (`RunIdentity`: scenario, method, model and weights, seed, resolved settings,
engine revision) is never resumed into, except when that run saved no training progress (it
failed before its first checkpoint, e.g. a NaN loss at step 1): it is restarted with the new
settings. A run holds its folder's lock (`RunFolder.lock`) from start to end, so a second
process on the same folder stops at once with a message naming the first.

Planning needs no data: `plan_run` resolves a run's configuration and identity from the
scenario's spec alone, which is how the study decides whether a finished folder can be reused.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from cliplab.checkpoints import load_state_dict, load_tensors, load_weights, save_model
from cliplab.engine import distributed
from cliplab.engine.config import TrainConfig, apply_overrides, coerce_fields
from cliplab.engine.loop import bind_services, clear_mid_task, task_steps, train_task
from cliplab.engine.student import frozen_copy
from cliplab.evaluation.evaluator import Evaluation, ScenarioEvaluator
from cliplab.evaluation.metrics import continual_summary, time_continual_summary
from cliplab.io import atomic_path, write_json_atomic
from cliplab.methods import METHODS, Method, TaskContext, get_method
from cliplab.models import TOYCLIP, ClipBundle, load_model, weights_fingerprint
from cliplab.results.layout import RunFolder, RunIdentity
from cliplab.results.record import RunResult, save_run
from cliplab.scenarios import OBJECTIVES, Scenario, ScenarioSpec, get_scenario, scenario_spec
from cliplab.tokens import ExpandedTokenizer, fit_token_embedding
from cliplab.utils import resolve_device, seed_everything

# Bumped whenever the engine's defaults change the numbers of a run whose settings are unchanged
# (2: fused AdamW; 3: training batches are augmented under a generator seeded per (seed, task,
# step, position), not the global RNG, which makes resumes exact). Part of a run's identity, so
# the study never reuses a run of an older engine.
ENGINE_REVISION = 3


def build_config(
    scenario: Scenario | ScenarioSpec, method: str, overrides: list[str] | dict | None, seed: int | None
) -> TrainConfig:
    """Protocol defaults of the scenario, then its method presets, then the user's overrides."""
    config = apply_overrides(TrainConfig(), dict(scenario.defaults))
    presets = {f"method.{k}": v for k, v in scenario.method_defaults.get(method, {}).items()}
    config = apply_overrides(config, presets)
    config = apply_overrides(config, overrides)
    config = apply_overrides(config, {"seed": seed}) if seed is not None else config
    if method in METHODS:  # method options checked against the method's Options types (unknown names: get_method)
        config.method = coerce_fields(METHODS[method].Options, config.method, prefix="method.")
    return config


def _spec_of(scenario: str | Scenario | ScenarioSpec, options: dict) -> ScenarioSpec:
    if isinstance(scenario, str):
        return scenario_spec(scenario, **options)
    return scenario if isinstance(scenario, ScenarioSpec) else scenario.spec()


def _build_options(spec: ScenarioSpec, config: TrainConfig, options: dict) -> dict:
    """The scenario options, plus the probe sizes of `config` where the scenario builds its probes."""
    probe = {k: getattr(config, k) for k in ("probe_size", "retrieval_size", "probe_seed") if k in spec.build_options}
    return {**options, **probe}


def plan_run(
    scenario: str | Scenario | ScenarioSpec,
    method: str,
    model: str = "toyclip",
    pretrained: str | None = None,
    seed: int | None = None,
    overrides: list[str] | dict | None = None,
    scenario_options: dict | None = None,
) -> tuple[TrainConfig, RunIdentity]:
    """The resolved configuration and the identity of a run, from the scenario's spec (no data is built)."""
    options = dict(scenario_options or {})
    spec = _spec_of(scenario, options)
    config = build_config(spec, method, overrides, seed)
    plugin = get_method(method, config.method)  # unknown methods and options fail here, before anything is written
    if OBJECTIVES[spec.protocol] not in plugin.objectives:
        raise ValueError(
            f"method {method!r} is defined for {' and '.join(plugin.objectives)} training, but scenario "
            f"{spec.name!r} ({spec.protocol}) trains with the {OBJECTIVES[spec.protocol]} objective; methods "
            f"for it: {', '.join(n for n, c in METHODS.items() if OBJECTIVES[spec.protocol] in c.objectives)}"
        )
    build = {k: str(v) for k, v in sorted(_build_options(spec, config, options).items())}
    identity = RunIdentity(
        spec.name,
        method,
        model,
        pretrained,
        config.seed,
        config.to_dict(),
        weights=weights_fingerprint(model, pretrained),
        engine=ENGINE_REVISION,
        extra={"scenario_options": build},
    )
    return config, identity


def _architecture(bundle: ClipBundle) -> str:
    return TOYCLIP if bundle.name == "toyclip" else bundle.name


class _Clock:
    """Wall-clock seconds spent training and evaluating, kept in progress.json across resumes."""

    def __init__(self, progress: _Progress) -> None:
        self.seconds = progress.data.setdefault("seconds", {"train": 0.0, "evaluate": 0.0})

    @contextlib.contextmanager
    def __call__(self, what: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - began


class _Progress:
    """The atomically written record of the run's identity and of every evaluation finished so far."""

    def __init__(self, folder: RunFolder, identity: RunIdentity) -> None:
        self.path, self.identity = folder.progress, identity
        self.data: dict[str, Any] = {"spec": identity.to_dict(), "evaluations": []}
        stored = folder.identity()
        if stored is not None and not stored.same_numbers(identity):
            differences = "; ".join(identity.differences(stored)[:5])
            if folder.has_training_progress():
                raise ValueError(
                    f"{folder.path} already holds a different run ({stored.method} on {stored.scenario}, seed "
                    f"{stored.seed}; differs in {differences}); use a new --out folder, or delete this one to start over."
                )
            if distributed.rank_and_world()[0] == 0:
                warnings.warn(
                    f"{folder.path}: the run there stopped before saving any training progress; restarting it "
                    f"with the new settings ({differences})",
                    stacklevel=3,
                )
                folder.reset()
            stored = None
        if stored is not None:
            self.data = folder.read_progress() or self.data

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
) -> RunResult | None:
    """Train `method` through `scenario`, evaluating before training and after every task.

    Returns the result on rank 0 (None on the other ranks of a torchrun job)."""
    method_name = method if isinstance(method, str) else method.name
    options = dict(scenario_options or {})
    model_name = bundle.name if bundle is not None else model
    config, identity = plan_run(scenario, method_name, model_name, pretrained, seed, overrides, options)
    if isinstance(scenario, str):
        scenario = get_scenario(scenario, **_build_options(scenario_spec(scenario, **options), config, options))
    if config.max_tasks is not None:
        scenario.tasks = scenario.tasks[: config.max_tasks]
    method = get_method(method_name, config.method) if isinstance(method, str) else method
    device = resolve_device(config.device)
    distributed.init_from_env(device)
    device = distributed.local_device(device)
    rank, _ = distributed.rank_and_world()
    seed_everything(config.seed)  # random-weight models start identical across runs and ranks
    bundle = bundle or load_model(model, pretrained=pretrained, device=device)  # bad weights: nothing written yet
    folder = RunFolder(out_dir)
    with folder.lock() if rank == 0 else contextlib.nullcontext():  # the ranks of one job share it
        return _run_locked(scenario, method, bundle, config, identity, folder, device, rank)


def _run_locked(scenario, method, bundle, config, identity, folder, device, rank):
    """`run_scenario` once the folder is this process's."""
    progress = _Progress(folder, identity)
    net = bundle.model.to(device)
    initial = frozen_copy(net)
    words = [getattr(task, "words", None) for task in scenario.tasks]
    if any(words):  # languages: their words may get token ids of their own (cliplab.tokens, CLL-CLIP)
        bundle = bundle._replace(tokenizer=ExpandedTokenizer(bundle.tokenizer, [w or [] for w in words]).bind(net))
    evaluator = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)
    clock = _Clock(progress)
    if not progress.evaluations and rank == 0:
        with clock("evaluate"):
            progress.add(evaluator.evaluate(net, after_task=-1))
    distributed.barrier()
    first = max(0, len(progress.evaluations) - 1)
    if first > 0:
        _restore(net, method, folder, first - 1)
    for index in range(first, len(scenario.tasks)):
        with clock("train"):
            _run_task(scenario, method, bundle, config, device, initial, index, folder.path)
        distributed.barrier()
        if rank == 0:
            _save_task(net, method, bundle, folder, index, config)
            with clock("evaluate"):
                evaluation = evaluator.evaluate(net, after_task=index)
            progress.add(evaluation)
            clear_mid_task(folder.path)
        distributed.barrier()
    return _finish(progress, scenario, identity, config, folder) if rank == 0 else None


def _run_task(scenario, method, bundle, config, device, initial, index: int, run_dir: Path) -> None:
    task = scenario.tasks[index]
    seed_everything(config.seed * 1000 + index)
    train_data = task.train_data(bundle.train_transform if config.augment else bundle.eval_transform)
    class_tokens = bundle.tokenizer(task.train_prompts()).to(device) if task.classnames else None
    ctx = TaskContext(
        model=bundle.model,
        tokenizer=bundle.tokenizer,
        train_transform=bundle.train_transform,
        eval_transform=bundle.eval_transform,
        scenario=scenario,
        task=task,
        task_index=index,
        config=config,
        device=device,
        initial_model=initial,
        start_model=frozen_copy(bundle.model),
        train_data=train_data,
        steps=task_steps(config, len(train_data)),
        seed=config.seed * 1000 + index,
        class_tokens=class_tokens,
        objective=OBJECTIVES[scenario.protocol],
    )
    ctx.steps = method.task_steps(ctx, ctx.steps)
    bind_services(ctx)
    if method.trains and ctx.steps > 0:
        train_task(method, ctx, run_dir)
    else:
        method.end_task(ctx)
    bundle.model.eval()


def _save_task(net, method: Method, bundle: ClipBundle, folder: RunFolder, index: int, config: TrainConfig) -> None:
    save_model(net, folder.task_checkpoint(index), _architecture(bundle), extra={"task_index": index})
    if method.persists_across_tasks:  # e.g. an exemplar memory; a weight ensemble restarts each task
        with atomic_path(folder.method_state(index)) as tmp:
            save_file({k: v.contiguous() for k, v in method.state_tensors().items()}, str(tmp))
    if config.keep_checkpoints == "last" and index > 0:
        for old in (folder.task_checkpoint(index - 1), folder.method_state(index - 1)):
            old.unlink(missing_ok=True)


def _restore(net, method: Method, folder: RunFolder, index: int) -> None:
    """Load the model (and method memory) as they were after task `index`."""
    hint = (
        f"This run's own checkpoint is damaged; delete the run folder {folder.path} to start over "
        "(or restore the file from a backup)."
    )
    state = load_state_dict(folder.task_checkpoint(index), hint=hint)
    fit_token_embedding(net, state)  # a method that grew the vocabulary (cll_clip)
    load_weights(net, state, folder.task_checkpoint(index), hint)
    if folder.method_state(index).exists():
        method.load_state_tensors(load_tensors(folder.method_state(index), hint=hint))


def _finish(
    progress: _Progress, scenario: Scenario, identity: RunIdentity, config: TrainConfig, folder: RunFolder
) -> RunResult:
    evaluations = progress.evaluations
    before, after = evaluations[0], evaluations[1:]
    zero_shot = {k: [e["zero_shot"][k] for e in evaluations] for k in before["zero_shot"]}
    retrieval = {
        probe: {m: [e["retrieval"][probe][m] for e in evaluations] for m in before["retrieval"][probe]}
        for probe in before["retrieval"]
    }
    extra = {
        "protocol": scenario.protocol,
        "pretrained": identity.pretrained,
        "zero_shot_row": before["accuracy"],
        "seconds": {k: round(v, 2) for k, v in progress.data.get("seconds", {}).items()},
    }
    if scenario.protocol == "class_incremental":
        extra["class_incremental_accuracy"] = [e["seen_accuracy"] for e in after]
    summary = None
    if scenario.protocol == "time_continual":
        summary = _time_continual_record(evaluations, extra)
    if scenario.protocol == "language_continual":
        summary = _language_continual_record(evaluations, extra)
    result = RunResult(
        method=identity.method,
        scenario=identity.scenario,
        model=identity.model,
        seed=identity.seed,
        tasks=scenario.task_names,
        accuracy_matrix=[e["accuracy"] for e in after],
        config=config.to_dict(),
        zero_shot=zero_shot,
        retrieval=retrieval,
        summary=summary,
        extra=extra,
    )
    save_run(result, folder.path)
    return result


def _time_continual_record(evaluations: list[dict], extra: dict) -> dict[str, float]:
    """TiC-CLIP's record. `accuracy_matrix` is retrieval R@1 (mean of both directions); `extra` gets
    `classification_matrix` (zero-shot top-1 on each step's labelled images, NaN without them), its
    row before training and `retrieval_matrices` (`i2t_r1`, `t2i_r1`). The summary holds
    `continual_summary` plus TiC's `id` / `backward` / `forward` of the retrieval matrix and, when
    no classification cell is NaN, the same three of the classification matrix (`classification_id`, ...)."""
    before, after = evaluations[0], evaluations[1:]
    nan = lambda row: [math.nan if v is None else v for v in row]
    classification = [nan(e["rows"]["classification"]) for e in after]
    extra["classification_matrix"] = classification
    extra["classification_zero_shot_row"] = nan(before["rows"]["classification"])
    extra["retrieval_matrices"] = {k: [e["rows"][k] for e in after] for k in ("i2t_r1", "t2i_r1")}
    matrix = [e["accuracy"] for e in after]
    summary = {**continual_summary(matrix), **time_continual_summary(matrix)}
    if not any(math.isnan(v) for row in classification for v in row):
        summary.update({f"classification_{k}": v for k, v in time_continual_summary(classification).items()})
    return summary


def _language_continual_record(evaluations: list[dict], extra: dict) -> dict[str, float]:
    """CLL-CLIP's record. `accuracy_matrix` is text→image R@1 per language (`zero_shot_row`: the
    pretrained model's); `extra` gets `retrieval_matrices` (`i2t_r1`, `t2i_r1`) and their rows before
    training (`retrieval_zero_shot_rows`). The summary is `continual_summary` of the text→image
    matrix plus the same metrics of the image→text one (`i2t_last`, `i2t_bwt`, ...)."""
    before, after = evaluations[0], evaluations[1:]
    keys = ("i2t_r1", "t2i_r1")
    extra["retrieval_matrices"] = {k: [e["rows"][k] for e in after] for k in keys}
    extra["retrieval_zero_shot_rows"] = {k: before["rows"][k] for k in keys}
    i2t = continual_summary(extra["retrieval_matrices"]["i2t_r1"])
    return {**continual_summary([e["accuracy"] for e in after]), **{f"i2t_{k}": v for k, v in i2t.items()}}


__all__ = ["ENGINE_REVISION", "build_config", "plan_run", "run_scenario"]
