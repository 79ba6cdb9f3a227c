"""Figures of the continual-learning study. Each `plot_*` function takes a frame, returns a Figure.

The frames come from `cliplab.results.views` (numbers live there; this module only draws):

* `plot_accuracy_matrix` — the T x T accuracy matrix, optionally with the before-training row;
* `plot_task_curves` — each task's accuracy before training and after every task;
* `plot_probe_curves` — held-out zero-shot accuracy and retrieval recall across tasks, one line
  per method, mean ± std over seeds (from the tidy `cliplab.results.load_runs` table);
* `plot_stability_plasticity` — new-task accuracy against final held-out zero-shot accuracy;
* `plot_ost_mst` — Ding et al.'s one-session vs multi-session comparison.

Accuracies and recalls are in percent throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cliplab.plots.labels import probe_label, retrieval_label
from cliplab.plots.style import label_points, method_palette, save_figure
from cliplab.results.views import BEFORE

__all__ = [
    "plot_accuracy_matrix",
    "plot_ost_mst",
    "plot_probe_curves",
    "plot_stability_plasticity",
    "plot_task_curves",
    "save_figure",
]


# --- the accuracy matrix --------------------------------------------------------------------


def plot_accuracy_matrix(
    matrix: pd.DataFrame, zero_shot_row: Sequence[float] | None = None, title: str | None = None
) -> Figure:
    """Annotated heat-map of A[i, j] (percent): row = after task i, column = task j.

    The lower triangle holds retained accuracy (forgetting shows as a fading column), the
    diagonal what each task reached, the upper triangle transfer to tasks not trained yet. The
    optional before-training row is drawn on top, separated by a white line.
    """
    table = matrix.copy()
    if zero_shot_row is not None:
        top = pd.DataFrame([list(zero_shot_row)], index=[BEFORE], columns=table.columns)
        table = pd.concat([top, table])
    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.95 * n_cols, 1.0 + 0.6 * n_rows))
    sns.heatmap(
        table,
        annot=True,
        fmt=".1f",
        vmin=0,
        vmax=100,
        cmap="viridis",
        linewidths=0.5,
        cbar_kws={"label": "accuracy (%)"},
        ax=ax,
    )
    if zero_shot_row is not None:
        ax.axhline(1, color="white", linewidth=3)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("model")
    ax.set_title(title or "Accuracy matrix")
    ax.tick_params(axis="x", labelrotation=30)
    ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    return fig


# --- per-task curves ------------------------------------------------------------------------


def plot_task_curves(curves: pd.DataFrame, title: str | None = None) -> Figure:
    """One line per task across evaluations (mean ± std over seeds); the dot marks its training.

    A line that jumps at its own task and decays afterwards is learning followed by forgetting.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=curves, x="step", y="accuracy", hue="task", marker="o", errorbar="sd", ax=ax)
    tasks = list(dict.fromkeys(curves["task"]))
    colors = dict(zip(tasks, sns.color_palette(n_colors=len(tasks))))
    trained = curves[curves["step"] == curves["task"].map({t: i + 1 for i, t in enumerate(tasks)})]
    means = trained.groupby(["task", "step"], sort=False)["accuracy"].mean().reset_index()
    ax.scatter(
        means["step"],
        means["accuracy"],
        s=120,
        facecolors="none",
        edgecolors=[colors[t] for t in means["task"]],
        linewidths=2,
        zorder=3,
    )
    points = curves.drop_duplicates("step").sort_values("step")
    ax.set_xticks(points["step"], points["point"], rotation=30, ha="right")
    ax.set_xlabel("")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Accuracy of each task across training (circle: when it was trained)")
    ax.legend(title="task", frameon=False, fontsize="small", bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.tight_layout()
    return fig


# --- held-out zero-shot and retrieval -------------------------------------------------------


def plot_probe_curves(
    df: pd.DataFrame,
    by: str = "method",
    retrieval_metrics: Sequence[str] = ("i2t_r1", "t2i_r1"),
    title: str | None = None,
    step_axis: str = "after task (0 = pretrained)",
) -> Figure:
    """Held-out zero-shot accuracy and retrieval R@1 before training and after each task.

    `df` is the tidy table of `cliplab.results.load_runs` (one scenario); one panel per
    zero-shot probe and per retrieval metric, one line per value of `by`, mean ± std over seeds.
    The lines start at the pretrained model's value: a falling line is forgetting of pretraining.
    `step_axis` labels the x axis (e.g. "after language (0 = pretrained)").
    """
    zs = df[df["kind"] == "zero_shot"]
    zs = zs.assign(panel="zero-shot · " + zs["probe"].astype(str).map(probe_label))
    rt = df[(df["kind"] == "retrieval") & df["metric"].isin(retrieval_metrics)]
    rt = rt.assign(
        panel="retrieval · " + rt["probe"].astype(str).map(probe_label) + ", " + rt["metric"].map(retrieval_label)
    )
    data = pd.concat([zs, rt], ignore_index=True)
    if data.empty:
        raise ValueError("no zero-shot or retrieval rows in the table (is it from load_runs?)")
    panels = list(dict.fromkeys(data["panel"]))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    order = list(dict.fromkeys(data[by]))
    steps = sorted(data["step"].unique())
    for ax, panel in zip(axes.flat, panels):
        sns.lineplot(
            data=data[data["panel"] == panel],
            x="step",
            y="value",
            hue=by,
            hue_order=order,
            palette=method_palette(order),
            marker="o",
            errorbar="sd",
            ax=ax,
            legend=ax is axes.flat[0],
        )
        ax.set_title(panel, fontsize="medium")
        ax.set_xlabel(step_axis)
        ax.set_ylabel("accuracy / recall (%)")
        ax.set_xticks(steps)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title or "Held-out zero-shot accuracy and retrieval across tasks (mean ± std over seeds)")
    _figure_legend(fig, axes.flat[0], ncol=min(4, len(order)))
    return fig


