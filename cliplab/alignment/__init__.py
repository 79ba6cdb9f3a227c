"""Embedding-space alignment metrics for CLIP under continual fine-tuning.

Pure functions on L2-normalised embedding matrices `I`, `T` (N x d; row i of each is a matched
image-caption pair) of a FIXED probe set, encoded once per model version (`cliplab.evaluation.embed`).

* `geometry` — one version: modality gap (L2M, L2I, RMG, direction), cone, alignment and
  uniformity, matched vs unmatched similarity + AUROC, effective rank, linear CKA.
* `drift` — two versions: per-sample rotation angles, self-angle (topology) change,
  Mod-X's drift (`modx_drift`), cliplab's unmatched-pair similarity drift
  (`unmatched_similarity_drift`), cross-version retrieval.
* `shift` — Liang et al.'s embedding-shift experiment and the CLIP loss.
* `summary` — `alignment_summary` / `version_drift` flat dicts for per-task tables.

Key point (see docs/alignment.md): rotation-invariant measures (CKA, self-angle matrix,
effective rank) are blind to Mod-X-style misalignment, so always read them beside the
rotation-sensitive ones (rotation angles, the two drifts, cross-version retrieval).
"""

from cliplab.alignment.drift import (
    cross_version_matrix,
    cross_version_retrieval,
    modx_drift,
    offdiag_drift,
    rotation_angles,
    self_angle_change,
    unmatched_similarity_drift,
)
from cliplab.alignment.geometry import (
    alignment_loss,
    auroc,
    cone,
    effective_rank,
    gap_direction,
    instance_gap,
    linear_cka,
    modality_gap,
    relative_modality_gap,
    similarity_stats,
    uniformity_loss,
)
from cliplab.alignment.shift import clip_loss, shift_along_gap, shift_experiment
from cliplab.alignment.summary import alignment_summary, version_drift

__all__ = [
    "alignment_loss",
    "alignment_summary",
    "auroc",
    "clip_loss",
    "cone",
    "cross_version_matrix",
    "cross_version_retrieval",
    "effective_rank",
    "gap_direction",
    "instance_gap",
    "linear_cka",
    "modality_gap",
    "modx_drift",
    "offdiag_drift",
    "relative_modality_gap",
    "rotation_angles",
    "self_angle_change",
    "shift_along_gap",
    "shift_experiment",
    "similarity_stats",
    "uniformity_loss",
    "unmatched_similarity_drift",
    "version_drift",
]
