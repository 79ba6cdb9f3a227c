"""A ToyWorld that drifts over time, as web image–caption data does (the world behind `toy-tic`).

Step 0 is the world ToyCLIP was pretrained on (`ToyWorld`). Steps 1..5 drift from it, every knob
at once, the way TiC-CLIP (Garg et al., ICLR 2024) describes web data changing from year to year:

- **objects**: one novel shape enters per step (crescent, arrow, hourglass, semicircle, letter t);
  a shape's weight decays as exp(−age / 2) with a floor, so old shapes grow rare, never vanish;
- **words**: synonyms shift ("box" overtakes "square", "turquoise" replaces "cyan"), some go out of
  use ("plus sign", "rhombus", "chequered"), coined words appear and stay ("zorb" for a circle and
  "blip" for a star from step 3, "magenta", "huge", "mini", "polka-dot"), every step has its fads
  (words popular at that step and gone two steps later: "lovey" hearts and "scarlet" at step 1,
  "sparkle" stars and "azure" at step 2, ...), and a word changes meaning: "moon" is a circle at
  steps 1-2 and the crescent's new name from step 4;
- **style**: backgrounds move from plain/striped to noisy/gradient and get darker, noisier and
  more contrasted; shapes are rotated more;
- **captions**: ToyWorld's templates fade out while list-like, hashtag and "pic ... bg" templates
  come in.

Everything is a pure function of (world seed, step, stream): a step's training pool, its
retrieval set and its classification set come from disjoint seed namespaces (`TIC_STREAM`,
`TIC_EVAL_STREAM`, `TIC_CLASS_STREAM`), also disjoint from ToyWorld's pretraining and probe streams.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

from cliplab.toyworld.render import Scene, render
from cliplab.toyworld.vocabulary import ALL_SHAPES, COLOURS, NOVEL_SHAPES, POSITIONS, SHAPES, SIZES, TEXTURES
from cliplab.toyworld.world import _POSITION_PHRASES, _rng, _sample_positions

TIC_STREAM = 4004
TIC_EVAL_STREAM = 5005
TIC_CLASS_STREAM = 6006
N_STEPS = 5  # drift steps after the pretraining world (TiC-DataComp has 7 after merging 2014-2016)

ENTRY_STEP = {s: 0 for s in SHAPES} | {s: i + 1 for i, s in enumerate(list(NOVEL_SHAPES)[:N_STEPS])}
SHAPE_DECAY = 2.0  # weight of a shape of age a: exp(-a / SHAPE_DECAY), at least SHAPE_FLOOR
SHAPE_FLOOR = 0.05

# Word weights per step 1..5 (0 = not in use). The first word of a class at a step with the
# largest weight is not special: classifiers use `class_name`, captions draw by weight.
_W = dict[str, tuple[float, ...]]
SHAPE_WORDS: dict[str, _W] = {
    "circle": {
        "circle": (1, 0.8, 0.5, 0.3, 0.2),
        "disc": (0.5, 0.6, 0.6, 0.5, 0.4),
        "zorb": (0, 0, 0.5, 1, 1.2),
        "moon": (1, 0.4, 0, 0, 0),  # a full moon, until "moon" names the crescent (step 4)
    },
    "square": {"square": (1, 0.7, 0.4, 0.2, 0.1), "box": (0.5, 0.8, 1, 1, 1), "cube": (0, 1.5, 0.4, 0, 0)},
    "triangle": {"triangle": (1,) * 5, "wedge": (0, 0, 1.5, 0.4, 0)},
    "star": {"star": (1, 1, 1, 0.6, 0.4), "blip": (0, 0, 0.3, 0.6, 1), "sparkle": (0, 1.5, 0.4, 0, 0)},
    "cross": {"cross": (1,) * 5, "plus sign": (1, 0.3, 0, 0, 0)},
    "ring": {"ring": (1, 0.7, 0.4, 0.2, 0.1), "donut": (0.5, 0.8, 1, 1, 1), "halo": (0, 0, 0, 0, 1.5)},
    "diamond": {"diamond": (1,) * 5, "rhombus": (1, 0.5, 0, 0, 0), "kite": (0, 0, 0, 1.5, 0.4)},
    "heart": {"heart": (1,) * 5, "lovey": (1.5, 0.4, 0, 0, 0)},
    "crescent": {"crescent": (1, 1, 1, 0, 0), "moon": (0, 0, 0, 1, 1)},  # renamed after step 3
    "arrow": {"arrow": (1,) * 5},
    "hourglass": {"hourglass": (1,) * 5},
    "semicircle": {"semicircle": (1,) * 5},
    "tee": {"letter t": (1,) * 5},
    "ell": {"letter l": (1,) * 5},
}
# The name a zero-shot classifier uses for a shape at a step (the crescent is renamed at step 4).
RENAMED = {"crescent": (4, "moon")}
COLOUR_WORDS: dict[str, _W] = {
    "red": {"red": (1,) * 5, "scarlet": (1.5, 0.4, 0, 0, 0)},
    "orange": {"orange": (1,) * 5, "amber": (0, 0, 0, 0, 1.5)},
    "yellow": {"yellow": (1,) * 5, "gold": (0, 0, 0, 1.5, 0.4)},
    "green": {"green": (1,) * 5, "lime": (0, 0, 1.5, 0.4, 0)},
    "cyan": {"cyan": (1, 0.6, 0.3, 0.1, 0), "turquoise": (0.5, 0.8, 1, 1, 1)},
    "blue": {"blue": (1,) * 5, "azure": (0, 1.5, 0.4, 0, 0)},
    "purple": {"purple": (1, 1, 0.8, 0.6, 0.5), "violet": (0.5, 0.5, 0.6, 0.6, 0.6)},
    "pink": {"pink": (1, 1, 1, 0.6, 0.5), "magenta": (0, 0, 0, 0.6, 1)},
}
SIZE_WORDS: dict[str, _W] = {
    "small": {"small": (1,) * 5, "tiny": (1,) * 5, "little": (1, 1, 0.6, 0.3, 0.2), "mini": (0, 0, 0, 0.5, 1)},
    "medium": {"medium": (1,) * 5, "medium-sized": (1, 0.8, 0.6, 0.4, 0.3)},
    "large": {"large": (1, 1, 0.8, 0.6, 0.5), "big": (1,) * 5, "huge": (0, 0, 0.5, 1, 1)},
}
TEXTURE_WORDS: dict[str, _W] = {
    "plain": {"plain": (1,) * 5},
    "striped": {"striped": (1,) * 5, "stripy": (1.5, 0.4, 0, 0, 0)},
    "checkered": {"checkered": (1,) * 5, "chequered": (1, 0.5, 0, 0, 0), "plaid": (0, 0, 0, 0, 1.5)},
    "dotted": {"dotted": (1,) * 5, "spotted": (1, 0.8, 0.5, 0.3, 0.2), "polka-dot": (0, 0, 0.5, 1, 1)},
    "noisy": {"noisy": (1,) * 5, "grainy": (0.5, 0.7, 1, 1, 1), "static": (0, 0, 1.5, 0.4, 0)},
    "gradient": {"gradient": (1,) * 5, "faded": (0, 0, 0, 0.5, 1), "ombre": (0, 0, 0, 1.5, 0.4)},
}
TEXTURE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "plain": (3, 2, 1, 0.5, 0.3),
    "striped": (3, 2, 1, 0.5, 0.3),
    "checkered": (1,) * 5,
    "dotted": (1,) * 5,
    "noisy": (0.3, 0.5, 1, 2, 3),
    "gradient": (0.3, 0.5, 1, 2, 3),
}
ATTRIBUTES = ("shape", "colour", "size", "position", "texture")
_ALL = ATTRIBUTES
# Caption templates: (format, attributes mentioned, weight per step 1..5). "{pos}" is the bare
# position name (hashtags), "{position}" the phrase ("on the left").
TEMPLATES: list[tuple[str, tuple[str, ...], tuple[float, ...]]] = [
    ("a {colour} {shape}", ("colour", "shape"), (1, 0.7, 0.4, 0.2, 0.1)),
    ("a photo of a {colour} {shape}", ("colour", "shape"), (1, 0.7, 0.4, 0.2, 0.1)),
    ("a {size} {shape} that is {colour}", ("size", "shape", "colour"), (1, 0.7, 0.4, 0.2, 0.1)),
    ("a {colour} {shape} on a {texture} background", ("colour", "shape", "texture"), (1, 0.8, 0.5, 0.3, 0.2)),
    ("a {size} {colour} {shape} {position} on a {texture} background", _ALL, (1, 0.8, 0.6, 0.4, 0.2)),
    ("a {texture} background with a {size} {colour} {shape} {position}", _ALL, (1, 0.8, 0.6, 0.4, 0.2)),
    ("{colour} {shape}, {size}, {pos}, {texture} background", _ALL, (0, 1, 1, 0.8, 0.6)),
    ("#{shape}", ("shape",), (0, 0, 0.5, 0.5, 0.5)),
    ("#{size} #{colour} #{shape} #{pos} #{texture}", _ALL, (0, 0, 1, 1, 1)),
    ("my new {size} {colour} {shape} pic {position}, {texture} bg", _ALL, (0, 0, 0, 1, 1)),
    ("{texture} bg | {size} {colour} {shape} | {pos}", _ALL, (0, 0, 0, 0, 1.5)),
]
_AN = re.compile(r"\ba ([aeiou])")


def _check_step(t: int) -> None:
    if not 1 <= t <= N_STEPS:
        raise ValueError(f"drift steps are 1..{N_STEPS} (step 0 is the pretraining world), got {t}")


def _normalised(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def shape_weights(t: int) -> np.ndarray:
    """Probability of each shape (indexed like `ALL_SHAPES`) in step t's data."""
    _check_step(t)
    ages = np.array([t - ENTRY_STEP.get(s, 10**6) for s in ALL_SHAPES], dtype=float)
    w = np.where(ages >= 0, np.maximum(np.exp(-np.maximum(ages, 0) / SHAPE_DECAY), SHAPE_FLOOR), 0.0)
    return _normalised(w)


