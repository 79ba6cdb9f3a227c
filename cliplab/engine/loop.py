"""The one training loop every method runs in.

Per step: one batch of the task's data (train transform) → the method adds its inputs → one
student forward → the objective's loss (label-smoothed cross-entropy over the task's class prompts,
or CLIP's contrastive loss on image–caption pairs; the scenario's protocol chooses, see
`engine.objectives`; under cross-entropy the method may choose which prompts, `ce_classes`, or
bring its own term, `classification_loss`; `replaces_objective` drops the objective's term) plus
the method's loss terms → optional gradient clipping → the method's pre-step hook → AdamW step,
warm-up then cosine (or constant) schedule → the objective's and the method's after-step hooks.
On an online stream (`ctx.stream`) the batches are the stream's, in order, each `online_iter`
times (`cliplab.engine.online`).
Mid-task checkpoints (weights, optimiser, schedule, RNG, method state) make a killed run resume at
its last checkpoint and, on CPU with a fixed seed, end with the same numbers as an uninterrupted run:
batches (augmentation included) are a function of (seed, task, step) that never touches the global
random state (`engine.sampling`), and the loss-log rows of the steps trained again are dropped first.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cliplab.checkpoints import load_training_state, read_metadata, save_training_state
from cliplab.engine import distributed
from cliplab.engine.objectives import Objective, make_objective
from cliplab.engine.optim import adamw, decay_groups, warmup_schedule
from cliplab.engine.sampling import StepBatchSampler, item_seed, keyed_loader, step_loader
from cliplab.engine.student import ClipStudent, set_trainable, student_forward
from cliplab.evaluation.embed import image_features
from cliplab.methods.base import Method, TaskContext
from cliplab.results.layout import RunFolder
from cliplab.results.loss_log import append_loss_log, rewind_loss_log


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops before the weights are corrupted."""


def task_steps(config, n_train: int) -> int:
    """Steps of a task: `epochs_per_task` epochs if set (ZSCL CIL: 1), else `steps_per_task`."""
    if config.epochs_per_task is not None:
        return max(1, math.ceil(config.epochs_per_task * n_train / config.batch_size))
    return int(config.steps_per_task)


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


MID_TASK_HINT = "Delete it and run the same command again: the task then restarts from its beginning."


def resume_step(path: Path, task_index: int) -> int:
    """The step a mid-task state of this task was saved at (0 when there is none)."""
    if not path.exists():
        return 0
    counters = read_metadata(path, hint=MID_TASK_HINT).get("state", {}).get("state", {})
    return int(counters["step"]) if counters.get("task_index") == task_index else 0


def _check_finite(losses: dict[str, torch.Tensor], ctx: TaskContext, step: int) -> None:
    bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteLossError(
            f"loss term(s) {bad} became non-finite at step {step} of task {ctx.task.name!r} "
            f"(lr {ctx.config.lr_for(ctx.task.name)}). Lower the learning rate (--set lr=...) or the "
            "distillation weight, or use precision=fp32. A run that saved no checkpoint yet restarts in the same "
            "--out with the new settings; otherwise its last checkpoint is intact (new settings need a new --out)."
        )


def bind_services(ctx: TaskContext) -> TaskContext:
    """Give the context the engine services a method may use (`ctx.batches`, `ctx.encode_images`)."""
    rank, world = distributed.rank_and_world()
    workers = ctx.config.num_workers

    def batch_source(dataset, batch_size: int, seed: int, start: int, end: int):
        return iter(step_loader(dataset, batch_size, seed, start, end, workers, rank, world))

    ctx.batch_source, ctx.image_encoder = batch_source, image_features
    if ctx.stream is not None:
        ctx.index_source = lambda step: ctx.stream.batch_positions(step)[rank::world]
    elif ctx.train_data is not None and len(ctx.train_data) > 0:
        sampler = StepBatchSampler(len(ctx.train_data), ctx.config.batch_size, ctx.seed, 0, ctx.steps)
        ctx.index_source = lambda step: sampler.global_batch(step)[rank::world]
    return ctx


def _batches(ctx: TaskContext, dataset):
    """The task's main batches from `ctx.start_step`: seeded random ones of `dataset` (the task's
    training data, or what the method trains on instead: TiC's cumulative buffer), or the stream's."""
    if ctx.stream is None:
        return ctx.batches(dataset, ctx.config.batch_size, ctx.seed)
    sampler = [  # each image loaded under its own (seed, step, position) seed, as `step_loader` does
        [(item_seed(ctx.seed, step, k), index) for k, index in enumerate(ctx.batch_indices(step))]
        for step in range(ctx.start_step, ctx.steps)
    ]
    return iter(keyed_loader(ctx.train_data, sampler, ctx.seed, ctx.start_step, ctx.config.num_workers))


