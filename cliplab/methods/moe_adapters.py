"""MoE-Adapters (Yu et al., CVPR 2024): a frozen CLIP grows mixtures of adapter experts; an
auto-selector (DDAS) sends each input to a task's router or to the untouched pretrained model.

Following the authors' code (JiazuoYu/MoE-Adapters4CL, commit 4572d97; /work/notes/moe_adapters.md):

- every residual block of both towers gets a `MixtureOfAdapters` beside its MLP (22 experts,
  bottleneck 64, scale 0.1, dropout 0.1, noisy top-2 routers; `cliplab.methods.experts`);
- MTIL: one router per task (task t trains router t and every expert not frozen; the backbone
  and logit scale stay frozen); after each task, the 2 experts its router used most are frozen,
  per block and per tower (`finetune.py` 194–220); the frozen set is the union over tasks;
- CIL (`router="shared"`): 2 experts, one shared router, no freezing, no DDAS, and, as in their
  `cil/` code, noisy gating stays on at test time (`noise_at_eval`);
- DDAS (`cliplab.methods.ddas`): an autoencoder per task (and one on the scenario's reference
  images standing in for TinyImageNet); at inference each batch of test images takes the router
  of the best-reconstructing autoencoder, or the frozen model.

The text tower's routers read the start-of-text token, which the causal mask makes identical for
every prompt: at test time all class prompts of a task take the same experts (the authors' code
does the same). Deviations are listed in docs/design.md ("MoE-Adapters").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cliplab.methods.adapters import TOWERS, add_branch, attach_route_state, block_width, tower_blocks
from cliplab.methods.base import Method, MethodOptions, TaskContext
from cliplab.methods.ddas import FEATURES, AutoSelector
from cliplab.methods.experts import MixtureOfAdapters

BRANCH = "moe"


@dataclass
class MoEAdaptersOptions(MethodOptions):
    n_experts: int = 22  # [MTIL script: 22]; CIL 2
    top_k: int = 2  # [--topk 2]
    bottleneck: int = 64  # [adapter.py: 64, hard-coded]
    scale: float = 0.1  # [model.py 342: fixed 0.1]
    dropout: float = 0.1  # [model.py 340]
    noise_epsilon: float = 0.01  # [model.py 443: softplus(.) + 0.01]
    router: str = "per_task"  # per_task [MTIL: one router per task] | shared [CIL: one router]
    towers: str = "both"  # both [AdapterDoubleEncoder] | image
    freeze_top: int = 2  # experts frozen per block and tower after each task [MTIL: top-2]; 0 = none [CIL]
    noise_at_eval: bool = False  # [CIL code: noisy gating at test time too]
    ddas: bool = True  # the auto-selector [MTIL]; False: the latest router takes every input [CIL]
    ddas_features: str = "clip"  # clip (frozen tower's token map; ours) | alexnet [authors, needs alexnet_weights]
    alexnet_weights: str | None = None  # local torchvision AlexNet ImageNet weights file
    ddas_grid: int = 4  # "clip" features: patch grid pooled to at most grid x grid
    ddas_hidden: int = 100  # [AutoEncoder.py: 100]
    ddas_steps: int = 300  # per task autoencoder [script: 300 iterations]
    ddas_reference_steps: int = 1000  # reference ("zero-shot chooser") autoencoder [script: 1,000 on TinyImageNet]
    ddas_reference: bool = True  # train the reference autoencoder on the scenario's reference images
    ddas_batch_size: int = 64  # [args.py default]
    ddas_cache_features: bool = False  # True: one transform draw per image, features computed once (cheap; ours)
    ddas_lr: float = 0.01  # [the lr the scheduler sets; Adam is created with 0.003]
    ddas_weight_decay: float = 1e-4  # [AutoEncoder.py]
    ddas_eval_batch: int = 128  # images per selection [--batch-size-eval 128]
    ddas_granularity: str = "batch"  # batch [authors: batch-mean error] | image (ours)
    ddas_threshold: float | None = None  # None: calibrated on training data [authors: 0.0655 with AlexNet]
    ddas_holdout: float = 0.1  # share of each training split kept out of the autoencoder, for calibration
    ddas_margin: float = 0.05  # tau = (1 + margin) * max_t tau_t

    def __post_init__(self) -> None:
        if self.router not in ("per_task", "shared"):
            raise ValueError(f"router must be 'per_task' or 'shared', got {self.router!r}")
        if self.towers not in TOWERS:
            raise ValueError(f"towers must be one of {TOWERS}, got {self.towers!r}")
        if self.ddas_features not in FEATURES:
            raise ValueError(f"ddas_features must be one of {FEATURES}, got {self.ddas_features!r}")
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k must be between 1 and n_experts ({self.n_experts}), got {self.top_k}")
        if self.ddas and self.router == "shared":
            raise ValueError("DDAS chooses between per-task routers: set router=per_task, or ddas=false")
        if not 0.0 < self.ddas_holdout < 1.0:
            raise ValueError(f"ddas_holdout must be in (0, 1), got {self.ddas_holdout}")


def moe_layers(model: nn.Module) -> list[tuple[str, int, MixtureOfAdapters]]:
    """(tower, block index, layer) of every MoE-Adapters layer of an extended model."""
    return [
        (tower, index, block.branches[BRANCH])
        for tower, index, block in tower_blocks(model, "both")
        if hasattr(block, "branches") and BRANCH in block.branches
    ]


class MoEAdapters(Method):
    name = "moe_adapters"
    Options = MoEAdaptersOptions
    trains_backbone = False
    find_unused_parameters = True  # experts outside a step's top-k get no gradient

    # -- the modules -------------------------------------------------------------------------

    def model_extension(self, scenario: Any) -> dict[str, Any]:
        n_tasks = len(scenario.tasks)
        reference = bool(self.options.ddas and self.options.ddas_reference and scenario.reference is not None)
        return {
            "n_tasks": n_tasks,
            "n_routers": n_tasks if self.options.router == "per_task" else 1,
            "reference": reference,
        }

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        o = self.options
        routes = attach_route_state(model, default=0)
        for _, _, block in tower_blocks(model, o.towers):
            layer = MixtureOfAdapters(
                block_width(block),
                o.n_experts,
                int(layout["n_routers"]),
                routes,
                o.top_k,
                o.bottleneck,
                o.scale,
                o.dropout,
                o.noise_epsilon,
                o.noise_at_eval,
            )
            add_branch(block, BRANCH, layer.to(next(block.parameters()).device))
        if o.ddas:
            slots = ([-1] if layout.get("reference") else []) + list(range(int(layout["n_tasks"])))
            if o.ddas_features == "clip":
                size = AutoSelector.clip_feature_size(model, o.ddas_grid)
            else:
                image_size = model.visual.image_size
                image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
                size = AutoSelector.alexnet_feature_size(int(image_size), o.alexnet_weights)
            selector = AutoSelector(
                routes,
                slots,
                size,
                o.ddas_hidden,
                o.ddas_features,
                o.ddas_grid,
                o.ddas_eval_batch,
                o.ddas_granularity,
                o.alexnet_weights,
            )
            model.input_router = selector.to(next(model.parameters()).device)

    def router_of(self, task_index: int) -> int:
        return task_index if self.options.router == "per_task" else 0

    # -- the hooks of the loop -----------------------------------------------------------------

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter]:
        router = self.router_of(ctx.task_index)
        return [p for _, _, layer in moe_layers(ctx.model) for p in layer.trainable(router)]

    def begin_task(self, ctx: TaskContext) -> None:
        ctx.model.route_state.active = self.router_of(ctx.task_index)  # both towers train this router

    def end_task(self, ctx: TaskContext) -> None:
        model, router = ctx.model, self.router_of(ctx.task_index)
        model.route_state.active = None
        layers = moe_layers(model)
        if dist.is_available() and dist.is_initialized():  # usage counted on every rank's share
            for _, _, layer in layers:
                dist.all_reduce(layer.usage)
        frozen = {}
        for tower, index, layer in layers:
            frozen[f"{tower}.{index}"] = layer.freeze_most_used(router, self.options.freeze_top)
        ctx.state["frozen_experts"] = frozen
        model.route_state.set_default(router)
        if self.options.ddas:
            self._train_selector(ctx)

    def _train_selector(self, ctx: TaskContext) -> None:
        """Train this task's autoencoder (and, at the first task, the reference one), then calibrate τ."""
        o, selector = self.options, ctx.model.input_router
        slots = selector.slot_routes.tolist()
        jobs = [(slots.index(ctx.task_index), ctx.task.train_data, o.ddas_steps)]
        if ctx.task_index == 0 and -1 in slots:
            jobs.insert(0, (slots.index(-1), ctx.scenario.reference.images, o.ddas_reference_steps))
        trained = []
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            for slot, factory, steps in jobs:
                torch.manual_seed(ctx.seed + 7919 * (slot + 1))
                train_set, holdout = _split(
                    factory(ctx.train_transform if ctx.config.augment else ctx.eval_transform),
                    factory(ctx.eval_transform),
                    o.ddas_holdout,
                    ctx.seed,
                )
                selector.train_slot(
                    slot,
                    ctx.model,
                    train_set,
                    steps,
                    o.ddas_batch_size,
                    o.ddas_lr,
                    o.ddas_weight_decay,
                    ctx.seed + slot,
                    ctx.device,
                    o.ddas_cache_features,
                )
                batches = (holdout[i : i + o.ddas_eval_batch] for i in range(0, len(holdout), o.ddas_eval_batch))
                selector.calibrate_slot(slot, ctx.model, (_stack(b).to(ctx.device) for b in batches))
                trained.append(slot)
        selector.set_threshold(o.ddas_threshold, o.ddas_margin)
        ctx.state["selector_slots"] = trained

    def updated_outside_optimizer(self, ctx: TaskContext) -> list[str]:
        return [
            f"input_router.autoencoders.{slot}.{name}"
            for slot in ctx.state.get("selector_slots", [])
            for name, _ in ctx.model.input_router.autoencoders[slot].named_parameters()
        ]


class _Rows:
    """`dataset` restricted to `rows` (images only)."""

    def __init__(self, dataset, rows: list[int]) -> None:
        self.dataset, self.rows = dataset, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        item = self.dataset[self.rows[i]]
        return item[0] if isinstance(item, (tuple, list)) else item


def _split(train_view, eval_view, holdout: float, seed: int) -> tuple[_Rows, _Rows]:
    """The same images twice (train / eval transform), split into autoencoder-training and held-out rows."""
    order = torch.randperm(len(train_view), generator=torch.Generator().manual_seed(seed)).tolist()
    n_out = max(1, round(holdout * len(order)))
    return _Rows(train_view, sorted(order[n_out:])), _Rows(eval_view, sorted(order[:n_out]))


def _stack(images) -> torch.Tensor:
    return torch.stack(list(images))


__all__ = ["MoEAdapters", "MoEAdaptersOptions", "moe_layers"]
