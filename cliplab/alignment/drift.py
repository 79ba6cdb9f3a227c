"""Change BETWEEN two model versions on a fixed probe set (Mod-X's "spatial disorder").

Ni et al. (Mod-X, ICML 2023) find that continual CLIP training rotates each modality's space
around the sphere centre while its topology (sample-sample angles) barely moves, and that the
image and text rotations are not synchronised. Rotation-invariant measures (linear CKA, the
self-angle matrix, effective rank) cannot see this; the functions here split the change into:

* `rotation_angles` — per-sample rotation (Mod-X's RAM), rotation-SENSITIVE;
* `self_angle_change` — topology change (Mod-X's SAM), rotation-INVARIANT;
* `modx_drift` — Mod-X's own quantity: the KL between the old and new similarity rows (diagonal
  included) on raw cosines by default, counting only rows the old model retrieves correctly
  (Mod-X's cognition alignment), both directions averaged;
* `unmatched_similarity_drift` — cliplab's measure, not Mod-X's: the KL between old and new
  similarity rows restricted to the unmatched (off-diagonal) pairs, at the model's temperature,
  over every row; sensitive to unsynchronised rotation;
* `cross_version_retrieval` / `cross_version_matrix` — retrieve new images with old texts and
  the reverse: a synchronised rotation keeps within-version recall but breaks these.

Inputs are L2-normalised N x d matrices of the SAME probe samples in both versions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cliplab.evaluation.retrieval import retrieval_metrics

__all__ = [
    "cross_version_matrix",
    "cross_version_retrieval",
    "modx_drift",
    "offdiag_drift",
    "rotation_angles",
    "self_angle_change",
    "unmatched_similarity_drift",
]


def _same_rows(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"versions must embed the same probe set: {tuple(a.shape)} vs {tuple(b.shape)}")


def rotation_angles(X_old: Tensor, X_new: Tensor) -> Tensor:
    """Per-sample rotation angle θ_i = ∠(x_i⁽ᵒˡᵈ⁾, x_i⁽ⁿᵉʷ⁾) in degrees, shape (N,), float32.

    Computed as 2·atan2(‖u − v‖, ‖u + v‖) on the unit vectors u, v, which is exact near 0° and
    180° where arccos(⟨u, v⟩) loses precision. Range [0, 180]; 0 for identical embeddings.
    Mod-X's Rotation Angle Matrix (Ni et al. 2023). Rotation-SENSITIVE by construction.
    """
    _same_rows(X_old, X_new)
    u = F.normalize(X_old.double(), dim=1)
    v = F.normalize(X_new.double(), dim=1)
    return torch.rad2deg(2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))).float()


def _self_angles(X: Tensor) -> Tensor:
    U = F.normalize(X.double(), dim=1)
    return torch.rad2deg(torch.arccos((U @ U.T).clamp(-1.0, 1.0)))


def self_angle_change(X_old: Tensor, X_new: Tensor, reduction: str = "mean") -> float:
    """Topology change: |∠(x_i, x_j)⁽ᵒˡᵈ⁾ − ∠(x_i, x_j)⁽ⁿᵉʷ⁾| over pairs i ≠ j, in degrees.

    `reduction` = "mean" or "max". Range [0, 180]. Mod-X's Self-Angle relationship Matrix (SAM)
    compared across versions. Invariant to any orthogonal map of the space, so it stays ~0
    under pure rotation even when retrieval collapses. O(N²) memory: subsample to ≲ 5k.
    """
    _same_rows(X_old, X_new)
    diff = (_self_angles(X_old) - _self_angles(X_new)).abs()
    off = ~torch.eye(diff.shape[0], dtype=torch.bool, device=diff.device)
    if reduction == "mean":
        return diff[off].mean().item()
    if reduction == "max":
        return diff[off].max().item()
    raise ValueError(f"reduction must be 'mean' or 'max', got {reduction!r}")


def _offdiag_log_softmax(S: Tensor, temperature: float) -> Tensor:
    """Row-wise log-softmax of S/τ over each row's N−1 off-diagonal entries, shape N x (N−1)."""
    n = S.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=S.device)
    return F.log_softmax(S[off].view(n, n - 1) / temperature, dim=1)


