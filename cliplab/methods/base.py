"""The plug-in interface every continual-learning method implements.

The training loop (`cliplab.engine.loop`) owns the optimiser, schedule, data, checkpoints and the
cross-entropy term. A method only says what is different about it, through hooks:

- `begin_task(ctx)`: build teachers, vocabularies, reference data, memory;
- `extra_inputs(ctx, step)`: images/tokens to push through the student in the same forward;
- `losses(ctx, out)`: additional loss terms (a dict, so each is logged separately);
- `after_step(ctx, step)`: parameter-space updates (weight ensembles);
- `end_task(ctx)`: interpolation, memory updates;
- `state_tensors()` / `load_state_tensors()`: what a mid-task checkpoint must hold to resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


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
    state: dict[str, Any] = field(default_factory=dict)  # scratch space of the method


@dataclass
class MethodOptions:
    """Base of every method's options; subclasses add fields with documented defaults."""

    @classmethod
    def from_dict(cls, options: dict[str, Any], method: str) -> "MethodOptions":
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
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = self.Options.from_dict(dict(options or {}), self.name)

    def begin_task(self, ctx: TaskContext) -> None:
        """Prepare for a task (called after a resume too, before the first remaining step)."""

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        return ExtraInputs()

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        return {}

    def after_step(self, ctx: TaskContext, step: int) -> None:
        """Called after every optimiser step, with the number of steps done in this task."""

    def end_task(self, ctx: TaskContext) -> None:
        """Called once the task's last step is done, before evaluation and the task checkpoint."""

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what `state_tensors` returned (mid-task resume)."""

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, **{f.name: getattr(self.options, f.name) for f in fields(self.options)}}
