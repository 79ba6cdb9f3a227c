"""Safetensors checkpoints: self-describing model files and resumable training states.

Model checkpoints carry their open_clip architecture name and config in the safetensors
metadata, so `load_model(path)` can rebuild the model without pickle. Training states add the
optimizer, scheduler and any counters a loop needs to resume exactly where it stopped. Every
write is atomic (`cliplab.io.atomic_path`): a kill mid-save leaves the previous file intact.

A file that cannot be read (empty, truncated, not safetensors) raises `CheckpointError`, one line
naming the file; callers that know where the file came from add what to do about it (`hint`).

A checkpoint may hold only some of a model's tensors (`keys=`): a parameter-efficient method's
added modules, with the backbone named in the metadata (`base`) instead of stored. Such a file is
marked `partial`, and `load_weights(..., partial=True)` accepts it only on a model that already holds the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cliplab.io import atomic_path

_OPT_PREFIX = "optimizer/"
_MODEL_PREFIX = "model/"
_JSON_METADATA = ("model_config", "extra", "state", "extension", "base")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, or holding weights of another model."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def unreadable(path: str | os.PathLike, error: Exception, hint: str = "") -> CheckpointError:
    """The error for a file safetensors cannot read, naming the file, the cause and `hint`."""
    size = Path(path).stat().st_size if Path(path).exists() else None
    what = "empty" if size == 0 else "truncated or not a safetensors file"
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    hint = hint or "Copy or download it again."
    return CheckpointError(f"cannot read checkpoint {path}: the file is {what} ({detail}). {hint}", path)


_READ_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError)  # what safetensors raises on a bad read


def _read_error(path: str | os.PathLike, error: Exception, hint: str) -> Exception:
    """FileNotFoundError for a missing (or just removed) file, which safetensors may report as a
    RuntimeError; else the `unreadable` CheckpointError."""
    if isinstance(error, FileNotFoundError):
        return error
    if not os.path.exists(path):
        return FileNotFoundError(f"no checkpoint at {path}")
    return unreadable(path, error, hint)


def _load_file(path: str | os.PathLike, hint: str = "") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except _READ_ERRORS as error:
        raise _read_error(path, error, hint) from None


def _contiguous(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.contiguous().clone()
    return out


def save_model(
    model: torch.nn.Module,
    path: str | os.PathLike,
    architecture: str,
    model_config: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    extra: dict[str, Any] | None = None,
    keys: Iterable[str] | None = None,
    described: dict[str, Any] | None = None,
) -> Path:
    """Write the model's weights (optionally cast, e.g. float16 to ship) with a self-description.

    `keys`: store only these tensors (the file is then marked `partial`); `described`: more
    JSON metadata entries (`extension`: the modules a method added; `base`: the backbone to load first).
    """
    metadata = {"format": "cliplab-model", "architecture": architecture, "model_config": json.dumps(model_config or {})}
    metadata["extra"] = json.dumps(extra or {})
    metadata.update({k: json.dumps(v) for k, v in (described or {}).items()})
    state = _selected(model.state_dict(), keys)
    if keys is not None:
        metadata["partial"] = "true"
    with atomic_path(path) as tmp:
        save_file(_contiguous(state, dtype), str(tmp), metadata=metadata)
    return Path(path)


def _selected(state: dict[str, torch.Tensor], keys: Iterable[str] | None) -> dict[str, torch.Tensor]:
    if keys is None:
        return state
    keys = list(keys)
    missing = [k for k in keys if k not in state]
    if missing:
        raise KeyError(f"the model has no tensor(s) {missing[:5]} to save")
    return {k: state[k] for k in keys}


def read_metadata(path: str | os.PathLike, hint: str = "") -> dict[str, Any]:
    """The decoded metadata of a cliplab safetensors file ({} for a foreign safetensors file).

    An unreadable file is a `CheckpointError` naming it (`hint`: what the user should do)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except _READ_ERRORS as error:
        raise _read_error(path, error, hint) from None
    decoded: dict[str, Any] = dict(raw)
    for key in _JSON_METADATA:
        if key in decoded:
            try:
                decoded[key] = json.loads(decoded[key])
            except json.JSONDecodeError as error:
                raise CheckpointError(
                    f"checkpoint {path} has damaged {key!r} metadata ({error}). {hint}", path
                ) from None
    return decoded


