"""iCaRL for CLIP: an exemplar memory chosen by herding, with distillation on the exemplars.

Two variants, because the CLIP literature's "iCaRL" is not the classical one (P12):

- `classical` (Rebuffi et al. 2017 adapted to CLIP): per-class herding towards each class mean;
  memory split evenly over seen classes; exemplars are rehearsed with cross-entropy among all
  seen classes' prompts and distilled from the previous-task model.
- `zscl` (ZSCL's iCaRL): class-agnostic herding towards the mean of each task's data; the
  memory is split evenly over tasks; exemplars are only distilled, with the *pretrained* model
  as teacher and the current task's class prompts as texts; no cross-entropy on exemplars.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from cliplab.methods.base import ExtraInputs, TaskContext
from cliplab.methods.distill import DistillationMethod, DistillOptions


@dataclass
class ICaRLOptions(DistillOptions):
    variant: str = "classical"  # classical | zscl
    memory_size: int = 200  # exemplars in total [ZSCL: 10,000 MTIL, 5,000 CIL; small for toy scenarios]
    max_candidates: int = 2000  # herding candidates per task [ZSCL: 30,000 MTIL / 10,000 CIL]
    kd_images: str = "memory"  # the exemplar memory (the only choice for iCaRL)
    rehearsal_weight: float = 1.0  # weight of the exemplar cross-entropy (classical only)
    teacher: str | None = None  # None: previous (classical) | initial (zscl, P12); an explicit value is kept

    def __post_init__(self) -> None:
        if self.variant not in ("classical", "zscl"):
            raise ValueError(f"variant must be 'classical' or 'zscl', got {self.variant!r}")
        if self.teacher is None:
            self.teacher = "initial" if self.variant == "zscl" else "previous"
        super().__post_init__()
        if self.kd_images != "memory":
            raise ValueError(
                f"iCaRL distils on its exemplar memory; kd_images must be 'memory', got {self.kd_images!r}"
            )


def herding(features: Tensor, m: int) -> Tensor:
    """Indices of m rows chosen greedily so their running mean best matches the mean of all rows.

    Step k picks the row minimising ‖μ − (Σ_selected + f_i)/k‖ among rows not yet chosen; the
    result is a priority order, so the first m' < m indices are the herding choice for m'.
    """
    mean = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool)
    for k in range(1, min(m, len(features)) + 1):
        distance = (mean - (running + features) / k).norm(dim=1)
        distance[~available] = float("inf")
        pick = int(distance.argmin())
        chosen.append(pick)
        running += features[pick]
        available[pick] = False
    return torch.tensor(chosen, dtype=torch.long)


class MemoryDataset(Dataset):
    """Exemplars: (task index, item index, global label) rows resolved against task datasets."""

    def __init__(self, rows: Tensor, task_datasets: dict[int, Dataset]) -> None:
        self.rows, self.datasets = rows, task_datasets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        task, item, label = (int(v) for v in self.rows[i])
        image, _ = self.datasets[task][item]
        return image, label


class ICaRL(DistillationMethod):
    name = "icarl"
    Options = ICaRLOptions
    persists_across_tasks = True

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.memory = torch.zeros(0, 3, dtype=torch.long)  # rows: task, item, global label

    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        return ctx.class_tokens

    def distill_images(self, ctx: TaskContext):
        if len(self.memory) == 0:
            return None
        tasks = sorted({int(t) for t in self.memory[:, 0]})
        return MemoryDataset(self.memory, {t: ctx.scenario.tasks[t].train_data(ctx.eval_transform) for t in tasks})

    def distilling(self) -> bool:
        return self.kd_iter is not None

    def begin_task(self, ctx: TaskContext) -> None:
        super().begin_task(ctx)
        self.seen_tokens = None
        if self.options.variant == "classical" and len(self.memory):
            prompts = [p for task in ctx.scenario.tasks[: ctx.task_index + 1] for p in task.train_prompts()]
            self.seen_tokens = ctx.tokenizer(prompts).to(ctx.device)

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        extra = super().extra_inputs(ctx, step)
        self._labels = None
        if self.seen_tokens is not None and extra.images is not None:
            self._labels = self.kd_batch_labels
            extra.tokens = self.seen_tokens if extra.tokens is None else torch.cat([extra.tokens, self.seen_tokens])
        return extra

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        terms = super().losses(ctx, out) if self.distilling() else {}
        if self._labels is not None:
            seen = out.extra_texts[-len(self.seen_tokens) :]
            logits = ctx.model.logit_scale.exp().detach() * out.extra_images @ seen.T
            labels = self._labels[self.kd_part].to(ctx.device)  # this micro-batch's exemplars
            terms["rehearsal_ce"] = self.options.rehearsal_weight * F.cross_entropy(
                logits, labels, label_smoothing=ctx.config.label_smoothing
            )
        return terms

    def end_task(self, ctx: TaskContext) -> None:
        self.memory = self._updated_memory(ctx)

    def _updated_memory(self, ctx: TaskContext) -> Tensor:
        """Shrink old exemplar sets and add herded exemplars of the task just learned."""
        data = ctx.task.train_data(ctx.eval_transform)
        n = min(len(data), self.options.max_candidates)
        candidates = torch.randperm(len(data), generator=torch.Generator().manual_seed(ctx.seed))[:n]
        subset = torch.utils.data.Subset(data, candidates.tolist())
        feats, labels = ctx.encode_images(subset)
        offset = ctx.scenario.classes_up_to(ctx.task_index)[1][-1]
        if self.options.variant == "zscl":
            per_task = self.options.memory_size // (ctx.task_index + 1)
            old = torch.cat(
                [self.memory[self.memory[:, 0] == t][:per_task] for t in range(ctx.task_index)] or [self.memory[:0]]
            )
            pick = herding(feats, per_task)
            new = torch.stack([torch.full_like(pick, ctx.task_index), candidates[pick], labels[pick] + offset], 1)
            return torch.cat([old, new])
        n_seen = offset + ctx.task.n_classes
        # Rebuffi et al.'s m = K / classes, but never 0: with more classes than memory slots every
        # class keeps one exemplar and the memory holds n_seen > memory_size (a warning says so).
        per_class = max(1, self.options.memory_size // n_seen)
        if n_seen > self.options.memory_size:
            warnings.warn(
                f"icarl: {n_seen} classes seen but memory_size={self.options.memory_size}; keeping one "
                f"exemplar per class ({n_seen} in all). Raise method.memory_size to stay within budget.",
                stacklevel=2,
            )
        old = [self.memory[self.memory[:, 2] == c][:per_class] for c in range(offset)]
        new = []
        for c in range(ctx.task.n_classes):
            rows = torch.nonzero(labels == c).flatten()
            pick = rows[herding(feats[rows], per_class)]
            new.append(
                torch.stack(
                    [torch.full_like(pick, ctx.task_index), candidates[pick], torch.full_like(pick, offset + c)], 1
                )
            )
        return torch.cat(old + new)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"memory": self.memory}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "memory" in tensors:
            self.memory = tensors["memory"].long()
