"""The optimiser and the learning-rate schedule every training in cliplab uses.

`adamw` builds torch's AdamW with the kernel a config names; `cosine_with_warmup` is the schedule
of ZSCL's recipe (linear warm-up, then cosine to zero). The continual loop and ToyCLIP's
pretraining (`cliplab.pretrain`) both take them from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

OPTIMIZER_IMPLS = ("fused", "foreach", "for_loop")
SCHEDULES = ("cosine", "constant")


def adamw(
    params: Iterable[torch.nn.Parameter] | list[dict],
    lr: float,
    betas=(0.9, 0.999),
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    impl: str = "fused",
) -> torch.optim.AdamW:
    """AdamW with kernel `impl`; "fused" falls back to "foreach" on a device or dtype without a
    fused kernel (the update is the same, only the float order differs)."""
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"optimizer_impl must be one of {OPTIMIZER_IMPLS}, got {impl!r}")
    kwargs = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, eps=eps)
    params = list(params)
    if impl == "fused":
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except RuntimeError:
            return torch.optim.AdamW(params, foreach=True, **kwargs)
    return torch.optim.AdamW(params, foreach=impl == "foreach", **kwargs)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for `warmup` steps, then cosine decay to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def constant_with_warmup(optimizer: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for `warmup` steps, then the base learning rate (SIT's and CoLeCLIP's schedule
    with warmup = 0: their `LambdaLR` of factor 1)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))


def schedule(optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule `name` (one of SCHEDULES) over `total` steps."""
    if name == "cosine":
        return cosine_with_warmup(optimizer, warmup, total)
    if name == "constant":
        return constant_with_warmup(optimizer, warmup)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


__all__ = ["OPTIMIZER_IMPLS", "SCHEDULES", "adamw", "constant_with_warmup", "cosine_with_warmup", "schedule"]
