"""The attribute vocabulary of ToyWorld: shapes, colours, sizes, positions and textures.

Kept apart from the renderer so that captions, zero-shot tasks and scenarios share one source of
truth for names and synonyms. The first name of every synonym list is the canonical class name
used by zero-shot classifiers; the others only ever appear in captions.
"""

from __future__ import annotations

# Shapes seen in pretraining (the zero-shot "shape" task classifies these).
SHAPES: dict[str, list[str]] = {
    "circle": ["circle", "disc"],
    "square": ["square", "box"],
    "triangle": ["triangle"],
    "star": ["star"],
    "cross": ["cross", "plus sign"],
    "ring": ["ring", "donut"],
    "diamond": ["diamond", "rhombus"],
    "heart": ["heart"],
}

# Shapes the renderer can draw but pretraining never shows or names: new classes for the
# downstream (continual-learning) tasks.
NOVEL_SHAPES: dict[str, list[str]] = {
    "crescent": ["crescent"],
    "arrow": ["arrow"],
    "hourglass": ["hourglass"],
    "semicircle": ["semicircle"],
    "tee": ["letter t"],
    "ell": ["letter l"],
}

# RGB anchors in [0, 1]; hues are spread so that colour is learnable but jitter and tinted
# backgrounds keep neighbours (red/orange/pink, cyan/blue) from being trivially separable.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.96, 0.52, 0.05),
    "yellow": (0.95, 0.90, 0.12),
    "green": (0.12, 0.68, 0.16),
    "cyan": (0.10, 0.80, 0.86),
    "blue": (0.12, 0.22, 0.92),
    "purple": (0.55, 0.16, 0.76),
    "pink": (0.97, 0.48, 0.72),
}
COLOUR_SYNONYMS: dict[str, list[str]] = {
    "red": ["red"],
    "orange": ["orange"],
    "yellow": ["yellow"],
    "green": ["green"],
    "cyan": ["cyan", "turquoise"],
    "blue": ["blue"],
    "purple": ["purple", "violet"],
    "pink": ["pink"],
}

# Radius of the shape as a fraction of the image side, per size class.
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.19, 0.24),
    "medium": (0.27, 0.32),
    "large": (0.35, 0.40),
}
SIZE_SYNONYMS: dict[str, list[str]] = {
    "small": ["small", "tiny", "little"],
    "medium": ["medium", "medium-sized"],
    "large": ["large", "big"],
}

POSITIONS: list[str] = ["center", "left", "right", "top", "bottom"]

TEXTURES: dict[str, list[str]] = {
    "plain": ["plain"],
    "striped": ["striped"],
    "checkered": ["checkered", "chequered"],
    "dotted": ["dotted", "spotted"],
    "noisy": ["noisy", "grainy"],
    "gradient": ["gradient"],
}

ALL_SHAPES: list[str] = list(SHAPES) + list(NOVEL_SHAPES)


def article(word: str) -> str:
    """'an' before a vowel sound, 'a' otherwise (enough for this vocabulary)."""
    return "an" if word[0] in "aeiou" else "a"
