"""Continual-learning methods as plug-ins of the one training loop (`cliplab.engine.loop`).

One file per method; each imports only `methods.base` (and the method it specialises). To add a
method: write `methods/<name>.py` with a `Method` subclass, then list it in `METHODS` below.
"""

from __future__ import annotations

from typing import Any

from cliplab.methods.adapter_tuning import AdapterTuning
from cliplab.methods.base import ExtraInputs, Method, MethodOptions, TaskContext
from cliplab.methods.cll_clip import CLLCLIP
from cliplab.methods.coleclip import CoLeCLIP
from cliplab.methods.continual_clip import ContinualCLIP
from cliplab.methods.distill import DistillationMethod, DistillOptions, distillation_losses, soft_cross_entropy
from cliplab.methods.er import ExperienceReplay
from cliplab.methods.finetune import FineTune
from cliplab.methods.icarl import ICaRL, herding
from cliplab.methods.lora import LoRA
from cliplab.methods.lwf import LwF
from cliplab.methods.modx import ModX, modx_loss
from cliplab.methods.moe_adapters import MoEAdapters
from cliplab.methods.sit import SIT
from cliplab.methods.tic import Cumulative, Oracle, Restart, Sequential, buffer_shares, kept_sizes
from cliplab.methods.vr_lwf import VRLwF, random_bpe_vocabulary
from cliplab.methods.wise_ft import WiseFT, interpolate_
from cliplab.methods.zeroshot import ZeroShot
from cliplab.methods.zscl import ZSCL, WeightEnsemble

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        ZeroShot,
        FineTune,
        LwF,
        VRLwF,
        ICaRL,
        WiseFT,
        ZSCL,
        AdapterTuning,
        LoRA,
        MoEAdapters,
        ContinualCLIP,
        ExperienceReplay,
        SIT,
        CoLeCLIP,
        Sequential,
        Cumulative,
        Restart,
        Oracle,
        ModX,
        CLLCLIP,
    )
}


def get_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """Instantiate a method by name with its options (unknown names and options are errors)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name](options)


__all__ = [
    "CLLCLIP",
    "METHODS",
    "SIT",
    "ZSCL",
    "AdapterTuning",
    "CoLeCLIP",
    "ContinualCLIP",
    "Cumulative",
    "DistillOptions",
    "DistillationMethod",
    "ExperienceReplay",
    "ExtraInputs",
    "FineTune",
    "ICaRL",
    "LoRA",
    "LwF",
    "Method",
    "MethodOptions",
    "MoEAdapters",
    "ModX",
    "Oracle",
    "Restart",
    "Sequential",
    "TaskContext",
    "VRLwF",
    "WeightEnsemble",
    "WiseFT",
    "ZeroShot",
    "buffer_shares",
    "distillation_losses",
    "get_method",
    "herding",
    "interpolate_",
    "kept_sizes",
    "modx_loss",
    "random_bpe_vocabulary",
    "soft_cross_entropy",
]
