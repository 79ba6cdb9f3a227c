"""ToyCLIP's pretraining recipe: contrastive learning on an endless stream of ToyWorld scenes.

Recipe (why each choice):
- Fresh scenes every step (batch `step` of a seeded stream), so there is no epoch and no
  overfitting to a finite image set; resuming only needs the step counter.
- Multi-positive contrastive loss: a short caption such as "a red shape" is true of every red
  image in the batch. Treating it as a negative for them (plain InfoNCE) would teach the model to
  separate images that the caption correctly describes, so the targets are spread uniformly over
  every true (image, caption) pair of the batch, in both directions.
- AdamW (β2 0.98, ε 1e-6, weight decay on matrices only), linear warm-up then cosine decay,
  learnable temperature clamped at 100 — the CLIP/open_clip defaults scaled to a small model.
- Held-out (shape, colour) combinations never appear, so zero-shot accuracy on them measures
  compositional generalisation. The monitoring probe is logged, never used to pick a checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cliplab.checkpoints import load_training_state, save_model, save_training_state
from cliplab.engine.optim import adamw, cosine_with_warmup
from cliplab.evaluation.zeroshot import accuracy_from_logits, zero_shot_classifier
from cliplab.io import write_json_atomic
from cliplab.models import TOYCLIP, TOYCLIP_CHECKPOINT, _register_toyclip, toyclip_config
from cliplab.toyworld import ToyWorld
from cliplab.toyworld.tasks import normalise_uint8, zero_shot_tasks
from cliplab.utils import seed_everything


@dataclass
class PretrainConfig:
    """Hyper-parameters of the ToyCLIP recipe (defaults = the shipped checkpoint's run)."""

    steps: int = 3600  # the shipped checkpoint records its recipe in its metadata (checked by a test)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    seed: int = 0
    eval_every: int = 250
    checkpoint_every: int = 100
    monitor_seed: int = 999
    monitor_size: int = 512


def multi_positive_clip_loss(image_features, text_features, logit_scale, truth: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss with soft targets spread over every true pair (truth[i, j])."""
    logits = logit_scale * image_features @ text_features.T
    truth = truth.float()
    i2t = F.cross_entropy(logits, truth / truth.sum(1, keepdim=True))
    t2i = F.cross_entropy(logits.T, truth.T / truth.T.sum(1, keepdim=True))
    return 0.5 * (i2t + t2i)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_gain_or_bias = param.ndim < 2 or "embedding" in name or "logit_scale" in name or ".ln" in name
        (no_decay if is_gain_or_bias else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class _Monitor:
    """Zero-shot accuracy of the model on a fixed held-out probe (logged during pretraining)."""

    def __init__(self, seed: int, size: int, tokenizer, mean, std) -> None:
        self.tasks = zero_shot_tasks(seed=seed, n=size)
        self.images = normalise_uint8(next(iter(self.tasks.values())).images, mean, std)
        self.tokenizer = tokenizer

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        model.eval()
        feats = model.encode_image(self.images, normalize=True)
        out = {}
        for name, task in self.tasks.items():
            clf = zero_shot_classifier(model, self.tokenizer, task.classnames, task.templates, use_cache=False)
            out[name] = round(accuracy_from_logits(feats @ clf, task.labels, (1,))["top1"], 2)
        model.train()
        return out


def pretrain_toyclip(
    config: PretrainConfig | None = None,
    out_path: str | Path = TOYCLIP_CHECKPOINT,
    work_dir: str | Path = "runs/pretrain-toy",
    progress: bool = True,
) -> torch.nn.Module:
    """Pretrain ToyCLIP from scratch (resuming from `work_dir` if a state is there) and save it."""
    config = config or PretrainConfig()
    work_dir = Path(work_dir)
    state_path, log_path = work_dir / "state.safetensors", work_dir / "log.json"
    seed_everything(config.seed)
    _register_toyclip()
    model = open_clip.create_model(TOYCLIP)
    tokenizer = open_clip.get_tokenizer(TOYCLIP)
    optimizer = adamw(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6, impl="for_loop"
    )
    scheduler = cosine_with_warmup(optimizer, config.warmup_steps, config.steps)
    start, log = 0, {"config": asdict(config), "history": [], "seconds": 0.0}
    if state_path.exists():
        counters, _ = load_training_state(state_path, model, optimizer, scheduler)
        start, log["history"], log["seconds"] = counters["step"], counters["history"], counters["seconds"]
    mean, std = model.visual.image_mean, model.visual.image_std
    monitor = _Monitor(config.monitor_seed, config.monitor_size, tokenizer, mean, std)
    world, token_cache = ToyWorld(image_size=model.visual.image_size[0]), {}
    model.train()
    bar = tqdm(
        range(start, config.steps), initial=start, total=config.steps, desc="pretrain ToyCLIP", disable=not progress
    )
    began = time.perf_counter() - log["seconds"]
    for step in bar:
        images, texts, truth = world.training_batch(config.seed, step, config.batch_size)
        tokens = _tokenize_cached(tokenizer, texts, token_cache)
        image_features = model.encode_image(normalise_uint8(images, mean, std), normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
        loss = multi_positive_clip_loss(image_features, text_features, model.logit_scale.exp(), torch.from_numpy(truth))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            log["history"].append({"step": done, "loss": round(loss.item(), 4), **monitor(model)})
            bar.set_postfix({k: v for k, v in log["history"][-1].items() if k != "step"})
        if done % config.checkpoint_every == 0 or done == config.steps:
            log["seconds"] = time.perf_counter() - began
            save_training_state(
                state_path,
                model,
                optimizer,
                scheduler,
                {"step": done, "history": log["history"], "seconds": log["seconds"]},
            )
    log["seconds"] = time.perf_counter() - began
    write_json_atomic(log_path, log)
    save_model(
        model,
        out_path,
        TOYCLIP,
        toyclip_config(),
        dtype=torch.float16,
        extra={"recipe": asdict(config), "seconds": log["seconds"]},
    )
    return model


def _tokenize_cached(tokenizer, texts: list[str], cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokenise captions, memoising each distinct caption (the caption space is finite)."""
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        for text, row in zip(missing, tokenizer(missing)):
            cache[text] = row
    return torch.stack([cache[t] for t in texts])
