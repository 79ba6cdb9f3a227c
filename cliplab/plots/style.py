"""Shared look and saving for every cliplab figure.

Call `set_theme()` once at the top of a notebook; figure functions never change global state
themselves. `save_figure` writes a PNG at 150 dpi with a tight bounding box and returns the path,
so notebooks can record it next to their metrics.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

__all__ = [
    "DPI",
    "IMAGE_COLOR",
    "METHOD_ORDER",
    "TEXT_COLOR",
    "label_points",
    "method_palette",
    "modality_palette",
    "save_figure",
    "set_theme",
]

DPI = 150
# Liang et al. draw images red and texts blue; keep that so figures read like the paper's.
IMAGE_COLOR = "#d62728"
TEXT_COLOR = "#1f77b4"


def modality_palette() -> dict[str, str]:
    """Colour per modality name, for seaborn `palette=` arguments."""
    return {"image": IMAGE_COLOR, "text": TEXT_COLOR}


# One colour per method in every figure of the study, whatever subset a figure shows.
METHOD_ORDER = ("zeroshot", "finetune", "lwf", "vr_lwf", "icarl", "wise_ft", "zscl", "pretrained")


def method_palette(labels) -> dict[str, tuple[float, float, float]]:
    """Colour per label: the built-in methods keep fixed colours across figures; other labels
    (ablation variants, custom methods) take the colours after them, in order of appearance."""
    labels = list(dict.fromkeys(labels))
    extra = [label for label in labels if label not in METHOD_ORDER]
    colours = sns.color_palette("colorblind", 10) + sns.color_palette("tab20", 20)
    table = {name: colours[i] for i, name in enumerate(METHOD_ORDER)}
    table.update({label: colours[(len(METHOD_ORDER) + i) % len(colours)] for i, label in enumerate(extra)})
    return {label: table[label] for label in labels}


# Offsets (points) tried in turn for a point's label: beside it first, then above/below, then farther.
_LABEL_OFFSETS = [
    (dx * k, dy * k) for k in (1, 2, 3) for dx, dy in ((5, 4), (5, -12), (-5, 4), (-5, -12), (0, 10), (0, -18))
]


def label_points(ax, labels: Sequence[str], xs: Sequence[float], ys: Sequence[float], decimals: int = 1) -> None:
    """Name each point of a scatter beside it, without overlaps.

    Points at the same place (equal to `decimals`) share one label, "a = b" (e.g. `zeroshot` and
    `continual_clip`, equal by construction); a label that would overlap another label or a point is
    moved to the first free place of `_LABEL_OFFSETS` (joined to its point by a thin line when moved).
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for label, x, y in zip(labels, xs, ys):
        groups.setdefault((round(float(x), decimals), round(float(y), decimals)), []).append(str(label))
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    centres = ax.transData.transform(np.column_stack([list(xs), list(ys)]))
    radius = 4.0 * fig.dpi / 72  # a marker, in pixels
    taken = [Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    inside = ax.get_window_extent(renderer)
    for (x, y), names in sorted(groups.items(), key=lambda item: -item[0][1]):
        for i, (dx, dy) in enumerate(_LABEL_OFFSETS):
            text = ax.annotate(
                " = ".join(names),
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize="small",
                ha="left" if dx >= 0 else "right",
                arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5} if i >= 6 else None,
            )
            box = text.get_window_extent(renderer)
            free = not any(box.overlaps(other) for other in taken) and inside.contains(box.x0, box.y0)
            if free or i == len(_LABEL_OFFSETS) - 1:
                taken.append(box)
                break
            text.remove()


def set_theme(context: str = "notebook", font_scale: float = 1.0) -> None:
    """Apply the cliplab seaborn theme: white grid, colour-blind palette, no top/right spines."""
    sns.set_theme(context=context, style="whitegrid", palette="colorblind", font_scale=font_scale)
    plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100})


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Save `fig` as PNG (dpi 150, tight bbox), creating parent folders; return the path.

    ".png" is appended when the name does not end with it. The figure is not closed, so it
    still renders in a notebook.
    """
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_name(target.name + ".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=DPI, bbox_inches="tight", format="png")
    return target
