"""Shared look and saving for every cliplab figure.

Call `set_theme()` once at the top of a notebook; figure functions never change global state
themselves. `save_figure` writes a PNG at 150 dpi with a tight bounding box and returns the path,
so notebooks can record it next to their metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "IMAGE_COLOR",
    "METHOD_ORDER",
    "TEXT_COLOR",
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
