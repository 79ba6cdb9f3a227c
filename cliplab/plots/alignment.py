"""Figures for the embedding-alignment analysis. Each function takes data, returns a Figure.

Nothing here computes a metric that is not in `cliplab.alignment`; these functions only lay
data out. Call `cliplab.plots.style.set_theme()` first for the house style and
`save_figure(fig, path)` to write PNGs.

The 2-D projection is FITTED ONCE on the pretrained model's embeddings (`fit_projection`) and
reused for every later version: refitting per version would give each panel its own arbitrary
rotation, which is exactly the change Mod-X measures. PCA is deterministic (use it for anything
compared across runs); UMAP is for illustration only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from cliplab.plots.labels import metric_axis, metric_title
from cliplab.plots.style import IMAGE_COLOR, TEXT_COLOR, method_palette, modality_palette

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
]


# --- similarity histograms ------------------------------------------------------------------


def _pos_neg(I: Tensor, T: Tensor, text_image_index: Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    S = (I.float() @ T.float().T).cpu()
    if text_image_index is None:
        mask = torch.eye(S.shape[0], S.shape[1], dtype=torch.bool)
    else:
        mask = torch.arange(S.shape[0])[:, None] == text_image_index.cpu().long()[None, :]
    return S[mask].numpy(), S[~mask].numpy()


def plot_similarity_histograms(
    I_old: Tensor,
    T_old: Tensor,
    I_new: Tensor,
    T_new: Tensor,
    labels: Sequence[str] = ("pretrained", "fine-tuned"),
    text_image_index: Tensor | None = None,
    max_negatives: int = 50_000,
    bins: int = 60,
    seed: int = 0,
) -> Figure:
    """Cosine densities of matched (solid) and unmatched (dashed) pairs, two versions overlaid.

    Colour = version. Unmatched pairs are subsampled to `max_negatives` per version (seeded) to
    keep plotting fast; statistics belong in `cliplab.alignment.similarity_stats`.
    """
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = sns.color_palette("colorblind", 2)
    for (I, T), label, color in zip(((I_old, T_old), (I_new, T_new)), labels, colors):
        pos, neg = _pos_neg(I, T, text_image_index)
        if neg.size > max_negatives:
            neg = rng.choice(neg, size=max_negatives, replace=False)
        for values, kind, style in ((pos, "matched", "-"), (neg, "unmatched", "--")):
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.6,
                linestyle=style,
                color=color,
                label=f"{label} · {kind}",
            )
    ax.set_xlabel("cosine similarity  ⟨I_i, T_j⟩")
    ax.set_ylabel("density")
    ax.set_title("Matched vs unmatched image–text similarity")
    ax.legend(frameon=False, fontsize="small")
    return fig


# --- rotation angles ------------------------------------------------------------------------


def plot_rotation_violins(angles: pd.DataFrame, hue: str | None = None) -> Figure:
    """Violins of per-sample rotation angle (degrees) per task.

    `angles` is long: columns `task`, `modality` ("image"/"text"), `angle`, and optionally the
    column named by `hue` (e.g. "method"). Without `hue`: one panel, image and text split
    violins side by side, so unsynchronised rotation shows as asymmetric halves. With `hue`:
    one panel per modality, methods side by side.
    """
    if hue is None:
        fig, ax = plt.subplots(figsize=(7.0, 4.0))
        sns.violinplot(
            data=angles,
            x="task",
            y="angle",
            hue="modality",
            split=True,
            palette=modality_palette(),
            inner="quart",
            cut=0,
            ax=ax,
        )
        axes = [ax]
    else:
        modalities = list(dict.fromkeys(angles["modality"]))
        fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4.0), sharey=True, squeeze=False)
        axes = list(axes[0])
        for ax, modality in zip(axes, modalities):
            sns.violinplot(
                data=angles[angles["modality"] == modality],
                x="task",
                y="angle",
                hue=hue,
                palette=method_palette(angles[hue]),  # each method's colour in every figure,
                saturation=1.0,  # not seaborn's washed-out default, so it is the same colour
                inner="quart",
                cut=0,
                ax=ax,
            )
            ax.set_title(f"{modality} embeddings")
        for ax in axes[1:]:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
    for ax in axes:
        ax.set_xlabel("after task")
        ax.set_ylabel("rotation from pretrained (°)")
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


# --- cross-version retrieval and per-task lines ---------------------------------------------


def plot_cross_version_matrix(
    matrix: Tensor | np.ndarray, labels: Sequence[str], metric_label: str = "I→T R@1 (%)"
) -> Figure:
    """Annotated heat-map of M[a, b] = retrieval of version-a images against version-b texts.

    Input from `cliplab.alignment.cross_version_matrix`. Colour scale 0-100 (percent).
    """
    values = np.asarray(matrix, dtype=float)
    size = 1.0 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(
        values,
        annot=True,
        fmt=".1f",
        vmin=0,
        vmax=100,
        cmap="viridis",
        square=True,
        xticklabels=labels,
        yticklabels=labels,
        cbar_kws={"label": metric_label},
        ax=ax,
    )
    ax.set_xlabel("text embeddings from version")
    ax.set_ylabel("image embeddings from version")
    ax.set_title("Cross-version retrieval")
    return fig


def plot_metrics_across_tasks(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("gap_l2m", "unif_joint"),
    task_col: str = "task",
    method_col: str = "method",
    metric_col: str = "metric",
    value_col: str = "value",
) -> Figure:
    """One line per method of each metric (e.g. modality gap, joint uniformity) across tasks.

    `table` is tidy: one row per (task, method, metric) with the number in `value_col`; build it
    from `alignment_summary` dicts with `pd.DataFrame(rows).melt(...)`. One panel per metric,
    titled and labelled with the metric's human name (`cliplab.plots.labels`).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        subset = table[table[metric_col] == metric]
        if subset.empty:
            raise ValueError(f"metric {metric!r} not found in column {metric_col!r}")
        sns.lineplot(
            data=subset,
            x=task_col,
            y=value_col,
            hue=method_col,
            marker="o",
            ax=ax,
            palette=method_palette(subset[method_col]),
            legend=ax is axes[0][-1],
        )  # one legend, on the last panel
        ax.set_title(metric_title(metric))
        ax.set_ylabel(metric_axis(metric))
        ax.set_xlabel("after task (0 = pretrained)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # tasks are whole numbers
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.tight_layout()
    return fig


def plot_shift_experiment(
    rows: Sequence[Mapping[str, float]], metrics: Sequence[str] = ("clip_loss", "i2t_r1")
) -> Figure:
    """Metrics against the (signed) gap for `cliplab.alignment.shift_experiment` rows.

    The dotted vertical line marks the native gap (λ = 0), as in Liang et al. (2022), Fig. 4.
    """
    table = pd.DataFrame(list(rows)).sort_values("gap")
    native = table.loc[table["lambda"].abs().idxmin(), "gap"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.plot(table["gap"], table[metric], marker="o", markersize=3)
        ax.axvline(native, color="grey", linestyle=":", label="native gap")
        ax.set_xlabel("modality gap after shift")
        ax.set_ylabel(metric_axis(metric))
        ax.set_title(metric_title(metric))
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    return fig


# --- fixed-frame 2-D projection -------------------------------------------------------------


def _numpy(X: Tensor | np.ndarray) -> np.ndarray:
    return X.detach().cpu().double().numpy() if isinstance(X, Tensor) else np.asarray(X, dtype=float)


class PCAProjection:
    """Top-2 principal axes of the pretrained joint set [I₀; T₀] (centred SVD, torch).

    Each component's sign is fixed so its largest-magnitude loading is positive: refitting on
    the same data always gives the same frame, so figures are comparable across runs.
    """

    def __init__(self, X: Tensor | np.ndarray) -> None:
        data = torch.as_tensor(_numpy(X))
        self.mean = data.mean(0)
        _, _, Vh = torch.linalg.svd(data - self.mean, full_matrices=False)
        components = Vh[:2]
        signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
        self.components = components * signs

    def transform(self, X: Tensor | np.ndarray) -> np.ndarray:
        """Coordinates (n, 2) of X in the fitted frame."""
        return ((torch.as_tensor(_numpy(X)) - self.mean) @ self.components.T).numpy()


class UMAPProjection:
    """UMAP (cosine metric) fitted on [I₀; T₀]; `transform` embeds new points into that map."""

    def __init__(self, X: Tensor | np.ndarray, seed: int = 0, n_neighbors: int = 15) -> None:
        import umap  # heavy import (numba); only needed for the illustrative figure

        data = _numpy(X)
        self.model = umap.UMAP(
            n_components=2,
            n_neighbors=min(n_neighbors, len(data) - 1),
            min_dist=0.1,
            metric="cosine",
            random_state=seed,
            n_jobs=1,
        )
        self.model.fit(data)

    def transform(self, X: Tensor | np.ndarray) -> np.ndarray:
        """Coordinates (n, 2) of X in the fitted UMAP map."""
        return np.asarray(self.model.transform(_numpy(X)))


def fit_projection(I0: Tensor, T0: Tensor, method: str = "pca", seed: int = 0) -> PCAProjection | UMAPProjection:
    """Fit a 2-D projection ONCE on the pretrained embeddings [I₀; T₀]; reuse it for all versions.

    `method`: "pca" (deterministic; regression figures) or "umap" (illustration only, seeded
    but not asserted on). Returns an object with `.transform(X) -> ndarray (n, 2)`.
    """
    joint = torch.cat([torch.as_tensor(I0), torch.as_tensor(T0)])
    if method == "pca":
        return PCAProjection(joint)
    if method == "umap":
        return UMAPProjection(joint, seed=seed)
    raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")


def _draw_pairs(ax, img_xy: np.ndarray, txt_xy: np.ndarray, owner: np.ndarray, links: np.ndarray) -> None:
    segments = np.stack([img_xy[owner[links]], txt_xy[links]], axis=1)
    ax.add_collection(LineCollection(segments, colors="grey", linewidths=0.5, alpha=0.35, zorder=1))
    ax.scatter(*img_xy.T, s=8, color=IMAGE_COLOR, label="image", zorder=2)
    ax.scatter(*txt_xy.T, s=8, color=TEXT_COLOR, label="text", zorder=2)


def plot_joint_projection(
    projection: PCAProjection | UMAPProjection,
    versions: Mapping[str, tuple[Tensor, Tensor]],
    text_image_index: Tensor | None = None,
    max_links: int = 200,
    seed: int = 0,
) -> Figure:
    """Images (red) and texts (blue) of each version in the SAME fitted 2-D frame, pairs linked.

    One panel per entry of `versions` (label -> (I, T)), shared axes. Grey segments join
    `max_links` matched pairs, caption j to image `text_image_index[j]`; the same seeded
    choice of pairs is linked in every panel.
    """
    fig, axes = plt.subplots(
        1, len(versions), figsize=(4.2 * len(versions), 4.2), sharex=True, sharey=True, squeeze=False
    )
    for ax, (label, (I, T)) in zip(axes[0], versions.items()):
        owner = np.arange(len(T)) if text_image_index is None else np.asarray(text_image_index)
        # same seed per panel: the same pairs are linked in every version
        links = np.random.default_rng(seed).choice(len(T), size=min(max_links, len(T)), replace=False)
        _draw_pairs(ax, projection.transform(I), projection.transform(T), owner, links)
        ax.set_title(label)
        ax.set_xlabel("axis 1 (fitted on pretrained)")
        ax.autoscale()
    axes[0][0].set_ylabel("axis 2 (fitted on pretrained)")
    axes[0][0].legend(frameon=False, loc="best")
    fig.tight_layout()
    return fig
