"""ZSCL (Zheng et al., ICCV 2023): distil the *initial* CLIP on reference data, plus parameter-space
regularisation — a weight ensemble (WE) of snapshots and optionally L2 to the start-of-task weights.

Feature space: teacher = pretrained model, images and texts = reference data unrelated to the
tasks (ImageNet + Conceptual Captions in the paper; broad ToyWorld scenes and captions for toy
scenarios). Parameter space: a running uniform average of snapshots taken after the optimiser
step at iterations 0, I, 2I, ... (initialised with the start-of-task weights); the average is
what the task ends with. ZSCL.sh enables both WE and L2 (coefficient 1, sum of squares, P10).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cliplab.methods.base import TaskContext
from cliplab.methods.distill import DistillationMethod, DistillOptions


@dataclass
class ZSCLOptions(DistillOptions):
    teacher: str = "initial"  # [ZSCL: the pretrained model is the better teacher]
    kd_images: str = "reference"  # [ZSCL: ImageNet / CC images]
    weight_ensemble: bool = True  # [ZSCL.sh --we]
    avg_freq: int | None = (
        None  # snapshot interval I; None = steps // 10, ZSCL's ratio [ZSCL: 100 of 1,000 MTIL iterations; 10 in CIL]
    )
    l2: float = 1.0  # coefficient of Σ‖θ − θ_start‖² [ZSCL.sh --l2 1]; 0 disables
    n_reference_texts: int | None = None  # None = every reference caption [ZSCL]


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

    def after_step(self, ctx: TaskContext, step: int) -> None:
        if self.ensemble is not None and (step - 1) % self.interval == 0:
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