def _row_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def unmatched_similarity_drift(I_old: Tensor, T_old: Tensor, I_new: Tensor, T_new: Tensor, temperature: float) -> float:
    """Drift of the unmatched-pair (off-diagonal) similarity distribution, in nats (cliplab's measure).

    With S = I Tᵀ (N x N, matched pairs on the diagonal) for each version, let p_i be the
    softmax of row i of S⁽ᵒˡᵈ⁾/τ restricted to its N−1 off-diagonal entries (the distribution
    over the *wrong* captions of image i), and q_i the same for S⁽ⁿᵉʷ⁾. Columns (text→image)
    give p'_j, q'_j likewise. Then

        drift = ½ [ mean_i KL(p_i ‖ q_i) + mean_j KL(p'_j ‖ q'_j) ].

    Excluding the diagonal separates how a sample relates to the others from matched-pair
    similarity, which `similarity_stats` covers. Not Mod-X's quantity (that is `modx_drift`:
    diagonal included, raw cosines, rows the old model gets wrong count 0). Range [0, ∞); 0 for
    identical versions or any rotation applied to BOTH modalities. Use the model's temperature
    τ = 1/exp(logit_scale) (≈ 0.01 for CLIP): at τ = 1 on raw cosines the KL is ~1e-3 nats even
    for a 55° one-modality rotation and is uninformative.
    """
    for old, new in ((I_old, I_new), (T_old, T_new)):
        _same_rows(old, new)
    if I_old.shape[0] != T_old.shape[0] or I_old.shape[0] < 2:
        raise ValueError("unmatched_similarity_drift needs N >= 2 matched pairs (square similarity matrix)")
    S_old = I_old.double() @ T_old.double().T
    S_new = I_new.double() @ T_new.double().T
    i2t = _row_kl(_offdiag_log_softmax(S_old, temperature), _offdiag_log_softmax(S_new, temperature))
    t2i = _row_kl(_offdiag_log_softmax(S_old.T, temperature), _offdiag_log_softmax(S_new.T, temperature))
    return 0.5 * (i2t.mean() + t2i.mean()).item()


def offdiag_drift(I_old: Tensor, T_old: Tensor, I_new: Tensor, T_new: Tensor, temperature: float) -> float:
    """Deprecated name of `unmatched_similarity_drift` (the same numbers); it is not Mod-X's drift."""
    warnings.warn(
        "offdiag_drift is renamed unmatched_similarity_drift (Mod-X's own quantity is modx_drift)",
        DeprecationWarning,
        stacklevel=2,
    )
    return unmatched_similarity_drift(I_old, T_old, I_new, T_new, temperature)


def _as_matrix(x, name: str) -> Tensor:
    """A 2-D float64 tensor with L2-normalised rows, from a tensor or a numpy array."""
    if not isinstance(x, (Tensor, np.ndarray)):
        raise TypeError(f"{name} must be an N x d numpy array or torch tensor, got {type(x).__name__}")
    t = torch.as_tensor(x).detach().cpu().double()
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty N x d matrix, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t.norm(dim=1) == 0).any():
        raise ValueError(f"{name} has a row that is zero or not finite; it cannot be L2-normalised")
    return F.normalize(t, dim=1)


