"""Training configuration: one flat dataclass shared by every method, plus method options.

Defaults follow ZSCL's MTIL recipe (AdamW, cosine with warm-up, label smoothing 0.2, frozen logit
scale, whole model trained); scenarios override what their protocol prescribes, and users
override anything with `--set key=value` (method options as `method.key=value`).

Every value is checked against its field's type before a run writes anything (`coerce_fields`):
`batch_size=abc` or `method.T=abc` is a ValueError naming the setting, the value and the type
expected; an integral number is accepted for an integer field (1e3 -> 1000) and an integer for a
float field, but `steps_per_task=2.5` is refused rather than truncated.
"""

from __future__ import annotations

import ast
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Union

from cliplab.engine.optim import LR_SCHEDULES, OPTIMIZER_IMPLS, WEIGHT_DECAY_SCOPES


@dataclass
class TrainConfig:
    """Hyper-parameters of the single training loop (source of each default in brackets)."""

    steps_per_task: int = 1000  # [ZSCL MTIL: 1,000 iterations per task]
    epochs_per_task: float | None = None  # if set, overrides steps: ceil(epochs * N / batch) [ZSCL CIL: 1 epoch]
    batch_size: int = 64  # [ZSCL]
    lr: float = 1e-5  # [ZSCL MTIL]
    lr_per_task: dict[str, float] = field(default_factory=dict)  # [ZSCL: 5e-5 for Aircraft and MNIST]
    weight_decay: float = 0.0  # [ZSCL]
    weight_decay_scope: str = "all"  # all | matrices (no decay on gains, biases, logit scale) [open_clip, TiC]
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8  # [torch default; open_clip and TiC: 1e-6]
    warmup_steps: int = 100  # [ZSCL MTIL: 100; CIL: 30]
    lr_schedule: str = "cosine"  # after warm-up: cosine to 0 [ZSCL, open_clip] | constant [SIT, CoLeCLIP, CLL-CLIP]
    grad_clip_norm: float | None = None  # clip the global gradient norm before each step [CLL-CLIP: 1.0]; None: off
    label_smoothing: float = 0.2  # [ZSCL]
    train_mode: str = "whole"  # whole | image | text
    augment: bool = True  # train transform (RandomResizedCrop 0.9-1.0) for CE batches; False: eval transform
    freeze_logit_scale: bool = True  # [ZSCL]; a trained one is clamped to [0, ln 100] by the contrastive objective
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
    """Apply `key=value` strings (or a dict); `method.key=value` sets a method option.

    Values are checked against the field types of `TrainConfig` (method options are checked against
    the method's `Options` by `coerce_fields`, once the method is known)."""
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
    updates = coerce_fields(TrainConfig, updates)
    config = replace(config, **updates, method=method)
    validate(config)
    return config


# --- types ------------------------------------------------------------------------------------


