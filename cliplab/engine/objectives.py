"""The loop's own loss on its main batch: classification cross-entropy or CLIP's contrastive loss.

The scenario's protocol chooses (`cliplab.scenarios.OBJECTIVES`): the class-incremental,
task-incremental and one-session protocols fine-tune on labelled images against class prompts
(`Classification`, ZSCL's recipe); `time_continual` continues CLIP's own pretraining on
image–caption pairs (`Contrastive`, open_clip's `ClipLoss` as TiC-CLIP and Mod-X train). Methods
add their terms on top through the same single student forward, whichever objective runs.

An objective says three things: what the batch's targets become on the device (labels, or the
token ids of the captions), which texts the student encodes with the batch (the task's class
prompts, or the batch's own captions) and the loss terms. Under cross-entropy a method may choose
which class prompts a step encodes (`Method.ce_classes`: SIT's batch classes) and bring its own
classification term (`Method.classification_loss`: SIT, ER, CoLeCLIP); a method whose main-batch
loss is entirely its own sets `Method.replaces_objective` (CLL-CLIP) and the loop skips `losses`. `clip_contrastive_loss` is a pure
function so other objectives (a text–text one for continual language learning, say) reuse it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cliplab.engine import distributed
from cliplab.methods.base import Method, TaskContext

LOGIT_SCALE_MAX = math.log(100.0)  # open_clip clamps the learnable logit scale to [0, ln 100]


def clip_contrastive_loss(
    image_features: Tensor, text_features: Tensor, logit_scale: Tensor, groups: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE of CLIP: ½[CE(s·I Tᵀ, y) + CE(s·T Iᵀ, y)] on L2-normalised features.

    `groups=None`: pair k is the only positive of row k (`y = arange`, open_clip's `ClipLoss`).
    With `groups` (one id per pair, e.g. the image id when an image has several captions) every
    pair of the same group is a positive and the targets are uniform over them. Identical caption
    texts need no group: their embeddings are identical, so the two forms have the same gradient.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            f"contrastive pairs need as many images as texts: {tuple(image_features.shape)} vs {tuple(text_features.shape)}"
        )
    logits = logit_scale * image_features @ text_features.T
    if groups is None:
        targets = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    truth = (groups[:, None] == groups[None, :]).float()
    truth = truth / truth.sum(1, keepdim=True)  # symmetric, so the same soft targets serve both directions
    return 0.5 * (F.cross_entropy(logits, truth) + F.cross_entropy(logits.T, truth))


def gather_with_grad(features: Tensor) -> Tensor:
    """Every rank's features, concatenated in rank order; gradients flow back to each rank's own part.

    Each rank then computes the loss of the whole global batch (open_clip's `gather_with_grad`);
    DDP's gradient averaging turns that into exactly the single-process gradient."""
    _, world = distributed.rank_and_world()
    if world == 1:
        return features
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(features))


class Objective:
    """Base: what the loop minimises on its main batch (see the module docstring)."""

    name: ClassVar[str]

    def begin_task(self, ctx: TaskContext) -> None:
        """Prepare for a task (after the method's `begin_task`)."""

    def targets(self, ctx: TaskContext, raw: Any) -> Tensor:
        """The batch's targets as a tensor on the device."""
        raise NotImplementedError

    def texts(self, ctx: TaskContext, targets: Tensor, part: slice) -> Tensor:
        """Token ids the student encodes with the images of micro-batch `part`."""
        raise NotImplementedError

    def select(self, ctx: TaskContext, method: Method, step: int, targets: Tensor) -> Tensor:
        """The step's targets once the method has had its say (once per step, before the micro-batches)."""
        return targets

    def losses(self, ctx: TaskContext, method: Method, out, targets: Tensor, part: slice) -> dict[str, Tensor]:
        raise NotImplementedError

    def after_step(self, ctx: TaskContext) -> None:
        """Called right after every optimiser step."""


def classification_logits(images: Tensor, texts: Tensor, scale: Tensor) -> Tensor:
    """scale · images · textsᵀ in float32 even under bf16 autocast (as the distillation logits are):
    autocast would otherwise run the matmul in bf16 whatever the inputs' dtype."""
    with torch.autocast(device_type=images.device.type, enabled=False):
        return scale.float() * images.float() @ texts.float().T


