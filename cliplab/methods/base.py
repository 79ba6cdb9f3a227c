"""The plug-in interface every continual-learning method implements.

The training loop (`cliplab.engine.loop`) owns the optimiser, schedule, data, checkpoints and the
cross-entropy term. A method only says what is different about it, through hooks:

- `begin_task(ctx)`: build teachers, vocabularies, reference data, memory (before the optimiser
  exists, so it may change the model: CLL-CLIP grows the token embedding);
- `optimizer_groups(ctx, groups)`: narrow or extend what AdamW trains (default: the train mode's
  parameters, as `groups`);
- `train_dataset(ctx)`: what the task's batches are drawn from (default: the task's own data;
  replay strategies of the time-continual protocol return old steps' data too);
- `task_steps(ctx, steps)`: the task's step budget (default: the protocol's);
- `extra_inputs(ctx, step)`: images/tokens to push through the student in the same forward;
- `losses(ctx, out)`: additional loss terms (a dict, so each is logged separately);
- `before_step(ctx, lr)`: after backward and gradient clipping, before the optimiser step (TEIR's
  per-row gradient and decay scaling);
- `after_step(ctx, step)`: parameter-space updates (weight ensembles);
- `end_task(ctx)`: interpolation, memory updates;
- `state_tensors()` / `load_state_tensors()`: what a mid-task checkpoint must hold to resume.

Parameter-efficient methods add modules to the model and train only those:

- `model_extension(scenario)` / `extend_model(model, layout)`: the modules a method adds
  (adapters, LoRA, experts with routers, prompts), described by JSON data so that a checkpoint
  can name them and `cliplab.load_model` can rebuild the extended model;
- `trainable_parameters(ctx)`: what the task trains (None: the loop's `train_mode`);
- `updated_outside_optimizer(ctx)`: parameters the method updated itself (counted as trained);
- `trains_backbone = False`: the backbone stays frozen, so checkpoints hold only the added modules.

A method may also decide per input, at inference, which path the model takes: its modules read
the model's `route_state`, and an `input_router` module chooses a route per image (see
`cliplab.evaluation.routing`, which every evaluation goes through).

Two hooks change the loop's own classification term (the classification objective's):

- `ce_classes(ctx, step, labels)`: which class prompts enter the step's forward (default: all of
  the task's; on an online stream, the classes exposed so far). SIT: only the batch's classes.
- `classification_loss(ctx, out, labels)`: the method's own term(s) instead of the loop's
  label-smoothed cross-entropy (SIT, ER, CoLeCLIP); `labels` index the classes `ce_classes` chose.

A method declares the objectives it is defined for (`objectives`): classification (the
class-incremental, task-incremental and one-session protocols) and/or contrastive
(`time_continual`, `language_continual`); `ctx.objective` says which one a task trains with. A
method whose loss on the main batch differs from the objective's sets `replaces_objective`: the
objective still chooses the batch's texts, and the method's `losses` are the whole loss.

A plug-in imports only this module (and its parent method, if it specialises one). Everything it
needs from the engine comes through the `TaskContext`: the models, the data, and two services the
loop binds: `ctx.batches(...)` (step-addressable batches of any dataset for the task's remaining
steps, sharded across ranks) and `ctx.encode_images(...)` (the evaluation image encoder).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset


@dataclass
class ExtraInputs:
    """Inputs a method adds to the student's single forward pass of a step."""

    images: Tensor | None = None
    tokens: Tensor | None = None


