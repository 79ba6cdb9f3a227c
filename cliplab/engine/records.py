"""What a run records about itself beside its accuracies: parameters, peak memory, routing.

Kept in progress.json while the run goes (so a resumed run continues the record) and copied into
metrics.json when it finishes:

- `parameters`: `{"total": N, "trainable": M, "pretrained": P}`, N = parameters of the final model
  (backbone plus any modules a method added), M = parameters some task updated (by the optimiser,
  or by the method itself, e.g. MoE-Adapters' autoencoders), P = parameters of the model as loaded,
  before any method added a module (the base of "trains x % of CLIP's parameters");
  `trained_by_part` splits M by top-level module (`visual`, `transformer`, `input_router` = a
  selector outside the two towers, ...);
- `peak_memory`: the peak memory of training: on CUDA `torch.cuda.max_memory_allocated` over the
  training of every task; on CPU the process's peak resident set (`ru_maxrss`), which includes
  evaluation and data as well; the maximum over resumed processes;
- `routing` (models that choose a route per input, e.g. MoE-Adapters' DDAS): the share of every
  test set and probe taking each route after each task, and the two headline shares: test images
  of task j reaching router j, probe images reaching the frozen model (route -1).
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

FROZEN = "-1"


def record_trained(data: dict[str, Any], model: nn.Module, names: list[str], pretrained: int | None = None) -> None:
    """Add the names of the parameters a task updated and refresh the parameter counts
    (`pretrained`: the loaded model's parameter count, kept from the first call that gives it)."""
    trained = sorted(set(data.get("trained_parameters", [])) | set(names))
    data["trained_parameters"] = trained
    params = dict(model.named_parameters())
    by_part: dict[str, int] = {}
    for name in trained:
        if name in params:
            part = name.split(".")[0]
            by_part[part] = by_part.get(part, 0) + params[name].numel()
    pretrained = data.get("parameters", {}).get("pretrained", pretrained)
    data["parameters"] = {"total": sum(p.numel() for p in model.parameters()), "trainable": sum(by_part.values())}
    if pretrained is not None:
        data["parameters"]["pretrained"] = pretrained
    data["trained_by_part"] = by_part


@contextlib.contextmanager
def peak_memory(data: dict[str, Any], device: torch.device) -> Iterator[None]:
    """Record the peak memory of the enclosed training in `data["peak_memory"]` (MiB)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        if cuda:
            value, measure = torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
        else:
            value, measure = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (ru_maxrss)"
        old = data.get("peak_memory", {})
        data["peak_memory"] = {
            "training_mib": round(max(value, old.get("training_mib", 0.0)), 1),
            "device": device.type,
            "measure": measure,
        }


def routing_summary(evaluations: list[dict], task_names: list[str]) -> dict[str, Any] | None:
    """metrics.json's `routing` (None when no evaluation routed its inputs)."""
    shares = [e.get("routing") or {} for e in evaluations]
    if not any(shares):
        return None
    last = shares[-1]
    own = [last.get(name, {}).get(str(j), 0.0) for j, name in enumerate(task_names)]
    probes = {k: v.get(FROZEN, 0.0) for k, v in last.items() if k not in task_names}
    return {"after_task": shares, "task_to_own_router": own, "probes_to_frozen": probes}


def run_record(data: dict[str, Any], evaluations: list[dict], task_names: list[str]) -> dict[str, Any]:
    """The entries of metrics.json this module is responsible for."""
    out: dict[str, Any] = {}
    for key in ("parameters", "trained_by_part"):
        if key in data:
            out[key] = data[key]
    if "peak_memory" in data:
        out["peak_memory"] = data["peak_memory"]
    routing = routing_summary(evaluations, task_names)
    if routing is not None:
        out["routing"] = routing
    return out


__all__ = ["peak_memory", "record_trained", "routing_summary", "run_record"]
