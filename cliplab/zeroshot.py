"""Zero-shot classification: the classifier is the normalised mean of template embeddings per class.

The classifier comes from `open_clip.build_zero_shot_classifier` (prompt ensembling as in CLIP and
MTIL evaluation). Building it needs one text-encoder pass per (class, template); evaluating many
checkpoints of a run, or many probes per checkpoint, would redo that needlessly, so classifiers
are cached per (text-tower weights, class list, templates). Image-only training leaves the text
tower unchanged and therefore reuses the cached classifier.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Iterable, Sequence

import open_clip
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

_TEXT_PREFIXES = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text")
_CACHE: "OrderedDict[tuple, Tensor]" = OrderedDict()
_CACHE_SIZE = 64


def text_tower_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the text-tower weights: equal weights give equal fingerprints."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        if name.startswith(_TEXT_PREFIXES):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable],
    device: str | torch.device | None = None,
    use_cache: bool = True,
) -> Tensor:
    """(embed_dim, n_classes) classifier; cached per (text weights, classes, templates)."""
    device = device or next(model.parameters()).device
    key = (text_tower_fingerprint(model), tuple(classnames), tuple(map(str, templates)), str(device))
    if use_cache and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    was_training = model.training
    model.eval()
    weights = open_clip.build_zero_shot_classifier(
        model, tokenizer, classnames, templates, num_classes_per_batch=32, device=device
    )
    model.train(was_training)
    if use_cache:
        _CACHE[key] = weights
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return weights


def clear_classifier_cache() -> None:
    """Forget every cached classifier (tests, or to free memory)."""
    _CACHE.clear()


@torch.no_grad()
def image_features(
    model: torch.nn.Module, images: Dataset | Iterable | Tensor, batch_size: int = 256, device=None
) -> tuple[Tensor, Tensor | None]:
    """L2-normalised image features (and labels when the data yields them), in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = _batches(images, batch_size)
    feats, labels = [], []
    for batch in batches:
        x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        feats.append(model.encode_image(x.to(device), normalize=True).float().cpu())
        if y is not None and torch.is_tensor(y):
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def _batches(images, batch_size: int):
    if torch.is_tensor(images):
        return images.split(batch_size)
    if isinstance(images, Dataset):
        return DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=0)
    return images


def accuracy_from_logits(logits: Tensor, labels: Tensor, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent (k larger than the class count counts as the class count)."""
    out = {}
    for k in topk:
        k_eff = min(k, logits.shape[1])
        hits = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1)
        out[f"top{k}"] = 100.0 * hits.double().mean().item()
    return out


def zero_shot_accuracy(
    model: torch.nn.Module,
    tokenizer: Callable,
    data: Dataset | Iterable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable],
    topk: Sequence[int] = (1, 5),
    batch_size: int = 256,
    device=None,
) -> dict[str, float]:
    """Zero-shot top-k accuracy (percent) of `model` on labelled `data`."""
    classifier = zero_shot_classifier(model, tokenizer, classnames, templates, device=device)
    feats, labels = image_features(model, data, batch_size, device)
    if labels is None:
        raise ValueError("zero_shot_accuracy needs data yielding (image, label) pairs")
    return accuracy_from_logits(feats @ classifier.cpu(), labels, topk)
