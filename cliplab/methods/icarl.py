"""iCaRL for CLIP: an exemplar memory chosen by herding, with distillation.

Two variants, because the CLIP literature's "iCaRL" is not the classical one (P12):

- `classical` (Rebuffi et al. 2017 adapted to CLIP): per-class herding towards each class mean
  with the model just trained; the memory split evenly over seen classes. Training on a new task
  distils the previous-task model's outputs for the *old* classes (their prompts) on the new
  data and on the exemplars, and rehearses the exemplars with cross-entropy among all seen classes.
- `zscl` (ZSCL's iCaRL): class-agnostic herding towards the mean of each task's data; the newest
  task keeps K − ⌊K/t⌋ exemplars and every older one its first ⌊K/t⌋ (t = tasks in memory, the
  newest included; the total exceeds K from t = 3 on, as in ZSCL); exemplars are only distilled
  against the current task's class prompts; no cross-entropy on exemplars. ZSCL has two codes and
  `zscl_code` follows the scenario's protocol by default:
  * MTIL (`mtil/src/models/icarl.py`, `dynamic_dataset.py`): the memory is updated after each
    task with the model just trained; task 1 stores its first K candidates without herding; the
    teacher is the pretrained model; images through the eval transform.
  * CIL (`cil/continual_clip/models.py`, `dynamic_dataset.py`): the memory is updated at the
    *start* of each task with the model before training on it, so it holds the current task's
    exemplars too; task 1 is herded (K exemplars); the teacher is the previous-task model (ZSCL's
    code aliases it to the student, which turns distillation off; ours is a frozen copy); images
    through the train transform, applied once when stored.
  Candidates are the first `max_candidates` images of the task in dataset order (ZSCL: 30,000 MTIL,
  10,000 CIL). ZSCL's herding stores the image at the index found in a feature array it shrinks
  after every pick, read from the unshrunk image tensor; we store the image herding chose (see
  docs/design.md, "iCaRL").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from cliplab.methods.base import ExtraInputs, TaskContext
from cliplab.methods.distill import DistillationMethod, DistillOptions

ZSCL_CODES = ("auto", "mtil", "cil")


@dataclass
class ICaRLOptions(DistillOptions):
    variant: str = "classical"  # classical | zscl
    memory_size: int = 200  # exemplars K [ZSCL: 10,000 MTIL, 5,000 CIL; small for toy scenarios]
    max_candidates: int = 2000  # herding candidates per task [ZSCL: 30,000 MTIL / 10,000 CIL]
    kd_images: str = "memory"  # the exemplar memory (the only choice for iCaRL)
    rehearsal_weight: float = 1.0  # weight of the exemplar cross-entropy (classical only)
    teacher: str | None = None  # None: previous (classical; zscl in CIL) | initial (zscl in MTIL, P12)
    directions: str | None = None  # None: i2t (classical: each image's old-class outputs) | both (zscl)
    zscl_code: str = "auto"  # auto | mtil | cil: which ZSCL iCaRL code variant=zscl follows (auto: the protocol)

    def __post_init__(self) -> None:
        if self.variant not in ("classical", "zscl"):
            raise ValueError(f"variant must be 'classical' or 'zscl', got {self.variant!r}")
        if self.zscl_code not in ZSCL_CODES:
            raise ValueError(f"zscl_code must be one of {ZSCL_CODES}, got {self.zscl_code!r}")
        if self.memory_size < 1 or self.max_candidates < 1:
            raise ValueError(
                f"memory_size and max_candidates must be >= 1, got {self.memory_size}, {self.max_candidates}"
            )
        if self.directions is None:
            self.directions = "i2t" if self.variant == "classical" else "both"
        # The shared checks; a teacher left None is chosen per task from the variant and protocol.
        teacher, self.teacher = self.teacher, self.teacher or "previous"
        super().__post_init__()
        self.teacher = teacher
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


class FrozenAugmentation(Dataset):
    """`dataset` (built with a random transform) whose item i is always transformed the same way.

    ZSCL's CIL memory stores each exemplar as the tensor the train transform made once; here the
    transform of item i draws from torch's generator seeded with (seed, i), inside a forked RNG so
    the run's own random stream is untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def targets(self):
        return getattr(self.dataset, "targets", None)

    def __getitem__(self, i: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + int(i))
            return self.dataset[i]


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


def _labels(data: Dataset, items: Tensor) -> Tensor:
    """Local labels of `items` without running a model (the dataset's targets when it has them)."""
    targets = getattr(data, "targets", None)
    if targets is not None:
        return torch.as_tensor([int(targets[int(i)]) for i in items], dtype=torch.long)
    return torch.as_tensor([int(data[int(i)][1]) for i in items], dtype=torch.long)


