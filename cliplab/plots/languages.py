"""Figures of continual language learning (notebook 07): language matrices and token embeddings.

* `plot_language_matrices` — R@1 in every language after each language is learned, one heat-map
  per method (frames from `cliplab.results.languages.language_matrix_frame`);
* `plot_token_embeddings` — the token-embedding matrix after each language: row norms by token
  group after the last language, and how far CLIP's own rows moved (frames from
  `cliplab.study.languages.token_embedding_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cliplab.plots.labels import RETRIEVAL_LABELS, retrieval_label
from cliplab.plots.style import method_palette
from cliplab.results.views import BEFORE

__all__ = ["plot_language_matrices", "plot_token_embeddings"]


def plot_language_matrices(
    frames: Mapping[str, tuple[pd.DataFrame, pd.Series | None]], metric: str = "text→image R@1 (%)", cols: int = 3
) -> Figure:
    """One annotated heat-map per method: row = after learning a language (top: pretrained), column =
    captions in that language, colour scale 0–100 shared by all panels. Below the diagonal:
    languages learned earlier (forgetting fades a column); above: languages not learned yet
    (transfer through shared words). `metric` is an axis label, or a direction code ("t2i_r1")."""
    if metric in RETRIEVAL_LABELS:
        metric = f"{retrieval_label(metric)} (%)"
    tables = {}
    for label, (matrix, before) in frames.items():
        table = matrix.copy()
        if before is not None:
            table = pd.concat([pd.DataFrame([before.to_numpy()], index=[BEFORE], columns=table.columns), table])
        tables[label] = table
    n = len(tables)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    first = next(iter(tables.values()))
    width, height = 0.85 * first.shape[1] + 1.4, 0.5 * first.shape[0] + 1.6
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.6, height * rows), squeeze=False)
    for k, (ax, (label, table)) in enumerate(zip(axes.flat, tables.items())):
        sns.heatmap(table, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", cbar=False, ax=ax)
        if BEFORE in table.index:
            ax.axhline(1, color="white", linewidth=2.5)
        ax.set_title(label)
        ax.set_xlabel("test captions in language")
        ax.set_ylabel("model" if k % cols == 0 else "")
        if k % cols:
            ax.set_yticklabels([])
        ax.tick_params(axis="y", labelrotation=0)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.55)
    colourbar = fig.colorbar(axes.flat[0].collections[0], ax=axes.ravel().tolist(), shrink=0.8)
    colourbar.set_label(metric)
    fig.suptitle(f"Retrieval in every language: {metric}")
    return fig


def plot_token_embeddings(frames: Mapping[str, pd.DataFrame], drift_groups: tuple[str, ...] | None = None) -> Figure:
    """Left: norms of the embedding rows of each token group after the last task, per method.
    Right: mean distance CLIP's rows moved from the pretrained model after each task (English
    caption tokens, start/end tokens), one line per method and group."""
    data = pd.concat([f.assign(label=label) for label, f in frames.items()], ignore_index=True)
    labels = list(frames)
    palette = method_palette(labels)
    last = data.groupby("label")["after"].transform(lambda a: list(dict.fromkeys(a))[-1])
    final = data[data["after"] == last]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    sns.boxplot(data=final, x="norm", y="group", hue="label", hue_order=labels, palette=palette, fliersize=1.5, ax=left)
    left.set_xlabel("row norm after the last language")
    left.set_ylabel("")
    left.set_title("Token-embedding rows by group")
    left.legend(title="", frameon=False, fontsize="small")
    groups = drift_groups or tuple(g for g in dict.fromkeys(data["group"]) if not g.startswith("new ids"))
    moved = data[data["group"].isin(groups) & data["drift"].notna()]
    means = moved.groupby(["label", "group", "after"], sort=False)["drift"].mean().reset_index()
    styles = dict(zip(groups, ["-", "--", ":", "-."]))
    for (label, group), part in means.groupby(["label", "group"], sort=False):
        right.plot(
            part["after"],
            part["drift"],
            styles.get(group, "-"),
            marker="o",
            color=palette[label],
            label=f"{label} · {group}",
        )
    right.set_xlabel("after learning")
    right.set_ylabel("mean distance from the pretrained row")
    right.set_title("How far CLIP's own rows moved")
    right.tick_params(axis="x", labelrotation=30)
    right.legend(frameon=False, fontsize="x-small")
    fig.tight_layout()
    return fig