def shapes_present(t: int) -> list[int]:
    """Indices (into `ALL_SHAPES`) of the shapes that exist at step t (pretraining shapes at t = 0)."""
    return [i for i, s in enumerate(ALL_SHAPES) if ENTRY_STEP.get(s, 10**6) <= t]


def class_name(shape: str, t: int) -> str:
    """The name of `shape` at step t: its canonical ToyWorld name, or its new name once renamed."""
    if shape in RENAMED and t >= RENAMED[shape][0]:
        return RENAMED[shape][1]
    return {**SHAPES, **NOVEL_SHAPES}[shape][0]


def classnames(t: int) -> list[str]:
    """The zero-shot classes of step t: every shape present then, under its name at that step."""
    return [class_name(ALL_SHAPES[i], t) for i in shapes_present(t)]


def step_words(table: dict[str, _W], name: str, t: int) -> tuple[list[str], np.ndarray]:
    """The words of class `name` in use at step t and their probabilities."""
    words = [(w, p[t - 1]) for w, p in table[name].items() if p[t - 1] > 0]
    return [w for w, _ in words], _normalised([p for _, p in words])


def vocabulary(t: int) -> set[str]:
    """Every word (or phrase) a step-t caption may use for a shape, colour, size or texture."""
    tables = (SHAPE_WORDS, COLOUR_WORDS, SIZE_WORDS, TEXTURE_WORDS)
    return {w for table in tables for name in table for w in step_words(table, name, t)[0]}


