"""Feature-space distillation shared by LwF, VR-LwF, iCaRL and ZSCL.

All four distil a frozen teacher's image–text similarity distribution into the student on some
images (current task, exemplar memory or reference data) against some texts (class prompts, a
replayed vocabulary or reference captions). They differ only in those three choices, so they
share this one implementation of the ZSCL loss (§1.2–1.3 of the reference notes):

    z̄ = s·f̄(x)·ēᵀ   (teacher)      z = s·f(x)·eᵀ   (student; e = ē by default, ZSCL's choice)
    ℓ_i2t = T² · mean_i CE(softmax(z̄_i/T), softmax(z_i/T))          over texts
    ℓ_t2i = T² · mean_k CE(softmax(z̄ᵀ_k/T), softmax(zᵀ_k/T))        over the batch's images

The soft-target cross-entropy has KL's gradient; its value exceeds KL by the teacher entropy
(pitfall P5). Teacher text embeddings of a fixed text set are computed once per task (P4). The
logits and softmaxes are computed in float32 even under bf16 autocast (ZSCL runs CLIP in fp32
throughout; at logit scale 100 and T = 2, bf16's 8-bit mantissa would round the targets).

Distillation images of the current task or of a memory go through the eval transform in
task-incremental scenarios (ZSCL's MTIL code) and the train transform in class-incremental ones
(ZSCL's CIL code), unless `kd_transform` says otherwise; reference images always through the eval
transform (both codes).

Subclasses choose the texts (`distill_tokens`) and possibly the images (`distill_images`). During a
step they may read the step's distillation batch: `kd_batch_images` and `kd_batch_labels` (None when there is
none) and `kd_part`, the slice of them in the current micro-batch (set by `kd_pair`); `distil`
computes the weighted terms of any image features they assemble.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cliplab.methods.base import ExtraInputs, Method, MethodOptions, TaskContext

DIRECTIONS = ("both", "i2t", "t2i")
KD_TRANSFORMS = ("auto", "eval", "train")


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """T² · mean over rows of −Σ softmax(teacher/T) · log_softmax(student/T)."""
    targets = F.softmax(teacher_logits / T, dim=1)
    return -(targets * F.log_softmax(student_logits / T, dim=1)).sum(dim=1).mean() * (T * T)


def distillation_losses(
    student_images: Tensor,
    teacher_images: Tensor,
    student_texts: Tensor,
    teacher_texts: Tensor,
    scale: Tensor,
    T: float,
    directions: str,
) -> dict[str, Tensor]:
    """The image→text and text→image distillation terms on normalised features, in float32.

    Autocast is switched off here: under it a matmul of float32 inputs still runs in bf16.
    """
    with torch.autocast(device_type=student_images.device.type, enabled=False):
        scale = torch.as_tensor(scale).float()
        student_logits = scale * student_images.float() @ student_texts.float().T
        teacher_logits = scale * teacher_images.float() @ teacher_texts.float().T
        return _directions(student_logits, teacher_logits, T, directions)


def _directions(student_logits: Tensor, teacher_logits: Tensor, T: float, directions: str) -> dict[str, Tensor]:
    out = {}
    if directions in ("both", "i2t"):
        out["kd_i2t"] = soft_cross_entropy(student_logits, teacher_logits, T)
    if directions in ("both", "t2i"):
        out["kd_t2i"] = soft_cross_entropy(student_logits.T, teacher_logits.T, T)
    return out


@dataclass
class DistillOptions(MethodOptions):
    """Options shared by every distillation method (defaults: ZSCL MTIL)."""

    T: float = 2.0  # temperature, loss scaled by T² [ZSCL]
    weight: float = 1.0  # λ per direction [ZSCL: 1 MTIL, 5 CIL]
    weight_i2t: float | None = None  # overrides `weight` for image→text
    weight_t2i: float | None = None  # overrides `weight` for text→image
    directions: str = "both"  # both | i2t | t2i  [ZSCL: both]
    teacher: str = "previous"  # previous (start-of-task model) | initial (pretrained model)
    student_text_side: str = (
        "teacher"  # teacher: student logits use teacher text embeddings [ZSCL, P2]; student: own encoder
    )
    kd_images: str = "current"  # current: separate batch of task images (see kd_transform) [ZSCL]; ce_batch: reuse CE batch; reference
    kd_transform: str = "auto"  # auto | eval | train: transform of current-task / memory KD images
    # [ZSCL: eval in MTIL, train in CIL — auto picks by the scenario's protocol; reference images: eval]
    kd_batch_size: int | None = None  # None = the CE batch size [ZSCL: 64]
    cache_teacher_texts: bool = True  # False = reference-code style: re-encode the fixed texts every step (P4)

    def __post_init__(self) -> None:
        if self.directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {self.directions!r}")
        if self.teacher not in ("previous", "initial"):
            raise ValueError(f"teacher must be 'previous' or 'initial', got {self.teacher!r}")
        if self.student_text_side not in ("teacher", "student"):
            raise ValueError(f"student_text_side must be 'teacher' or 'student', got {self.student_text_side!r}")
        if self.kd_images not in ("current", "ce_batch", "reference", "memory"):
            raise ValueError(f"kd_images must be current, ce_batch, reference or memory, got {self.kd_images!r}")
        if self.T <= 0:
            raise ValueError(f"temperature T must be positive, got {self.T}")
        if self.kd_transform not in KD_TRANSFORMS:
            raise ValueError(f"kd_transform must be one of {KD_TRANSFORMS}, got {self.kd_transform!r}")


class DistillationMethod(Method):
    """Base of the distillation methods: subclasses choose texts (and possibly images)."""

    Options = DistillOptions

    # -- what subclasses choose ------------------------------------------------------------
    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        """Token ids of the distillation texts (called once per task unless `texts_per_step`)."""
        raise NotImplementedError

    texts_per_step: bool = False

    def kd_transform(self, ctx: TaskContext, source: str = "current"):
        """The transform of distillation images from `source` (current | memory | reference).

        `kd_transform=auto`: the train transform for current-task and memory images in a
        class-incremental scenario (ZSCL's CIL code) unless the run trains without augmentation
        (`augment=false`), else the eval transform (ZSCL's MTIL code; reference images in both).
        """
        choice = self.options.kd_transform
        if choice == "auto":
            cil = getattr(ctx.scenario, "protocol", None) == "class_incremental"
            augment = getattr(ctx.config, "augment", True)
            choice = "train" if source != "reference" and cil and augment else "eval"
        return ctx.train_transform if choice == "train" else ctx.eval_transform

    def distill_images(self, ctx: TaskContext):
        """Dataset of (image, label) for the distillation batches (None: no distillation now)."""
        mode = self.options.kd_images
        if mode == "current":
            return ctx.task.train_data(self.kd_transform(ctx, "current"))
        if mode == "reference":
            if ctx.scenario.reference is None:
                raise ValueError(f"scenario {ctx.scenario.name!r} has no reference data; use kd_images=current")
            return ctx.scenario.reference.images(self.kd_transform(ctx, "reference"))
        if mode == "memory":
            raise ValueError(
                f"kd_images=memory needs an exemplar memory, which method {self.name!r} does not keep; "
                "use kd_images=current, ce_batch or reference (or method icarl)"
            )
        return None  # ce_batch

    # -- hooks -------------------------------------------------------------------------------
    def teacher_choice(self, ctx: TaskContext) -> str:
        """previous (the start-of-task model) or initial (the pretrained model)."""
        return self.options.teacher

    def begin_task(self, ctx: TaskContext) -> None:
        self.teacher = ctx.start_model if self.teacher_choice(ctx) == "previous" else ctx.initial_model
        self.kd_data = self.distill_images(ctx)
        self.kd_iter = None
        if self.kd_data is not None and len(self.kd_data) > 0:
            batch = self.options.kd_batch_size or ctx.config.batch_size
            self.kd_iter = ctx.batches(self.kd_data, batch, ctx.seed + 7919)
        self.tokens, self.teacher_texts = None, None
        if not self.texts_per_step:
            self._set_texts(ctx, step=0)

    def _set_texts(self, ctx: TaskContext, step: int) -> None:
        self.tokens = self.distill_tokens(ctx, step).to(ctx.device)
        with torch.no_grad():
            self.teacher_texts = self.teacher.encode_text(self.tokens, normalize=True)

    def distilling(self) -> bool:
        return self.kd_iter is not None or self.options.kd_images == "ce_batch"

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        if self.texts_per_step or not self.options.cache_teacher_texts:
            self._set_texts(ctx, step)
        images, self.kd_batch_labels = None, None
        if self.kd_iter is not None:
            images, self.kd_batch_labels = next(self.kd_iter)
            images = images.to(ctx.device)
        self.kd_batch_images, self._kd_offset, self.kd_part = images, 0, slice(None)
        tokens = self.tokens if self.options.student_text_side == "student" and self.distilling() else None
        return ExtraInputs(images=images, tokens=tokens)

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        if not self.distilling():
            return {}
        student_images, teacher_input = self.kd_pair(out)
        return self.distil(ctx, out, student_images, self.teacher_features(teacher_input))

    def kd_pair(self, out) -> tuple[Tensor, Tensor]:
        """(student features, teacher input images) of this forward's distillation images."""
        if self.kd_batch_images is None:
            return out.ce_images, out.ce_inputs
        # With grad_accum > 1 the loop sends consecutive slices of the step's extra images through
        # successive forwards: the teacher must see the same slice as the student.
        student_images = out.extra_images
        self.kd_part = slice(self._kd_offset, self._kd_offset + len(student_images))
        self._kd_offset += len(student_images)
        return student_images, self.kd_batch_images[self.kd_part]

    def teacher_features(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self.teacher.encode_image(images, normalize=True)

    def distil(self, ctx: TaskContext, out, student_images: Tensor, teacher_images: Tensor) -> dict[str, Tensor]:
        """The weighted distillation terms of these image features against the distillation texts."""
        if self.options.student_text_side == "student":  # subclasses may append texts after the distilled ones
            student_texts = out.extra_texts[: len(self.teacher_texts)]
        else:
            student_texts = self.teacher_texts
        scale = ctx.model.logit_scale.exp().detach()
        raw = distillation_losses(
            student_images,
            teacher_images,
            student_texts,
            self.teacher_texts,
            scale,
            self.options.T,
            self.options.directions,
        )
        weights = {"kd_i2t": self.options.weight_i2t, "kd_t2i": self.options.weight_t2i}
        return {k: (weights[k] if weights[k] is not None else self.options.weight) * v for k, v in raw.items()}