def _aligned_kl(S_old: Tensor, S_new: Tensor) -> Tensor:
    """mean over all N rows of KL(softmax S_old[i] ‖ softmax S_new[i]), 0 where S_old's argmax ≠ i."""
    log_p, log_q = F.log_softmax(S_old, dim=1), F.log_softmax(S_new, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    aligned = S_old.argmax(dim=1) == torch.arange(len(S_old))
    return torch.where(aligned, kl, torch.zeros_like(kl)).mean()


def modx_drift(img_old, txt_old, img_new, txt_new, temperature: float = 1.0) -> float:
    """Mod-X's distillation quantity between two versions (Ni et al., ICML 2023), in nats.

    `img_*`, `txt_*`: N x d numpy arrays or tensors of the same N matching pairs (row i of each
    is pair i), L2-normalised here. With S_old = img_old·txt_oldᵀ / temperature and S_new
    likewise, p_i = softmax of row i of S_old and q_i of S_new:

        i2t = (1/N) Σ_i KL(p_i ‖ q_i), a row counting 0 when argmax_j S_old[i, j] ≠ i
        t2i = the same on the transposes (text rows);      result = (i2t + t2i) / 2.

    The zeroed rows are Mod-X's cognition alignment (`ModX_Training/continue_train_model.py`:
    where the old model retrieves the wrong item, its row is replaced by the new model's, which
    gives KL 0). Mod-X uses raw cosines (temperature 1) and sums its KL over the batch; this is
    that sum divided by N, so probes of different sizes compare. Range [0, ∞); 0 for identical
    versions.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    I_old, T_old = _as_matrix(img_old, "img_old"), _as_matrix(txt_old, "txt_old")
    I_new, T_new = _as_matrix(img_new, "img_new"), _as_matrix(txt_new, "txt_new")
    n = len(I_old)
    if any(len(x) != n for x in (T_old, I_new, T_new)):
        raise ValueError(
            f"modx_drift needs the same N matching pairs in all four matrices, got rows "
            f"{[len(x) for x in (I_old, T_old, I_new, T_new)]}"
        )
    for a, b, version in ((I_old, T_old, "old"), (I_new, T_new, "new")):
        if a.shape[1] != b.shape[1]:
            raise ValueError(
                f"img_{version} and txt_{version} must share the embedding width, got {a.shape[1]} and {b.shape[1]}"
            )
    S_old, S_new = I_old @ T_old.T / temperature, I_new @ T_new.T / temperature
    return float((_aligned_kl(S_old, S_new) + _aligned_kl(S_old.T, S_new.T)) / 2)


def cross_version_retrieval(
    I_old: Tensor,
    T_old: Tensor,
    I_new: Tensor,
    T_new: Tensor,
    text_image_index: Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Retrieval across versions: new images vs old texts, and old images vs new texts.

    Keys `newI_oldT_<metric>` and `oldI_newT_<metric>` for every metric of
    `cliplab.evaluation.retrieval.retrieval_metrics` (e.g. `newI_oldT_i2t_r1`, percent). If the two
    modalities rotated together, within-version recall is kept but these drop; a model that
    did not move keeps them equal to the within-version numbers.
    """
    _same_rows(I_old, I_new)
    _same_rows(T_old, T_new)
    out = {}
    for name, images, texts in (("newI_oldT", I_new, T_old), ("oldI_newT", I_old, T_new)):
        metrics = retrieval_metrics(images, texts, text_image_index, ks)
        out.update({f"{name}_{key}": value for key, value in metrics.items()})
    return out


def cross_version_matrix(
    images: Sequence[Tensor],
    texts: Sequence[Tensor],
    metric: str = "i2t_r1",
    text_image_index: Tensor | None = None,
) -> Tensor:
    """V x V matrix M[a, b] = `metric` of retrieval between images of version a and texts of b.

    The diagonal is ordinary within-version retrieval; off-diagonal cells show whether two
    versions still share one embedding frame. `metric` is any `retrieval_metrics` key.
    """
    if len(images) != len(texts):
        raise ValueError("need one image and one text matrix per version")
    tail = metric.rpartition("_r")[2]
    ks = (int(tail),) if tail.isdigit() else (1,)
    rows = [[retrieval_metrics(img, txt, text_image_index, ks)[metric] for txt in texts] for img in images]
    return torch.tensor(rows, dtype=torch.float32)
