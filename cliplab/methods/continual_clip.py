"""Continual-CLIP (Thengane et al. 2022, vgthengane/Continual-CLIP): frozen CLIP over the classes seen so far.

The training-free row every CLIP continual-learning table carries: nothing is trained; after each
task the frozen model classifies among the classes the protocol has shown (the CIL evaluator's
"classes of tasks 1..t"; the online protocol's exposed classes; the ODCL union of seen domains).
So by default it is `zeroshot` under another name, which the tests check number for number.

The authors use one prompt per benchmark ("a bad photo of a {}." for CIFAR-100 and TinyImageNet,
"a good photo of a {}." for ImageNet and CORe50; `configs/`), never an ensemble. The scenarios'
own evaluation prompts already are theirs on CIFAR-100 (ZSCL's single "a bad photo of a {}."); on
the ensembled MTIL / ToyWorld prompts, `prompt="a bad photo of a {}."` (any "{}" template) makes
every classifier use that single prompt instead, as their code would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cliplab.methods.base import Method, MethodOptions


@dataclass
class ContinualCLIPOptions(MethodOptions):
    prompt: str | None = None  # None: the scenario's evaluation prompts; else one "{}" template for every class

    def __post_init__(self) -> None:
        if self.prompt is not None and "{}" not in self.prompt:
            raise ValueError(f"prompt must contain '{{}}' where the class name goes, got {self.prompt!r}")


class SinglePrompt:
    """A `class_scorer` that builds every classifier from one prompt template (the authors')."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def logits(self, model, features, names, templates, classifier):
        return features @ classifier(names, [self.prompt])


class ContinualCLIP(Method):
    """Frozen CLIP, classes of the tasks seen so far, one prompt (optional): no training at all."""

    name = "continual_clip"
    trains = False
    Options = ContinualCLIPOptions

    def model_extension(self, scenario: Any) -> dict[str, Any] | None:
        return None if self.options.prompt is None else {"prompt": self.options.prompt}

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        model.class_scorer = SinglePrompt(layout["prompt"])


__all__ = ["ContinualCLIP", "ContinualCLIPOptions", "SinglePrompt"]
