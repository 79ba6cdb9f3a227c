"""ToyWorld: the procedurally generated image–caption world behind the embedded default.

A scene is one shape (8 pretraining shapes, 6 novel ones kept for downstream tasks) in one of
8 colours, 3 sizes and 5 positions, on one of 6 background textures, with jittered colour,
rotation, tint and pixel noise. Captions come from templates with synonyms and optional
attributes. Eight (shape, colour) combinations — one per shape and one per colour — never occur
in pretraining: zero-shot accuracy on them measures compositional generalisation.

Randomness is namespaced: every draw is seeded by `(stream, seed, ...)`, and the pretraining
stream never shares a namespace with the probe stream, so "a probe seed never used in
training" holds by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from cliplab.toyworld.render import Scene, render
from cliplab.toyworld.vocabulary import (
    ALL_SHAPES,
    COLOUR_SYNONYMS,
    COLOURS,
    NOVEL_SHAPES,
    POSITIONS,
    SHAPES,
    SIZE_SYNONYMS,
    SIZES,
    TEXTURES,
)

# Seed namespaces: the first entropy word of every SeedSequence drawn by ToyWorld.
TRAIN_STREAM = 1001
PROBE_STREAM = 2002
TASK_STREAM = 3003

SHAPE_NAMES = list(SHAPES)
COLOUR_NAMES = list(COLOURS)
SIZE_NAMES = list(SIZES)
TEXTURE_NAMES = list(TEXTURES)
ATTRIBUTES = ("shape", "colour", "size", "position", "texture")

# One held-out colour per shape, a Latin permutation so each colour is held out exactly once.
_HELDOUT_COLOUR_OF_SHAPE = [(3 * i + 1) % len(COLOUR_NAMES) for i in range(len(SHAPE_NAMES))]
HELDOUT_COMBOS: list[tuple[str, str]] = [
    (SHAPE_NAMES[i], COLOUR_NAMES[c]) for i, c in enumerate(_HELDOUT_COLOUR_OF_SHAPE)
]

_POSITION_PHRASES = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}

# Caption templates: (format string, attributes it mentions). Optional attributes are simply
# templates that leave them out, so a caption is always true of its image.
CAPTION_TEMPLATES: list[tuple[str, tuple[str, ...]]] = [
    ("a {colour} {shape}", ("colour", "shape")),
    ("a photo of a {colour} {shape}", ("colour", "shape")),
    ("a {size} {colour} {shape}", ("size", "colour", "shape")),
    ("a {size} {shape} that is {colour}", ("size", "shape", "colour")),
    ("a {colour} {shape} {position}", ("colour", "shape", "position")),
    ("a {colour} {shape} on a {texture} background", ("colour", "shape", "texture")),
    ("a {texture} background with a {colour} {shape}", ("texture", "colour", "shape")),
    ("an image of a {shape}", ("shape",)),
    ("a photo of a {shape}", ("shape",)),
    ("a {shape} on a {texture} background", ("shape", "texture")),
    ("a {colour} shape", ("colour",)),
    ("a {size} {shape}", ("size", "shape")),
    ("a {shape} {position}", ("shape", "position")),
    ("a {size} {shape} {position} on a {texture} background", ("size", "shape", "position", "texture")),
    ("a {colour} object", ("colour",)),
    ("a {size} {colour} {shape} {position} on a {texture} background", ATTRIBUTES),
    ("a {texture} background with a {size} {colour} {shape} {position}", ATTRIBUTES),
    ("{position} there is a {size} {shape}, {colour}, over a {texture} background", ATTRIBUTES),
]
FULL_TEMPLATES = [i for i, (_, mentions) in enumerate(CAPTION_TEMPLATES) if len(mentions) == len(ATTRIBUTES)]
COLOURLESS_TEMPLATES = [i for i, (_, mentions) in enumerate(CAPTION_TEMPLATES) if "colour" not in mentions]

# Achromatic scenes: the shape drawn in a grey level (colour label ACHROMATIC, named by no word)
# and captioned without colour. They reward shape features that do not depend on colour, which
# is what zero-shot recognition of held-out (shape, colour) combinations needs; no held-out
# combination is ever shown.
ACHROMATIC = len(COLOUR_NAMES)
ACHROMATIC_FRACTION = 0.25

_AN = re.compile(r"\ba ([aeiou])")


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy]))


def combos_of(split: str) -> np.ndarray:
    """(shape, colour) index pairs of a split: 'train' (pretraining), 'heldout' or 'all'."""
    heldout = {(SHAPE_NAMES.index(s), COLOUR_NAMES.index(c)) for s, c in HELDOUT_COMBOS}
    every = [(s, c) for s in range(len(SHAPE_NAMES)) for c in range(len(COLOUR_NAMES))]
    chosen = {
        "train": [p for p in every if p not in heldout],
        "heldout": sorted(heldout),
        "all": every,
    }
    if split not in chosen:
        raise ValueError(f"unknown ToyWorld split {split!r}; use one of {sorted(chosen)}")
    return np.array(chosen[split], dtype=np.int64)


def sample_scenes(
    rng: np.random.Generator,
    n: int,
    combos: np.ndarray,
    shapes: np.ndarray | None = None,
    noise_seed: int | None = None,
) -> Scene:
    """Draw n scenes: (shape, colour) uniformly from `combos` (or shapes from `shapes`, any colour)."""
    if shapes is None:
        pick = combos[rng.integers(len(combos), size=n)]
        shape, colour = pick[:, 0], pick[:, 1]
    else:
        shape = shapes[rng.integers(len(shapes), size=n)]
        colour = rng.integers(len(COLOUR_NAMES), size=n)
    size = rng.integers(len(SIZE_NAMES), size=n)
    bounds = np.array(list(SIZES.values()))[size]
    radius = rng.uniform(bounds[:, 0], bounds[:, 1])
    position, centre = _sample_positions(rng, radius)
    palette = np.array(list(COLOURS.values()))
    fg = np.clip(palette[colour] * rng.uniform(0.85, 1.08, (n, 1)) + rng.normal(0, 0.04, (n, 3)), 0, 1)
    grey = rng.uniform(0.22, 0.62, (n, 1))
    tint = rng.uniform(0, 1, (n, 3))
    bg = np.clip(grey * (0.78 + 0.44 * tint), 0, 1)
    return Scene(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        texture=rng.integers(len(TEXTURE_NAMES), size=n),
        radius=radius,
        centre=centre,
        rotation=rng.uniform(-0.35, 0.35, n),
        fg_rgb=fg,
        bg_rgb=bg,
        texture_contrast=rng.uniform(0.15, 0.32, n),
        texture_frequency=rng.uniform(3.0, 6.0, n),
        texture_angle=rng.uniform(0, np.pi, n),
        noise_std=rng.uniform(0.02, 0.07, n),
        seed=int(rng.integers(2**31)) if noise_seed is None else noise_seed,
    )


def make_achromatic(scene: Scene, rng: np.random.Generator, fraction: float) -> Scene:
    """Turn a random `fraction` of scenes grey: the shape keeps its form, loses its hue."""
    grey = rng.random(len(scene)) < fraction
    background = scene.bg_rgb.mean(axis=1)
    lighter = background < 0.5
    level = np.where(
        lighter, background + rng.uniform(0.3, 0.45, len(scene)), background - rng.uniform(0.2, 0.3, len(scene))
    )
    scene.fg_rgb = np.where(grey[:, None], np.clip(level, 0.02, 0.98)[:, None].repeat(3, axis=1), scene.fg_rgb)
    scene.colour = np.where(grey, ACHROMATIC, scene.colour)
    return scene


def _sample_positions(rng: np.random.Generator, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position class and centre; off-centre shapes move most of the free margin along one axis."""
    n = len(radius)
    margin = np.maximum(0.5 - radius - 0.03, 0.0)
    position = rng.integers(len(POSITIONS), size=n)
    position[margin < 0.06] = 0  # too big to move visibly: centred
    shift = margin * rng.uniform(0.7, 1.0, n)
    jitter = rng.uniform(-0.02, 0.02, (n, 2))
    direction = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=float)[position]
    centre = 0.5 + direction * shift[:, None] + jitter
    return position, centre