def template_weights(t: int, full_only: bool = False) -> np.ndarray:
    """Probability of each template in `TEMPLATES` at step t (`full_only`: those naming all attributes)."""
    _check_step(t)
    w = np.array([p[t - 1] if (not full_only or len(m) == len(ATTRIBUTES)) else 0.0 for _, m, p in TEMPLATES])
    return _normalised(w)


def _lerp(t: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    f = t / N_STEPS
    return (start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]))


def step_scenes(rng: np.random.Generator, n: int, t: int, uniform_shapes: bool = False) -> Scene:
    """n scenes of step t: shapes by `shape_weights(t)` (or uniform over those present), drifted style."""
    _check_step(t)
    present = np.array(shapes_present(t))
    if uniform_shapes:
        shape = present[rng.integers(len(present), size=n)]
    else:
        shape = rng.choice(len(ALL_SHAPES), size=n, p=shape_weights(t))
    colour = rng.integers(len(COLOURS), size=n)
    size = rng.integers(len(SIZES), size=n)
    bounds = np.array(list(SIZES.values()))[size]
    radius = rng.uniform(bounds[:, 0], bounds[:, 1])
    position, centre = _sample_positions(rng, radius)
    palette = np.array(list(COLOURS.values()))
    fg = np.clip(palette[colour] * rng.uniform(0.85, 1.08, (n, 1)) + rng.normal(0, 0.04, (n, 3)), 0, 1)
    grey = rng.uniform(*_lerp(t, (0.22, 0.62), (0.08, 0.40)), (n, 1))  # backgrounds get darker
    bg = np.clip(grey * (0.78 + 0.44 * rng.uniform(0, 1, (n, 3))), 0, 1)
    texture = rng.choice(len(TEXTURES), size=n, p=_normalised([TEXTURE_WEIGHTS[k][t - 1] for k in TEXTURES]))
    turn = 0.35 + 0.15 * t
    return Scene(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        texture=texture,
        radius=radius,
        centre=centre,
        rotation=rng.uniform(-turn, turn, n),
        fg_rgb=fg,
        bg_rgb=bg,
        texture_contrast=rng.uniform(*_lerp(t, (0.15, 0.32), (0.25, 0.45)), n),
        texture_frequency=rng.uniform(3.0, 6.0, n),
        texture_angle=rng.uniform(0, np.pi, n),
        noise_std=rng.uniform(*_lerp(t, (0.02, 0.07), (0.05, 0.12)), n),
        seed=int(rng.integers(2**31)),
    )


