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


WEIGHT_DECAY_SCOPES = ("all", "matrices")


def decay_groups(
    model: torch.nn.Module, params: list[torch.nn.Parameter], weight_decay: float, scope: str = "all"
) -> list[torch.nn.Parameter] | list[dict]:
    """The trainable `params` as AdamW takes them: `scope="all"` decays every one (ZSCL, Mod-X);
    `"matrices"` exempts gains, biases and the logit scale, as open_clip does for CLIP and TiC-CLIP
    (a parameter with fewer than 2 dims, or named bn / ln / bias / logit_scale)."""
    if scope not in WEIGHT_DECAY_SCOPES:
        raise ValueError(f"weight_decay_scope must be one of {WEIGHT_DECAY_SCOPES}, got {scope!r}")
    if scope == "all":
        return params
    wanted = {id(p) for p in params}
    decay, exempt = [], []
    for name, param in model.named_parameters():
        if id(param) not in wanted:
            continue
        is_exempt = param.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
        (exempt if is_exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for `warmup` steps, then cosine decay to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


LR_SCHEDULES = ("cosine", "constant")  # after the warm-up: cosine to 0 [ZSCL] | constant [SIT, CoLeCLIP, CLL-CLIP]


def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, kind: str = "cosine"
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for `warmup` steps, then `kind`: cosine decay to 0 at `total` (ZSCL, open_clip)
    or a constant rate (sentence-transformers' `warmupconstant`, CLL-CLIP)."""
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {kind!r}")
    if kind == "cosine":
        return cosine_with_warmup(optimizer, warmup, total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))


__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZER_IMPLS",
    "WEIGHT_DECAY_SCOPES",
    "adamw",
    "cosine_with_warmup",
    "decay_groups",
    "warmup_schedule",
]