def scene_labels(scene: Scene) -> dict[str, np.ndarray]:
    """The categorical attributes of each scene, by attribute name."""
    return {name: np.asarray(getattr(scene, name)) for name in ATTRIBUTES}


def caption(labels: dict[str, np.ndarray], i: int, template: int, rng: np.random.Generator) -> str:
    """Caption scene i with one template, picking synonyms at random."""
    colour = int(labels["colour"][i])
    words = {
        "shape": _pick(rng, {**SHAPES, **NOVEL_SHAPES}[ALL_SHAPES[labels["shape"][i]]]),
        "colour": _pick(rng, COLOUR_SYNONYMS[COLOUR_NAMES[colour]]) if colour < ACHROMATIC else "",
        "size": _pick(rng, SIZE_SYNONYMS[SIZE_NAMES[labels["size"][i]]]),
        "position": _POSITION_PHRASES[POSITIONS[labels["position"][i]]],
        "texture": _pick(rng, TEXTURES[TEXTURE_NAMES[labels["texture"][i]]]),
    }
    text = CAPTION_TEMPLATES[template][0].format(**words)
    return _AN.sub(r"an \1", text)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]


# Synonym lists per drawn attribute, in the order `caption` draws them (position has no synonyms).
_SYNONYM_ATTRIBUTES = ("shape", "colour", "size", "texture")


