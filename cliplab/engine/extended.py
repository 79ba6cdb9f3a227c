"""Models extended by a method (adapters, LoRA, experts with routers): build, describe, save, reload.

A method that adds modules (`Method.model_extension` / `extend_model`) gets them added once per
run, before the first evaluation. The checkpoint then describes them in its metadata:

    extension = {"method": "moe_adapters", "options": {...}, "layout": {"n_tasks": 4, ...}}
    base      = {"model": "toyclip", "pretrained": null, "weights": "<content hash>"}

When the method keeps the backbone frozen (`trains_backbone = False`) and the backbone can be
loaded again by name, checkpoints hold only the added modules (small) and `base` says which
backbone to load first; otherwise they hold every tensor. `load_model` here is `cliplab.load_model`:
it reads that metadata, loads the backbone, asks the method registry (`cliplab.methods`) to add the
same modules, and loads the stored tensors. It lives above the methods so that `cliplab.models`
stays below them (docs/design.md); on any other file or name it is `cliplab.models.load_model`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cliplab.models as models
from cliplab.checkpoints import load_state_dict, load_weights, read_metadata
from cliplab.methods import Method, get_method
from cliplab.utils import resolve_device

# peft keeps a wrapped layer's original tensors under `<layer>.base_layer.*`; those are backbone tensors.
_WRAPPED = ".base_layer"


@dataclass(frozen=True)
class Extension:
    """The modules a method added to a run's model: their description and state-dict keys."""

    spec: dict[str, Any]  # method, options, layout
    keys: tuple[str, ...]  # the added tensors
    base: dict[str, Any] | None  # the backbone to load first; None: checkpoints hold every tensor

    @property
    def partial(self) -> bool:
        return self.base is not None

    def metadata(self) -> dict[str, Any]:
        return {"extension": self.spec, **({"base": self.base} if self.base else {})}


def backbone_name(key: str) -> str:
    """The backbone key a tensor of an extended model came from (peft's `base_layer` removed)."""
    return key.replace(_WRAPPED, "")


def added_keys(model: nn.Module, backbone_keys: set[str]) -> tuple[str, ...]:
    """State-dict keys of `model` that are not backbone tensors."""
    return tuple(k for k in model.state_dict() if backbone_name(k) not in backbone_keys)


def extend(model: nn.Module, method: Method, scenario: Any, base: dict[str, Any] | None = None) -> Extension | None:
    """Add `method`'s modules for `scenario` to `model` (None when it adds none).

    `base` ({"model", "pretrained", "weights"}) names a backbone that can be loaded again; with a
    frozen-backbone method, checkpoints then hold only the added modules.
    """
    layout = method.model_extension(scenario)
    if layout is None:
        return None
    before = set(model.state_dict())
    method.extend_model(model, layout)
    spec = {"method": method.name, "options": asdict(method.options), "layout": layout}
    return Extension(spec, added_keys(model, before), None if method.trains_backbone else base)


def rebuild(model: nn.Module, spec: dict[str, Any]) -> tuple[str, ...]:
    """Add the modules an `extension` metadata entry describes; returns their keys."""
    before = set(model.state_dict())
    get_method(spec["method"], spec.get("options")).extend_model(model, spec["layout"])
    return added_keys(model, before)


def load_model(
    name: str = "toyclip",
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | None = None,
) -> models.ClipBundle:
    """`cliplab.models.load_model`, plus checkpoints of runs whose method extended the model.

    On such a checkpoint, the returned model has the method's modules (and, for MoE-Adapters, its
    routers and auto-selector) and is ready for evaluation: `cliplab.evaluation` routes every input
    through the model's own decision.
    """
    path = Path(str(name)).expanduser()
    if pretrained is not None or path.suffix != ".safetensors" or not path.is_file():
        return models.load_model(name, pretrained=pretrained, device=device, cache_dir=cache_dir)
    meta = read_metadata(path)
    spec = meta.get("extension")
    if not spec:
        return models.load_model(name, device=device)
    base = meta.get("base")
    if base:
        bundle = models.load_model(base["model"], pretrained=base.get("pretrained"), device="cpu", cache_dir=cache_dir)
        now = models.weights_fingerprint(base["model"], base.get("pretrained"))
        if base.get("weights") and now and now != base["weights"]:
            raise ValueError(
                f"{path} extends the backbone {base['model']!r} / {base.get('pretrained')!r} with weights "
                f"{base['weights']}, but those weights are now {now}: the backbone changed since the run"
            )
    else:
        bundle = models.architecture_bundle(meta["architecture"])
    rebuild(bundle.model, spec)
    load_weights(bundle.model, load_state_dict(path), path, partial=bool(base) or meta.get("partial") == "true")
    bundle.model.to(resolve_device(device)).eval()
    return bundle._replace(pretrained=str(path))


def count_trained(model: nn.Module, names: set[str] | list[str]) -> int:
    """Number of parameters in the named tensors of `model` (the ones some task updated)."""
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in set(names) if n in params)


__all__ = ["Extension", "added_keys", "backbone_name", "count_trained", "extend", "load_model", "rebuild"]
