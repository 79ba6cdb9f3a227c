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
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from cliplab.checkpoints import load_state_dict, load_tensors, load_weights, save_model
from cliplab.engine import distributed
from cliplab.engine.config import TrainConfig, apply_overrides, coerce_fields
from cliplab.engine.extended import Extension, extend
from cliplab.engine.loop import bind_services, clear_mid_task, resume_step, task_steps, train_task
from cliplab.engine.online import bind_online, online_class_prompts, task_stream
from cliplab.engine.protocol_records import protocol_record
from cliplab.engine.records import peak_memory, record_trained, run_record
from cliplab.engine.student import frozen_copy
from cliplab.evaluation.evaluator import Evaluation, ScenarioEvaluator
from cliplab.io import atomic_path, jsonable, write_json_atomic
from cliplab.methods import METHODS, Method, TaskContext, get_method
from cliplab.models import TOYCLIP, ClipBundle, load_model, weights_fingerprint
from cliplab.results.layout import RunFolder, RunIdentity
from cliplab.results.record import RunResult, save_run
from cliplab.scenarios import OBJECTIVES, Scenario, ScenarioSpec, get_scenario, scenario_spec
from cliplab.scenarios.online import DEFAULT_EVAL_PROMPT
from cliplab.tokens import ExpandedTokenizer, fit_token_embedding
from cliplab.utils import resolve_device, seed_everything

# Bumped whenever the engine's defaults change the numbers of a run whose settings are unchanged
# (2: fused AdamW; 3: issue 14 — training batches are augmented under a generator seeded per
# (seed, task, step, position), not the global RNG, which makes resumes exact; ZSCL's weight
# ensemble includes the task's final weights; iCaRL's two variants follow ZSCL's split and Rebuffi
# et al.'s distillation; class-incremental distillation images go through the train transform;
# distillation logits in fp32; class-incremental metrics.json records task_test_sizes and the
# class-incremental summary). Part of a run's identity, so the study never reuses a run of an
# older engine.
ENGINE_REVISION = 3


def build_config(
    scenario: Scenario | ScenarioSpec, method: str, overrides: list[str] | dict | None, seed: int | None
) -> TrainConfig:
    """Protocol defaults of the scenario, then the method's own training recipe
    (`Method.train_defaults`, e.g. SIT's learning rate), then the scenario's method presets, then
    the user's overrides.

    A method preset may carry training settings of its own under "train" (e.g. MoE-Adapters'
    learning rates): they override the protocol's for that method only."""
    config = apply_overrides(TrainConfig(), dict(scenario.defaults))
    if method in METHODS:
        config = apply_overrides(config, dict(METHODS[method].train_defaults))
    preset = dict(scenario.method_defaults.get(method, {}))
    config = apply_overrides(config, dict(preset.pop("train", {})))
    config = apply_overrides(config, {f"method.{k}": v for k, v in preset.items()})
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
    if "stream_seed" in spec.build_options:  # an online stream is split with the run's seed (Si-Blurry)
        probe.setdefault("stream_seed", options.get("stream_seed", config.seed))
    if "eval_prompt" in spec.build_options:  # in the identity: runs scored with the old ensemble are not reused
        probe.setdefault("eval_prompt", options.get("eval_prompt", DEFAULT_EVAL_PROMPT))
    return {**options, **probe}


def build_scenario(name: str, config: TrainConfig, options: dict | None = None) -> Scenario:
    """The scenario a run with `config` trains and is scored on (probe sizes from `config`;
    `max_tasks` is applied by the caller, also to a scenario given as an object)."""
    options = dict(options or {})
    return get_scenario(name, **_build_options(scenario_spec(name, **options), config, options))


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
        self.evaluations.append(jsonable(asdict(evaluation)))  # NaN (a task without classes) -> null
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
    scenario = build_scenario(scenario, config, options) if isinstance(scenario, str) else scenario
    if config.max_tasks is not None:
        scenario.tasks = scenario.tasks[: config.max_tasks]
    method = get_method(method_name, config.method) if isinstance(method, str) else method
    device = resolve_device(config.device)
    distributed.init_from_env(device)
    device = distributed.local_device(device)
    rank, _ = distributed.rank_and_world()
    seed_everything(config.seed)  # random-weight models start identical across runs and ranks
    reloadable = bundle is None  # the backbone can be loaded again by name (checkpoints may omit it)
    bundle = bundle or load_model(model, pretrained=pretrained, device=device)  # bad weights: nothing written yet
    folder = RunFolder(out_dir)
    with folder.lock() if rank == 0 else contextlib.nullcontext():  # the ranks of one job share it
        base = {"model": model, "pretrained": pretrained, "weights": identity.weights} if reloadable else None
        return _run_locked(scenario, method, bundle, config, identity, folder, device, rank, base)


