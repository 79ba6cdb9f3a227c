"""LwF for CLIP (Li & Hoiem 2016): distil the previous model on the current data.

Classification (as adapted by ZSCL): the current task's images against its class prompts.
Contrastive (TiC-CLIP's LwF baseline): the batch's own image–caption similarity matrix, i.e. the
teacher's softmax over the batch's captions for each image (and over its images for each
caption) distilled into the student's, with the ZSCL loss (`distill.distillation_losses`: soft
cross-entropy, temperature `T`, T² scaling, student logits from its own caption features).
TiC's released code has no LwF; the paper's description is followed (docs/tic_modx.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cliplab.methods.base import ExtraInputs, TaskContext
from cliplab.methods.distill import DistillationMethod, distillation_losses


class LwF(DistillationMethod):
    """Teacher = model at the start of the task; texts = current class prompts (training template),
    or, under the contrastive objective, the batch's own captions."""

    name = "lwf"
    objectives = ("classification", "contrastive")

    def begin_task(self, ctx: TaskContext) -> None:
        if ctx.objective != "contrastive":
            return super().begin_task(ctx)
        self.teacher = ctx.start_model if self.options.teacher == "previous" else ctx.initial_model

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        return ExtraInputs() if ctx.objective == "contrastive" else super().extra_inputs(ctx, step)

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        if ctx.objective != "contrastive":
            return super().losses(ctx, out)
        with torch.no_grad():
            teacher_images = self.teacher.encode_image(out.ce_inputs, normalize=True).float()
            teacher_texts = self.teacher.encode_text(out.text_inputs, normalize=True).float()
        scale = ctx.model.logit_scale.exp().detach()
        raw = distillation_losses(
            out.ce_images.float(),
            teacher_images,
            out.class_texts.float(),
            teacher_texts,
            scale,
            self.options.T,
            self.options.directions,
        )
        weights = {"kd_i2t": self.options.weight_i2t, "kd_t2i": self.options.weight_t2i}
        return {k: (weights[k] if weights[k] is not None else self.options.weight) * v for k, v in raw.items()}

    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        return ctx.class_tokens
