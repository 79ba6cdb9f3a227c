"""WiSE-FT (Wortsman et al. 2022) as a continual baseline: after each task, interpolate weights.

θ ← α·θ_finetuned + (1 − α)·θ_ref. ZSCL's baseline (P11) uses the start-of-task model as
θ_ref with α = 0.8; the original WiSE-FT interpolates with the zero-shot model (`reference=zeroshot`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cliplab.methods.base import Method, MethodOptions, TaskContext


@dataclass
class WiseFTOptions(MethodOptions):
    alpha: float = 0.8  # weight of the fine-tuned model [ZSCL]
    reference: str = "start"  # start (start-of-task model) [ZSCL] | zeroshot (the pretrained model)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.reference not in ("start", "zeroshot"):
            raise ValueError(f"reference must be 'start' or 'zeroshot', got {self.reference!r}")


@torch.no_grad()
def interpolate_(model: nn.Module, reference: nn.Module, alpha: float) -> None:
    """In place: every floating tensor of `model` ← alpha·model + (1 − alpha)·reference."""
    ref = reference.state_dict()
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            tensor.mul_(alpha).add_(ref[name].to(tensor.device, tensor.dtype), alpha=1.0 - alpha)


class WiseFT(Method):
    name = "wise_ft"
    objectives = ("classification", "contrastive")
    Options = WiseFTOptions

    def end_task(self, ctx: TaskContext) -> None:
        reference = ctx.start_model if self.options.reference == "start" else ctx.initial_model
        interpolate_(ctx.model, reference, self.options.alpha)
