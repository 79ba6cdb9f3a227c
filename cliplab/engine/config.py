"""Training configuration: one flat dataclass shared by every method, plus method options.

Defaults follow ZSCL's MTIL recipe (AdamW, cosine with warm-up, label smoothing 0.2, frozen logit
scale, whole model trained); scenarios override what their protocol prescribes, and users
override anything with `--set key=value` (method options as `method.key=value`).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cliplab.engine.optim import OPTIMIZER_IMPLS, SCHEDULES


@dataclass
class TrainConfig:
    """Hyper-parameters of the single training loop (source of each default in brackets)."""

    steps_per_task: int = 1000  # [ZSCL MTIL: 1,000 iterations per task]
    epochs_per_task: float | None = None  # if set, overrides steps: ceil(epochs * N / batch) [ZSCL CIL: 1 epoch]
    batch_size: int = 64  # [ZSCL]
    lr: float = 1e-5  # [ZSCL MTIL]
    lr_per_task: dict[str, float] = field(default_factory=dict)  # [ZSCL: 5e-5 for Aircraft and MNIST]
    weight_decay: float = 0.0  # [ZSCL]
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100  # [ZSCL MTIL: 100; CIL: 30]
    schedule: str = (
        "cosine"  # cosine (linear warm-up, then cosine to 0) [ZSCL] | constant (after warm-up) [SIT, CoLeCLIP]
    )
    label_smoothing: float = 0.2  # [ZSCL]
    train_mode: str = "whole"  # whole | image | text
    augment: bool = True  # train transform (RandomResizedCrop 0.9-1.0) for CE batches; False: eval transform
    freeze_logit_scale: bool = True  # [ZSCL]
    grad_accum: int = 1
    # torch's AdamW kernels compute the same update in a different float order. "fused" (one
    # kernel for all tensors; 7x faster than the per-tensor loop on CPU for ToyCLIP) falls back
    # to "foreach" where a device has no fused kernel. Part of a run's identity: bitwise numbers differ.
    optimizer_impl: str = "fused"  # fused | foreach | for_loop
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    seed: int = 42  # [ZSCL]
    device: str | None = None
    num_workers: int = 0
    checkpoint_every: int = 100  # mid-task checkpoint interval (steps); 0 disables
    keep_checkpoints: str = "all"  # all | last  (per-task model checkpoints)
    eval_batch_size: int = 256
    probe_size: int = 1000  # ToyWorld zero-shot probe images
    retrieval_size: int = 500  # ToyWorld retrieval probe images
    probe_seed: int = 0
    max_eval_images: int | None = None  # cap test images per task (fast settings)
    max_tasks: int | None = None  # run only the first N tasks (smoke runs)
    online_iter: int = 1  # online protocol: optimiser steps per stream batch [SIT, Si-Blurry: 3]
    eval_period: int = 1000  # online protocol: anytime evaluation every this many stream samples [SIT: 1,000]
    progress: bool = True
    method: dict[str, Any] = field(default_factory=dict)  # method options, e.g. {"T": 2.0}

    def lr_for(self, task_name: str) -> float:
        return float(self.lr_per_task.get(task_name, self.lr))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TRAIN_MODES = ("whole", "image", "text")


def parse_value(text: str) -> Any:
    """'1e-4' → 0.0001, 'true' → True, '[1,2]' → [1, 2]; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: TrainConfig, overrides: list[str] | dict[str, Any] | None) -> TrainConfig:
    """Apply `key=value` strings (or a dict); `method.key=value` sets a method option."""
    if not overrides:
        return config
    pairs = overrides.items() if isinstance(overrides, dict) else (split_assignment(o, "--set") for o in overrides)
    known = {f.name for f in fields(TrainConfig)}
    updates: dict[str, Any] = {}
    method = dict(config.method)
    for key, value in pairs:
        value = parse_value(value) if isinstance(value, str) else value
        if key.startswith("method."):
            method[key[len("method.") :]] = value
        elif key in known:
            updates[key] = value
        else:
            raise ValueError(f"unknown setting {key!r}; known: {sorted(known)} or method.<option>")
    config = replace(config, **updates, method=method)
    validate(config)
    return config


def split_assignment(item: str, option: str = "--set", form: str = "key=value") -> tuple[str, str]:
    """ "key=value" -> ("key", "value"); anything else is a ValueError naming `option` and the `form`."""
    if "=" not in item:
        raise ValueError(f"{option} expects {form}, got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), value


def validate(config: TrainConfig) -> None:
    """Reject settings that cannot work, with the fix in the message."""
    if config.train_mode not in _TRAIN_MODES:
        raise ValueError(f"train_mode must be one of {_TRAIN_MODES}, got {config.train_mode!r}")
    if config.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {config.precision!r}")
    if config.batch_size < 1 or config.grad_accum < 1:
        raise ValueError("batch_size and grad_accum must be >= 1")
    if config.batch_size % config.grad_accum:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by grad_accum {config.grad_accum}")
    if config.optimizer_impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"optimizer_impl must be one of {OPTIMIZER_IMPLS}, got {config.optimizer_impl!r}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
    if config.online_iter < 1 or config.eval_period < 1:
        raise ValueError(f"online_iter and eval_period must be >= 1, got {config.online_iter} and {config.eval_period}")
    if config.keep_checkpoints not in ("all", "last"):
        raise ValueError("keep_checkpoints must be 'all' or 'last'")