def _synonym_table(attribute: str) -> list[list[str]]:
    """Synonyms of every class of `attribute`, indexed by its label."""
    if attribute == "shape":
        return [{**SHAPES, **NOVEL_SHAPES}[name] for name in ALL_SHAPES]
    if attribute == "colour":  # the achromatic label has no word and so draws nothing
        return [COLOUR_SYNONYMS[name] for name in COLOUR_NAMES] + [[""]]
    if attribute == "size":
        return [SIZE_SYNONYMS[name] for name in SIZE_NAMES]
    return [TEXTURES[name] for name in TEXTURE_NAMES]


def _synonym_words(labels: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, list[str]]:
    """The words `caption` would pick for every scene, with all draws made in one call.

    `caption` draws `rng.integers(len(options))` for shape, colour, size and texture in turn,
    skipping single-option lists. numpy draws an array of bounded integers with the same
    per-element algorithm as scalar draws, so one `rng.integers(highs)` over those bounds in
    the same (scene, attribute) order consumes the stream identically.
    """
    tables = [_synonym_table(a) for a in _SYNONYM_ATTRIBUTES]
    label_cols = [np.asarray(labels[a], dtype=np.int64) for a in _SYNONYM_ATTRIBUTES]
    counts = np.stack([np.array([len(o) for o in t])[col] for t, col in zip(tables, label_cols)], axis=1)
    choice = np.zeros_like(counts)
    drawn = counts > 1
    if drawn.any():
        choice[drawn] = rng.integers(counts[drawn])
    words = {}
    for j, (attribute, table, col) in enumerate(zip(_SYNONYM_ATTRIBUTES, tables, label_cols)):
        flat = np.array([w for options in table for w in options], dtype=object)
        offset = np.cumsum([0] + [len(o) for o in table])[:-1]
        words[attribute] = flat[offset[col] + choice[:, j]].tolist()
    return words


