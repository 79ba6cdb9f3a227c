"""Mod-X (Ni et al., ICML 2023): keep the previous model's similarity structure while training
contrastively on new pairs, with the loss as the authors' code computes it
(`ZixuanNi/Mod-X`, `ModX_Training/continue_train_model.py`; docs/tic_modx.md has the line references).

Per batch of N pairs, with L2-normalised features of the student (I, T) and of the frozen
previous-step model (I°, T°):

    P = I Tᵀ,  Q = T Iᵀ,  P° = I° T°ᵀ,  Q° = T° I°ᵀ           raw cosines: no logit scale (τ = 1)
    KL_i2t = Σ_i m_i Σ_j softmax(P°_i)_j [log softmax(P°_i)_j − log softmax(P_i)_j]
    KL_t2i = the same with Q, Q° and the mask of Q°
    loss   = α · ½ (KL_i2t + KL_t2i)                              on top of the CLIP loss

- m_i = [argmax_j P°_ij = i]: the authors' "cognition alignment" overwrites row i of the old
  matrix with the student's row when the old model retrieves the wrong item; that row's KL and
  its gradient are then exactly 0, so dropping it is the same computation (tested).
- The whole row is distilled, diagonal included, although the code names it "off-diagonal".
- The sum runs over all N rows (`reduction='sum'`), so the term grows with the batch: the
  released runs use α = 20 at N = 280. `reduction="mean"` divides by N (then α·N is the strength).
- The KL direction is KL(old ‖ new): `F.kl_div(log softmax(P), softmax(P°))`; the log is taken
  of the softmax, as in the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cliplab.methods.base import Method, MethodOptions, TaskContext


def _aligned_kl(new: Tensor, old: Tensor) -> Tensor:
    """Per-row KL(softmax(old_i) ‖ softmax(new_i)), 0 where the old row's argmax is not its own pair."""
    keep = old.argmax(dim=1) == torch.arange(len(old), device=old.device)
    kl = F.kl_div(F.softmax(new, dim=1).log(), F.softmax(old, dim=1), reduction="none").sum(dim=1)
    return kl * keep


def modx_loss(images: Tensor, texts: Tensor, old_images: Tensor, old_texts: Tensor, reduction: str = "sum") -> Tensor:
    """½ (KL_i2t + KL_t2i) of Mod-X on L2-normalised features (see the module docstring)."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' (Mod-X's code) or 'mean', got {reduction!r}")
    with torch.no_grad():
        p_old, q_old = old_images @ old_texts.T, old_texts @ old_images.T
    i2t = _aligned_kl(images @ texts.T, p_old)
    t2i = _aligned_kl(texts @ images.T, q_old)
    total = 0.5 * (i2t.sum() + t2i.sum())
    return total if reduction == "sum" else total / len(images)


@dataclass
class ModXOptions(MethodOptions):
    alpha: float = 20.0  # [Mod-X modx_5phase.sh: --alpha 20; the argparse default 0.1 is never used]
    reduction: str = "sum"  # sum over the N x N matrix [Mod-X code] | mean (divided by N)
    teacher: str = "previous"  # previous (the last step's model) [Mod-X] | initial (the time-0 model)

    def __post_init__(self) -> None:
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.teacher not in ("previous", "initial"):
            raise ValueError(f"teacher must be 'previous' or 'initial', got {self.teacher!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


class ModX(Method):
    """Contrastive training plus Mod-X's aligned KL to the previous model on the same batch."""

    name = "modx"
    objectives = ("contrastive",)
    Options = ModXOptions

    def begin_task(self, ctx: TaskContext) -> None:
        self.teacher = ctx.start_model if self.options.teacher == "previous" else ctx.initial_model

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        with torch.no_grad():
            old_images = self.teacher.encode_image(out.ce_inputs, normalize=True).float()
            old_texts = self.teacher.encode_text(out.text_inputs, normalize=True).float()
        loss = modx_loss(out.ce_images.float(), out.class_texts.float(), old_images, old_texts, self.options.reduction)
        return {"modx": self.options.alpha * loss}


__all__ = ["ModX", "ModXOptions", "modx_loss"]
