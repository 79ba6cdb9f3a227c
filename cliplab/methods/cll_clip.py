"""CLL-CLIP (Yang et al., AAAI 2024): teach an English CLIP new languages by training token embeddings.

Per language (one task), following the authors' code (yangbang18/CLFM, `projects/cll_clip/`):

- **Expandable embeddings.** The language's words get new token ids (the scenario's expanded
  tokenizer, `ctx.tokenizer.vocab_size_after`), and the token-embedding matrix grows by as many
  rows (`clfm/models/AdapterEncoder.py`). Only that matrix is trained (old and new rows alike),
  plus the learnable temperature of the cross-modal loss; the rest of CLIP is frozen
  (`freeze_model` + `train_word_embs`).
- **Objectives** (`clfm/losses/CLLoss.py`, `methods.yaml`): cross-lingual, the MSE between the
  student's *unnormalised* text embedding of the new-language caption and the frozen pretrained
  model's embedding of its parallel English caption (weight 1.0); cross-modal, the symmetric
  InfoNCE between the student's caption embeddings and the (frozen) image embeddings, every
  caption of the same image a positive, temperature learnable from 0.07 and clamped to
  [0.001, 0.5] (weight 0.01). These replace the protocol's contrastive objective.
- **TEIR** (`methods.yaml` TEIR; `EmbeddingWrapper.py`, `clfm/optimizers/AdamW.py`): new rows drawn
  from N(μ, σ²) with μ, σ the *scalar* mean and std of the whole current matrix (plain CLL-CLIP:
  N(0, 0.02²)); and a per-row scale a_i = c_i / f_i, with c_i = 1 if token i occurs in the task's
  new-language captions and f_i the number of tasks that used it (1 to start, +1 for CLIP's own
  tokens at the first expansion, + the task's use at its end), special tokens 0. The scale
  multiplies each row's gradient before Adam's moments (after gradient clipping) and its decoupled
  weight decay, so rows of absent tokens neither move nor shrink. Without TEIR, AdamW decays every
  row at every step, as the authors' baseline does.

- **Best epoch** (`run_cl.sh --do_evaluation`, `train.py`, `Framework._eval_during_training`):
  after every epoch the text→image and image→text R@1/5/10 on the language's *validation*
  captions are averaged (`r_mean`); the task ends with the token embeddings of the best epoch
  (a later epoch must be strictly better), and the next language starts from them.

Deviations (docs/cll_clip.md): words instead of per-language BPE merges; the teacher's image
features are the student's own frozen image tower run on the batch, not precomputed; ToyCLIP's
learning rate and step budget (scenario defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cliplab.methods.base import ExtraInputs, Method, MethodOptions, TaskContext

TEMPERATURE_RANGE = (0.001, 0.5)  # [CLLoss.py: clamped before every use]
_REGULARISERS = ("grad_decay", "grad", "decay", "none")


@dataclass
class CLLOptions(MethodOptions):
    teir: bool = True  # [methods.yaml CLL_CLIP_with_TEIR]; False = plain CLL_CLIP
    init: str = "auto"  # new rows: "teir" (matrix's scalar mean/std) | "normal" (N(0, new_token_std²)); auto: by teir
    regularize: str = "auto"  # grad_decay | grad | decay | none; auto: grad_decay with TEIR, none without
    new_token_std: float = 0.02  # [methods.yaml CLL_CLIP: new_vocab_mean_std [0, 0.02]]
    expand_vocabulary: bool = True  # [dynamic_vocab]; False: the language's words stay BPE pieces
    cross_lingual_weight: float = 1.0  # MSE to the teacher's English embedding [methods.yaml]
    cross_modal_weight: float = 0.01  # contrastive to the image embeddings [methods.yaml]
    temperature: float = 0.07  # initial learnable temperature of the cross-modal term [CLLoss.py]
    select_epoch: bool = True  # keep the epoch with the best validation r_mean [run_cl.sh --do_evaluation]


class _Indices(Dataset):
    """Item k is (empty tensor, k): batched with the task's own sampler it names the batch's items."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        return torch.zeros(0), k