def _figure_legend(fig: Figure, ax, ncol: int) -> None:
    """Move `ax`'s legend below all panels so it never covers data; lay the figure out around it."""
    legend = ax.get_legend()
    if legend is None:
        fig.tight_layout()
        return
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize="small")


# --- stability vs plasticity ----------------------------------------------------------------


def plot_stability_plasticity(
    points: pd.DataFrame,
    by: str = "method",
    title: str | None = None,
    x_label: str = "new-task accuracy: mean of diagonal (%)",
    y_label: str = "held-out zero-shot after last task (%)",
) -> Figure:
    """New-task accuracy (x) against final held-out zero-shot accuracy (y), one point per `by`
    value with ± std error bars over seeds, one panel per scenario.

    Up is stable (pretraining kept), right is plastic (new tasks learned); the dotted line is
    the pretrained model's zero-shot accuracy, the ceiling no method should cross by much.
    `x_label` / `y_label` name what the points hold when they are not these defaults (the
    explorer's step, another protocol's measure of learning).
    """
    scenarios = list(dict.fromkeys(points["scenario"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.6 * len(scenarios), 4.6), squeeze=False)
    labels = list(dict.fromkeys(points[by]))
    colors = method_palette(labels)
    for ax, scenario in zip(axes[0], scenarios):
        subset = points[points["scenario"] == scenario]
        stats = subset.groupby(by, sort=False)[["plasticity", "retention"]].agg(["mean", "std"]).fillna(0.0)
        for label, row in stats.iterrows():
            ax.errorbar(
                row[("plasticity", "mean")],
                row[("retention", "mean")],
                xerr=row[("plasticity", "std")],
                yerr=row[("retention", "std")],
                fmt="o",
                color=colors[label],
                capsize=3,
                label=label,
            )
        ax.axhline(subset["retention_before"].mean(), color="grey", linestyle=":", label="pretrained")
        label_points(ax, stats.index, stats[("plasticity", "mean")], stats[("retention", "mean")])
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(scenario)
    handles = {label: plt.Line2D([], [], color=colors[label], marker="o", linestyle="") for label in labels}
    handles["pretrained"] = plt.Line2D([], [], color="grey", linestyle=":")
    fig.suptitle(title or "Stability (up) vs plasticity (right)")
    fig.tight_layout()
    fig.legend(
        handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize="small"
    )
    return fig


# --- one session vs multi session (Ding et al.) ---------------------------------------------


def plot_ost_mst(
    frame: pd.DataFrame, pretrained: Mapping[str, float] | None = None, title: str | None = None
) -> Figure:
    """Bars of each metric after training, one-session vs multi-session, per method (± std).

    `pretrained` optionally maps a metric to the pretrained model's value (dotted line). Ding et
    al.'s observation: the same classes learned in several sessions cost more zero-shot ability.
    """
    metrics = list(dict.fromkeys(frame["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.barplot(
            data=frame[frame["metric"] == metric],
            x="method",
            y="value",
            hue="regime",
            errorbar="sd",
            capsize=0.1,
            ax=ax,
            legend=ax is axes[0][0],
        )
        if pretrained and metric in pretrained:
            ax.axhline(pretrained[metric], color="grey", linestyle=":", label="pretrained")
        ax.set_title(metric, fontsize="medium")
        ax.set_xlabel("")
        ax.set_ylabel("percent")
        ax.set_ylim(0, 100)
    fig.suptitle(title or "One session vs multi session: same classes, same step budget")
    _figure_legend(fig, axes[0][0], ncol=4)
    return fig
