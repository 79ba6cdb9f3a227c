"""SIT (Wang et al. 2024, "CLIP model is an Efficient Online Lifelong Learner", arXiv 2405.15155).

Parameter-efficient tuning of both CLIP towers on the online stream with the *Symmetric
Image-Text* loss: each image is classified against the texts of only the classes present in its
batch, so the text tower is never pushed by texts of earlier classes that have no image in the
batch. Written from the authors' code, Debatrix/LifeLong-CLIP (`methods/adapter_clip.py`,
`models/adapter_clip.py`, `models/clip/{model,lora,adapter}.py`, `scripts/{lora,adapter}_clip.sh`;
notes in docs/online_open_domain.md):

- `visible_classes="batch"`: the batch's unique labels in first-appearance order, labels
  re-indexed into them (`"all"`: every exposed class, the asymmetric baseline the paper argues
  against; `lora_clip.sh` happens to set it);
- cross-entropy image → batch class texts, one prompt per class (the scenario's training
  template; the authors' "a bad photo of a {}." on CIFAR-100), frozen logit scale;
- PET in every block of both towers (`towers`): LoRA r=4, α=1 on the fused q/k/v in-projection
  and the out-projection (one rank-4 update of [Wq; Wk; Wv], as theirs; computed functionally,
  `cliplab.methods.attention_lora`, so the frozen weights stay bit-identical), or an adapter (bottleneck 64, ReLU, dropout 0.1, scale 0.1, zero-initialised
  up-projection) *shared by both sublayers of a block*: x ← x + a(Attn(LN₁x)), x ← x + a(MLP(LN₂x)),
  a(h) = h + Adapter(h);
- AdamW lr 5e-4, weight decay 1e-5, constant rate, rebuilt at each task boundary (the loop's);
  each stream batch trained on 3 times (the online protocol's `online_iter`).

Two quirks of the released code are options, off by default because they contradict the method
they implement (see the docs): `double_softmax=True` feeds softmax(logits) to the cross-entropy as
their model returns probabilities to `nn.CrossEntropyLoss`; `lora_init_b="xavier"` initialises the
in-projection's A and B Xavier-uniform (LoRA's B = 0 keeps the pretrained model at the start).
`directions="both"` adds a text → image term (multi-positive over the batch's images), which the
code does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import Tensor, nn

from cliplab.methods.adapters import Adapter
from cliplab.methods.attention_lora import add_qkv_lora
from cliplab.methods.base import Method, MethodOptions, TaskContext

PETS = ("lora", "adapter")
SIT_TOWERS = ("both", "image", "text")


@dataclass
class SITOptions(MethodOptions):
    pet: str = "lora"  # lora | adapter [the paper reports both]
    towers: str = "both"  # both [--peft_encoder both] | image | text
    rank: int = 4  # LoRA r [models/adapter_clip.py: lora_r 4]
    alpha: float = 1.0  # LoRA α (scale α/r) [lora_alpha 1]
    lora_init_b: str = "zero"  # zero (LoRA) | xavier [code: in-projection A and B Xavier-uniform]
    bottleneck: int = 64  # adapter width [adapter.py: 64]
    adapter_scale: float = 0.1  # [adapter.py: 0.1]
    adapter_dropout: float = 0.1  # [adapter.py: 0.1]
    visible_classes: str = "batch"  # batch [SIT] | all (every exposed class: asymmetric)
    directions: str = "i2t"  # i2t [code] | both (+ text -> image over the batch's images)
    double_softmax: bool = False  # True: CE(softmax(logits)) as the released code computes

    def __post_init__(self) -> None:
        if self.pet not in PETS:
            raise ValueError(f"pet must be one of {PETS}, got {self.pet!r}")
        if self.towers not in SIT_TOWERS:
            raise ValueError(f"towers must be one of {SIT_TOWERS}, got {self.towers!r}")
        if self.lora_init_b not in ("zero", "xavier"):
            raise ValueError(f"lora_init_b must be 'zero' or 'xavier', got {self.lora_init_b!r}")
        if self.visible_classes not in ("batch", "all"):
            raise ValueError(f"visible_classes must be 'batch' or 'all', got {self.visible_classes!r}")
        if self.directions not in ("i2t", "both"):
            raise ValueError(f"directions must be 'i2t' or 'both', got {self.directions!r}")
        if self.rank < 1 or self.bottleneck < 1:
            raise ValueError(f"rank and bottleneck must be >= 1, got {self.rank} and {self.bottleneck}")


class SharedAdapterBlock(ResidualAttentionBlock):
    """open_clip's block with one adapter applied to both sublayers' outputs (SIT's
    `ResidualAttentionBlock_Adapter`): x ← x + a(Attn(LN₁x)); x ← x + a(MLP(LN₂x)), a(h) = h + E(h)."""

    sit_adapter: Adapter

    def forward(self, q_x: Tensor, k_x=None, v_x=None, attn_mask=None) -> Tensor:
        h = self.attention(q_x=self.ln_1(q_x), attn_mask=attn_mask)
        x = q_x + self.ls_1(h + self.sit_adapter(h))
        h = self.mlp(self.ln_2(x))
        return x + self.ls_2(h + self.sit_adapter(h))


def _blocks(model: nn.Module, towers: str):
    if towers in ("both", "image"):
        yield from model.visual.transformer.resblocks
    if towers in ("both", "text"):
        yield from model.transformer.resblocks


def symmetric_image_text_loss(logits: Tensor, labels: Tensor, directions: str = "i2t", double_softmax: bool = False):
    """SIT's loss on logits (batch images x the batch's class texts) with labels indexing those texts.

    i2t: mean_i CE(logits_i, y_i). both: + mean over classes of the multi-positive text → image
    term −mean_{i: y_i = c} log softmax_i(logits[:, c]). `double_softmax` feeds softmax(logits) to
    the image → text cross-entropy (the released code's quirk)."""
    terms = {"sit_i2t": F.cross_entropy(logits.softmax(dim=1) if double_softmax else logits, labels)}
    if directions == "both":
        log_p = F.log_softmax(logits, dim=0)  # over images, per class text
        present = labels.unique()
        terms["sit_t2i"] = torch.stack([-log_p[labels == c, c].mean() for c in present]).mean()
    return terms


class SIT(Method):
    """Symmetric Image-Text tuning of LoRA or adapters on an online stream."""

    name = "sit"
    Options = SITOptions
    trains_backbone = False
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 5e-4,  # [utils/train_utils.py: AdamW lr 5e-4]
        "weight_decay": 1e-5,  # [AdamW weight decay 1e-5]
        "lr_schedule": "constant",  # [scheduler "default": LambdaLR(1)]
        "warmup_steps": 0,
        "label_smoothing": 0.0,  # [nn.CrossEntropyLoss()]
    }

    def model_extension(self, scenario: Any) -> dict[str, Any]:
        return {}

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        o = self.options
        if o.pet == "adapter":
            for block in _blocks(model, o.towers):
                if type(block) is not ResidualAttentionBlock:
                    raise TypeError(
                        f"SIT's adapter plugs into open_clip's ResidualAttentionBlock, not {type(block).__name__}"
                    )
                block.__class__ = SharedAdapterBlock
                width = int(block.ln_2.normalized_shape[0])
                adapter = Adapter(width, o.bottleneck, o.adapter_scale, o.adapter_dropout)
                block.sit_adapter = adapter.to(next(block.parameters()).device)
            return
        for block in _blocks(model, o.towers):
            add_qkv_lora(block.attn, o.rank, o.alpha, o.lora_init_b)

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter]:
        marker = "lora_" if self.options.pet == "lora" else "sit_adapter."
        params = [p for name, p in ctx.model.named_parameters() if marker in name]
        if not params:
            raise ValueError("SIT found none of its modules in the model: was it extended (extend_model)?")
        return params

    def ce_classes(self, ctx: TaskContext, step: int, labels: Tensor) -> Tensor | None:
        if self.options.visible_classes == "all":
            return ctx.visible_classes(step)
        seen: dict[int, None] = {}
        for y in labels.tolist():
            seen.setdefault(int(y), None)
        return torch.tensor(list(seen), dtype=torch.long, device=labels.device)

    def classification_loss(self, ctx: TaskContext, out, labels: Tensor) -> dict[str, Tensor]:
        scale = ctx.model.logit_scale.exp().detach()
        logits = scale * out.ce_images.float() @ out.class_texts.float().T
        return symmetric_image_text_loss(logits, labels, self.options.directions, self.options.double_softmax)


def sit_parameter_count(width_image: int, layers_image: int, width_text: int, layers_text: int, rank: int = 4) -> int:
    """LoRA parameters SIT adds: per block r·d + 3d·r (in-projection) + r·d + d·r (out-projection)."""

    def per(d: int) -> int:
        return rank * d + 3 * d * rank + rank * d + d * rank

    return layers_image * per(width_image) + layers_text * per(width_text)


__all__ = [
    "PETS",
    "SIT",
    "SITOptions",
    "SharedAdapterBlock",
    "sit_parameter_count",
    "symmetric_image_text_loss",
]
