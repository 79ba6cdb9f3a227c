"""Human names for the code names of metrics and probes, so that no figure shows `gap_l2m`.

The code names stay what they are in tables, `metrics.json` and the API (they are contracts); only
what a reader sees on an axis, a panel title or a displayed table goes through these maps. A
name not listed here is shown as it is. Definitions: docs/alignment.md and docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

# code -> (title, axis label)
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "gap_l2m": ("Modality gap", "distance between image and text centres"),
    "gap_l2i": ("Instance gap", "mean distance of matched pairs"),
    "rmg": ("Relative modality gap", "relative gap"),
    "cone_img": ("Image cone", "mean cosine between images"),
    "cone_txt": ("Text cone", "mean cosine between captions"),
    "align": ("Alignment of pairs", "alignment loss (lower = closer pairs)"),
    "unif_img": ("Image uniformity", "uniformity (lower = more spread)"),
    "unif_txt": ("Text uniformity", "uniformity (lower = more spread)"),
    "unif_joint": ("Joint uniformity", "uniformity (lower = more spread)"),
    "erank_img": ("Image effective rank", "effective rank"),
    "erank_txt": ("Text effective rank", "effective rank"),
    "cka_img_txt": ("Image–text CKA", "CKA of matched images and captions"),
    "i2t_r1": ("Retrieval image→text", "R@1 (%)"),
    "t2i_r1": ("Retrieval text→image", "R@1 (%)"),
    "clip_loss": ("Contrastive loss", "CLIP loss"),
    "angle_img_mean": ("Image rotation", "mean angle from pretrained (°)"),
    "angle_txt_mean": ("Text rotation", "mean angle from pretrained (°)"),
    "angle_img_p90": ("Image rotation, 90th percentile", "angle from pretrained (°)"),
    "angle_txt_p90": ("Text rotation, 90th percentile", "angle from pretrained (°)"),
    "angle_mismatch": ("Image–text rotation mismatch", "mean |image angle − text angle| (°)"),
    "unmatched_similarity_drift": ("Unmatched-pair drift", "KL of unmatched-pair similarities (nats)"),
    "modx_drift": ("Mod-X drift", "KL of row-softmaxed similarities, misretrieved rows 0 (nats)"),
    "newI_oldT_i2t_r1": ("New images vs pretrained captions", "image→text R@1 (%)"),
    "newI_oldT_t2i_r1": ("Pretrained captions vs new images", "text→image R@1 (%)"),
    "oldI_newT_i2t_r1": ("Pretrained images vs new captions", "image→text R@1 (%)"),
    "oldI_newT_t2i_r1": ("New captions vs pretrained images", "text→image R@1 (%)"),
    "sam_img": ("Images: change of pairwise angles", "mean change (°)"),
    "sam_txt": ("Captions: change of pairwise angles", "mean change (°)"),
    "cka_img": ("Images: CKA old vs new", "linear CKA (1 = same up to rotation)"),
    "cka_txt": ("Captions: CKA old vs new", "linear CKA (1 = same up to rotation)"),
    "d_erank_img": ("Change of image effective rank", "new − pretrained"),
    "d_erank_txt": ("Change of text effective rank", "new − pretrained"),
    "d_gap_l2m": ("Change of modality gap", "new − pretrained"),
    "d_i2t_r1": ("Change of image→text R@1", "points"),
    "d_t2i_r1": ("Change of text→image R@1", "points"),
    # continual summaries (docs/metrics.md), shared by every protocol
    "transfer": ("Transfer: accuracy before a task is learned", "accuracy (%)"),
    "avg": ("Avg: mean accuracy over the run", "accuracy (%)"),
    "last": ("Last: accuracy after the last task", "accuracy (%)"),
    "bwt": ("Backward transfer (BWT)", "change since learned (points; < 0 = forgetting)"),
    "forgetting": ("Forgetting", "best − last (points)"),
    "plasticity": ("New-task accuracy", "mean of the matrix diagonal (%)"),
    "zero_shot_delta": ("Change of held-out zero-shot accuracy", "after − before (points)"),
    # cost (notebook 04)
    "trainable": ("Parameters trained", "parameters"),
    "trainable_pct": ("Share of CLIP's parameters trained", "% of the pretrained model's parameters"),
    "trainable_in_clip": ("Parameters trained in CLIP", "parameters (towers and modules added to them)"),
    "trainable_in_clip_pct": ("Share trained in CLIP", "% of the pretrained model's parameters"),
    "trainable_selector": ("Parameters trained outside CLIP", "parameters (DDAS autoencoders)"),
    "peak_memory_mib": ("Peak training memory", "MiB"),
    "train_seconds": ("Training time", "seconds"),
    # time-continual (TiC-CLIP, notebook 05); the time x time matrices by kind
    "retrieval": ("Retrieval R@1, mean of both directions", "retrieval R@1 (%)"),
    "classification": ("Zero-shot classification", "zero-shot top-1 (%)"),
    "id": ("In-distribution (ID)", "R@1 on the step just trained (%)"),
    "backward": ("Backward", "R@1 on earlier steps' data (%)"),
    "forward": ("Forward", "R@1 on later steps' data (%)"),
    "classification_id": ("In-distribution (ID), zero-shot classification", "top-1 on the step just trained (%)"),
    "classification_backward": ("Backward, zero-shot classification", "top-1 on earlier steps' data (%)"),
    "classification_forward": ("Forward, zero-shot classification", "top-1 on later steps' data (%)"),
    "samples": ("Training pairs seen", "pairs"),
    "forward_passes": ("Forward passes", "passes"),
    "compute": ("Compute", "compute (× a sequential run)"),
    "unmatched_drift_from_start": ("Unmatched-pair drift from t0", "KL of unmatched-pair similarities (nats)"),
    "modx_drift_from_previous": ("Mod-X drift from the previous step", "KL of row-softmaxed similarities (nats)"),
    "probe_r1": ("Retrieval on the old pairs", "R@1, mean of both directions (%)"),
    # open-domain and online (CoLeCLIP, Si-Blurry; notebook 06)
    "seen_avg": ("SeenAvg: accuracy on learned domains", "accuracy (%)"),
    "a_auc": ("A_auc: area under the anytime-accuracy curve", "anytime accuracy, mean over the stream (%)"),
    "a_avg": ("A_avg: mean accuracy at the task ends", "accuracy on the exposed classes (%)"),
    "a_last": ("A_last: accuracy at the end of the stream", "accuracy on the exposed classes (%)"),
    "f_last": ("F_last: per-class forgetting", "best earlier − last (points)"),
    # new languages (CLL-CLIP, notebook 07)
    "english_before": ("English, pretrained", "text→image R@1 (%)"),
    "english_after": ("English after the last language", "text→image R@1 (%)"),
    "english_delta": ("Change of English retrieval", "after − before (points)"),
    "min_language": ("Weakest learned language", "text→image R@1 (%)"),
    "mean_language": ("Mean over learned languages", "text→image R@1 (%)"),
    "min_language_ratio": ("Weakest language / pretrained English", "ratio"),
    "i2t_mean_language": ("Mean over learned languages, image→text", "image→text R@1 (%)"),
    "norm": ("Row norm", "norm of the embedding row"),
    "drift": ("Distance moved", "distance from the pretrained row"),
}

# Held-out probes and retrieval metrics of the run records (`RunResult.zero_shot` / `.retrieval`).
PROBE_LABELS: dict[str, str] = {
    "toyworld_shape_colour": "ToyWorld shape+colour, unseen pairs",
    "toyworld_shape": "ToyWorld shape",
    "toyworld_colour": "ToyWorld colour",
    "toyworld": "ToyWorld captions",
    "english": "English captions",
    "digits": "digits",
    "textures": "textures",
    "nonce_shapes": "nonce shapes",
}
RETRIEVAL_LABELS: dict[str, str] = {
    "i2t_r1": "image→text R@1",
    "t2i_r1": "text→image R@1",
    "i2t_r5": "image→text R@5",
    "t2i_r5": "text→image R@5",
    "i2t_r10": "image→text R@10",
    "t2i_r10": "text→image R@10",
}


def metric_title(code: str) -> str:
    """A metric's human name (the code itself when unknown)."""
    return METRIC_LABELS.get(code, (code, code))[0]