class ICaRL(DistillationMethod):
    name = "icarl"
    Options = ICaRLOptions
    persists_across_tasks = True

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.memory = torch.zeros(0, 3, dtype=torch.long)  # rows: task, item, global label

    # -- choices -------------------------------------------------------------------------------
    def zscl_code(self, ctx: TaskContext) -> str | None:
        """ "mtil" or "cil" (which ZSCL code variant=zscl follows here); None for the classical variant."""
        if self.options.variant != "zscl":
            return None
        if self.options.zscl_code != "auto":
            return self.options.zscl_code
        return "cil" if getattr(ctx.scenario, "protocol", None) == "class_incremental" else "mtil"

    def teacher_choice(self, ctx: TaskContext) -> str:
        if self.options.teacher is not None:
            return self.options.teacher
        return "initial" if self.zscl_code(ctx) == "mtil" else "previous"

    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        if self.options.variant == "classical" and ctx.task_index > 0:  # the old classes' outputs
            return ctx.tokenizer([p for task in ctx.scenario.tasks[: ctx.task_index] for p in task.train_prompts()])
        return ctx.class_tokens

    def memory_data(self, ctx: TaskContext, task: int) -> Dataset:
        """Task `task`'s training images as the memory stores them (train transform: frozen once)."""
        transform = self.kd_transform(ctx, "memory")
        data = ctx.scenario.tasks[task].train_data(transform)
        if transform is ctx.train_transform and transform is not ctx.eval_transform:
            return FrozenAugmentation(data, ctx.config.seed * 1000 + task)
        return data

    def distill_images(self, ctx: TaskContext):
        if len(self.memory) == 0:
            return None
        tasks = sorted({int(t) for t in self.memory[:, 0]})
        return MemoryDataset(self.memory, {t: self.memory_data(ctx, t) for t in tasks})

    def distilling(self) -> bool:
        return self.kd_iter is not None

    # -- hooks ---------------------------------------------------------------------------------
    def begin_task(self, ctx: TaskContext) -> None:
        if self.zscl_code(ctx) == "cil":  # before training, with the start-of-task model
            self.memory = self._zscl_memory(ctx)
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
        terms: dict[str, Tensor] = {}
        if self.distilling() and self.options.variant == "classical":  # new data and exemplars
            exemplars, teacher_input = self.kd_pair(out)
            student = torch.cat([out.ce_images, exemplars])
            teacher = torch.cat([self.teacher_features(out.ce_inputs), self.teacher_features(teacher_input)])
            terms = self.distil(ctx, out, student, teacher)
        elif self.distilling():
            terms = super().losses(ctx, out)
        if self._labels is not None:
            seen = out.extra_texts[-len(self.seen_tokens) :]
            with torch.autocast(device_type=out.extra_images.device.type, enabled=False):
                scale = ctx.model.logit_scale.exp().detach().float()
                logits = scale * out.extra_images.float() @ seen.float().T
                labels = self._labels[self.kd_part].to(ctx.device)  # this micro-batch's exemplars
                terms["rehearsal_ce"] = self.options.rehearsal_weight * F.cross_entropy(
                    logits, labels, label_smoothing=ctx.config.label_smoothing
                )
        return terms

    def end_task(self, ctx: TaskContext) -> None:
        code = self.zscl_code(ctx)
        if code == "mtil":
            self.memory = self._zscl_memory(ctx)
        elif code is None:
            self.memory = self._classical_memory(ctx)

    # -- memory --------------------------------------------------------------------------------
    def _zscl_memory(self, ctx: TaskContext) -> Tensor:
        """ZSCL's split: older tasks keep their first ⌊K/t⌋, the current task gets K − ⌊K/t⌋ (K if t = 1)."""
        K, t, task = self.options.memory_size, ctx.task_index + 1, ctx.task_index
        data = self.memory_data(ctx, task)
        candidates = torch.arange(min(len(data), self.options.max_candidates))  # dataset order
        if t == 1 and self.zscl_code(ctx) == "mtil":  # the first K images, no herding
            pick = candidates[:K]
            labels = _labels(data, pick)
        else:
            feats, labels = ctx.encode_images(Subset(data, candidates.tolist()))
            chosen = herding(feats, K if t == 1 else K - K // t)
            pick, labels = candidates[chosen], labels[chosen]
        offset = ctx.scenario.classes_up_to(task)[1][-1]
        new = torch.stack([torch.full_like(pick, task), pick, labels + offset], 1)
        old = [self.memory[self.memory[:, 0] == s][: K // t] for s in range(task)]
        return torch.cat([*old, new])

    def _classical_memory(self, ctx: TaskContext) -> Tensor:
        """Rebuffi et al.: m = K / seen classes per class, herded per class; old sets cut to m."""
        data = self.memory_data(ctx, ctx.task_index)
        n = min(len(data), self.options.max_candidates)
        candidates = torch.randperm(len(data), generator=torch.Generator().manual_seed(ctx.seed))[:n]
        feats, labels = ctx.encode_images(Subset(data, candidates.tolist()))
        offset = ctx.scenario.classes_up_to(ctx.task_index)[1][-1]
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
