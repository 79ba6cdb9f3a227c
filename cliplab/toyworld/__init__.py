"""ToyWorld: procedural image–caption world (see `world.py`)."""

from cliplab.toyworld.render import Scene, render
from cliplab.toyworld.vocabulary import ALL_SHAPES, COLOURS, NOVEL_SHAPES, POSITIONS, SHAPES, SIZES, TEXTURES
from cliplab.toyworld.world import HELDOUT_COMBOS, ToyWorld, caption_batch, caption_truth, combos_of, sample_scenes

__all__ = [
    "ALL_SHAPES",
    "COLOURS",
    "HELDOUT_COMBOS",
    "NOVEL_SHAPES",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "Scene",
    "ToyWorld",
    "caption_batch",
    "caption_truth",
    "combos_of",
    "render",
    "sample_scenes",
]