def metric_axis(code: str) -> str:
    """A metric's axis label, with its unit (the code itself when unknown)."""
    return METRIC_LABELS.get(code, (code, code))[1]


def probe_label(name: str) -> str:
    """A held-out probe's human name ("toyworld_shape_colour" -> "ToyWorld shape+colour, unseen pairs")."""
    return PROBE_LABELS.get(name, name)


def dataset_label(name: str) -> str:
    """An evaluated set's human name: a held-out probe's (`probe_label`), a retrieval probe's
    ("retrieval/toyworld" -> "ToyWorld captions, retrieval"), else the name with spaces for
    underscores (task names such as "novel_shapes"); a route like "router 1: novel_shapes" too."""
    name = str(name)
    if name.startswith("retrieval/"):
        return f"{probe_label(name.split('/', 1)[1])}, retrieval"
    return PROBE_LABELS.get(name, name.replace("_", " "))


def retrieval_label(metric: str) -> str:
    """ "i2t_r1" -> "image→text R@1"."""
    return RETRIEVAL_LABELS.get(metric, metric)


def readable_columns(table: pd.DataFrame, codes: Iterable[str] | None = None) -> pd.DataFrame:
    """`table` with metric-code columns renamed to their human names, for display only."""
    names = {c: metric_title(c) for c in (codes if codes is not None else table.columns) if c in METRIC_LABELS}
    return table.rename(columns=names)


__all__ = [
    "METRIC_LABELS",
    "PROBE_LABELS",
    "RETRIEVAL_LABELS",
    "dataset_label",
    "metric_axis",
    "metric_title",
    "probe_label",
    "readable_columns",
    "retrieval_label",
]
