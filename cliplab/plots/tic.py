"""Figures of the time-continual study (notebook 05). Each `plot_*` takes frames and returns a Figure.

* `plot_world_steps` — example images and captions of every time step (what drifts);
* `plot_time_matrices` — one time x time heat-map per strategy, shared colour scale, the row
  before training on top;
* `plot_strategy_compute` — TiC's summaries (ID, backward, forward) against the compute spent;
* `plot_structure_drift` — how far each strategy moves the similarity structure of old data.

The numbers come from `cliplab.results.views` and `cliplab.study.tic`; percent throughout.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cliplab.plots.labels import METRIC_LABELS, metric_axis, metric_title
from cliplab.plots.style import method_palette
from cliplab.results.views import BEFORE

__all__ = ["plot_strategy_compute", "plot_structure_drift", "plot_time_matrices", "plot_world_steps"]


def plot_world_steps(examples: Sequence[tuple[str, np.ndarray, Sequence[str]]], wrap: int = 18) -> Figure:
    """Rows = time steps, columns = example pairs: the image (uint8, N x 3 x H x W) and its caption."""
    rows, cols = len(examples), max(len(images) for _, images, _ in examples)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.15 * rows), squeeze=False)
    for r, (name, images, captions) in enumerate(examples):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(np.asarray(images[c]).transpose(1, 2, 0), interpolation="nearest")
            ax.set_xlabel("\n".join(textwrap.wrap(captions[c], wrap)), fontsize=6.5)
            if c == 0:
                ax.set_ylabel(name, fontsize=11, rotation=0, labelpad=22, va="center")
    fig.suptitle("ToyWorld over time: example training pairs of each step", y=1.0)
    fig.tight_layout()
    return fig


def plot_time_matrices(
    frames: Mapping[str, tuple[pd.DataFrame, pd.Series | None]], metric: str = "retrieval", title: str = ""
) -> Figure:
    """One annotated heat-map per label: E[i, j] = the model after step i on step j's data.

    Below the diagonal: earlier steps (backward), above: later steps (forward). Rows of NaN
    (not measured) stay blank. All panels share one colour scale so strategies compare at a glance.
    `metric` is a matrix kind (`views.TIME_MATRICES`: "retrieval", "classification", "i2t_r1",
    "t2i_r1"), shown by its human name, or any axis label, shown as given.
    """
    name, unit = (metric_title(metric), metric_axis(metric)) if metric in METRIC_LABELS else (metric, metric)
    tables = {}
    for label, (matrix, before) in frames.items():
        table = matrix.copy()
        if before is not None and not np.isnan(before.to_numpy(dtype=float)).all():
            table = pd.concat([pd.DataFrame([before.to_numpy()], index=[BEFORE], columns=table.columns), table])
        tables[label] = table
    values = np.concatenate([t.to_numpy(dtype=float).ravel() for t in tables.values()])
    low, high = np.nanmin(values), np.nanmax(values)
    n = len(tables)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    first = next(iter(tables.values()))
    size = (cols * (0.62 * first.shape[1] + 1.0) + 1.6, rows * (0.42 * first.shape[0] + 1.0) + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    axes = axes.ravel()
    for k, (ax, (label, table)) in enumerate(zip(axes, tables.items())):
        sns.heatmap(
            table,
            annot=True,
            fmt=".0f",
            vmin=low,
            vmax=high,
            cmap="viridis",
            cbar=False,
            ax=ax,
            annot_kws={"size": 8},
            yticklabels=k % cols == 0,
        )
        if BEFORE in table.index:
            ax.axhline(1, color="white", linewidth=2.5)
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("data of step" if k >= n - cols else "")
        ax.set_ylabel("model" if k % cols == 0 else "")
        ax.tick_params(axis="y", labelrotation=0)
    for ax in axes[n:]:
        ax.axis("off")
    colourbar = fig.colorbar(axes[0].collections[0], ax=axes.tolist(), shrink=0.8, aspect=30)
    colourbar.set_label(unit)
    fig.suptitle(title or f"Time x time matrices: {name}")
    return fig


def plot_strategy_compute(frame: pd.DataFrame, x: str = "compute", x_label: str | None = None) -> Figure:
    """TiC's three summaries against compute: one panel per summary, one point per run.

    `frame`: columns `label`, `seed`, `x`, and `id`, `backward`, `forward` (percent)."""
    summaries = [
        ("id", "in-distribution (diagonal)"),
        ("backward", "backward (earlier steps)"),
        ("forward", "forward (later steps)"),
    ]
    palette = method_palette(frame["label"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    for ax, (key, name) in zip(axes, summaries):
        sns.scatterplot(data=frame, x=x, y=key, hue="label", palette=palette, s=70, ax=ax, legend=ax is axes[-1])
        ax.set_title(name)
        ax.set_xlabel(x_label or metric_axis(x))
        ax.set_ylabel("retrieval R@1 (%)")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), title="strategy")
    fig.suptitle("What each strategy buys with its compute")
    fig.tight_layout()
    return fig


def plot_structure_drift(frame: pd.DataFrame, metrics: Sequence[str] | Mapping[str, str]) -> Figure:
    """One panel per metric: its value after each step, one line per label (mean ± std over seeds).

    `frame`: long table with columns `label`, `seed`, `step`, `metric`, `value`. `metrics`: the
    metric codes to draw, titled and labelled from `cliplab.plots.labels`, or {code: title}."""
    titles = dict(metrics) if isinstance(metrics, Mapping) else {m: metric_title(m) for m in metrics}
    palette = method_palette(frame["label"])
    fig, axes = plt.subplots(1, len(titles), figsize=(4.6 * len(titles), 3.8), squeeze=False)
    for ax, (metric, name) in zip(axes[0], titles.items()):
        part = frame[frame["metric"] == metric]
        sns.lineplot(data=part, x="step", y="value", hue="label", palette=palette, marker="o", errorbar="sd", ax=ax)
        ax.set_title(name)
        ax.set_xlabel("after training step (0: the time-0 model)")
        ax.set_ylabel(metric_axis(metric) if metric in METRIC_LABELS else name)
        ax.set_xticks(sorted(part["step"].unique()))
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    legend = axes[0][-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="strategy")
    fig.tight_layout()
    return fig