class Classification(Objective):
    """Label-smoothed cross-entropy over the task's class prompts (single training template), with the
    logit scale the task started with (ZSCL's recipe; frozen unless `freeze_logit_scale=false`).

    The method may restrict a step to some of the prompts (`ce_classes`; the labels are re-indexed
    into that list, and a label outside it is an error) and replace the cross-entropy by its own
    term(s) (`classification_loss`, which sees the choice as `out.class_index`)."""

    name = "classification"

    def begin_task(self, ctx: TaskContext) -> None:
        self.scale = ctx.model.logit_scale.exp().detach()
        self.tokens, self.chosen = ctx.class_tokens, None

    def targets(self, ctx: TaskContext, raw: Any) -> Tensor:
        return raw.to(ctx.device)

    def select(self, ctx: TaskContext, method: Method, step: int, targets: Tensor) -> Tensor:
        chosen = method.ce_classes(ctx, step, targets)
        self.chosen = chosen
        if chosen is None:
            self.tokens = ctx.class_tokens
            return targets
        chosen = chosen.to(targets.device)
        position = torch.full((len(ctx.class_tokens),), -1, dtype=torch.long, device=targets.device)
        position[chosen] = torch.arange(len(chosen), device=targets.device)
        mapped = position[targets]
        if (mapped < 0).any():
            missing = sorted(set(targets[mapped < 0].tolist()))
            raise ValueError(f"labels {missing} are not among the classes this step encodes ({chosen.tolist()})")
        self.tokens = ctx.class_tokens[chosen.to(ctx.class_tokens.device)]
        return mapped

    def texts(self, ctx: TaskContext, targets: Tensor, part: slice) -> Tensor:
        return self.tokens

    def losses(self, ctx: TaskContext, method: Method, out, targets: Tensor, part: slice) -> dict[str, Tensor]:
        out.class_index = self.chosen
        own = method.classification_loss(ctx, out, targets[part])
        if own is not None:
            return dict(own)
        logits = classification_logits(out.ce_images, out.class_texts, self.scale)
        return {"ce": F.cross_entropy(logits, targets[part], label_smoothing=ctx.config.label_smoothing)}


class Contrastive(Objective):
    """CLIP's symmetric InfoNCE on the batch's image–caption pairs (TiC-CLIP, Mod-X).

    The logit scale is the model's own: learnable (and clamped to [0, ln 100] after every step, as
    open_clip does) unless `freeze_logit_scale`. Under torchrun the features of every rank are
    gathered, so negatives come from the whole global batch. With `grad_accum` > 1 each micro-batch
    is its own contrastive batch (fewer negatives; open_clip's feature-caching accumulation is not
    implemented). Captions are tokenised once per distinct text.
    """

    name = "contrastive"

    def __init__(self) -> None:
        self._tokens: dict[str, Tensor] = {}

    def targets(self, ctx: TaskContext, raw: Any) -> Tensor:
        if torch.is_tensor(raw):  # already token ids
            return raw.to(ctx.device)
        texts = list(raw)
        missing = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        if missing:
            for text, row in zip(missing, ctx.tokenizer(missing)):
                self._tokens[text] = row
        return torch.stack([self._tokens[t] for t in texts]).to(ctx.device)

    def texts(self, ctx: TaskContext, targets: Tensor, part: slice) -> Tensor:
        return targets[part]

    def losses(self, ctx: TaskContext, method: Method, out, targets: Tensor, part: slice) -> dict[str, Tensor]:
        images, texts = gather_with_grad(out.ce_images.float()), gather_with_grad(out.class_texts.float())
        return {"clip": clip_contrastive_loss(images, texts, ctx.model.logit_scale.exp())}

    def after_step(self, ctx: TaskContext) -> None:
        scale = ctx.model.logit_scale
        if scale.requires_grad:
            with torch.no_grad():
                scale.clamp_(0.0, LOGIT_SCALE_MAX)


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {c.name: c for c in (Classification, Contrastive)}


def make_objective(name: str) -> Objective:
    if name not in OBJECTIVE_CLASSES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVE_CLASSES)}")
    return OBJECTIVE_CLASSES[name]()


__all__ = [
    "LOGIT_SCALE_MAX",
    "OBJECTIVE_CLASSES",
    "Classification",
    "Contrastive",
    "Objective",
    "classification_logits",
    "clip_contrastive_loss",
    "gather_with_grad",
    "make_objective",
]