def _draw_words(rng: np.random.Generator, table: dict[str, _W], names: list[str], labels, t: int) -> list[str]:
    """One word per scene for its class, drawn by the step's word weights (class by class, in order)."""
    labels = np.asarray(labels)
    out = np.empty(len(labels), dtype=object)
    for k, name in enumerate(names):
        rows = np.flatnonzero(labels == k)
        if len(rows):
            words, p = step_words(table, name, t)
            out[rows] = np.array(words, dtype=object)[rng.choice(len(words), size=len(rows), p=p)]
    return out.tolist()


_WORD_TABLES = {
    "shape": (SHAPE_WORDS, ALL_SHAPES),
    "colour": (COLOUR_WORDS, list(COLOURS)),
    "size": (SIZE_WORDS, list(SIZES)),
    "texture": (TEXTURE_WORDS, list(TEXTURES)),
}


def _format(templates: np.ndarray, words: dict[str, list[str]], positions) -> list[str]:
    texts = []
    for i, template in enumerate(np.asarray(templates).tolist()):
        position = POSITIONS[int(positions[i])]
        text = TEMPLATES[template][0].format(
            **{k: v[i] for k, v in words.items()}, pos=position, position=_POSITION_PHRASES[position]
        )
        texts.append(_AN.sub(r"an \1", text))
    return texts


def _caption_parts(scene: Scene, rng: np.random.Generator, t: int, full_only: bool) -> tuple[np.ndarray, dict]:
    chosen = rng.choice(len(TEMPLATES), size=len(scene), p=template_weights(t, full_only))
    words = {a: _draw_words(rng, table, names, getattr(scene, a), t) for a, (table, names) in _WORD_TABLES.items()}
    return chosen, words


def step_captions(scene: Scene, rng: np.random.Generator, t: int, full_only: bool = False) -> list[str]:
    """One caption per scene in step t's words and templates (`full_only`: templates naming everything)."""
    chosen, words = _caption_parts(scene, rng, t, full_only)
    return _format(chosen, words, scene.position)


def training_pool(seed: int, t: int, n: int, image_size: int = 32) -> tuple[Tensor, list[str]]:
    """Step t's finite training pool: n images (uint8) and one caption each."""
    rng = _rng(TIC_STREAM, seed, t, n)
    scene = step_scenes(rng, n, t)
    return render(scene, image_size), step_captions(scene, rng, t)


GROUP = ("base", "shape", "colour", "texture")  # a retrieval group: a scene and three one-word variants


