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

__all__ = ["IMAGE_COLOR", "TEXT_COLOR", "DPI", "set_theme", "save_figure", "modality_palette"]

DPI = 150
# Liang et al. draw images red and texts blue; keep that so figures read like the paper's.
IMAGE_COLOR = "#d62728"
TEXT_COLOR = "#1f77b4"


def modality_palette() -> dict[str, str]:
    """Colour per modality name, for seaborn `palette=` arguments."""
    return {"image": IMAGE_COLOR, "text": TEXT_COLOR}


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
