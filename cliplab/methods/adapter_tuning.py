"""Adapter tuning: one bottleneck adapter per residual block, no experts, no routing, no selector.

The baseline that separates MoE-Adapters' experts and DDAS from the effect of training few
parameters: the same adapter (`cliplab.methods.adapters.Adapter`: bottleneck, fixed scale 0.1,
dropout 0.1, zero-initialised up-projection) in the same place (beside the MLP of every block of
both towers, reading the pre-LN residual), the same frozen backbone, trained through every task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cliplab.methods.adapters import TOWERS, Adapter, add_branch, block_width, tower_blocks
from cliplab.methods.base import Method, MethodOptions, TaskContext

BRANCH = "adapter"


@dataclass
class AdapterOptions(MethodOptions):
    bottleneck: int = 64  # [MoE-Adapters' expert: 64]
    scale: float = 0.1  # [MoE-Adapters: fixed 0.1]
    dropout: float = 0.1  # [MoE-Adapters]
    towers: str = "both"  # both | image

    def __post_init__(self) -> None:
        if self.towers not in TOWERS:
            raise ValueError(f"towers must be one of {TOWERS}, got {self.towers!r}")
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {self.bottleneck}")


class AdapterTuning(Method):
    name = "adapter"
    Options = AdapterOptions
    trains_backbone = False

    def model_extension(self, scenario: Any) -> dict[str, Any]:
        return {}

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        o = self.options
        for _, _, block in tower_blocks(model, o.towers):
            adapter = Adapter(block_width(block), o.bottleneck, o.scale, o.dropout)
            add_branch(block, BRANCH, adapter.to(next(block.parameters()).device))

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter]:
        return [
            p
            for _, _, block in tower_blocks(ctx.model, "both")
            if hasattr(block, "branches")
            for p in block.branches.parameters()
        ]


__all__ = ["AdapterOptions", "AdapterTuning"]
