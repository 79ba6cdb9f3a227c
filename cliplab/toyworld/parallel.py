"""Parallel captions: ToyWorld images captioned in English and in every made-up language.

The analogue of CLL-CLIP's translated COCO: one pool of images, each with an English caption (any
of ToyWorld's templates, synonyms drawn at random) and its translation into each language (same
attributes, same frame: `Language.caption` of the scene's labels). Every language is learned from
the same images, as CLL-CLIP's languages are all translations of COCO's training captions.

Splits draw their scenes from their own seed stream (`LANGUAGE_STREAM`): `train` from the
pretraining combinations only (the held-out (shape, colour) pairs stay unseen, so ToyWorld's
zero-shot probes stay held out), `val` and `test` from every combination and captioned with the
templates that name all five attributes (as the retrieval probe is), so a caption singles out
its image as far as the attributes can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from cliplab.toyworld.languages import SLOTS, Language
from cliplab.toyworld.vocabulary import POSITIONS
from cliplab.toyworld.world import (
    CAPTION_TEMPLATES,
    COLOUR_NAMES,
    FULL_TEMPLATES,
    SHAPE_NAMES,
    TEXTURE_NAMES,
    ToyWorld,
    _rng,
    caption,
    combos_of,
    sample_scenes,
    scene_labels,
)

LANGUAGE_STREAM = 4004
SPLITS = {"train": 0, "val": 1, "test": 2}
_CLASS_NAMES = {
    "shape": SHAPE_NAMES,
    "colour": COLOUR_NAMES,
    "size": ["small", "medium", "large"],
    "position": list(POSITIONS),
    "texture": TEXTURE_NAMES,
}


def template_frame(template: int) -> tuple[str, str]:
    """(frame, head noun) of an English template: "a photo of a {shape}" -> ("photo", "shape")."""
    text, mentions = CAPTION_TEMPLATES[template]
    frame = (
        "photo"
        if "photo of" in text
        else "image"
        if "image of" in text
        else "there_is"
        if "there is" in text
        else "plain"
    )
    head = "shape" if "shape" in mentions else "object" if text.endswith("object") else "shape"
    return frame, head


@dataclass
class ParallelCorpus:
    """Images (uint8 N x 3 x S x S), their English captions and the translations, one per image."""

    images: Tensor
    english: list[str]
    captions: dict[str, list[str]]  # language name -> caption of image i
    labels: dict[str, np.ndarray]  # slot -> class index per image
    templates: np.ndarray  # English template index per image

    def __len__(self) -> int:
        return len(self.english)

    def label_names(self, i: int) -> dict[str, str]:
        """Class names of image i's attributes (slot -> name)."""
        return {slot: _CLASS_NAMES[slot][int(self.labels[slot][i])] for slot in SLOTS}


def parallel_corpus(
    languages: list[Language], n: int, split: str = "train", seed: int = 0, image_size: int = 32
) -> ParallelCorpus:
    """`n` images of `split` with English captions and their translations into `languages`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    rng = _rng(LANGUAGE_STREAM, seed, SPLITS[split], n)
    world = ToyWorld(image_size=image_size)
    scene = sample_scenes(rng, n, combos_of("train" if split == "train" else "all"))
    labels = scene_labels(scene)
    pool = np.arange(len(CAPTION_TEMPLATES)) if split == "train" else np.asarray(FULL_TEMPLATES)
    templates = pool[rng.integers(len(pool), size=n)]
    english = [caption(labels, i, int(t), rng) for i, t in enumerate(templates)]
    corpus = ParallelCorpus(world.render(scene), english, {}, {k: np.asarray(v) for k, v in labels.items()}, templates)
    for language in languages:
        texts = []
        for i, t in enumerate(templates):
            frame, head = template_frame(int(t))
            texts.append(language.caption(corpus.label_names(i), CAPTION_TEMPLATES[int(t)][1], frame, head))
        corpus.captions[language.name] = texts
    return corpus


__all__ = ["LANGUAGE_STREAM", "SPLITS", "ParallelCorpus", "parallel_corpus", "template_frame"]
