"""LoRA (Hu et al., 2022) on the attention and MLP linears of both towers, through `peft`.

Rank-r updates W + (α/r)·B·A with B = 0 at the start (outputs unchanged until trained), trained
through every task with the backbone frozen. `peft.inject_adapter_in_model` wraps the modules in
place; what it can reach in open_clip (checked with peft 0.21.2, /work/notes/moe_adapters.md §9):

- `mlp.c_fc`, `mlp.c_proj`: plain `nn.Linear`, wrapped as `lora.Linear`;
- `attn`: an `nn.MultiheadAttention`, wrapped whole by peft's `lora.MultiheadAttention` (LoRA on the
  fused q/k/v in-projection *and* on the out-projection). Targeting `attn.out_proj` alone would be
  silently dead: `MultiheadAttention.forward` reads `out_proj.weight` directly and never calls the
  module (peft#2200), and `in_proj_weight` is a parameter, not a module (peft#761).

So `targets="attn,mlp"` puts LoRA on q, k, v, out, c_fc and c_proj of every block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cliplab.methods.adapters import TOWERS
from cliplab.methods.base import Method, MethodOptions, TaskContext

TARGETS = {"attn": ("attn",), "mlp": ("mlp.c_fc", "mlp.c_proj")}


@dataclass
class LoRAOptions(MethodOptions):
    rank: int = 8
    alpha: float = 16.0  # scaling alpha / rank
    dropout: float = 0.0
    targets: str = "attn,mlp"  # comma-separated: attn (q, k, v, out) and/or mlp (c_fc, c_proj)
    towers: str = "both"  # both | image

    def __post_init__(self) -> None:
        if self.towers not in TOWERS:
            raise ValueError(f"towers must be one of {TOWERS}, got {self.towers!r}")
        unknown = set(self.target_list()) - set(TARGETS)
        if unknown or not self.target_list():
            raise ValueError(f"targets must name some of {sorted(TARGETS)} (comma-separated), got {self.targets!r}")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")

    def target_list(self) -> list[str]:
        return [t.strip() for t in str(self.targets).split(",") if t.strip()]


def target_pattern(targets: list[str], towers: str) -> str:
    """The regex of module names peft wraps: the chosen linears of every residual block."""
    modules = "|".join(m.replace(".", r"\.") for t in targets for m in TARGETS[t])
    tower = r"visual\.transformer" if towers == "image" else r"(visual\.)?transformer"
    return rf"^{tower}\.resblocks\.\d+\.({modules})$"


class LoRA(Method):
    name = "lora"
    Options = LoRAOptions
    trains_backbone = False

    def model_extension(self, scenario: Any) -> dict[str, Any]:
        return {}

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as error:  # pragma: no cover - peft is a dependency
            raise ImportError("the lora method needs peft: pip install peft") from error
        o = self.options
        config = LoraConfig(
            r=o.rank,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            target_modules=target_pattern(o.target_list(), o.towers),
        )
        inject_adapter_in_model(config, model)
        if not any("lora_" in name for name, _ in model.named_parameters()):
            raise ValueError(f"LoRA matched no module of {type(model).__name__} (pattern {config.target_modules!r})")

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter]:
        return [p for name, p in ctx.model.named_parameters() if "lora_" in name]


__all__ = ["LoRA", "LoRAOptions", "target_pattern"]