def _run_locked(scenario, method, bundle, config, identity, folder, device, rank, base):
    """`run_scenario` once the folder is this process's (`base`: how to reload the backbone by name)."""
    progress = _Progress(folder, identity)
    net = bundle.model.to(device)
    pretrained = sum(p.numel() for p in net.parameters())  # before any module is added
    extension = extend(net, method, scenario, base)  # a parameter-efficient method's modules, if any
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
        _restore(net, method, folder, first - 1, extension)
    keys = extension.keys if extension is not None and extension.partial else None
    for index in range(first, len(scenario.tasks)):
        with clock("train"), peak_memory(progress.data, device):
            trained = _run_task(
                scenario, method, bundle, config, device, initial, index, folder.path, keys, evaluator, progress
            )
        record_trained(progress.data, net, trained, pretrained)
        distributed.barrier()
        if rank == 0:
            _save_task(net, method, bundle, folder, index, config, extension)
            with clock("evaluate"):
                evaluation = evaluator.evaluate(net, after_task=index)
            progress.add(evaluation)
            clear_mid_task(folder.path)
        distributed.barrier()
    return _finish(progress, scenario, identity, config, folder) if rank == 0 else None


def _run_task(
    scenario,
    method,
    bundle,
    config,
    device,
    initial,
    index: int,
    run_dir: Path,
    checkpoint_keys=None,
    evaluator=None,
    progress=None,
) -> list[str]:
    """Train task `index`; returns the names of the parameters it updated."""
    task = scenario.tasks[index]
    seed_everything(config.seed * 1000 + index)
    train_data = task.train_data(bundle.train_transform if config.augment else bundle.eval_transform)
    online = scenario.protocol == "online"
    prompts = online_class_prompts(scenario, index) if online else task.train_prompts()
    class_tokens = bundle.tokenizer(prompts).to(device) if prompts else None  # caption tasks have no classes
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
        checkpoint_keys=checkpoint_keys,
        objective=OBJECTIVES[scenario.protocol],
    )
    if online:
        ctx.stream = task_stream(scenario, index, config)
        ctx.steps = ctx.stream.steps
        rank, _ = distributed.rank_and_world()
        listener = bind_online(ctx, evaluator, bundle.model, progress.data, progress.path, rank)
        if listener is not None:
            listener.resume_at(resume_step(RunFolder(run_dir).mid_task, index) if method.trains else 0)
    else:
        ctx.steps = method.task_steps(ctx, ctx.steps)  # e.g. TiC's Oracle trains longer on more data
    bind_services(ctx)
    trained: list[str] = []
    if method.trains and ctx.steps > 0:
        train_task(method, ctx, run_dir)
        trained = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    else:
        for done in range(1, ctx.steps + 1) if ctx.step_listener is not None else ():
            ctx.step_listener(done)  # an untrained model is still evaluated along the stream
        method.end_task(ctx)
    bundle.model.eval()
    return trained + method.updated_outside_optimizer(ctx)


def _save_task(
    net, method: Method, bundle: ClipBundle, folder: RunFolder, index: int, config: TrainConfig, extension=None
) -> None:
    save_model(
        net,
        folder.task_checkpoint(index),
        _architecture(bundle),
        extra={"task_index": index},
        keys=extension.keys if extension is not None and extension.partial else None,
        described=extension.metadata() if extension is not None else None,
    )
    if method.persists_across_tasks:  # e.g. an exemplar memory; a weight ensemble restarts each task
        with atomic_path(folder.method_state(index)) as tmp:
            save_file({k: v.contiguous() for k, v in method.state_tensors().items()}, str(tmp))
    if config.keep_checkpoints == "last" and index > 0:
        for old in (folder.task_checkpoint(index - 1), folder.method_state(index - 1)):
            old.unlink(missing_ok=True)


def _restore(net, method: Method, folder: RunFolder, index: int, extension: Extension | None = None) -> None:
    """Load the model (and method memory) as they were after task `index`."""
    hint = (
        f"This run's own checkpoint is damaged; delete the run folder {folder.path} to start over "
        "(or restore the file from a backup)."
    )
    path = folder.task_checkpoint(index)
    state = load_state_dict(path, hint=hint)
    fit_token_embedding(net, state)  # a method that grew the vocabulary (cll_clip)
    load_weights(net, state, path, hint, partial=extension is not None and extension.partial)
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
    if scenario.protocol == "class_incremental":  # the summary's Avg / Last (results.record.run_summary)
        extra["class_incremental_accuracy"] = [e["seen_accuracy"] for e in after]
        sizes = after[-1].get("test_sizes")
        if sizes is not None:
            extra["task_test_sizes"] = [int(n) for n in sizes]
    summary, protocol_extra = protocol_record(scenario, progress.data, evaluations)
    extra.update(protocol_extra)
    extra.update(run_record(progress.data, evaluations, scenario.task_names))
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


__all__ = ["ENGINE_REVISION", "build_config", "build_scenario", "plan_run", "run_scenario"]