def _choose_templates(pool: list[int], achromatic: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Template per scene from uniform draws in [0, 1): achromatic scenes only from colour-free ones."""
    pool_arr = np.asarray(pool, dtype=np.int64)
    colourless = np.asarray([t for t in pool if t in COLOURLESS_TEMPLATES], dtype=np.int64)
    chosen = pool_arr[(draws * len(pool_arr)).astype(np.int64)]
    if achromatic.any() and len(colourless):
        chosen[achromatic] = colourless[(draws[achromatic] * len(colourless)).astype(np.int64)]
    return chosen


def caption_batch(
    scene: Scene, rng: np.random.Generator, templates: list[int] | None = None
) -> tuple[list[str], np.ndarray]:
    """One caption per scene and a (N, 5) bool matrix of which attributes each caption mentions.

    Vectorised; the same captions and the same use of `rng` as the per-scene procedure: one
    uniform draw per scene picks its template (achromatic scenes among colour-free ones), then
    `caption` draws each scene's synonyms in turn (checked by tests/test_toyworld.py).
    """
    labels = scene_labels(scene)
    pool = templates if templates is not None else list(range(len(CAPTION_TEMPLATES)))
    chosen = _choose_templates(pool, np.asarray(labels["colour"]) == ACHROMATIC, rng.random(len(scene)))
    words = _synonym_words(labels, rng)
    position = [_POSITION_PHRASES[p] for p in POSITIONS]
    formats = [fmt for fmt, _ in CAPTION_TEMPLATES]
    texts = [
        formats[t].format(shape=sh, colour=co, size=si, position=position[po], texture=te)
        for t, sh, co, si, po, te in zip(
            chosen.tolist(),
            words["shape"],
            words["colour"],
            words["size"],
            np.asarray(labels["position"]).tolist(),
            words["texture"],
        )
    ]
    # One regex pass over all captions; they never contain a newline, and a newline is a word
    # boundary exactly like the start of a string, so this equals substituting each caption.
    texts = _AN.sub(r"an \1", "\n".join(texts)).split("\n") if texts else []
    table = np.array([[a in mentions for a in ATTRIBUTES] for _, mentions in CAPTION_TEMPLATES], dtype=bool)
    return texts, table[chosen].reshape(len(chosen), len(ATTRIBUTES))


def caption_truth(labels: dict[str, np.ndarray], mentions: np.ndarray) -> np.ndarray:
    """truth[i, j] is True when caption j (mentioning `mentions[j]`) is true of image i.

    Used as multi-positive targets in pretraining: "a red shape" is a correct caption of every
    red image in the batch, not only of the one it was drawn for.
    """
    attrs = np.stack([labels[a] for a in ATTRIBUTES], axis=1)
    same = attrs[:, None, :] == attrs[None, :, :]
    return np.all(same | ~mentions[None, :, :], axis=2)


@dataclass
class ToyWorld:
    """Entry point to the world: scene streams for pretraining and seeded, fixed probe sets."""

    image_size: int = 32
    heldout: list[tuple[str, str]] = field(default_factory=lambda: list(HELDOUT_COMBOS))

    def training_batch(self, seed: int, step: int, n: int) -> tuple[Tensor, list[str], np.ndarray]:
        """Pretraining batch `step` of stream `seed`: images, captions and caption-truth targets."""
        rng = _rng(TRAIN_STREAM, seed, step)
        scene = make_achromatic(sample_scenes(rng, n, combos_of("train")), rng, ACHROMATIC_FRACTION)
        texts, mentions = caption_batch(scene, rng)
        return render(scene, self.image_size), texts, caption_truth(scene_labels(scene), mentions)

    def probe_scenes(self, seed: int, n: int, split: str = "heldout", stream: int = PROBE_STREAM) -> Scene:
        """A fixed set of n scenes for evaluation, drawn from `split` combinations."""
        return sample_scenes(_rng(stream, seed, n), n, combos_of(split))

    def novel_shape_scenes(self, seed: int, n: int, shapes: list[str]) -> Scene:
        """Scenes of shapes pretraining never showed (any colour), for downstream tasks."""
        index = np.array([ALL_SHAPES.index(s) for s in shapes])
        return sample_scenes(_rng(TASK_STREAM, seed, n, len(shapes)), n, combos_of("all"), shapes=index)

    def render(self, scene: Scene) -> Tensor:
        return render(scene, self.image_size)