def train_task(method: Method, ctx: TaskContext, run_dir: Path) -> None:
    """Train the student on one task with `method`, resuming a mid-task checkpoint if present."""
    config, model = ctx.config, ctx.model
    if not method.trains:  # e.g. zeroshot: nothing to optimise
        method.end_task(ctx)
        return
    mid_path = RunFolder(run_dir).mid_task
    start = resume_step(mid_path, ctx.task_index)
    ctx.start_step = start
    rank, _ = distributed.rank_and_world()
    if rank == 0:  # the steps after the checkpoint are trained (and logged) again
        rewind_loss_log(run_dir, ctx.task.name, start)
    if ctx.batch_source is None or ctx.image_encoder is None:
        bind_services(ctx)
    objective = make_objective(ctx.objective)
    method.begin_task(ctx)  # before the optimiser: a method may change the model (grow the vocabulary)
    params = _trainable(method, ctx)
    groups = method.optimizer_groups(ctx, decay_groups(model, params, config.weight_decay, config.weight_decay_scope))
    optimizer = adamw(
        groups,
        config.lr_for(ctx.task.name),
        config.betas,
        config.weight_decay,
        eps=config.adam_eps,
        impl=config.optimizer_impl,
    )
    scheduler = warmup_schedule(optimizer, config.warmup_steps, ctx.steps, config.lr_schedule)
    if start:  # after begin_task, so the restored RNG and method state are the saved ones
        _, extra = load_training_state(mid_path, model, optimizer, scheduler, hint=MID_TASK_HINT)
        method.load_state_tensors(extra)
    objective.begin_task(ctx)  # after a resume, so it reads the restored model (its logit scale)
    student = distributed.wrap(
        ClipStudent(model),
        find_unused_parameters=method.find_unused_parameters,
        broadcast_buffers=method.trains_backbone,  # method-owned buffers (e.g. expert usage) stay per rank
    )
    batches = _batches(ctx, method.train_dataset(ctx))
    bar = tqdm(
        range(start, ctx.steps),
        initial=start,
        total=ctx.steps,
        desc=f"{method.name} · {ctx.task.name}",
        disable=not config.progress or rank != 0,
        leave=False,
    )
    model.train()
    for step in bar:
        images, targets = next(batches)
        images, targets = images.to(ctx.device), objective.targets(ctx, targets)
        optimizer.zero_grad(set_to_none=True)
        losses = _accumulate(student, method, objective, ctx, images, targets, step)
        if config.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(_trained(optimizer), config.grad_clip_norm)
        method.before_step(ctx, optimizer.param_groups[0]["lr"])
        optimizer.step()
        objective.after_step(ctx)
        scheduler.step()
        method.after_step(ctx, step + 1)
        if ctx.step_listener is not None:  # e.g. the online protocol's anytime evaluation
            ctx.step_listener(step + 1)
        _log(run_dir, ctx, step + 1, scheduler.get_last_lr()[0], losses, rank)
        bar.set_postfix(loss=f"{sum(losses.values()):.3f}")
        done = step + 1
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < ctx.steps and rank == 0:
            save_training_state(
                mid_path,
                model,
                optimizer,
                scheduler,
                {"step": done, "task_index": ctx.task_index},
                extra_tensors=method.state_tensors(),
                model_keys=ctx.checkpoint_keys,
            )
    method.end_task(ctx)


def _trainable(method: Method, ctx: TaskContext) -> list[torch.nn.Parameter]:
    """The loop's choice (`train_mode`), or exactly the parameters the method names (all else frozen)."""
    chosen = method.trainable_parameters(ctx)
    if chosen is None:
        if not method.trains_backbone:
            raise TypeError(f"{method.name} keeps the backbone frozen but names no trainable parameters")
        return set_trainable(ctx.model, ctx.config.train_mode, ctx.config.freeze_logit_scale)
    ctx.model.requires_grad_(False)
    for param in chosen:
        param.requires_grad_(True)
    return list(chosen)


def _accumulate(
    student, method: Method, objective: Objective, ctx: TaskContext, images, targets, step: int
) -> dict[str, float]:
    """Forward/backward over `grad_accum` micro-batches; returns the step's mean loss terms."""
    accum = ctx.config.grad_accum
    extra = method.extra_inputs(ctx, step)
    targets = objective.select(ctx, method, step, targets)  # e.g. the classes a method encodes this step
    totals: dict[str, float] = {}
    for micro in range(accum):
        part = slice(micro * len(images) // accum, (micro + 1) * len(images) // accum)
        extra_images = (
            None
            if extra.images is None
            else extra.images[micro * len(extra.images) // accum : (micro + 1) * len(extra.images) // accum]
        )
        sync = contextlib.nullcontext() if micro == accum - 1 or not hasattr(student, "no_sync") else student.no_sync()
        with sync, _autocast(ctx.device, ctx.config.precision):
            texts = objective.texts(ctx, targets, part)
            out = student_forward(student, images[part], texts, extra_images, extra.tokens)
            losses = {} if method.replaces_objective else objective.losses(ctx, method, out, targets, part)
            losses.update(method.losses(ctx, out))
        _check_finite(losses, ctx, step + 1)
        (sum(losses.values()) / accum).backward()
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + float(value.detach()) / accum
    return totals


def _trained(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _log(run_dir: Path, ctx: TaskContext, step: int, lr: float, losses: dict[str, float], rank: int) -> None:
    if rank != 0:
        return
    rows = [{"task": ctx.task.name, "step": step, "lr": lr, "term": k, "value": v} for k, v in losses.items()]
    rows.append({"task": ctx.task.name, "step": step, "lr": lr, "term": "total", "value": sum(losses.values())})
    append_loss_log(run_dir, rows)


def clear_mid_task(run_dir: Path) -> None:
    """Remove the mid-task state once the task's own checkpoint is written."""
    RunFolder(run_dir).mid_task.unlink(missing_ok=True)


__all__ = [
    "NonFiniteLossError",
    "bind_services",
    "clear_mid_task",
    "resume_step",
    "task_steps",
    "train_task",
]