def teir_rows(matrix: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """`n` new rows from N(μ, σ²), μ and σ one scalar each over the whole current matrix [TEIR]."""
    mean, std = matrix.float().mean(), matrix.float().std()
    rows = torch.randn(n, matrix.shape[1], generator=generator) * std + mean
    return rows.to(matrix.dtype)


def teir_scale(frequencies: Tensor, current: Tensor, special_ids: list[int]) -> Tensor:
    """a_i = c_i / f_i (0 for special tokens): the per-row gradient and weight-decay scale of TEIR."""
    scale = current.float() / frequencies.float()
    scale[special_ids] = 0.0
    return scale


def multi_positive_infonce(texts: Tensor, images: Tensor, temperature: Tensor, groups: Tensor) -> Tensor:
    """Symmetric InfoNCE on normalised features, every pair of a group a positive (soft targets
    uniform over the positives), the mean of both directions [CLLoss.py cross-modal term]."""
    logits = texts @ images.T / temperature
    truth = (groups[:, None] == groups[None, :]).float()
    truth = truth / truth.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, truth) + F.cross_entropy(logits.T, truth))


def recall_mean(images: Tensor, texts: Tensor, text_image_index: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> float:
    """The mean of text→image and image→text R@k over `ks`, in percent (the authors' `r_mean`).

    `images` and `texts` are normalised features; caption j describes image `text_image_index[j]`.
    An image is retrieved at k when any of its captions ranks within the first k.
    """
    similarity = texts @ images.T  # captions x images
    index = text_image_index.to(similarity.device)
    own = similarity.gather(1, index[:, None])
    text_rank = (similarity > own).sum(1)  # images scored above the caption's own image
    caption_of = torch.zeros(similarity.shape, dtype=torch.bool, device=similarity.device)
    caption_of[torch.arange(len(index), device=index.device), index] = True
    best_own = similarity.masked_fill(~caption_of, -math.inf).max(0).values  # per image: its best caption
    image_rank = (best_own[:, None] < similarity.T).sum(1)  # captions scored above each image's best own one
    recalls = [100.0 * (rank < k).float().mean().item() for rank in (text_rank, image_rank) for k in ks]
    return sum(recalls) / len(recalls)


def epoch_ends(n_items: int, batch_size: int, steps: int) -> set[int]:
    """Steps (1-based) at which an epoch over `n_items` ends, and the task's last step."""
    per_epoch = n_items / batch_size
    ends = {math.ceil(e * per_epoch) for e in range(1, math.ceil(steps / per_epoch) + 1)}
    return {step for step in ends if step < steps} | {steps}


def grow_embedding(model: nn.Module, new_rows: Tensor) -> None:
    """Append `new_rows` to `model.token_embedding`, keeping every existing row bit for bit."""
    old = model.token_embedding.weight
    grown = nn.Embedding(old.shape[0] + len(new_rows), old.shape[1], device=old.device, dtype=old.dtype)
    with torch.no_grad():
        grown.weight.copy_(torch.cat([old.detach(), new_rows.to(old.device, old.dtype)]))
    model.token_embedding = grown


class CLLCLIP(Method):
    """Continual language learning by training token embeddings only (see the module docstring)."""

    name = "cll_clip"
    objectives = ("contrastive",)
    replaces_objective = True
    persists_across_tasks = True  # the token frequencies of TEIR
    Options = CLLOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        opts = self.options
        self.init = ("teir" if opts.teir else "normal") if opts.init == "auto" else opts.init
        self.regularize = ("grad_decay" if opts.teir else "none") if opts.regularize == "auto" else opts.regularize
        if self.init not in ("teir", "normal"):
            raise ValueError(f"cll_clip init must be 'auto', 'teir' or 'normal', got {opts.init!r}")
        if self.regularize not in _REGULARISERS:
            raise ValueError(f"cll_clip regularize must be 'auto' or one of {_REGULARISERS}, got {opts.regularize!r}")
        self.frequencies: Tensor | None = None
        self.best: tuple[float, Tensor] | None = None  # (validation r_mean, token embeddings) of the best epoch
        self.temperature = nn.Parameter(torch.tensor(float(opts.temperature)))

    # --- task set-up ---------------------------------------------------------------------------

    def begin_task(self, ctx: TaskContext) -> None:
        data = ctx.train_data
        if not hasattr(data, "english") or not hasattr(data, "captions"):
            raise ValueError(
                f"cll_clip learns a language from captions with parallel English ones; the training data of "
                f"task {ctx.task.name!r} has none (use a language_continual scenario such as toy-languages)"
            )
        model = ctx.model
        if self.frequencies is None:
            self.frequencies = torch.ones(model.token_embedding.num_embeddings)
        if self.options.expand_vocabulary:
            self._expand(ctx)
        self.teacher_english = self._teacher_english(ctx, data.english)
        self.groups = torch.as_tensor(getattr(data, "image_index", range(len(data))))
        current = torch.zeros(model.token_embedding.num_embeddings)
        current[sorted(_token_ids(ctx.tokenizer, data.captions))] = 1.0
        self.current = current
        specials = [ctx.tokenizer.sot_token_id, ctx.tokenizer.eot_token_id]
        self.scale = teir_scale(self.frequencies, current, specials).to(ctx.device)
        with torch.no_grad():
            self.temperature.fill_(self.options.temperature)  # a fresh loss module per language [train.py]
        self.temperature.data = self.temperature.data.to(ctx.device)
        self.index_stream = ctx.batches(_Indices(len(data)), ctx.config.batch_size, ctx.seed)
        self.epoch_ends = epoch_ends(len(data), ctx.config.batch_size, ctx.steps)
        self.best = None

    def _expand(self, ctx: TaskContext) -> None:
        model, tokenizer = ctx.model, ctx.tokenizer
        if not hasattr(tokenizer, "vocab_size_after"):
            raise ValueError(
                "cll_clip's expandable vocabulary needs the scenario's expanded tokenizer (toy-languages "
                "provides one); or set method.expand_vocabulary=false to train the existing BPE rows"
            )
        rows, target = model.token_embedding.num_embeddings, tokenizer.vocab_size_after(ctx.task_index)
        if rows >= target:
            return
        if rows == tokenizer.vocab_size:  # first expansion: CLIP's own tokens count English [EmbeddingWrapper]
            self.frequencies += 1
        generator = torch.Generator().manual_seed(ctx.seed)
        weight = model.token_embedding.weight.detach().cpu()
        if self.init == "teir":
            new = teir_rows(weight, target - rows, generator)
        else:
            new = torch.randn(target - rows, weight.shape[1], generator=generator) * self.options.new_token_std
        grow_embedding(model, new)
        if getattr(model, "text_pool_type", "eos") == "argmax":  # new ids exceed the end-of-text id
            model.text_pool_type, model.text_eos_id = "eos", tokenizer.eot_token_id
        self.frequencies = torch.cat([self.frequencies, torch.ones(target - rows)])

    @torch.no_grad()
    def _teacher_english(self, ctx: TaskContext, english: list[str]) -> Tensor:
        """The pretrained model's unnormalised embeddings of the parallel English captions [precomputed
        by the authors' prepare_text_feats.py]."""
        teacher, tokenizer = ctx.initial_model, getattr(ctx.tokenizer, "base", ctx.tokenizer)
        size = ctx.config.eval_batch_size
        parts = [
            teacher.encode_text(tokenizer(english[i : i + size]).to(ctx.device)).float()
            for i in range(0, len(english), size)
        ]
        return torch.cat(parts)

    def optimizer_groups(self, ctx: TaskContext, groups: list[dict]) -> list[dict]:
        """Only the token-embedding matrix (and the temperature) train; TEIR decays rows itself."""
        ctx.model.requires_grad_(False)
        embedding = ctx.model.token_embedding.weight
        embedding.requires_grad_(True)
        decay = 0.0 if "decay" in self.regularize else ctx.config.weight_decay
        return [{"params": [embedding], "weight_decay": decay}, {"params": [self.temperature], "weight_decay": 0.0}]

    # --- every step ----------------------------------------------------------------------------

    def extra_inputs(self, ctx: TaskContext, step: int) -> ExtraInputs:
        _, self.batch_items = next(self.index_stream)
        self.micro = 0
        return ExtraInputs()

    def losses(self, ctx: TaskContext, out) -> dict[str, Tensor]:
        n, accum = len(self.batch_items), ctx.config.grad_accum
        items = self.batch_items[self.micro * n // accum : (self.micro + 1) * n // accum]
        self.micro += 1
        with torch.no_grad():
            self.temperature.clamp_(*TEMPERATURE_RANGE)
        target = self.teacher_english[items.to(self.teacher_english.device)]
        cross_lingual = F.mse_loss(out.raw_texts.float(), target)
        groups = self.groups[items].to(out.class_texts.device)
        cross_modal = multi_positive_infonce(out.class_texts.float(), out.ce_images.float(), self.temperature, groups)
        return {
            "cross_lingual": self.options.cross_lingual_weight * cross_lingual,
            "cross_modal": self.options.cross_modal_weight * cross_modal,
        }

    @torch.no_grad()
    def before_step(self, ctx: TaskContext, lr: float) -> None:
        """TEIR's AdamW: scale each row's gradient (before the moments) and its decoupled decay by a_i."""
        weight = ctx.model.token_embedding.weight
        if "grad" in self.regularize and weight.grad is not None:
            weight.grad.mul_(self.scale[:, None].to(weight.grad.dtype))
        if "decay" in self.regularize:
            weight.mul_(1.0 - lr * ctx.config.weight_decay * self.scale[:, None].to(weight.dtype))

    def after_step(self, ctx: TaskContext, step: int) -> None:
        """At an epoch's end, score the validation captions; keep the embeddings on a strict improvement."""
        if not self.options.select_epoch or step not in self.epoch_ends:
            return
        validation = getattr(ctx.task, "validation", None)
        if validation is None:
            raise ValueError(
                f"cll_clip keeps its best epoch on the language's validation captions, and task {ctx.task.name!r} "
                "has none; use a language_continual scenario with validation sets (toy-languages), or set "
                "method.select_epoch=false to keep the last step"
            )
        score = self._validation_score(ctx, validation)
        if self.best is None or score > self.best[0]:  # [Framework._eval_during_training: strict >]
            self.best = (score, ctx.model.token_embedding.weight.detach().clone())

    @torch.no_grad()
    def _validation_score(self, ctx: TaskContext, validation) -> float:
        images, _ = ctx.encode_images(validation.data(ctx.eval_transform))
        model, size = ctx.model, ctx.config.eval_batch_size
        was_training = model.training
        model.eval()
        texts = torch.cat(
            [
                model.encode_text(ctx.tokenizer(validation.captions[i : i + size]).to(ctx.device), normalize=True)
                for i in range(0, len(validation.captions), size)
            ]
        )
        model.train(was_training)
        return recall_mean(images.to(texts.device).float(), texts.float(), validation.text_image_index)

    def end_task(self, ctx: TaskContext) -> None:
        """Restore the best epoch's embeddings; f_i += 1 for every token the task's captions used
        [EmbeddingWrapper, at save time]."""
        if self.best is not None:
            with torch.no_grad():
                ctx.model.token_embedding.weight.copy_(self.best[1])
            self.best = None
        self.frequencies = self.frequencies + self.current

    # --- checkpoints ---------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, Tensor]:
        if self.frequencies is None:
            return {}
        tensors = {
            "token_frequencies": self.frequencies.clone(),
            "temperature": self.temperature.detach().reshape(1).cpu(),
        }
        if self.best is not None:  # mid-task only: end_task clears it
            tensors["best_score"] = torch.tensor([self.best[0]], dtype=torch.float64)
            tensors["best_embedding"] = self.best[1].cpu()
        return tensors

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "token_frequencies" in tensors:
            self.frequencies = tensors["token_frequencies"].clone().float()
        if "temperature" in tensors:
            with torch.no_grad():
                self.temperature.fill_(float(tensors["temperature"][0]))
        if "best_embedding" in tensors:
            self.best = (float(tensors["best_score"][0]), tensors["best_embedding"].clone())


def _token_ids(tokenizer, texts: list[str]) -> set[int]:
    """Ids the texts use, start/end/padding excluded (counted on the expanded vocabulary)."""
    if hasattr(tokenizer, "token_ids"):
        return tokenizer.token_ids(texts)
    tokens = tokenizer(texts)
    return set(tokens.unique().tolist()) - {0, tokenizer.sot_token_id, tokenizer.eot_token_id}


__all__ = [
    "CLLCLIP",
    "CLLOptions",
    "epoch_ends",
    "grow_embedding",
    "multi_positive_infonce",
    "recall_mean",
    "teir_rows",
    "teir_scale",
]
