"""ZSCL (Zheng et al., ICCV 2023): distil the *initial* CLIP on reference data, plus parameter-space
regularisation — a weight ensemble (WE) of snapshots and optionally L2 to the start-of-task weights.

Feature space: teacher = pretrained model, images and texts = reference data unrelated to the
tasks (ImageNet + Conceptual Captions in the paper; broad ToyWorld scenes and captions for toy
scenarios). Parameter space: a running uniform average of the start-of-task weights and of
snapshots taken after the optimiser step at ZSCL's iterations 0, I, 2I, ... (our steps 1, I + 1,
2I + 1, ...) and of the task's final weights; the average is what the task ends with. ZSCL's loop
runs iterations 0..N inclusive, the last at learning rate 0, so its snapshot at iteration N (a
multiple of I in MTIL: 1,000 and 100) holds the final weights: start + 11 snapshots = 12 states.
ZSCL.sh enables both WE and L2 (coefficient 1, sum of squares, P10).

In ZSCL's CIL code the interval is a fixed 10 iterations whatever the task's length, and the
final weights enter the average only when the task's length is a multiple of 10; otherwise the
updates after the last snapshot are lost when the average replaces the model
(`final_snapshot=on_interval`, the CIFAR-100 preset). Its CIL configs use no L2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cliplab.methods.base import TaskContext
from cliplab.methods.distill import DistillationMethod, DistillOptions

FINAL_SNAPSHOTS = ("always", "on_interval")


@dataclass
class ZSCLOptions(DistillOptions):
    teacher: str = "initial"  # [ZSCL: the pretrained model is the better teacher]
    kd_images: str = "reference"  # [ZSCL: ImageNet / CC images]
    weight_ensemble: bool = True  # [ZSCL.sh --we]
    avg_freq: int | None = (
        None  # snapshot interval I; None = steps // 10, ZSCL's ratio [ZSCL: 100 of 1,000 MTIL iterations; 10 in CIL]
    )
    # always: the task's final weights always enter the average [as ZSCL MTIL, where 1,000 % 100 == 0];
    # on_interval: only when steps % I == 0, else the steps after the last snapshot are lost [ZSCL's code; CIFAR CIL]
    final_snapshot: str = "always"
    l2: float = 1.0  # coefficient of Σ‖θ − θ_start‖² [ZSCL.sh --l2 1; CIL configs: 0]; 0 disables
    n_reference_texts: int | None = None  # None = every reference caption [ZSCL]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.final_snapshot not in FINAL_SNAPSHOTS:
            raise ValueError(f"final_snapshot must be one of {FINAL_SNAPSHOTS}, got {self.final_snapshot!r}")
        if self.avg_freq is not None and self.avg_freq < 1:
            raise ValueError(f"avg_freq must be a positive number of steps (or None: steps // 10), got {self.avg_freq}")


class WeightEnsemble:
    """Running uniform average of parameter snapshots (floating tensors of the state dict)."""

    def __init__(self, model: nn.Module) -> None:
        self.average = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}
        self.count = 1

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        self.count += 1
        for name, value in model.state_dict().items():
            if name in self.average:
                self.average[name] += (value.float() - self.average[name]) / self.count

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        state = model.state_dict()
        for name, value in self.average.items():
            state[name].copy_(value.to(state[name].dtype))


def l2_to(model: nn.Module, anchor: nn.Module) -> Tensor:
    """Σ over trainable parameters of ‖θ − θ_anchor‖² (sum, not mean, as ZSCL)."""
    anchor_params = dict(anchor.named_parameters())
    terms = [((p - anchor_params[n].detach()) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class ZSCL(DistillationMethod):
    name = "zscl"
    Options = ZSCLOptions

    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        if ctx.scenario.reference is None:
            raise ValueError(f"ZSCL needs reference captions; scenario {ctx.scenario.name!r} declares none")
        captions = ctx.scenario.reference.captions
        if self.options.n_reference_texts:
            captions = captions[: self.options.n_reference_texts]
        return ctx.tokenizer(list(captions))

    def begin_task(self, ctx: TaskContext) -> None:
        super().begin_task(ctx)
        self.ensemble = WeightEnsemble(ctx.start_model) if self.options.weight_ensemble else None
        # An interval longer than the task would average the start weights with one early
        # snapshot and undo the task; scale it like ZSCL's 100 of 1,000 iterations.
        self.interval = self.options.avg_freq or max(1, ctx.steps // 10)

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        terms = super().losses(ctx, out)
        if self.options.l2 > 0:
            terms["l2"] = self.options.l2 * l2_to(ctx.model, ctx.start_model)
        return terms

    def snapshots_after(self, step: int, steps: int) -> int:
        """How many times the weights after `step` (steps done, 1..steps) enter the average.

        Step s is ZSCL's iteration s − 1: a snapshot when (s − 1) % I == 0. ZSCL's extra iteration
        N (= steps, at learning rate 0) snapshots the final weights again when steps % I == 0;
        `final_snapshot=always` also includes them when the last snapshot fell earlier.
        """
        interval = self.interval
        count = int((step - 1) % interval == 0)
        if step == steps:
            on_interval = steps % interval == 0
            count += int(on_interval or (self.options.final_snapshot == "always" and not count))
        return count

    def after_step(self, ctx: TaskContext, step: int) -> None:
        if self.ensemble is not None:
            for _ in range(self.snapshots_after(step, ctx.steps)):
                self.ensemble.add(ctx.model)

    def end_task(self, ctx: TaskContext) -> None:
        if self.ensemble is not None:
            self.ensemble.copy_to(ctx.model)

    def state_tensors(self) -> dict[str, Tensor]:
        if self.ensemble is None:
            return {}
        return {
            **{f"we/{k}": v for k, v in self.ensemble.average.items()},
            "we_count": torch.tensor(self.ensemble.count),
        }

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if self.ensemble is not None and "we_count" in tensors:
            self.ensemble.average = {k[3:]: v.clone() for k, v in tensors.items() if k.startswith("we/")}
            self.ensemble.count = int(tensors["we_count"])
