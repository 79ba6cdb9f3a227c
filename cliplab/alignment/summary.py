"""One-call summaries that notebooks tabulate per task and per method.

`alignment_summary` describes one model version; `version_drift` compares a later version with
a reference one (normally the pretrained model θ₀) on the same probe set. Both return flat
`dict[str, float]` so rows can be stacked into a DataFrame or written as JSON.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cliplab.alignment.drift import (
    cross_version_retrieval,
    modx_drift,
    rotation_angles,
    self_angle_change,
    unmatched_similarity_drift,
)
from cliplab.alignment.geometry import (
    alignment_loss,
    cone,
    effective_rank,
    instance_gap,
    linear_cka,
    modality_gap,
    relative_modality_gap,
    similarity_stats,
    uniformity_loss,
)
from cliplab.alignment.shift import clip_loss
from cliplab.evaluation.retrieval import retrieval_metrics

__all__ = ["alignment_summary", "version_drift"]


def alignment_summary(
    I: Tensor, T: Tensor, temperature: float, text_image_index: Tensor | None = None
) -> dict[str, float]:
    """All single-version metrics for L2-normalised I (N_img x d), T (N_txt x d).

    Keys: `gap_l2m`, `gap_l2i`, `rmg` (modality gap variants), `cone_img`, `cone_txt`,
    `align` (α=2), `unif_img`, `unif_txt`, `unif_joint` (t=2), `pos_mean`, `pos_std`,
    `neg_mean`, `neg_std`, `margin`, `auroc`, `erank_img`, `erank_txt`, `cka_img_txt`
    (on matched rows), every `retrieval_metrics` key, and `clip_loss` at `temperature`
    (only when there is one caption per image, i.e. `text_image_index` is None).
    """
    I_rows = I if text_image_index is None else I[text_image_index.to(I.device).long()]
    out = {
        "gap_l2m": modality_gap(I, T),
        "gap_l2i": instance_gap(I, T, text_image_index),
        "rmg": relative_modality_gap(I, T, text_image_index),
        "cone_img": cone(I),
        "cone_txt": cone(T),
        "align": alignment_loss(I, T, text_image_index=text_image_index),
        "unif_img": uniformity_loss(I),
        "unif_txt": uniformity_loss(T),
        "unif_joint": uniformity_loss(torch.cat([I, T])),
        **similarity_stats(I, T, text_image_index),
        "erank_img": effective_rank(I),
        "erank_txt": effective_rank(T),
        "cka_img_txt": linear_cka(I_rows, T),
        **retrieval_metrics(I, T, text_image_index),
    }
    if text_image_index is None:
        out["clip_loss"] = clip_loss(I, T, temperature)
    return out


def _angle_stats(prefix: str, angles: Tensor) -> dict[str, float]:
    return {
        f"{prefix}_mean": angles.mean().item(),
        f"{prefix}_p90": angles.double().quantile(0.9).item(),
    }


def version_drift(I_old: Tensor, T_old: Tensor, I_new: Tensor, T_new: Tensor, temperature: float) -> dict[str, float]:
    """How version `new` differs from version `old` on the same N matched probe pairs.

    Keys (angles in degrees, recalls in percent):
      rotation-SENSITIVE: `angle_img_mean`, `angle_img_p90`, `angle_txt_mean`, `angle_txt_p90`
        (`rotation_angles`), `angle_mismatch` = mean_i |θ_img,i − θ_txt,i| (inter-modal
        deviation), `unmatched_similarity_drift` (cliplab's, nats at `temperature`), `modx_drift`
        (Mod-X's, nats on raw cosines), `newI_oldT_i2t_r1`,
        `newI_oldT_t2i_r1`, `oldI_newT_i2t_r1`, `oldI_newT_t2i_r1` (cross-version retrieval);
      rotation-INVARIANT: `sam_img`, `sam_txt` (mean self-angle change), `cka_img`, `cka_txt`
        (linear CKA old vs new), `d_erank_img`, `d_erank_txt`;
      change of single-version numbers (new − old): `d_gap_l2m`, `d_i2t_r1`, `d_t2i_r1`.
    """
    if I_old.shape[0] != T_old.shape[0]:
        raise ValueError("version_drift needs one caption per image (N matched pairs)")
    theta_img, theta_txt = rotation_angles(I_old, I_new), rotation_angles(T_old, T_new)
    cross = cross_version_retrieval(I_old, T_old, I_new, T_new, ks=(1,))
    r_old, r_new = retrieval_metrics(I_old, T_old, ks=(1,)), retrieval_metrics(I_new, T_new, ks=(1,))
    return {
        **_angle_stats("angle_img", theta_img),
        **_angle_stats("angle_txt", theta_txt),
        "angle_mismatch": (theta_img - theta_txt).abs().mean().item(),
        "unmatched_similarity_drift": unmatched_similarity_drift(I_old, T_old, I_new, T_new, temperature),
        "modx_drift": modx_drift(I_old, T_old, I_new, T_new),
        **{key: cross[key] for key in ("newI_oldT_i2t_r1", "newI_oldT_t2i_r1", "oldI_newT_i2t_r1", "oldI_newT_t2i_r1")},
        "sam_img": self_angle_change(I_old, I_new),
        "sam_txt": self_angle_change(T_old, T_new),
        "cka_img": linear_cka(I_old, I_new),
        "cka_txt": linear_cka(T_old, T_new),
        "d_erank_img": effective_rank(I_new) - effective_rank(I_old),
        "d_erank_txt": effective_rank(T_new) - effective_rank(T_old),
        "d_gap_l2m": modality_gap(I_new, T_new) - modality_gap(I_old, T_old),
        "d_i2t_r1": r_new["i2t_r1"] - r_old["i2t_r1"],
        "d_t2i_r1": r_new["t2i_r1"] - r_old["t2i_r1"],
    }
