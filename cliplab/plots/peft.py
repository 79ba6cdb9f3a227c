"""Figures of notebook 04 (parameter-efficient methods). Frames come from `cliplab.study.peft`.

* `plot_cost_vs_accuracy` — trained parameters (log scale) against Last and against the change of
  held-out zero-shot accuracy, one colour per method, one marker per scenario;
* `plot_routing_matrix` — where DDAS sent each test set and probe (share per route);
* `plot_expert_usage` — MoE-Adapters' expert usage per block and router, frozen experts marked.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cliplab.plots.labels import dataset_label
from cliplab.plots.style import method_palette

__all__ = ["plot_cost_vs_accuracy", "plot_expert_usage", "plot_routing_matrix"]

_MARKERS = ("o", "s", "^", "D", "v")


def plot_cost_vs_accuracy(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """Two panels: Last (%) and Δ held-out zero-shot (points) against parameters trained (log x).

    Means over seeds, ± std bars. Methods that train nothing (the pretrained model) sit at x = 1.
    """
    stats = frame.groupby(["scenario", "label"], sort=False).agg(
        trainable=("trainable", "mean"),
        last=("last", "mean"),
        last_std=("last", "std"),
        delta=("zero_shot_delta", "mean"),
        delta_std=("zero_shot_delta", "std"),
    )
    stats = stats.fillna({"last_std": 0.0, "delta_std": 0.0}).reset_index()
    stats["x"] = stats["trainable"].clip(lower=1)
    labels = list(dict.fromkeys(stats["label"]))
    colours = method_palette(labels)
    scenarios = list(dict.fromkeys(stats["scenario"]))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    for ax, (column, label_y) in zip(
        axes, [("last", "Last: accuracy after the last task (%)"), ("delta", "Δ held-out zero-shot (points)")]
    ):
        for _, row in stats.iterrows():
            ax.errorbar(
                row["x"],
                row[column],
                yerr=row[f"{column}_std"],
                fmt=_MARKERS[scenarios.index(row["scenario"]) % len(_MARKERS)],
                color=colours[row["label"]],
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set_xlabel("parameters trained (log scale)")
        ax.set_ylabel(label_y)
    axes[1].axhline(0.0, color="grey", linestyle=":")
    handles = [plt.Line2D([], [], color=colours[label], marker="o", linestyle="") for label in labels]
    handles += [
        plt.Line2D([], [], color="black", marker=_MARKERS[i % len(_MARKERS)], linestyle="")
        for i in range(len(scenarios))
    ]
    fig.suptitle(title or "What training fewer parameters buys: accuracy and retention against cost")
    fig.tight_layout()
    fig.legend(
        handles, labels + scenarios, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize="small"
    )
    return fig


def plot_routing_matrix(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """Heat map: rows = evaluated sets (tasks' test sets, probes), columns = routes, cells = share (%);
    sets and routes shown by their human names (`labels.dataset_label`)."""
    frame = frame.rename(index=dataset_label, columns=dataset_label)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * frame.shape[1], 1.2 + 0.45 * frame.shape[0]))
    sns.heatmap(
        frame,
        annot=True,
        fmt=".0f",
        vmin=0,
        vmax=100,
        cmap="mako_r",
        linewidths=0.5,
        cbar_kws={"label": "share of images (%)"},
        ax=ax,
    )
    ax.set_xlabel("route chosen by DDAS")
    ax.set_ylabel("evaluated images")
    ax.tick_params(axis="x", labelrotation=25)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title or "DDAS routing after the last task")
    fig.tight_layout()
    return fig


def plot_expert_usage(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """One heat map per router: rows = tower/block, columns = experts, cells = share of the router's
    selections (%); a dot marks an expert frozen by the end of the run."""
    routers = sorted(frame["router"].unique())
    frame = frame.assign(row=frame["tower"] + " " + frame["block"].astype(str))
    order = list(dict.fromkeys(frame.sort_values(["tower", "block"])["row"]))
    n_experts = frame["expert"].nunique()
    top = max(1.0, float(frame["share"].max()))  # k of E experts per sample: shares stay under 100 k / E
    fig, axes = plt.subplots(
        1, len(routers), figsize=(1.6 + 0.42 * n_experts * len(routers), 1.4 + 0.32 * len(order)), squeeze=False
    )
    for ax, router in zip(axes[0], routers):
        part = frame[frame["router"] == router]
        table = part.pivot(index="row", columns="expert", values="share").reindex(order)
        sns.heatmap(
            table,
            vmin=0,
            vmax=top,
            cmap="rocket_r",
            cbar=router == routers[-1],
            ax=ax,
            cbar_kws={"label": "share of the router's choices (%)"},
        )
        columns = list(table.columns)
        for row, expert in part.loc[part["frozen"], ["row", "expert"]].itertuples(index=False):
            ax.plot(columns.index(expert) + 0.5, order.index(row) + 0.5, marker=".", color="cyan", markersize=6)
        ax.set_title(f"router {router}")
        ax.set_xlabel("expert")
        ax.set_ylabel("tower and block" if router == routers[0] else "")
    fig.suptitle(title or "Expert usage per router (dots: experts frozen by the end)")
    fig.tight_layout()
    return fig
