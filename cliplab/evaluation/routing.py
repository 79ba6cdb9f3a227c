"""Models that decide per input which path they take: every evaluation goes through that decision.

A method may give the model (see `cliplab.methods.base`):

- `model.route_state`: the route its routed modules take, with `current() -> int` and
  `use(route)` (a context manager). Route -1 (`FROZEN_ROUTE`) bypasses every routed module: the
  pretrained model. Without an input router the model takes its current route for everything.
- `model.input_router`: a module that chooses a route per image, `routes_of(model, batches) ->
  LongTensor` (one route per image of the ordered batches), e.g. MoE-Adapters' DDAS.

A route applies to *both* towers, so text features depend on it: a classifier or a caption
embedding is computed per route, and an image is scored against those of its own route. This
module holds the pieces the evaluator, `zero_shot_accuracy` and the reports share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from cliplab.evaluation.embed import _batches, _model_device

FROZEN_ROUTE = -1

__all__ = [
    "FROZEN_ROUTE",
    "forced_route",
    "image_routes",
    "input_router",
    "on_route",
    "route_shares",
    "route_tag",
    "routed_image_features",
    "routed_logits",
]


def input_router(model: nn.Module):
    """The model's per-input router, or None."""
    return getattr(model, "input_router", None)


def route_tag(model: nn.Module) -> int | None:
    """The route the model takes right now (None for a model without routes): part of cache keys."""
    state = getattr(model, "route_state", None)
    return None if state is None else int(state.current())


@contextlib.contextmanager
def on_route(model: nn.Module, route: int | None) -> Iterator[None]:
    """Both towers of `model` take `route` inside the block (no-op for None or a model without routes)."""
    state = getattr(model, "route_state", None)
    if state is None or route is None:
        yield
        return
    with state.use(int(route)):
        yield


class _FixedRouter(nn.Module):
    """An input router that sends every image to one route (see `forced_route`)."""

    def __init__(self, route: int) -> None:
        super().__init__()
        self.route = int(route)

    def routes_of(self, model: nn.Module, batches) -> Tensor:
        counts = [len(images) for images in batches]
        return torch.full((sum(counts),), self.route, dtype=torch.long)


@contextlib.contextmanager
def forced_route(model: nn.Module, route: int) -> Iterator[None]:
    """Every input takes `route` inside the block, in place of the model's input router.

    A diagnostic oracle: with task j's test images forced onto task j's router, what the method
    learned is measured apart from the router's decision (MoE-Adapters' DDAS is not told the task)."""
    router = input_router(model)
    if router is None:
        raise ValueError("the model has no input router to stand in for (only routed models, e.g. moe_adapters)")
    model.input_router = _FixedRouter(route)
    try:
        yield
    finally:
        model.input_router = router


def _images(batch) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def image_routes(model: nn.Module, images, batch_size: int = 256, device=None) -> Tensor | None:
    """The route of every image of `images` (a tensor, a Dataset or an iterable of batches, in
    order), as the model's input router decides; None when the model has no input router."""
    router = input_router(model)
    if router is None:
        return None
    device = _model_device(model, device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            routes = router.routes_of(model, (_images(b).to(device) for b in _batches(images, batch_size)))
    finally:
        model.train(was_training)
    return routes.cpu().long()


def routed_image_features(
    model: nn.Module, images, routes: Tensor, batch_size: int = 256, device=None
) -> tuple[Tensor, Tensor | None]:
    """`image_features` where image i is encoded on route `routes[i]` (one pass; a batch holding
    several routes is split by route)."""
    device = _model_device(model, device)
    was_training = model.training
    model.eval()
    feats, labels, offset = [], [], 0
    try:
        with torch.no_grad():
            for batch in _batches(images, batch_size):
                x = _images(batch)
                if isinstance(batch, (tuple, list)) and len(batch) > 1 and torch.is_tensor(batch[1]):
                    labels.append(batch[1].cpu())
                mine = routes[offset : offset + len(x)]
                offset += len(x)
                out: Tensor | None = None
                for route in mine.unique().tolist():
                    rows = mine == route
                    with on_route(model, route):
                        encoded = model.encode_image(x[rows].to(device), normalize=True).float().cpu()
                    if out is None:
                        out = encoded.new_empty(len(x), encoded.shape[1])
                    out[rows] = encoded
                feats.append(out)
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("nothing to encode: the input is empty")
    if offset != len(routes):
        raise ValueError(f"{len(routes)} routes for {offset} images")
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def routed_logits(features: Tensor, routes: Tensor | None, classifier_of: Callable[[int | None], Tensor]) -> Tensor:
    """features @ classifier, with each image scored against the classifier of its own route."""
    if routes is None:
        return features @ classifier_of(None)
    out: Tensor | None = None
    for route in routes.unique().tolist():
        rows = routes == route
        logits = features[rows] @ classifier_of(route)
        if out is None:
            out = logits.new_empty(len(features), logits.shape[1])
        out[rows] = logits
    assert out is not None
    return out


def route_shares(routes: Tensor | None) -> dict[str, float] | None:
    """{"route": share of images} (None when nothing was routed); route "-1" is the frozen model."""
    if routes is None or len(routes) == 0:
        return None
    values, counts = routes.unique(return_counts=True)
    return {str(int(v)): float(c) / len(routes) for v, c in zip(values, counts)}
