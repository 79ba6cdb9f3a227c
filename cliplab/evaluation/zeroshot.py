"""Zero-shot classification: the classifier is the normalised mean of template embeddings per class.

The classifier comes from `open_clip.build_zero_shot_classifier` (prompt ensembling as in CLIP and
MTIL evaluation). Building it needs one text-encoder pass per (class, template); evaluating many
checkpoints of a run, or many probes per checkpoint, would redo that needlessly, so classifiers
are cached per (text-tower weights, class list, templates). Image-only training leaves the text
tower unchanged and therefore reuses the cached classifier.

The weights enter the key as a content hash (`text_tower_fingerprint`), memoised per module: the
hash is recomputed only when one of the text-tower tensors changed since the last call, as told by
its identity, storage, shape and in-place version counter (`Tensor._version`, bumped by optimizer
steps, `load_state_dict` and in-place writes through the tensor or a `detach()`ed alias), or when
any `torch.optim` optimizer stepped (fused optimizers do not bump version counters). Writes that
bypass the version counter -- through `.data`, or through a NumPy view of the storage -- are not
seen: after such a write call `clear_classifier_cache()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import open_clip
import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import Dataset

from cliplab.evaluation.embed import image_features
from cliplab.evaluation.routing import (
    image_routes,
    input_router,
    on_route,
    route_tag,
    routed_image_features,
    routed_logits,
)

_TEXT_PREFIXES = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text")
_CACHE: OrderedDict[tuple, Tensor] = OrderedDict()
_CACHE_SIZE = 64


# Every step of every torch.optim optimizer counts here: a fused optimizer (AdamW(fused=True))
# updates parameters without bumping their version counters.
_OPTIMIZER_STEPS = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _OPTIMIZER_STEPS
    _OPTIMIZER_STEPS += 1


register_optimizer_step_post_hook(_count_optimizer_step)

# module -> (stamp of its text-tower tensors when last hashed, weak references to them, fingerprint)
_FINGERPRINTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, list, str]] = weakref.WeakKeyDictionary()


def _text_tensors(model: torch.nn.Module) -> list[tuple[str, Tensor]]:
    return [(n, t) for n, t in model.state_dict(keep_vars=True).items() if n.startswith(_TEXT_PREFIXES)]


def _stamp(tensors: list[tuple[str, Tensor]]) -> tuple | None:
    """What changes whenever a tensor's values can have changed (None: cannot tell, e.g. inference tensors)."""
    try:
        return (_OPTIMIZER_STEPS,) + tuple(
            (n, t._version, t.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, str(t.device))
            for n, t in tensors
        )
    except RuntimeError:
        return None


def _content_hash(tensors: list[tuple[str, Tensor]]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy())
    return digest.hexdigest()


def text_tower_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the text-tower weights: equal weights give equal fingerprints.

    Memoised per module (see the module docstring): a call on unchanged weights costs a walk over
    the state dict, not a hash of the weights.
    """
    tensors = _text_tensors(model)
    stamp = _stamp(tensors)
    memo = _FINGERPRINTS.get(model) if stamp is not None else None
    if memo is not None and memo[0] == stamp and all(ref() is t for ref, (_, t) in zip(memo[1], tensors)):
        return memo[2]
    fingerprint = _content_hash(tensors)
    if stamp is not None:
        with contextlib.suppress(TypeError):  # a module that cannot be weakly referenced: no memo
            _FINGERPRINTS[model] = (stamp, [weakref.ref(t) for _, t in tensors], fingerprint)
    return fingerprint


@torch.no_grad()
def zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable],
    device: str | torch.device | None = None,
    use_cache: bool = True,
) -> Tensor:
    """(embed_dim, n_classes) classifier; cached per (text weights, classes, templates, route).

    A model with routes (`cliplab.evaluation.routing`) encodes the prompts on its current route."""
    device = device or next(model.parameters()).device
    key = (
        (text_tower_fingerprint(model), tuple(classnames), tuple(map(str, templates)), str(device), route_tag(model))
        if use_cache
        else None
    )
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
    """Forget every cached classifier and memoised fingerprint (tests, to free memory, or after
    writing weights in a way that bypasses version counters, e.g. through `.data`)."""
    _CACHE.clear()
    _FINGERPRINTS.clear()


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
    """Zero-shot top-k accuracy (percent) of `model` on labelled `data`.

    A model with an input router (`cliplab.evaluation.routing`) classifies each image on its route;
    a model with a `class_scorer` (CoLeCLIP's vocabulary) scores classes its own way."""
    scorer = getattr(model, "class_scorer", None)
    if scorer is not None:
        if hasattr(scorer, "image_features"):
            feats, labels = scorer.image_features(model, data, batch_size)
        else:
            feats, labels = image_features(model, data, batch_size, device)
        if labels is None:
            raise ValueError("zero_shot_accuracy needs data yielding (image, label) pairs")

        def classify(names, prompts):
            return zero_shot_classifier(model, tokenizer, list(names), prompts, device=device).cpu()

        return accuracy_from_logits(scorer.logits(model, feats, list(classnames), templates, classify), labels, topk)
    if input_router(model) is not None and not isinstance(data, (Dataset, Tensor, list, tuple)):
        data = list(data)  # routed models read the images twice (the route, then the features)
    routes = image_routes(model, data, batch_size, device)
    if routes is None:
        feats, labels = image_features(model, data, batch_size, device)
    else:
        feats, labels = routed_image_features(model, data, routes, batch_size, device)
    if labels is None:
        raise ValueError("zero_shot_accuracy needs data yielding (image, label) pairs")

    def classifier_of(route):
        with on_route(model, route):
            return zero_shot_classifier(model, tokenizer, classnames, templates, device=device).cpu()

    return accuracy_from_logits(routed_logits(feats, routes, classifier_of), labels, topk)