def load_tensors(path: str | os.PathLike, hint: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file as stored; an unreadable file is a `CheckpointError` naming it."""
    return _load_file(path, hint)


def load_state_dict(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, hint: str = ""
) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict, casting floating tensors to `dtype` (fp16-shipped → fp32)."""
    state = _load_file(path, hint)
    if any(key.startswith(_MODEL_PREFIX) for key in state):  # a training state: take the model part
        state = {k[len(_MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(_MODEL_PREFIX)}
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def load_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor], path: Any, hint: str = "", partial: bool = False
) -> None:
    """`model.load_state_dict(state)`, or one `CheckpointError` line saying how the weights do not fit.

    `partial`: `state` may hold only some of the model's tensors (a parameter-efficient method's added
    modules); the others stay as they are (e.g. the frozen backbone loaded before). A tensor the model
    does not have is an error either way.

    torch's own error lists every mismatching tensor (150 lines for another ViT); this names the
    count and the first example, which is what tells a user they passed another architecture's file.
    """
    own = model.state_dict()
    missing = [] if partial else [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            key, there, here = shapes[0]
            parts.append(
                f"{len(shapes)} tensor(s) of another shape (e.g. {key}: {list(there)} in the file, {list(here)} in the model)"
            )
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        model_name = type(model).__name__
        raise CheckpointError(
            f"{path} holds weights of another architecture than this {model_name} ({'; '.join(parts)}). "
            + (
                hint
                or "Name the architecture the file was saved for: --model ARCH --pretrained FILE. A checkpoint of "
                "a parameter-efficient run is loaded with cliplab.load_model(path), which rebuilds its modules."
            ),
            path if isinstance(path, (str, os.PathLike)) else None,
        )
    model.load_state_dict(state, strict=not partial)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{_OPT_PREFIX}{index}/{name}"] = value
            else:
                scalars[f"{index}/{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], described: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key[len(_OPT_PREFIX) :].split("/", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in described["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": described["param_groups"]}


def save_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    state: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    model_keys: Iterable[str] | None = None,
) -> Path:
    """Everything needed to resume: weights, optimizer moments, scheduler, counters and RNG.

    `model_keys`: the model tensors to store (None: all), e.g. only what a frozen-backbone method trains."""
    tensors = {f"{_MODEL_PREFIX}{k}": v for k, v in _selected(model.state_dict(), model_keys).items()}
    described: dict[str, Any] = {"state": state or {}, "torch_rng": torch.get_rng_state().tolist()}
    described["partial"] = model_keys is not None
    if optimizer is not None:
        opt_tensors, described["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
    if scheduler is not None:
        described["scheduler"] = scheduler.state_dict()
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra/{key}"] = value
    metadata = {"format": "cliplab-training-state", "state": json.dumps(described)}
    with atomic_path(path) as tmp:
        save_file(_contiguous(tensors), str(tmp), metadata=metadata)
    return Path(path)


def load_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    hint: str = "",
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore what `save_training_state` wrote; returns (counters, extra tensors)."""
    tensors = _load_file(path, hint)
    described = read_metadata(path, hint).get("state")
    if not isinstance(described, dict) or "torch_rng" not in described:
        raise CheckpointError(f"{path} is not a cliplab training state (no 'state' metadata). {hint}", path)
    load_weights(
        model,
        {k[len(_MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)},
        path,
        hint,
        partial=bool(described.get("partial")),
    )
    if optimizer is not None and "optimizer" in described:
        opt = {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
        optimizer.load_state_dict(_unflatten_optimizer(opt, described["optimizer"]))
    if scheduler is not None and "scheduler" in described:
        scheduler.load_state_dict(described["scheduler"])
    torch.set_rng_state(torch.tensor(described["torch_rng"], dtype=torch.uint8))
    extra = {k[len("extra/") :]: v for k, v in tensors.items() if k.startswith("extra/")}
    return described["state"], extra
