"""CoLeCLIP (Li et al. 2024, "Open-Domain Continual Learning via Joint Task Prompt and Vocabulary
Learning", arXiv 2403.10245), following the authors' code (YukunLi99/CoLeCLIP, commit c6f8d34:
`method/CoLeCLIP.py`, `model/backbone/clip.py`, `model/pet/lora.py`, `configs/CoLeCLIP.yaml`, the
scripts under `script/CLIP-ViT-B-16/`); deviations in docs/online_open_domain.md.

Frozen CLIP plus, per task k:
- one image-side *task prompt* (1 token, `coleclip_modules.PromptedVisionTransformer`), kept for
  the whole run; the task's view of an image is v_k = (p_k + c) / 2;
- a text-side LoRA on the keys and values of every text block (rank 5, learnable scales), trained
  during the task and then *discarded*: what the text side learns survives only in
- the *class vocabulary*: one embedding per class name. A class new to the vocabulary starts at
  its zero-shot embedding (the domain's prompt ensemble, frozen text tower); a name learned in an
  earlier domain keeps its entry. Each step the classifier of the task's classes is
  e_c = normalise((normalise(vocab[c]) + t_c) / 2), t_c the LoRA text feature of the class's
  training prompt, and vocab[c] <- normalise(α·e_c + (1 − α)·normalise(vocab[c])) (momentum 0.1,
  every iteration, before the backward); a regulariser mean_c ||e_c − normalise(vocab_c at the
  task's start)|| (weight 1) keeps e near where it started.
- Loss, stage 1: ½ CE(s·c·Eᵀ) + ½ CE(s·v_k·Eᵀ) over the task's classes. Stage 2 (tasks after the
  first, from `stage_step` of the task's steps on): the classifier is extended with the earlier
  classes the task does not share (their vocabulary at the task's start); per earlier task j, a
  sample keeps j's classes as negatives only if its energy margin E_cur − E_j exceeds
  γ_j = max(0, 70 % quantile over the batch); samples already right in the extended space keep the
  local CE, the others take the CE over the kept negatives (sums over the batch / B).
- Inference needs no task identity: `ClassVocabulary.logits` scores a learned class with its
  owners' views (max over them) and any other class zero-shot with the CLS feature, so unseen
  domains keep CLIP's zero-shot behaviour exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliplab.methods.attention_lora import KVLoRAAttention, add_kv_lora
from cliplab.methods.base import ExtraInputs, Method, MethodOptions, TaskContext
from cliplab.methods.coleclip_modules import ClassVocabulary, add_task_prompts, owner_logits


@dataclass
class CoLeCLIPOptions(MethodOptions):
    prompts_per_task: int = 1  # [NUM_PROMPTS_PER_TASK: 1]
    text_pet: str = "lora"  # lora [configs/CoLeCLIP.yaml] | none (no text-side tuning)
    text_lora_rank: int = 5  # [PET rank 5]
    mom_coef: float = 0.1  # [MOM_COEF 0.1 in every script; defaults.py: 0.5]
    mem: bool = True  # momentum vocabulary [MEM True]; False: end-of-task average of zero-shot and start
    stage_step: float | None = 0.5  # stage 2 after this share of a task's steps [STAGE_STEP 0.5]; None: never
    percentage: float = 0.7  # quantile of the energy margins [PERCENTAGE 0.7]
    reg_weight: float = 1.0  # weight of the vocabulary regulariser [code: 1, no coefficient]

    def __post_init__(self) -> None:
        if self.prompts_per_task < 0:
            raise ValueError(f"prompts_per_task must be >= 0, got {self.prompts_per_task}")
        if self.text_pet not in ("lora", "none"):
            raise ValueError(f"text_pet must be 'lora' or 'none', got {self.text_pet!r}")
        if not 0.0 <= self.mom_coef <= 1.0 or not 0.0 <= self.percentage <= 1.0:
            raise ValueError(f"mom_coef and percentage must be in [0, 1], got {self.mom_coef}, {self.percentage}")
        if self.stage_step is not None and not 0.0 <= self.stage_step <= 1.0:
            raise ValueError(f"stage_step must be in [0, 1] or None, got {self.stage_step}")


def zero_shot_embeddings(model: nn.Module, tokenizer, names: list[str], templates) -> Tensor:
    """(C, D) normalised prompt-ensemble embeddings of `names` (open_clip's zero-shot classifier)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        weights = open_clip.build_zero_shot_classifier(model, tokenizer, names, templates, device=device)
    finally:
        model.train(was_training)
    return weights.T.float()


class CoLeCLIP(Method):
    """Task prompts + a momentum class vocabulary on a frozen CLIP; task-identity-free inference."""

    name = "coleclip"
    Options = CoLeCLIPOptions
    trains_backbone = False
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,  # [SOLVER.LR 1e-3, Adam]
        "weight_decay": 0.0,  # [config/defaults.py: 0.0]
        "lr_schedule": "constant",  # [SCHEDULE_UNIT none: LambdaLR factor 1]
        "warmup_steps": 0,
        "label_smoothing": 0.0,  # [plain F.cross_entropy]
    }

    # --- the modules ----------------------------------------------------------------------
    def model_extension(self, scenario: Any) -> dict[str, Any]:
        if scenario.protocol == "online":
            raise ValueError(
                "coleclip learns one domain's class list per task; the online protocol's segments mix "
                "classes of several tasks. Use sit (or er) on online scenarios"
            )
        return {"classes": [list(t.classnames) for t in scenario.tasks]}

    def extend_model(self, model: nn.Module, layout: dict[str, Any]) -> None:
        n_tasks = len(layout["classes"])
        names = list(dict.fromkeys(n for task in layout["classes"] for n in task))
        add_task_prompts(model.visual, n_tasks, self.options.prompts_per_task)
        if self.options.text_pet == "lora":
            for block in model.transformer.resblocks:
                add_kv_lora(block.attn, self.options.text_lora_rank)
        dim = model.text_projection.shape[1]
        model.class_scorer = ClassVocabulary(names, n_tasks, dim).to(model.text_projection.device)

    def _text_lora(self, model: nn.Module) -> list[KVLoRAAttention]:
        return [m for m in model.transformer.modules() if isinstance(m, KVLoRAAttention)]

    def trainable_parameters(self, ctx: TaskContext) -> list[nn.Parameter]:
        params = [] if self.options.prompts_per_task == 0 else [ctx.model.visual.task_prompts[ctx.task_index]]
        for attn in self._text_lora(ctx.model):
            params += [attn.lora_A_k, attn.lora_B_k, attn.lora_A_v, attn.lora_B_v, attn.lora_scale_k, attn.lora_scale_v]
        if not params:
            raise ValueError("coleclip with prompts_per_task=0 and text_pet=none trains nothing")
        return params

    # --- a task ---------------------------------------------------------------------------
    def begin_task(self, ctx: TaskContext) -> None:
        model, k = ctx.model, ctx.task_index
        vocab: ClassVocabulary = model.class_scorer
        for attn in self._text_lora(model):
            attn.reset_kv_lora()
            attn.lora_active = True
        names = list(ctx.task.classnames)
        self.rows = torch.tensor(vocab.rows(names), device=ctx.device)
        fresh = [n for n in names if not vocab.learned(n)]
        with torch.no_grad():
            if fresh:  # a name learned in an earlier domain keeps its entry
                vocab.vocab[vocab.rows(fresh)] = zero_shot_embeddings(model, ctx.tokenizer, fresh, ctx.task.templates)
            self.init_vocab = F.normalize(vocab.vocab[self.rows].clone(), dim=-1)
            previous = [n for n in vocab.names if vocab.learned(n) and n not in set(names)]
            self.previous_vocab = F.normalize(vocab.vocab[vocab.rows(previous)].clone(), dim=-1)
            self.previous_owners = vocab.owners[vocab.rows(previous)].clone()
            # the current classes' earlier owners and the current task (duplicates: max over both)
            self.current_owners = vocab.owners[self.rows].clone()
            self.current_owners[:, k] = True
        model.visual.view_tasks = k + 1
        self.steps, self.step = ctx.steps, 0

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        self.step = step
        return ExtraInputs()

    def stage(self, ctx: TaskContext) -> int:
        o = self.options
        if ctx.task_index == 0 or o.stage_step is None or len(self.previous_vocab) == 0:
            return 1
        return 2 if self.step + 1 > math.floor(o.stage_step * self.steps) else 1

    def classification_loss(self, ctx: TaskContext, out, labels: Tensor) -> dict[str, Tensor]:
        vocab: ClassVocabulary = ctx.model.class_scorer
        views, texts = out.ce_images.float(), out.class_texts.float()
        scale = ctx.model.logit_scale.exp().detach()
        current = F.normalize(vocab.vocab[self.rows], dim=-1) if self.options.mem else self.init_vocab
        classifier = F.normalize((current + texts) / 2, dim=-1)
        terms: dict[str, Tensor] = {}
        if self.options.mem:
            with torch.no_grad():  # the momentum update, every iteration, before the backward [process_vocab]
                a = self.options.mom_coef
                vocab.vocab[self.rows] = F.normalize(a * classifier.detach() + (1 - a) * current, dim=-1)
            terms["vocab_reg"] = self.options.reg_weight * (classifier - self.init_vocab).norm(dim=-1).mean()
        k = ctx.task_index
        if self.stage(ctx) == 1:
            cls_logits = scale * views[:, -1] @ classifier.T
            if self.options.prompts_per_task == 0:
                terms["ce"] = F.cross_entropy(cls_logits, labels)
            else:
                vis_logits = scale * views[:, k] @ classifier.T
                terms["ce"] = (F.cross_entropy(cls_logits, labels) + F.cross_entropy(vis_logits, labels)) / 2
        else:
            terms["ce"] = self._negative_selection(views, classifier, labels, scale, k)
        return terms

    def _negative_selection(self, views: Tensor, classifier: Tensor, labels: Tensor, scale: Tensor, k: int) -> Tensor:
        """Stage 2 (`stage_two_forward`): the extended class space with energy-selected negatives."""
        n_cur = len(classifier)
        extended = torch.cat([classifier, self.previous_vocab.to(classifier.dtype)])
        owners = torch.cat([self.current_owners, self.previous_owners])[:, : k + 1]
        cls_logits = scale * views[:, -1] @ extended.T
        vis_logits = (
            scale * owner_logits(views[:, :-1], extended, owners) if self.options.prompts_per_task else cls_logits
        )
        with torch.no_grad():
            mask = torch.zeros_like(vis_logits)
            current_energy = torch.logsumexp(vis_logits[:, :n_cur], dim=1) / scale
            for j in range(k):
                columns = n_cur + torch.nonzero(self.previous_owners[:, j]).flatten()
                if len(columns) == 0:
                    continue
                margin = current_energy - torch.logsumexp(vis_logits[:, columns], dim=1) / scale
                gamma = torch.clamp(torch.quantile(margin, self.options.percentage), min=0.0)
                unsuitable = margin <= gamma
                mask[unsuitable.nonzero().flatten()[:, None], columns[None, :]] = float("-inf")
            wrong = vis_logits[torch.arange(len(labels)), labels] < vis_logits.max(dim=1).values
        vis_logits, cls_logits = vis_logits + mask, cls_logits + mask
        loss = (
            F.cross_entropy(vis_logits[wrong], labels[wrong], reduction="sum")
            + F.cross_entropy(cls_logits[wrong], labels[wrong], reduction="sum")
            + F.cross_entropy(vis_logits[~wrong][:, :n_cur], labels[~wrong], reduction="sum")
            + F.cross_entropy(cls_logits[~wrong][:, :n_cur], labels[~wrong], reduction="sum")
        ) / 2
        return loss / len(labels)

    def end_task(self, ctx: TaskContext) -> None:
        model, k = ctx.model, ctx.task_index
        vocab: ClassVocabulary = model.class_scorer
        with torch.no_grad():
            if not self.options.mem:  # [MEM=False]: average of the tuned zero-shot embedding and the start
                tuned = zero_shot_embeddings(model, ctx.tokenizer, list(ctx.task.classnames), ctx.task.templates)
                vocab.vocab[self.rows] = F.normalize((F.normalize(tuned, dim=-1) + self.init_vocab) / 2, dim=-1)
            vocab.owners[self.rows, k] = True
            vocab.tasks_learned.fill_(k + 1)
        for attn in self._text_lora(model):  # discarded: the text tower is the frozen one again
            attn.lora_active = False
            with torch.no_grad():
                attn.lora_B_k.zero_()
                attn.lora_B_v.zero_()
        model.visual.view_tasks = None


__all__ = ["CoLeCLIP", "CoLeCLIPOptions", "zero_shot_embeddings"]
