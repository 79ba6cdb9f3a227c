"""ToyWorld evaluation sets: zero-shot tasks on held-out combinations and a retrieval probe.

Both are pure functions of a probe seed. Probe seeds live in their own namespace
(`PROBE_STREAM`), disjoint from the pretraining stream, so every probe is unseen by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from cliplab.toyworld.render import Scene
from cliplab.toyworld.vocabulary import NOVEL_SHAPES, TEXTURES
from cliplab.toyworld.world import (
    COLOUR_NAMES,
    FULL_TEMPLATES,
    PROBE_STREAM,
    SHAPE_NAMES,
    TASK_STREAM,
    ToyWorld,
    _rng,
    caption,
    scene_labels,
)

_AN = re.compile(r"\ba ([aeiou])")


class Template(str):
    """A prompt template (a plain "{}" string) that, when called, fixes 'a'/'an' ("an orange star").

    open_clip's classifier builder calls callable templates, and everything else sees an ordinary
    format string, so caches and dataset checks treat it as text.
    """

    def __call__(self, classname: str) -> str:
        return _AN.sub(r"an \1", self.format(classname))


SHAPE_TEMPLATES = [Template("a photo of a {}"), Template("an image of a {}"), Template("a {}")]
COLOUR_TEMPLATES = [Template("a {} shape"), Template("a {} object")]
SHAPE_COLOUR_TEMPLATES = [Template("a {}"), Template("a photo of a {}")]
ZERO_SHOT_TASKS = ("shape", "colour", "shape_colour")


@dataclass
class LabelledImages:
    """A zero-shot task: uint8 images (N, 3, S, S), integer labels, class names and templates."""

    name: str
    images: Tensor
    labels: Tensor
    classnames: list[str]
    templates: list

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RetrievalProbe:
    """Images with several captions each; caption j describes image `text_image_index[j]`."""

    images: Tensor
    captions: list[str]
    text_image_index: Tensor


def shape_colour_classnames() -> list[str]:
    """All 64 "colour shape" names; class index = shape * n_colours + colour."""
    return [f"{c} {s}" for s in SHAPE_NAMES for c in COLOUR_NAMES]


def zero_shot_tasks(
    seed: int = 0, n: int = 1000, split: str = "heldout", image_size: int = 32
) -> dict[str, LabelledImages]:
    """The three zero-shot tasks on the same probe images of `split` combinations.

    - shape: 8-way over pretraining shapes;
    - colour: 8-way;
    - shape_colour: 64-way over every (colour, shape) name — on held-out images the correct
      name is one pretraining never paired with such an image.
    """
    world = ToyWorld(image_size=image_size)
    scene = world.probe_scenes(seed, n, split)
    images = world.render(scene)
    shape, colour = torch.as_tensor(scene.shape), torch.as_tensor(scene.colour)
    return {
        "shape": LabelledImages("shape", images, shape, list(SHAPE_NAMES), SHAPE_TEMPLATES),
        "colour": LabelledImages("colour", images, colour, list(COLOUR_NAMES), COLOUR_TEMPLATES),
        "shape_colour": LabelledImages(
            "shape_colour",
            images,
            shape * len(COLOUR_NAMES) + colour,
            shape_colour_classnames(),
            SHAPE_COLOUR_TEMPLATES,
        ),
    }


def retrieval_probe(
    seed: int = 0, n_images: int = 500, captions_per_image: int = 3, image_size: int = 32
) -> RetrievalProbe:
    """A fixed retrieval set over all combinations, captioned with every attribute (COCO-style)."""
    world = ToyWorld(image_size=image_size)
    scene: Scene = world.probe_scenes(seed, n_images, "all", stream=PROBE_STREAM + 1)
    labels = scene_labels(scene)
    rng = _rng(PROBE_STREAM + 1, seed, n_images, captions_per_image)
    captions, owner = [], []
    for i in range(n_images):
        templates = rng.choice(
            FULL_TEMPLATES, size=captions_per_image, replace=captions_per_image > len(FULL_TEMPLATES)
        )
        for t in templates:
            captions.append(caption(labels, i, int(t), rng))
            owner.append(i)
    return RetrievalProbe(world.render(scene), captions, torch.tensor(owner))


# Made-up words (in the tradition of word-learning studies) that pretraining never used: learning
# them forces the text tower to bind new names to known shapes.
NONCE_NAMES = {
    "circle": "dax",
    "square": "wug",
    "triangle": "blicket",
    "star": "toma",
    "cross": "fep",
    "ring": "zup",
    "diamond": "kiki",
    "heart": "gorp",
}
DOWNSTREAM_DOMAINS = ("novel_shapes", "textures", "nonce_shapes")
_SPLIT_SEEDS = {"train": 0, "test": 1}


def downstream_classnames(domain: str) -> list[str]:
    """Class names of a downstream domain, without rendering anything."""
    if domain not in DOWNSTREAM_DOMAINS:
        raise ValueError(f"unknown ToyWorld domain {domain!r}; use one of {DOWNSTREAM_DOMAINS}")
    if domain == "novel_shapes":
        return [NOVEL_SHAPES[s][0] for s in NOVEL_SHAPES]
    if domain == "textures":
        return list(TEXTURES)
    return [NONCE_NAMES[s] for s in SHAPE_NAMES]


def downstream_task(domain: str, split: str = "train", n: int = 600, image_size: int = 32) -> LabelledImages:
    """A ToyWorld classification domain for continual fine-tuning (never a pretraining target).

    - novel_shapes: 6 shapes pretraining never showed nor named (crescent, arrow, ...);
    - textures: the 6 background textures, named as in captions ("a striped background");
    - nonce_shapes: the 8 pretraining shapes under made-up names (dax, wug, ...).
    """
    classnames = downstream_classnames(domain)
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    world, seed = ToyWorld(image_size=image_size), 100 * DOWNSTREAM_DOMAINS.index(domain) + _SPLIT_SEEDS[split]
    if domain == "novel_shapes":
        names = list(NOVEL_SHAPES)
        scene = world.novel_shape_scenes(seed, n, names)
        labels = torch.as_tensor(scene.shape) - len(SHAPE_NAMES)
        return LabelledImages(domain, world.render(scene), labels, classnames, SHAPE_TEMPLATES)
    scene = world.probe_scenes(seed, n, "train", stream=TASK_STREAM)
    if domain == "textures":
        return LabelledImages(
            domain, world.render(scene), torch.as_tensor(scene.texture), classnames, TEXTURE_TEMPLATES
        )
    return LabelledImages(domain, world.render(scene), torch.as_tensor(scene.shape), classnames, SHAPE_TEMPLATES)


TEXTURE_TEMPLATES = [Template("a {} background"), Template("a shape on a {} background")]


def normalise_uint8(images: Tensor, mean: tuple, std: tuple) -> Tensor:
    """uint8 (N, 3, S, S) → float model input; equals ToTensor+Normalize for images already at size."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


__all__ = [
    "DOWNSTREAM_DOMAINS",
    "NONCE_NAMES",
    "ZERO_SHOT_TASKS",
    "LabelledImages",
    "RetrievalProbe",
    "Template",
    "downstream_classnames",
    "downstream_task",
    "normalise_uint8",
    "retrieval_probe",
    "shape_colour_classnames",
    "zero_shot_tasks",
]
