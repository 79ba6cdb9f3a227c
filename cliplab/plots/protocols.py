"""Figures of notebook 06 (open-domain and online continual learning). Frames: `cliplab.study.protocols`.

* `plot_anytime_curves` — accuracy on the classes exposed so far against stream samples seen, one
  line per method (mean over seeds, band: ± std), task boundaries dotted;
* `plot_stability_panels` — held-out zero-shot after the last task against what each protocol
  calls learning (mean of the matrix diagonal; A_auc on the online stream), one panel per scenario.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from cliplab.plots.style import label_points, method_palette

__all__ = ["plot_anytime_curves", "plot_stability_panels"]


def plot_anytime_curves(frame: pd.DataFrame, boundaries: Sequence[int] = (), title: str | None = None) -> Figure:
    """x: stream samples seen; y: anytime accuracy (%) on the exposed classes; one line per label."""
    labels = list(dict.fromkeys(frame["label"]))
    colours = method_palette(labels)
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    for label in labels:
        stats = frame[frame["label"] == label].groupby("samples")["accuracy"].agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], marker=".", color=colours[label], label=label)
        ax.fill_between(
            stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colours[label], alpha=0.15
        )
    for boundary in boundaries:
        ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("stream samples seen")
    ax.set_ylabel("accuracy on the classes exposed so far (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Anytime accuracy along the stream (dotted: task boundaries)")
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_stability_panels(points: pd.DataFrame, title: str | None = None) -> Figure:
    """One panel per scenario: plasticity (x) against held-out zero-shot after the last task (y),
    one point per label with ± std bars over seeds; dotted: the pretrained model's zero-shot."""
    scenarios = list(dict.fromkeys(points["scenario"]))
    labels = list(dict.fromkeys(points["label"]))
    colours = method_palette(labels)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.8 * len(scenarios), 5.0), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        subset = points[points["scenario"] == scenario]
        stats = subset.groupby("label", sort=False)[["plasticity", "retention"]].agg(["mean", "std"]).fillna(0.0)
        for label, row in stats.iterrows():
            x, y = row[("plasticity", "mean")], row[("retention", "mean")]
            ax.errorbar(
                x,
                y,
                xerr=row[("plasticity", "std")],
                yerr=row[("retention", "std")],
                fmt="o",
                color=colours[label],
                capsize=3,
            )
        ax.axhline(subset["retention_before"].mean(), color="grey", linestyle=":")
        label_points(ax, stats.index, stats[("plasticity", "mean")], stats[("retention", "mean")])
        online = bool(subset["online"].any())
        ax.set_xlabel(
            "area under the anytime-accuracy curve, A_auc (%)" if online else "new-task accuracy: mean of diagonal (%)"
        )
        ax.set_ylabel("held-out ToyWorld zero-shot at the end (%)")
        ax.set_title(scenario)
    handles = {label: plt.Line2D([], [], color=colours[label], marker="o", linestyle="") for label in labels}
    handles["pretrained"] = plt.Line2D([], [], color="grey", linestyle=":")
    fig.suptitle(title or "Stability (up) vs plasticity (right)")
    fig.tight_layout()
    fig.legend(
        handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize="small"
    )
    return fig