def coerce_fields(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`values` checked against the annotated field types of dataclass `cls` (names it lacks pass
    through: the caller reports unknown names). A wrong type is a ValueError naming the setting
    (`prefix` + name), the value and the type expected; see `coerce`."""
    hints = typing.get_type_hints(cls)
    return {k: coerce(v, hints[k], prefix + k) if k in hints else v for k, v in values.items()}


def coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` as type `hint` (int <-> integral float, int -> float, list -> tuple) or a ValueError."""
    converted = _convert(value, hint)
    if converted is _WRONG:
        raise ValueError(
            f"setting {name}={value!r}: expected {_describe(hint)}, got {_kind(value)}. "
            f"Example: --set {name}={_example(hint)}"
        )
    return converted


_WRONG = object()


def _union_members(hint: Any) -> tuple | None:
    origin = typing.get_origin(hint)
    return typing.get_args(hint) if origin is Union or origin is types.UnionType else None


def _convert(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    members = _union_members(hint)
    if members is not None:
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is not type(None) and (converted := _convert(value, member)) is not _WRONG:
                return converted
        return _WRONG
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        if isinstance(value, bool):
            return _WRONG
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _WRONG
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _WRONG
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _WRONG
        kinds = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        if len(kinds) != len(value):
            return _WRONG
        items = [_convert(v, k) for v, k in zip(value, kinds)]
        return _WRONG if any(i is _WRONG for i in items) else tuple(items)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return _WRONG
        items = [_convert(v, args[0]) for v in value] if args else list(value)
        return _WRONG if any(i is _WRONG for i in items) else items
    if origin is dict:
        if not isinstance(value, dict):
            return _WRONG
        if not args:
            return dict(value)
        out = {_convert(k, args[0]): _convert(v, args[1]) for k, v in value.items()}
        return _WRONG if _WRONG in out or any(v is _WRONG for v in out.values()) else out
    return value  # a type this checker does not know: accepted as given


def _describe(hint: Any) -> str:
    members = _union_members(hint)
    if members is not None:
        return " or ".join(_describe(m) for m in members)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "none"}
    if hint in simple:
        return simple[hint]
    if origin is tuple:
        if args[1:] == (Ellipsis,):
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is list:
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    return getattr(hint, "__name__", str(hint))


def _example(hint: Any) -> str:
    members = _union_members(hint)
    if members is not None:
        return _example(next(m for m in members if m is not type(None)))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    examples = {bool: "true", int: "10", float: "0.5", str: "name"}
    if hint in examples:
        return examples[hint]
    if origin in (tuple, list):
        return "[" + ",".join(_example(a) for a in (args or (str,)) if a is not Ellipsis) + "]"
    if origin is dict:
        return "{'" + "key" + "':" + (_example(args[1]) if args else "1") + "}"
    return "..."


def _kind(value: Any) -> str:
    return "none" if value is None else f"{type(value).__name__}"


def split_assignment(item: str, option: str = "--set", form: str = "key=value") -> tuple[str, str]:
    """ "key=value" -> ("key", "value"); anything else is a ValueError naming `option` and the `form`."""
    if "=" not in item:
        raise ValueError(f"{option} expects {form}, got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), value


def validate(config: TrainConfig) -> None:
    """Reject settings that cannot work, with the fix in the message."""
    if config.steps_per_task < 1:
        raise ValueError(
            f"steps_per_task must be at least 1, got {config.steps_per_task} (a run that trains nothing is the "
            "'zeroshot' method: --method zeroshot)"
        )
    if config.epochs_per_task is not None and not config.epochs_per_task > 0:
        raise ValueError(
            f"epochs_per_task must be positive (or none to use steps_per_task), got {config.epochs_per_task}"
        )
    for name in ("warmup_steps", "checkpoint_every", "num_workers"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be 0 or more, got {getattr(config, name)}")
    for name in ("eval_batch_size", "probe_size", "retrieval_size", "max_eval_images", "max_tasks"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    rates = {"lr": config.lr, **{f"lr_per_task[{k!r}]": v for k, v in config.lr_per_task.items()}}
    for name, value in rates.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.weight_decay < 0 or not all(0 <= b < 1 for b in config.betas):
        raise ValueError(f"weight_decay must be >= 0 and betas in [0, 1), got {config.weight_decay}, {config.betas}")
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
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}")
    if config.online_iter < 1 or config.eval_period < 1:
        raise ValueError(f"online_iter and eval_period must be >= 1, got {config.online_iter} and {config.eval_period}")
    if config.weight_decay_scope not in WEIGHT_DECAY_SCOPES:
        raise ValueError(f"weight_decay_scope must be one of {WEIGHT_DECAY_SCOPES}, got {config.weight_decay_scope!r}")
    if config.keep_checkpoints not in ("all", "last"):
        raise ValueError("keep_checkpoints must be 'all' or 'last'")
    if config.grad_clip_norm is not None and not (math.isfinite(config.grad_clip_norm) and config.grad_clip_norm > 0):
        raise ValueError(
            f"grad_clip_norm must be a positive number (or none: no clipping), got {config.grad_clip_norm}"
        )
