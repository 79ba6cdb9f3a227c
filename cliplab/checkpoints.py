"""Safetensors checkpoints: self-describing model files and resumable training states.

Model checkpoints carry their open_clip architecture name and config in the safetensors
metadata, so `load_model(path)` can rebuild the model without pickle. Training states add the
optimizer, scheduler and any counters a loop needs to resume exactly where it stopped. Every
write is atomic (`cliplab.io.atomic_path`): a kill mid-save leaves the previous file intact.

A checkpoint may hold only some of a model's tensors (`keys=`): a parameter-efficient method's
added modules, with the backbone named in the metadata (`base`) instead of stored. Such a file is
marked `partial`, and `load_into` accepts it only on a model that already holds the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cliplab.io import atomic_path

_OPT_PREFIX = "optimizer/"
_MODEL_PREFIX = "model/"
_JSON_METADATA = ("model_config", "extra", "state", "extension", "base")


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


def load_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], partial: bool = False) -> None:
    """Load `tensors` into `model`: all of its tensors, or (`partial`) a subset of them.

    Either way a tensor the model does not have is an error naming it; a partial load leaves the
    model's other tensors as they are (e.g. a frozen backbone loaded before).
    """
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    missing = sorted(set(own) - set(tensors))
    if unexpected or (missing and not partial):
        raise ValueError(
            f"checkpoint does not fit the model: unexpected {unexpected[:5]}, missing {missing[:5]} "
            f"({len(unexpected)} unexpected, {len(missing)} missing). A checkpoint of a parameter-efficient "
            "run is loaded with cliplab.load_model(path), which rebuilds the modules the method added."
        )
    model.load_state_dict(tensors, strict=not partial)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded metadata of a cliplab safetensors file ({} for a foreign safetensors file)."""
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    decoded: dict[str, Any] = dict(raw)
    for key in _JSON_METADATA:
        if key in decoded:
            decoded[key] = json.loads(decoded[key])
    return decoded


def load_state_dict(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict, casting floating tensors to `dtype` (fp16-shipped → fp32)."""
    state = load_file(str(path))
    if any(key.startswith(_MODEL_PREFIX) for key in state):  # a training state: take the model part
        state = {k[len(_MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(_MODEL_PREFIX)}
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


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
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore what `save_training_state` wrote; returns (counters, extra tensors)."""
    tensors = load_file(str(path))
    described = read_metadata(path)["state"]
    load_into(
        model,
        {k[len(_MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)},
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
