"""Figures of the run explorer (`cliplab explore`) that no notebook draws the same way.

* `plot_matrix_views` — every matrix one run records (`cliplab.results.views.run_matrices`), side
  by side on one 0–100 colour scale, each named for what it holds, with an online run's anytime
  accuracy along the stream beside its matrix.

The explorer blanks the rows a step has not reached before calling; a cell left NaN by the record
itself (not measured) stays blank too, and the panel's note says why.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cliplab.results.views import BEFORE, MatrixView

__all__ = ["plot_matrix_views"]


def _wrap(text: str, inches: float) -> str:
    """`text` broken into lines that fit a panel `inches` wide (about 7 characters an inch)."""
    return "\n".join(textwrap.fill(line, max(20, int(7 * inches))) for line in text.split("\n"))


def _table(view: MatrixView) -> pd.DataFrame:
    if view.before is None:
        return view.frame
    return pd.concat([pd.DataFrame([view.before.to_numpy()], index=[BEFORE], columns=view.frame.columns), view.frame])


def plot_matrix_views(
    views: Sequence[MatrixView],
    title: str = "",
    anytime: pd.DataFrame | None = None,
    boundaries: Sequence[int] = (),
    until: float | None = None,
    end: float | None = None,
) -> Figure:
    """One annotated heat-map per view (row = model, column = evaluated task; top row: pretrained).

    `anytime` (columns samples, accuracy): an online run's anytime accuracy, drawn as a last panel
    against stream samples seen, task starts dotted (`boundaries`), the chosen step's end dashed
    (`until`) and the x axis up to `end` (the whole stream, so it stays put as the step moves);
    None for other protocols.
    """
    if not views:
        raise ValueError("no matrix to draw")
    tables = [_table(view) for view in views]
    n_rows, n_cols = tables[0].shape
    width = max(4.0, 1.9 + 0.8 * n_cols)  # inches per heat-map, colour bar included
    widths = [width] * len(tables) + ([5.0] if anytime is not None else [])
    fig, axes = plt.subplots(
        1,
        len(widths),
        figsize=(sum(widths), 2.0 + 0.5 * n_rows),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    for ax, view, table in zip(axes[0], views, tables):
        sns.heatmap(
            table,
            annot=True,
            fmt=".0f" if n_cols > 6 else ".1f",
            vmin=0,
            vmax=100,
            cmap="viridis",
            linewidths=0.5,
            cbar_kws={"label": view.metric, "shrink": 0.85},
            annot_kws={"size": 8},
            ax=ax,
        )
        if view.before is not None:
            ax.axhline(1, color="white", linewidth=3)
        measured = view.frame.dropna(how="all")
        note = f"\n({view.blank})" if view.blank and np.isnan(measured.to_numpy(dtype=float)).any() else ""
        ax.set_title(_wrap(view.name + note, width), fontsize="medium")
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("model" if ax is axes[0][0] else "")
        ax.tick_params(axis="x", labelrotation=30)
        ax.tick_params(axis="y", labelrotation=0)
    if anytime is not None:
        ax = axes[0][-1]
        ax.plot(anytime["samples"], anytime["accuracy"], marker=".", color="C0")
        for boundary in boundaries:
            ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
        if until is not None:
            ax.axvline(until, color="black", linestyle="--", linewidth=1.2, alpha=0.5)
        ax.set_xlabel("stream samples seen")
        ax.set_ylabel("accuracy on the classes exposed so far (%)")
        ax.set_ylim(0, 100)
        if end:
            ax.set_xlim(0, end)
        empty = "" if len(anytime) else "\n(no evaluation yet: fewer samples than one evaluation period)"
        ax.set_title(_wrap("anytime accuracy along the stream" + empty, 5.0), fontsize="medium")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
