"""Figures for cliplab notebooks. Every function takes data and returns a matplotlib Figure; the
numbers behind a figure come from `cliplab.results` (runs) or `cliplab.study.alignment` (embeddings).

* `continual` — the accuracy matrix, task curves, probe curves, stability–plasticity, OST vs MST.
* `explorer` — the run explorer's matrix panel: every matrix of one run, named for what it holds.

* `style` — `set_theme()` (call once per notebook) and `save_figure(fig, path)` (PNG, 150 dpi).
* `alignment` — embedding-geometry figures: similarity histograms of two versions, rotation-angle
  violins, cross-version retrieval heat-map, metrics across tasks, the gap-shift curve, and the
  fixed-frame (pretrained-fitted) 2-D projection of images and texts.
"""

from cliplab.plots.alignment import (
    PCAProjection,
    UMAPProjection,
    fit_projection,
    plot_cross_version_matrix,
    plot_joint_projection,
    plot_metrics_across_tasks,
    plot_rotation_violins,
    plot_shift_experiment,
    plot_similarity_histograms,
)
from cliplab.plots.style import save_figure, set_theme

__all__ = [
    "PCAProjection",
    "UMAPProjection",
    "fit_projection",
    "plot_cross_version_matrix",
    "plot_joint_projection",
    "plot_metrics_across_tasks",
    "plot_rotation_violins",
    "plot_shift_experiment",
    "plot_similarity_histograms",
    "save_figure",
    "set_theme",
]
