"""Modules a parameter-efficient method adds to open_clip's CLIP, and where they plug in.

- `Adapter`: the bottleneck adapter of MoE-Adapters (Yu et al., CVPR 2024; `mtil/clip/adapter.py`):
  Linear(d→r) → ReLU → Dropout → Linear(r→d), times a fixed scale; LoRA-style initialisation
  (down: torch's default Linear init; up and both biases: zero), so it outputs exactly 0 until trained.
- `ParallelBranchBlock`: open_clip's `ResidualAttentionBlock` with *branches* beside the MLP,
  x ← x + Attn(LN₁(x)); x ← x + MLP(LN₂(x)) + Σ branch(x). A branch sees the post-attention residual
  *before* LN₂, as the authors' adapters do (`mtil/clip/model.py` 465–511); a branch may return None
  (it is switched off for this input, e.g. the frozen route).
- `RouteState`: which route the routed modules take (-1: none of them, i.e. the pretrained model).
  Kept on the model as `model.route_state`, read by `cliplab.evaluation.routing`.

The block keeps its parameter names (its class is swapped for the subclass in place), so the
backbone's state-dict keys are unchanged and checkpoints can hold the added modules alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import Tensor, nn

FROZEN_ROUTE = -1  # the route that bypasses every routed module: the pretrained model
TOWERS = ("both", "image")  # "both": the authors' AdapterDoubleEncoder; "image": AdapterImageEncoder


class Adapter(nn.Module):
    """E(h) = scale · (W_up · Dropout(ReLU(W_down · h + b_down)) + b_up), zero until trained."""

    def __init__(self, width: int, bottleneck: int = 64, scale: float = 0.1, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.dropout = nn.Dropout(dropout)
        self.scale = float(scale)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # the authors' "lora" init
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.up(self.dropout(F.relu(self.down(x))))

    @staticmethod
    def parameter_count(width: int, bottleneck: int) -> int:
        """(r·d + r) + (r·d + d): 129d + 64 for the authors' r = 64."""
        return 2 * bottleneck * width + bottleneck + width


class ParallelBranchBlock(ResidualAttentionBlock):
    """`ResidualAttentionBlock` plus `branches` (an `nn.ModuleDict`) in parallel with the MLP."""

    branches: nn.ModuleDict

    def forward(
        self,
        q_x: Tensor,
        k_x: Tensor | None = None,
        v_x: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        # The first lines are open_clip 3.x's ResidualAttentionBlock.forward, unchanged.
        k_x = self.ln_1_kv(k_x) if hasattr(self, "ln_1_kv") and k_x is not None else None
        v_x = self.ln_1_kv(v_x) if hasattr(self, "ln_1_kv") and v_x is not None else None
        x = q_x + self.ls_1(self.attention(q_x=self.ln_1(q_x), k_x=k_x, v_x=v_x, attn_mask=attn_mask))
        out = x + self.ls_2(self.mlp(self.ln_2(x)))
        for branch in self.branches.values():
            y = branch(x)
            if y is not None:
                out = out + y
        return out


def add_branch(block: nn.Module, name: str, module: nn.Module) -> None:
    """Give `block` a branch beside its MLP (the block becomes a `ParallelBranchBlock` in place)."""
    if type(block) is ResidualAttentionBlock:
        block.__class__ = ParallelBranchBlock
        block.branches = nn.ModuleDict()
    elif not isinstance(block, ParallelBranchBlock):
        raise TypeError(
            f"adapters plug into open_clip's ResidualAttentionBlock (ViT and text transformers); "
            f"this model's blocks are {type(block).__name__}. Use a model built from open_clip's "
            "standard CLIP config (e.g. ViT-B-16, ToyCLIP)."
        )
    if name in block.branches:
        raise ValueError(f"the block already has a branch named {name!r}")
    block.branches[name] = module


def tower_blocks(model: nn.Module, towers: str) -> Iterator[tuple[str, int, nn.Module]]:
    """(tower, index, block) for every residual block of the image tower, then the text tower."""
    if towers not in TOWERS:
        raise ValueError(f"towers must be one of {TOWERS}, got {towers!r}")
    visual = getattr(getattr(model, "visual", None), "transformer", None)
    if visual is None or not hasattr(visual, "resblocks"):
        raise TypeError(
            f"{type(model).__name__} has no ViT image tower (model.visual.transformer.resblocks); "
            "adapters need a transformer image tower"
        )
    for index, block in enumerate(visual.resblocks):
        yield "image", index, block
    if towers == "both":
        for index, block in enumerate(model.transformer.resblocks):
            yield "text", index, block


def block_width(block: nn.Module) -> int:
    return int(block.ln_2.normalized_shape[0])


class RouteState(nn.Module):
    """The route routed modules take: `use(route)` inside a block, else the stored `default`.

    `default` is a buffer (saved in checkpoints): the route a model without an input router takes
    at inference, e.g. the shared router of class-incremental MoE-Adapters.
    """

    def __init__(self, default: int = 0) -> None:
        super().__init__()
        self.register_buffer("default", torch.tensor(int(default)))
        self.active: int | None = None

    def current(self) -> int:
        return self.active if self.active is not None else int(self.default)

    @contextlib.contextmanager
    def use(self, route: int) -> Iterator[None]:
        """Take `route` inside the block (nested uses restore the outer route)."""
        previous, self.active = self.active, int(route)
        try:
            yield
        finally:
            self.active = previous

    def set_default(self, route: int) -> None:
        self.default.fill_(int(route))


def attach_route_state(model: nn.Module, default: int = 0) -> RouteState:
    """The model's `route_state` (created on first use)."""
    state = getattr(model, "route_state", None)
    if state is None:
        state = RouteState(default)
        model.route_state = state
    return state


def hold(module: nn.Module, name: str, value: object) -> None:
    """Keep a reference to `value` on `module` without registering it as a submodule (so a shared
    `RouteState` appears once in the state dict; `copy.deepcopy` keeps the sharing)."""
    object.__setattr__(module, name, value)


__all__ = [
    "FROZEN_ROUTE",
    "TOWERS",
    "Adapter",
    "ParallelBranchBlock",
    "RouteState",
    "add_branch",
    "attach_route_state",
    "block_width",
    "hold",
    "tower_blocks",
]
