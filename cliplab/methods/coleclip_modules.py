"""The modules CoLeCLIP adds to open_clip's CLIP (Li et al. 2024; YukunLi99/CoLeCLIP).

- `PromptedVisionTransformer`: the image tower with per-task prompt tokens (`model/backbone/
  clip.py` 318-351 and its attention mask 224-231). The prompts of tasks 0..n-1 are prepended
  before `ln_pre` without positional embedding; no token may attend to a prompt except that task
  j's prompts see the prompts of tasks i <= j. So the CLS output is the frozen model's, and task
  j's prompt output depends only on the image and prompts 0..j. `view_tasks = n` makes the tower
  return the *views* ``[v_0, ..., v_{n-1}, c]`` with ``v_j = (p_j + c) / 2`` (p_j the mean projected
  output of task j's prompts, c the projected CLS), in projected space before normalisation; with
  `view_tasks = None` it is open_clip's tower, untouched (CLS only).
- the text tower's transient LoRA is `cliplab.methods.attention_lora.KVLoRAAttention`.
- `ClassVocabulary`: the cross-domain class vocabulary (one embedding per class *name*) with the
  tasks that learned each name, and the model's `class_scorer` at evaluation: a learned class is
  scored with the image feature of the task(s) that learned it (max over them, `get_vis_logits`), a
  class never learned with the frozen CLS feature against the frozen text tower's prompt
  ensemble, i.e. exactly zero-shot CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


def prompt_attention_mask(n_tasks: int, per_task: int, n_tokens: int, device=None) -> Tensor:
    """Additive (n_tokens x n_tokens) mask: rows are queries, the first n_tasks·per_task columns prompts.

    No query sees a prompt column, except that the prompt rows of task j see the prompts of tasks <= j."""
    k = n_tasks * per_task
    mask = torch.zeros(n_tokens, n_tokens, device=device)
    mask[:, :k] = float("-inf")
    for i in range(n_tasks):
        mask[i * per_task : k, i * per_task : (i + 1) * per_task] = 0.0
    return mask


class PromptedVisionTransformer(VisionTransformer):
    """open_clip's `VisionTransformer` (class swapped in place) with CoLeCLIP's task prompts."""

    task_prompts: nn.ParameterList
    prompts_per_task: int
    view_tasks: int | None

    def forward(self, x: Tensor):
        if self.view_tasks is None:
            return super().forward(x)
        return self.views(x, self.view_tasks)

    def views(self, images: Tensor, n_tasks: int) -> Tensor:
        """(B, n_tasks + 1, D): the task views v_0..v_{n-1} and the CLS feature c (not normalised)."""
        x = self.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.patch_dropout(x)
        k = n_tasks * self.prompts_per_task
        if k:
            prompts = torch.cat([self.task_prompts[j] for j in range(n_tasks)]).to(x.dtype)
            x = torch.cat([prompts.unsqueeze(0).expand(x.shape[0], -1, -1), x], dim=1)
        x = self.ln_pre(x)
        mask = prompt_attention_mask(n_tasks, self.prompts_per_task, x.shape[1], x.device).to(x.dtype) if k else None
        x = self.transformer(x, attn_mask=mask)
        tokens = self.ln_post(x[:, : k + 1])
        if self.proj is not None:
            tokens = tokens @ self.proj
        c = tokens[:, k:]
        if not k:
            return c
        p = tokens[:, :k].reshape(tokens.shape[0], n_tasks, self.prompts_per_task, -1).mean(dim=2)
        return torch.cat([(p + c) / 2, c], dim=1)


def add_task_prompts(visual: nn.Module, n_tasks: int, per_task: int) -> None:
    """Swap `visual` to `PromptedVisionTransformer` with prompts U(0, 0.01) (the authors' init)."""
    if type(visual) is not VisionTransformer:
        raise TypeError(
            f"CoLeCLIP's task prompts plug into open_clip's VisionTransformer; this model's image tower is "
            f"{type(visual).__name__}. Use a ViT CLIP (ViT-B-16, ToyCLIP)"
        )
    if visual.attn_pool is not None or visual.final_ln_after_pool or visual.pool_type != "tok":
        raise TypeError("CoLeCLIP reads the CLS token: the image tower must pool by token (pool_type='tok')")
    width = visual.class_embedding.shape[0]
    device = visual.class_embedding.device
    visual.__class__ = PromptedVisionTransformer
    visual.prompts_per_task, visual.view_tasks = int(per_task), None
    visual.task_prompts = nn.ParameterList(
        nn.Parameter(torch.rand(per_task, width, device=device) * 0.01, requires_grad=False) for _ in range(n_tasks)
    )


def owner_logits(views: Tensor, weights: Tensor, owners: Tensor) -> Tensor:
    """(B, C): for class c, max over the views r with owners[c, r] of <views[:, r], weights[c]>;
    -inf where c has no owner. views (B, R, D), weights (C, D), owners (C, R) bool."""
    sims = torch.einsum("brd,cd->bcr", views, weights)
    sims = sims.masked_fill(~owners[: sims.shape[1], : sims.shape[2]].unsqueeze(0), float("-inf"))
    return sims.max(dim=2).values


class ClassVocabulary(nn.Module):
    """One embedding per class name, which tasks learned it, and how many tasks were learned."""

    def __init__(self, names: Sequence[str], n_tasks: int, dim: int) -> None:
        super().__init__()
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.register_buffer("vocab", torch.zeros(len(self.names), dim))
        self.register_buffer("owners", torch.zeros(len(self.names), n_tasks, dtype=torch.bool))
        self.register_buffer("tasks_learned", torch.zeros((), dtype=torch.long))

    def rows(self, names: Sequence[str]) -> list[int]:
        return [self.index[n] for n in names]

    def learned(self, name: str) -> bool:
        return name in self.index and bool(self.owners[self.index[name]].any())

    @torch.no_grad()
    def image_features(self, model: nn.Module, batches, batch_size: int) -> tuple[Tensor, Tensor | None]:
        """Normalised views (N, tasks learned + 1, D) of every image and the labels (eval mode)."""
        if isinstance(batches, Dataset):
            batches = DataLoader(batches, batch_size=batch_size, shuffle=False)
        elif torch.is_tensor(batches):
            batches = batches.split(batch_size)
        visual, device = model.visual, next(model.parameters()).device
        was_training, before = model.training, visual.view_tasks
        model.eval()
        visual.view_tasks = int(self.tasks_learned)
        feats, labels = [], []
        try:
            for batch in batches:
                x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                feats.append(F.normalize(model.encode_image(x.to(device)).float(), dim=-1).cpu())
                if y is not None and torch.is_tensor(y):
                    labels.append(y.cpu())
        finally:
            visual.view_tasks = before
            model.train(was_training)
        return torch.cat(feats), (torch.cat(labels) if labels else None)

    def logits(self, model, features: Tensor, names: Sequence[str], templates, classifier) -> Tensor:
        """Learned classes: the vocabulary against their owners' views; others: zero-shot on the CLS view."""
        out = features.new_empty(len(features), len(names))
        learned = [c for c, n in enumerate(names) if self.learned(n)]
        taken = set(learned)
        fresh = [c for c in range(len(names)) if c not in taken]
        if fresh:
            out[:, fresh] = features[:, -1] @ classifier([names[c] for c in fresh], templates)
        if learned:
            rows = self.rows([names[c] for c in learned])
            weights = F.normalize(self.vocab[rows].float(), dim=-1).to(features.device)
            out[:, learned] = owner_logits(features[:, :-1], weights, self.owners[rows].to(features.device))
        return out


__all__ = [
    "ClassVocabulary",
    "PromptedVisionTransformer",
    "add_task_prompts",
    "owner_logits",
    "prompt_attention_mask",
]
