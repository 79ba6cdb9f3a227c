"""Geometry of ONE model version: modality gap, cone, alignment/uniformity, pair separability,
effective rank and linear CKA.

All functions take L2-normalised embeddings `I` (N_img x d) and `T` (N_txt x d); row i of each
is a matched pair unless a `text_image_index` (caption j describes image `index[j]`) is given.
Scalars are computed in float64 and returned as Python floats. Reference values for pretrained
CLIP ViT-B/16 on 500 COCO pairs come from `docs/alignment.md` / the project reference notes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "alignment_loss",
    "auroc",
    "cone",
    "effective_rank",
    "gap_direction",
    "instance_gap",
    "linear_cka",
    "modality_gap",
    "relative_modality_gap",
    "similarity_stats",
    "uniformity_loss",
]


def _matched(I: Tensor, T: Tensor, text_image_index: Tensor | None) -> tuple[Tensor, Tensor]:
    """Return (image row per caption, caption) as two aligned float64 matrices."""
    if I.shape[-1] != T.shape[-1]:
        raise ValueError(f"dimension mismatch: {I.shape[-1]} vs {T.shape[-1]}")
    if text_image_index is None:
        if I.shape[0] != T.shape[0]:
            raise ValueError("text_image_index is required when N_img != N_txt")
        return I.double(), T.double()
    return I.double()[text_image_index.to(I.device).long()], T.double()


def _positive_mask(n_img: int, n_txt: int, text_image_index: Tensor | None, device) -> Tensor:
    """Boolean N_img x N_txt mask of matched (image, caption) pairs."""
    if text_image_index is None:
        return torch.eye(n_img, n_txt, dtype=torch.bool, device=device)
    owner = text_image_index.to(device).long()
    return torch.arange(n_img, device=device)[:, None] == owner[None, :]


def modality_gap(I: Tensor, T: Tensor) -> float:
    """Centroid modality gap L2M = ‖mean_i I_i − mean_j T_j‖₂ (Liang et al., NeurIPS 2022).

    Range [0, 2]. Pretrained CLIP on COCO ≈ 0.82-0.85; random init ≈ 1.14. Unchanged by a
    rotation shared by both modalities; changes when one modality rotates alone.
    Source: `Weixin-Liang/Modality-Gap` README; Schrodi et al. (ICLR 2025) call it L2M.
    """
    return (I.double().mean(0) - T.double().mean(0)).norm().item()


def gap_direction(I: Tensor, T: Tensor) -> Tensor:
    """Unit gap vector g = (mean I − mean T)/‖mean I − mean T‖ (d,), float32.

    Returns the zero vector when the gap is exactly 0 (no preferred direction). Used by the
    shift experiment, where images move along −g and texts along +g.
    """
    delta = I.double().mean(0) - T.double().mean(0)
    norm = delta.norm()
    return (delta / norm if norm > 0 else delta).float()


def instance_gap(I: Tensor, T: Tensor, text_image_index: Tensor | None = None) -> float:
    """Instance gap L2I = mean over matched pairs of ‖I_img(j) − T_j‖₂ (Schrodi et al. 2025).

    Range [0, 2]; equals sqrt(2 − 2cos) per pair. CLIP on 500 COCO pairs ≈ 1.17.
    """
    Ip, Tp = _matched(I, T, text_image_index)
    return (Ip - Tp).norm(dim=1).mean().item()


def cone(X: Tensor) -> float:
    """Cone effect: mean off-diagonal intra-modal cosine, mean_{i≠j} ⟨x_i, x_j⟩ (Liang et al.).

    Computed in O(Nd) as (‖Σ x_i‖² − Σ‖x_i‖²)/(N(N−1)). Range [−1/(N−1), 1]; 0 for uniform
    directions, near 1 for a narrow cone. CLIP COCO ≈ 0.47-0.53 (img), 0.51-0.52 (txt).
    """
    X = X.double()
    n = X.shape[0]
    if n < 2:
        raise ValueError("cone needs at least two samples")
    total = X.sum(0).square().sum() - X.square().sum()
    return (total / (n * (n - 1))).item()


def relative_modality_gap(I: Tensor, T: Tensor, text_image_index: Tensor | None = None) -> float:
    """Relative modality gap RMG = d_match / (d_match + (d_img + d_txt)/2) (Schrodi et al. 2025).

    With d(c) = (1 − c)/2 mapping a cosine to [0, 1]: d_match = d(mean matched cosine) and
    d_img, d_txt = d(`cone`) of each modality. Range [0, 1]: small when matched pairs are close
    compared with the spread inside each modality. CLIP on 500 COCO pairs ≈ 0.59.
    Source: `lmb-freiburg/two-effects-one-trigger:analysis/gap_precompute.py` (compute_rmg).
    """
    Ip, Tp = _matched(I, T, text_image_index)
    d_match = (1.0 - (Ip * Tp).sum(1).mean().item()) / 2.0
    d_intra = ((1.0 - cone(I)) / 2.0 + (1.0 - cone(T)) / 2.0) / 2.0
    denom = d_match + d_intra
    return d_match / denom if denom > 0 else 0.0


def alignment_loss(I: Tensor, T: Tensor, alpha: float = 2.0, text_image_index: Tensor | None = None) -> float:
    """Alignment L_align = mean over matched pairs of ‖I_i − T_i‖₂^α (Wang & Isola, ICML 2020).

    For α=2 on unit vectors this is 2 − 2·mean matched cosine. Range [0, 2^α]; lower = positives
    closer. CLIP on 500 COCO pairs ≈ 1.38, random init ≈ 1.94. Source: `ssnl/align_uniform`.
    """
    Ip, Tp = _matched(I, T, text_image_index)
    return (Ip - Tp).norm(dim=1).pow(alpha).mean().item()


def uniformity_loss(X: Tensor, t: float = 2.0, chunk_size: int = 1024) -> float:
    """Uniformity L_unif = log mean_{i<j} exp(−t‖x_i − x_j‖²) (Wang & Isola, ICML 2020).

    Range [−4t, 0] on the unit sphere; lower = more uniform, 0 = all points identical. Use it
    per modality and on the joint set `cat([I, T])`, where the modality gap shows up. CLIP on 500
    COCO pairs (t=2): −1.79 img, −1.84 txt, −2.31 joint. Chunked over rows: O(chunk·N) memory.
    """
    X = X.double()
    n = X.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least two samples")
    parts = []
    for start in range(0, n - 1, chunk_size):
        rows = X[start : start + chunk_size]
        sq = torch.cdist(rows, X).square()
        row_ids = torch.arange(start, start + len(rows), device=X.device)
        upper = torch.arange(n, device=X.device)[None, :] > row_ids[:, None]  # pairs i < j only
        parts.append(torch.logsumexp((-t * sq)[upper], dim=0))
    n_pairs = n * (n - 1) / 2
    return (torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_pairs)).item()


def auroc(positive: Tensor, negative: Tensor) -> float:
    """AUROC = P(pos > neg) + ½·P(pos = neg), the normalised Mann-Whitney U statistic.

    Range [0, 1]; 0.5 = inseparable. O((P + M) log M): negatives are sorted once, never paired.
    """
    neg = negative.double().flatten().sort().values
    pos = positive.double().flatten()
    below = torch.searchsorted(neg, pos, right=False).double()
    at_or_below = torch.searchsorted(neg, pos, right=True).double()
    return ((below + at_or_below) / 2).sum().item() / (pos.numel() * neg.numel())


def similarity_stats(I: Tensor, T: Tensor, text_image_index: Tensor | None = None) -> dict[str, float]:
    """Matched vs unmatched cosine statistics of S = I Tᵀ and their separability.

    Returns `pos_mean`, `pos_std` (matched pairs), `neg_mean`, `neg_std` (all other pairs),
    `margin` = pos_mean − neg_mean, and `auroc` (pos vs neg, see `auroc`). CLIP on 500 COCO
    pairs: pos 0.31 ± 0.03, neg 0.16 ± 0.05, AUROC 0.99; random init AUROC ≈ 0.51.
    """
    S = I.double() @ T.double().T
    mask = _positive_mask(S.shape[0], S.shape[1], text_image_index, S.device)
    pos, neg = S[mask], S[~mask]
    return {
        "pos_mean": pos.mean().item(),
        "pos_std": pos.std().item() if pos.numel() > 1 else 0.0,
        "neg_mean": neg.mean().item(),
        "neg_std": neg.std().item() if neg.numel() > 1 else 0.0,
        "margin": (pos.mean() - neg.mean()).item(),
        "auroc": auroc(pos, neg),
    }


def effective_rank(X: Tensor, eps: float = 1e-12) -> float:
    """Effective rank (RankMe, Garrido et al. ICML 2023) = exp(H(p)), p_k = σ_k/‖σ‖₁ + ε.

    σ are the singular values of the (uncentred) N x d matrix. Range [1, min(N, d)]; a drop
    across tasks signals dimensional collapse. Rotation-invariant. CLIP on 500 COCO pairs:
    258 (img) / 244 (txt) of 512; random-init image tower 37. Needs N ≫ d for a tight estimate.
    """
    sigma = torch.linalg.svdvals(X.double())
    p = sigma / sigma.sum() + eps
    return torch.exp(-(p * p.log()).sum()).item()


def linear_cka(X: Tensor, Y: Tensor) -> float:
    """Linear CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X (N x d₁), Y (N x d₂).

    Kornblith et al., ICML 2019. Range [0, 1]; invariant to orthogonal maps and isotropic
    scaling, so it is BLIND to the rotation Mod-X reports: pair it with `rotation_angles`.
    CKA(I, T) for CLIP on 500 COCO pairs ≈ 0.64; random init ≈ 0.05.
    """
    if X.shape[0] != Y.shape[0]:
        raise ValueError("CKA needs the same samples (rows) in X and Y")
    X = X.double() - X.double().mean(0)
    Y = Y.double() - Y.double().mean(0)
    cross = torch.linalg.matrix_norm(Y.T @ X).square()
    norm = torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)
    return (cross / norm).item() if norm > 0 else 0.0
