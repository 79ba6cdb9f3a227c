"""The online protocol (Si-Blurry; SIT's trainer, LifeLong-CLIP `methods/_trainer.py`) in the one loop.

A task of an online scenario is a segment of the stream. The loop trains on its stream batches in
order (`TaskStream.batch_positions`), each `online_iter` times in a row (SIT: 3; the augmentation
is drawn anew each time), so a task has ``ceil(size / batch) · online_iter`` steps. A class is
*exposed* when its first sample arrives, before that batch's update (`TaskStream.exposed`); the
loop's cross-entropy sees the exposed classes (`TaskContext.visible_classes`), SIT only the batch's.

Anytime evaluation (`AnytimeEvaluation`): when a stream batch has been trained on and the number
of stream samples seen passes the next multiple of `eval_period`, the model is evaluated on the
test images of the exposed classes (at most one evaluation per batch, as in the reference). Each
record keeps its task and step, so a run resumed from a mid-task checkpoint drops the records made
after that checkpoint and redoes them. The optimiser is rebuilt at every task boundary, as SIT's
`online_before_task` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cliplab.evaluation.protocols import anytime_accuracy
from cliplab.io import jsonable, write_json_atomic


@dataclass(frozen=True)
class TaskStream:
    """One task's segment of the stream: what the loop trains on at each step."""

    task: int
    start: int  # stream position of the segment's first sample
    size: int
    batch_size: int
    online_iter: int
    first_seen: tuple[int, ...]  # stream position where each class (exposure rank) first appears

    @property
    def steps(self) -> int:
        return math.ceil(self.size / self.batch_size) * self.online_iter

    def batch_positions(self, step: int) -> list[int]:
        """Positions in the segment of the stream batch trained on at `step`."""
        first = (step // self.online_iter) * self.batch_size
        return list(range(first, min(first + self.batch_size, self.size)))

    def new_batch(self, step: int) -> bool:
        """True at the first of the `online_iter` steps of a stream batch."""
        return step % self.online_iter == 0

    def seen_after(self, step: int) -> int:
        """Stream samples seen (all tasks) once the batch of `step` has arrived."""
        return self.start + min((step // self.online_iter + 1) * self.batch_size, self.size)

    def exposed(self, step: int) -> int:
        """Classes exposed once the batch of `step` has arrived (they are labels 0..k-1)."""
        seen = self.seen_after(step)
        return sum(1 for position in self.first_seen if position < seen)


def task_stream(scenario, index: int, config) -> TaskStream:
    stream = scenario.stream
    return TaskStream(
        index,
        stream.task_start(index),
        stream.task_sizes[index],
        config.batch_size,
        config.online_iter,
        tuple(stream.first_seen),
    )


def online_class_prompts(scenario, index: int) -> list[str]:
    """Training prompts of every class exposed by the end of task `index` (labels are exposure ranks)."""
    names, _ = scenario.classes_up_to(index)
    template = scenario.tasks[index].train_template
    return [template(c) if callable(template) else template.format(c) for c in names]


class AnytimeEvaluation:
    """The step listener that evaluates every `eval_period` stream samples, recorded in progress.json."""

    def __init__(self, evaluator, model, stream: TaskStream, period: int, data: dict[str, Any], path) -> None:
        self.evaluator, self.model, self.stream, self.period = evaluator, model, stream, period
        self.records: list[dict[str, Any]] = data.setdefault("anytime", [])
        self.data, self.path = data, path

    def resume_at(self, step: int) -> None:
        """Drop the records this task made after `step` (they are redone)."""
        task = self.stream.task
        self.records[:] = [r for r in self.records if r["task"] < task or (r["task"] == task and r["step"] <= step)]

    def __call__(self, done: int) -> None:
        if done % self.stream.online_iter and done != self.stream.steps:
            return  # the stream batch is trained on again
        samples = self.stream.seen_after(done - 1)
        if samples <= self.period * (len(self.records) + 1):
            return
        exposed = self.stream.exposed(done - 1)
        was_training = self.model.training
        try:
            accuracy = anytime_accuracy(self.evaluator, self.model, exposed)
        finally:
            self.model.train(was_training)
        self.records.append(
            jsonable(
                {"task": self.stream.task, "step": done, "samples": samples, "exposed": exposed, "accuracy": accuracy}
            )
        )
        write_json_atomic(self.path, self.data)


def bind_online(ctx, evaluator, model, progress_data: dict, progress_path, rank: int) -> Callable | None:
    """Give an online task's context its stream listener (rank 0 evaluates); returns it."""
    if ctx.stream is None or rank != 0:
        return None
    listener = AnytimeEvaluation(evaluator, model, ctx.stream, ctx.config.eval_period, progress_data, progress_path)
    ctx.step_listener = listener
    return listener


__all__ = ["AnytimeEvaluation", "TaskStream", "bind_online", "online_class_prompts", "task_stream"]
