"""The student's forward pass as one module call, and frozen teachers.

Every method's trainable computation (CE images, distillation images, class prompts, optionally
vocabulary texts) runs through ONE `ClipStudent.forward` per step. That single call is what
DistributedDataParallel needs to synchronise gradients, and it lets methods add inputs without
touching the loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class StudentOutput:
    """Normalised features of one student forward, split back into the parts that were sent.

    `ce_images` / `class_texts` are the objective's batch: the images and the class prompts under
    classification, the images and their own captions (pair k = image k, text k) under the
    contrastive objective; `ce_inputs` / `text_inputs` are those inputs as fed to the student."""

    ce_images: Tensor
    extra_images: Tensor | None
    class_texts: Tensor
    extra_texts: Tensor | None
    ce_inputs: Tensor | None = None  # the CE images as fed to the student (a teacher may need them)
    class_index: Tensor | None = None  # which of the task's class prompts `class_texts` are (None: all)
    text_inputs: Tensor | None = None  # the token ids behind `class_texts`
    raw_texts: Tensor | None = None  # `class_texts` before L2 normalisation (CLL-CLIP's cross-lingual MSE)


class ClipStudent(nn.Module):
    """Wraps an open_clip CLIP so a single forward encodes every input a step needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, texts: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised image and text features (`student_forward` normalises them)."""
        return self.model.encode_image(images), self.model.encode_text(texts)


def student_forward(
    student: nn.Module,
    ce_images: Tensor,
    class_tokens: Tensor,
    extra_images: Tensor | None = None,
    extra_tokens: Tensor | None = None,
) -> StudentOutput:
    """Concatenate the step's inputs, run the (possibly DDP-wrapped) student once, split."""
    images = ce_images if extra_images is None else torch.cat([ce_images, extra_images])
    texts = class_tokens if extra_tokens is None else torch.cat([class_tokens, extra_tokens])
    image_features, raw_texts = student(images, texts)
    # the very operation of open_clip's encode_*(normalize=True)
    image_features, text_features = F.normalize(image_features, dim=-1), F.normalize(raw_texts, dim=-1)
    n_img, n_txt = len(ce_images), len(class_tokens)
    return StudentOutput(
        ce_images=image_features[:n_img],
        extra_images=None if extra_images is None else image_features[n_img:],
        class_texts=text_features[:n_txt],
        extra_texts=None if extra_tokens is None else text_features[n_txt:],
        ce_inputs=ce_images,
        text_inputs=class_tokens,
        raw_texts=raw_texts[:n_txt],
    )


def frozen_copy(model: nn.Module) -> nn.Module:
    """An independent, frozen, eval-mode copy: no storage is shared with `model` (pitfall P1)."""
    teacher = copy.deepcopy(model)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


def set_trainable(model: nn.Module, train_mode: str, freeze_logit_scale: bool = True) -> list[nn.Parameter]:
    """Choose the trained parameters: the whole model, the image tower or the text tower."""
    for name, param in model.named_parameters():
        in_image = name.startswith("visual.")
        wanted = {"whole": True, "image": in_image, "text": not in_image}[train_mode]
        if name == "logit_scale":
            wanted = not freeze_logit_scale
        param.requires_grad_(wanted)
    return [p for p in model.parameters() if p.requires_grad]