@dataclass
class TaskContext:
    """What the loop hands to a method for one task (read it, don't replace its members)."""

    model: nn.Module  # the student (unwrapped)
    tokenizer: Any
    train_transform: Any
    eval_transform: Any
    scenario: Any
    task: Any
    task_index: int
    config: Any
    device: torch.device
    initial_model: nn.Module  # frozen copy of the model before the first task
    start_model: nn.Module  # frozen copy of the model at the start of this task
    train_data: Any  # dataset of (image, label) with the train transform
    steps: int
    seed: int
    class_tokens: Tensor | None = None
    checkpoint_keys: tuple[str, ...] | None = None  # model tensors a checkpoint holds (None: all)
    objective: str = "classification"  # the loop's loss: classification (CE on class prompts) | contrastive
    start_step: int = 0  # first step still to run (> 0 when resuming inside the task)
    state: dict[str, Any] = field(default_factory=dict)  # scratch space of the method
    # Online protocol: the task's segment of the stream (`cliplab.engine.online.TaskStream`):
    # `exposed(step)` classes seen once the step's stream batch arrived, `new_batch(step)`.
    stream: Any = None
    # Services bound by the engine (see the module docstring); a method calls the methods below.
    batch_source: Callable[..., Iterator] | None = field(default=None, repr=False)
    image_encoder: Callable[..., tuple[Tensor, Tensor | None]] | None = field(default=None, repr=False)
    index_source: Callable[[int], list[int]] | None = field(default=None, repr=False)
    step_listener: Callable[[int], None] | None = field(default=None, repr=False)  # engine: after each step

    def batches(self, dataset: Dataset, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """`(images, labels)` batches of `dataset` for steps `start_step..steps` of this task.

        The batch of step s depends only on (seed, s), so a resumed task sees the batches an
        uninterrupted one would; under torchrun each rank gets its share of every batch.
        """
        if self.batch_source is None:
            raise RuntimeError("ctx.batches is bound by the training loop; this context has no batch source")
        return self.batch_source(dataset, batch_size, seed, self.start_step, self.steps)

    def batch_indices(self, step: int) -> list[int]:
        """Indices into `train_data` of this rank's cross-entropy batch at `step` (what the loop trains on)."""
        if self.index_source is None:
            raise RuntimeError("ctx.batch_indices is bound by the training loop; this context has none")
        return self.index_source(step)

    def visible_classes(self, step: int) -> Tensor | None:
        """Classes a classifier may use at `step`: on an online stream the ones exposed so far (a
        prefix of the label space), else None (every class of the task)."""
        if self.stream is None:
            return None
        return torch.arange(self.stream.exposed(step), device=self.device)

    def train_data_of(self, index: int) -> Dataset:
        """The training data of task `index` of the scenario, with the transform this task trains with."""
        transform = self.train_transform if self.config.augment else self.eval_transform
        return self.train_data if index == self.task_index else self.scenario.tasks[index].train_data(transform)

    def encode_images(self, dataset: Dataset) -> tuple[Tensor, Tensor | None]:
        """Normalised image features (and labels) of `dataset` under the current model, in eval mode."""
        if self.image_encoder is None:
            raise RuntimeError("ctx.encode_images is bound by the engine; this context has no image encoder")
        return self.image_encoder(self.model, dataset, self.config.eval_batch_size, self.device)


@dataclass
class MethodOptions:
    """Base of every method's options; subclasses add fields with documented defaults."""

    @classmethod
    def from_dict(cls, options: dict[str, Any], method: str) -> MethodOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {method!r}; known: {sorted(known)}")
        return cls(**options)


class Method:
    """A method that adds nothing: plain fine-tuning (subclasses override hooks)."""

    name: ClassVar[str] = "finetune"
    trains: ClassVar[bool] = True
    persists_across_tasks: ClassVar[bool] = False  # state_tensors() must survive task boundaries (memory)
    # The method's own training recipe (TrainConfig settings, e.g. SIT's lr 5e-4): applied over the
    # scenario's protocol defaults, under its per-method presets and the user's --set.
    train_defaults: ClassVar[dict[str, Any]] = {}
    trains_backbone: ClassVar[bool] = True  # False: only the modules the method adds are ever trained
    # DistributedDataParallel: some trained parameters get no gradient in a step (e.g. top-k experts).
    find_unused_parameters: ClassVar[bool] = False
    objectives: ClassVar[tuple[str, ...]] = ("classification",)  # the objectives the method is defined for
    replaces_objective: ClassVar[bool] = False  # True: `losses` is the whole loss of the main batch (CLL-CLIP)
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = self.Options.from_dict(dict(options or {}), self.name)

    def begin_task(self, ctx: TaskContext) -> None:
        """Prepare for a task (called after a resume too, before the optimiser is built)."""

    def optimizer_groups(self, ctx: TaskContext, groups: list) -> list:
        """What AdamW trains: `groups` (parameters or parameter groups of the train mode) by default.

        A method may return fewer (freezing what it drops) or add its own parameters (in a group of
        their own, `{"params": [...], "weight_decay": ...}`)."""
        return groups

    def train_dataset(self, ctx: TaskContext) -> Dataset:
        """The dataset this task's batches are drawn from (called after `begin_task`)."""
        return ctx.train_data

    def task_steps(self, ctx: TaskContext, steps: int) -> int:
        """The number of optimiser steps of this task, given the protocol's `steps`."""
        return steps

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        return ExtraInputs()

    def ce_classes(self, ctx: TaskContext, step: int, labels: Tensor) -> Tensor | None:
        """Indices (into `ctx.class_tokens`) of the class prompts this step encodes; None = all.

        The loop re-indexes the labels into this list (a label outside it is an error)."""
        return ctx.visible_classes(step)

    def classification_loss(self, ctx: TaskContext, out, labels: Tensor) -> dict[str, Tensor] | None:
        """The method's classification term(s) for this micro-batch, replacing the loop's
        cross-entropy; None keeps the loop's. `out.class_index` holds the `ce_classes` choice."""
        return None

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        return {}

    def before_step(self, ctx: TaskContext, lr: float) -> None:
        """Called after backward (and gradient clipping) and before the optimiser step at rate `lr`."""

    def after_step(self, ctx: TaskContext, step: int) -> None:
        """Called after every optimiser step, with the number of steps done in this task."""

    def end_task(self, ctx: TaskContext) -> None:
        """Called once the task's last step is done, before evaluation and the task checkpoint."""

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what `state_tensors` returned (mid-task resume)."""

    # --- parameter-efficient methods: modules added to the model ---------------------------

    def model_extension(self, scenario: Any) -> dict[str, Any] | None:
        """JSON-able layout of the modules this method adds for `scenario` (None: it adds none).

        Stored in every checkpoint with the method's name and options; `extend_model(model,
        layout)` must rebuild the same modules from it (e.g. `{"n_tasks": 4}` for one router per task).
        """
        return None

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        """Add the modules `layout` describes to `model`, in place, before the first evaluation.

        Called once per run by the engine, and by `cliplab.load_model` on a checkpoint of the run.
        The added modules must leave the model's outputs unchanged until trained (zero-initialised
        up-projections, LoRA's zero B), so the evaluation before training is the pretrained model's.
        """

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter] | None:
        """The parameters this task trains, or None for the loop's choice (`config.train_mode`).

        When a list is returned, every other parameter is frozen for the task.
        """
        return None

    def updated_outside_optimizer(self, ctx: TaskContext) -> list[str]:
        """Names of parameters the method updated itself during the task (e.g. a selector's
        autoencoders trained in `end_task`); they count as trained in `metrics.json`."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, **{f.name: getattr(self.options, f.name) for f in fields(self.options)}}