def _variant(base: Scene, attribute: str, rng: np.random.Generator, t: int) -> Scene:
    """`base` with `attribute` changed to another value present at step t (everything else kept)."""
    fields = {f: np.copy(v) if isinstance(v, np.ndarray) else v for f, v in vars(base).items()}
    n = len(base)
    if attribute == "shape":
        present = np.array(shapes_present(t))
        weights = shape_weights(t)[present]
        for i in range(n):
            others = present != base.shape[i]
            fields["shape"][i] = rng.choice(present[others], p=_normalised(weights[others]))
    elif attribute == "colour":
        fields["colour"] = (base.colour + rng.integers(1, len(COLOURS), n)) % len(COLOURS)
        palette = np.array(list(COLOURS.values()))
        fields["fg_rgb"] = np.clip(palette[fields["colour"]] * rng.uniform(0.85, 1.08, (n, 1)), 0, 1)
    else:
        fields["texture"] = (base.texture + rng.integers(1, len(TEXTURES), n)) % len(TEXTURES)
    fields["seed"] = int(rng.integers(2**31))
    return Scene(**fields)


def retrieval_set(seed: int, t: int, n: int, image_size: int = 32) -> tuple[Tensor, list[str]]:
    """Step t's held-out retrieval set: n images (n // 4 groups of 4, then singles) of step t's
    distribution, one caption each from the step's templates that name every attribute.

    A group is a scene and three variants that differ from it in one attribute (shape, colour,
    background texture); their captions share the template and every other word. Retrieving the
    right member needs that one word, so R@1 measures the step's words and looks, not only the
    easiest attribute (a random 200-image gallery rarely holds such near neighbours)."""
    rng = _rng(TIC_EVAL_STREAM, seed, t, n)
    groups, singles = divmod(n, len(GROUP))
    base = step_scenes(rng, groups, t)
    templates, words = _caption_parts(base, rng, t, full_only=True)
    scenes, all_words = [base], [words]
    for attribute in GROUP[1:]:
        variant = _variant(base, attribute, rng, t)
        changed = dict(words)
        table, names = _WORD_TABLES[attribute]
        changed[attribute] = _draw_words(rng, table, names, getattr(variant, attribute), t)
        scenes.append(variant)
        all_words.append(changed)
    order = np.arange(groups * len(GROUP)).reshape(len(GROUP), groups).T.ravel()  # group members side by side
    merged = _concat(scenes)
    captions = _format(
        np.tile(templates, len(GROUP)), {k: [x for w in all_words for x in w[k]] for k in words}, merged.position
    )
    if singles:
        extra = step_scenes(rng, singles, t)
        merged = _concat([_take(merged, order), extra])
        captions = [captions[i] for i in order] + step_captions(extra, rng, t, full_only=True)
    else:
        merged, captions = _take(merged, order), [captions[i] for i in order]
    return render(merged, image_size), captions


def _concat(scenes: list[Scene]) -> Scene:
    fields = {}
    for name, value in vars(scenes[0]).items():
        fields[name] = np.concatenate([getattr(s, name) for s in scenes]) if isinstance(value, np.ndarray) else value
    return Scene(**fields)


def _take(scene: Scene, index: np.ndarray) -> Scene:
    return Scene(**{k: v[index] if isinstance(v, np.ndarray) else v for k, v in vars(scene).items()})


def classification_set(seed: int, t: int, n: int, image_size: int = 32) -> tuple[Tensor, Tensor]:
    """Step t's zero-shot classification set: shapes uniform over those present, step t's style.

    Labels index `classnames(t)`."""
    rng = _rng(TIC_CLASS_STREAM, seed, t, n)
    scene = step_scenes(rng, n, t, uniform_shapes=True)
    lookup = {s: k for k, s in enumerate(shapes_present(t))}
    labels = np.array([lookup[int(s)] for s in scene.shape], dtype=np.int64)
    return render(scene, image_size), torch.from_numpy(labels)


__all__ = [
    "N_STEPS",
    "TEMPLATES",
    "TIC_CLASS_STREAM",
    "TIC_EVAL_STREAM",
    "TIC_STREAM",
    "class_name",
    "classification_set",
    "classnames",
    "retrieval_set",
    "shape_weights",
    "shapes_present",
    "step_captions",
    "step_scenes",
    "step_words",
    "template_weights",
    "training_pool",
    "vocabulary",
]
