"""Experience replay with a reservoir buffer: the online protocol's rehearsal baseline.

As Si-Blurry's ER (`methods/er_baseline.py`, MVP code; the same in LifeLong-CLIP's trainer):
every stream sample is offered to a fixed-size memory by reservoir sampling (Vitter's algorithm R:
the n-th sample seen replaces a random slot with probability `memory_size / n`) once its stream
batch has been trained on; each optimiser step adds a batch drawn from the memory to the stream
batch, and the cross-entropy is taken over the union, among the classes exposed so far.

The memory holds (task, index) pairs, not images: a memory batch is loaded from the task's
training data with the training transform, so the augmentation is drawn anew each time (as the
reference re-augments on the GPU). Reservoir decisions and memory batches are seeded by (run
seed, counter), so a resumed run makes the same ones. ER needs the online protocol's stream; on
other scenarios use iCaRL (exemplars chosen by herding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cliplab.methods.base import ExtraInputs, Method, MethodOptions, TaskContext


@dataclass
class EROptions(MethodOptions):
    memory_size: int = 2000  # samples kept [Si-Blurry scripts/er.sh: MEM_SIZE 2000 on CIFAR-100]
    # replayed samples per step; None: the stream batch size [their batch of 64 is 32 stream + 32 memory]
    memory_batch: int | None = None

    def __post_init__(self) -> None:
        if self.memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {self.memory_size}")
        if self.memory_batch is not None and self.memory_batch < 1:
            raise ValueError(f"memory_batch must be >= 1 (or None), got {self.memory_batch}")


def reservoir_slot(seen: int, memory_size: int, seed: int) -> int | None:
    """Where the `seen`-th sample (1-based) goes: its own new slot while the memory fills, then a
    uniformly drawn j in [0, seen) kept if j < memory_size (the slot it replaces), else None."""
    if seen <= memory_size:
        return seen - 1
    generator = torch.Generator().manual_seed(seed * 1_000_003 + seen)
    j = int(torch.randint(0, seen, (1,), generator=generator))
    return j if j < memory_size else None


class ExperienceReplay(Method):
    """Rehearsal of a reservoir memory on the online stream."""

    name = "er"
    Options = EROptions
    persists_across_tasks = True

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.memory = torch.empty(0, 2, dtype=torch.long)  # (task, index into that task's train data)
        self.seen = 0
        self._data: dict[int, object] = {}

    def begin_task(self, ctx: TaskContext) -> None:
        if ctx.stream is None:
            raise ValueError(
                f"method 'er' replays an online stream; scenario {ctx.scenario.name!r} is {ctx.scenario.protocol!r}. "
                "Use an online scenario (toy-si-blurry, cifar100-si-blurry) or, offline, icarl"
            )
        self._data = {}
        self._replayed: Tensor | None = None

    def _dataset(self, ctx: TaskContext, task: int):
        if task == ctx.task_index:
            return ctx.train_data
        if task not in self._data:
            transform = ctx.train_transform if ctx.config.augment else ctx.eval_transform
            self._data[task] = ctx.scenario.tasks[task].train_data(transform)
        return self._data[task]

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        self._replayed = None
        if len(self.memory) == 0:
            return ExtraInputs()
        size = min(self.options.memory_batch or ctx.config.batch_size, len(self.memory))
        generator = torch.Generator().manual_seed(ctx.seed * 1_000_003 + step)
        chosen = self.memory[torch.randperm(len(self.memory), generator=generator)[:size]]
        images, labels = zip(*(self._dataset(ctx, int(t))[int(i)] for t, i in chosen.tolist()))
        self._replayed = torch.as_tensor(labels, device=ctx.device)
        return ExtraInputs(images=torch.stack(images).to(ctx.device))

    def classification_loss(self, ctx: TaskContext, out, labels: Tensor) -> dict[str, Tensor] | None:
        images, targets = out.ce_images, labels
        if self._replayed is not None and out.extra_images is not None:
            replayed = self._replayed
            if out.class_index is not None:  # re-index into the classes this step encodes
                position = {int(c): k for k, c in enumerate(out.class_index.tolist())}
                replayed = torch.tensor([position[int(y)] for y in replayed.tolist()], device=labels.device)
            images = torch.cat([images, out.extra_images])
            targets = torch.cat([labels, replayed])
        scale = ctx.model.logit_scale.exp().detach()
        logits = scale * images.float() @ out.class_texts.float().T
        return {"ce": F.cross_entropy(logits, targets, label_smoothing=ctx.config.label_smoothing)}

    def after_step(self, ctx: TaskContext, step: int) -> None:
        stream = ctx.stream
        if step % stream.online_iter and step != ctx.steps:
            return  # the batch is trained on again before it is offered to the memory
        rows = list(self.memory.tolist())
        for index in stream.batch_positions(step - 1):
            self.seen += 1
            slot = reservoir_slot(self.seen, self.options.memory_size, ctx.config.seed)
            if slot is None:
                continue
            if slot == len(rows):
                rows.append([ctx.task_index, index])
            else:
                rows[slot] = [ctx.task_index, index]
        self.memory = torch.tensor(rows, dtype=torch.long).reshape(-1, 2)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"er_memory": self.memory.clone(), "er_seen": torch.tensor([self.seen])}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "er_memory" in tensors:
            self.memory = tensors["er_memory"].long().reshape(-1, 2)
            self.seen = int(tensors["er_seen"][0])


__all__ = ["EROptions", "ExperienceReplay", "reservoir_slot"]
