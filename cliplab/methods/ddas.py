"""DDAS, MoE-Adapters' Distribution Discriminative Auto-Selector: per input, a task's router or frozen CLIP.

The authors' design (`mtil/src/models/AutoEncoder.py`, `evaluation.py`; /work/notes/moe_adapters.md §4)
is Expert Gate's: one autoencoder per task on frozen image features, trained on that task's
training images only; at test time the autoencoder with the lowest reconstruction error names the
router, and an input no autoencoder reconstructs under a threshold goes to the pretrained model.

What is kept: the autoencoder (Linear(F→100)+ReLU, Linear(100→F)+Sigmoid, MSE against the
sigmoid of the features), Adam(wd 1e-4) with the lr the code runs (0.01, ×0.1 every 10 epochs),
batch 64, 300 steps per task and 1,000 for the *reference* autoencoder (index 0, the authors'
TinyImageNet "zero-shot chooser": when it wins, the input goes to the frozen model), per-batch
selection by batch-mean error over consecutive test images (128), ties to the lowest index.

What differs (all documented in docs/design.md, "MoE-Adapters"):
- features: the authors use ImageNet AlexNet conv5 (before its ReLU) at 224 px. Its weights cannot
  be downloaded offline, and ToyWorld images are 32 px, so the default extractor is the frozen CLIP
  image tower itself (the route that bypasses every adapter): its last block's token map, the patch
  grid average-pooled to at most `grid`×`grid`, plus the class token. `features="alexnet"` with a
  local torchvision weights file runs the authors' extractor.
- threshold: 0.0655 belongs to AlexNet's feature scale; by default τ is calibrated on training
  data only: a held-out share of each task's *training* split, τ_t = 99th percentile of per-image
  errors of its own autoencoder, τ = (1 + margin) · max_t τ_t. A fixed `threshold` may be given.
- only trained autoencoders compete (the code's argmin also runs over random future ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cliplab.methods.adapters import FROZEN_ROUTE, RouteState, hold

FEATURES = ("clip", "alexnet")


class AutoEncoder(nn.Module):
    """Linear(F→h) + ReLU, Linear(h→F) + Sigmoid (`AutoEncoder.py` 13–31)."""

    def __init__(self, features: int, hidden: int = 100) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.decode = nn.Sequential(nn.Linear(hidden, features), nn.Sigmoid())

    def forward(self, s: Tensor) -> Tensor:
        return self.decode(self.encode(s))


def _alexnet_conv5(weights: str | None) -> nn.Module:
    """torchvision AlexNet `features[:-2]` (conv5 before its ReLU) with local ImageNet weights."""
    if not weights:
        raise ValueError(
            "ddas_features='alexnet' needs the torchvision ImageNet AlexNet weights as a local file: "
            "set method.alexnet_weights=/path/alexnet-owt-7be5be79.pth (nothing is downloaded), or "
            "use ddas_features='clip'"
        )
    from torchvision.models import alexnet

    net = alexnet()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    extractor = net.features[:-2]
    extractor.requires_grad_(False)
    return extractor.eval()


class AutoSelector(nn.Module):
    """The model's `input_router`: autoencoder slots, each naming a route (-1 for the reference slot)."""

    def __init__(
        self,
        routes: RouteState,
        slot_routes: Sequence[int],
        n_features: int,
        hidden: int = 100,
        features: str = "clip",
        grid: int = 4,
        batch_size: int = 128,
        granularity: str = "batch",
        alexnet_weights: str | None = None,
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"ddas_features must be one of {FEATURES}, got {features!r}")
        if granularity not in ("batch", "image"):
            raise ValueError(f"ddas_granularity must be 'batch' or 'image', got {granularity!r}")
        self.features_kind, self.grid, self.batch_size, self.granularity = features, grid, batch_size, granularity
        self.autoencoders = nn.ModuleList(AutoEncoder(n_features, hidden) for _ in slot_routes)
        self.register_buffer("slot_routes", torch.tensor(list(slot_routes), dtype=torch.long))
        self.register_buffer("trained", torch.zeros(len(slot_routes), dtype=torch.bool))
        self.register_buffer("slot_thresholds", torch.full((len(slot_routes),), math.nan))
        self.register_buffer("threshold", torch.tensor(math.inf))
        hold(self, "routes", routes)
        hold(self, "alexnet", _alexnet_conv5(alexnet_weights) if features == "alexnet" else None)

    # -- features ----------------------------------------------------------------------------

    @staticmethod
    def clip_feature_size(model: nn.Module, grid: int) -> int:
        """Length of the "clip" feature vector: (class token + pooled patch grid) × width."""
        visual = model.visual
        side = visual.grid_size[0] if hasattr(visual, "grid_size") else 1
        width = visual.transformer.resblocks[-1].ln_2.normalized_shape[0]
        return (1 + min(grid, side) ** 2) * width

    @staticmethod
    def alexnet_feature_size(image_size: int, weights: str | None) -> int:
        with torch.no_grad():
            return int(_alexnet_conv5(weights)(torch.zeros(1, 3, image_size, image_size)).numel())

    @torch.no_grad()
    def features(self, model: nn.Module, images: Tensor) -> Tensor:
        """s = sigmoid(features) of a batch of model-ready images (the frozen path of `model`)."""
        if self.features_kind == "alexnet":
            self.alexnet.to(images.device)
            return torch.sigmoid(self.alexnet(images).flatten(1).float())
        captured: list[Tensor] = []
        blocks = model.visual.transformer.resblocks
        handle = blocks[-1].register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            with self.routes.use(FROZEN_ROUTE):
                model.encode_image(images)
        finally:
            handle.remove()
        tokens = captured[-1].float()  # (B, 1 + patches, width), batch-first
        cls, patches = tokens[:, :1], tokens[:, 1:]
        side = math.isqrt(patches.shape[1])
        if side * side == patches.shape[1] and side > self.grid:
            grid = patches.transpose(1, 2).reshape(len(tokens), -1, side, side)
            patches = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)
        return torch.sigmoid(torch.cat([cls, patches], dim=1).flatten(1))

    @torch.no_grad()
    def errors(self, model: nn.Module, images: Tensor, slots: Sequence[int] | None = None) -> Tensor:
        """(B, len(slots)) per-image mean squared reconstruction error (default: the trained slots)."""
        s = self.features(model, images)
        slots = self.trained_slots() if slots is None else list(slots)
        columns = [((self.autoencoders[k](s) - s) ** 2).mean(1) for k in slots]
        return torch.stack(columns, 1) if columns else s.new_zeros(len(s), 0)

    def trained_slots(self) -> list[int]:
        return torch.nonzero(self.trained).flatten().tolist()

    # -- the decision ------------------------------------------------------------------------

    @torch.no_grad()
    def routes_of(self, model: nn.Module, batches: Iterable[Tensor]) -> Tensor:
        """A route per image of the (ordered) batches: per-batch of `batch_size` consecutive images
        by default (the authors' batch-mean error), or per image."""
        slots = self.trained_slots()
        errors = [self.errors(model, images, slots).cpu() for images in batches]
        if not errors:
            return torch.zeros(0, dtype=torch.long)
        errors = torch.cat(errors)
        if not slots:  # nothing trained yet: everything takes the pretrained model
            return torch.full((len(errors),), FROZEN_ROUTE, dtype=torch.long)
        if self.granularity == "batch":
            chunks = [chunk.mean(0, keepdim=True).expand_as(chunk) for chunk in errors.split(self.batch_size)]
            errors = torch.cat(chunks)
        best, winner = errors.min(1)  # the first minimum on ties: the lowest slot
        slot_routes = self.slot_routes.cpu()[torch.tensor(slots)]
        routes = slot_routes[winner]
        return torch.where(best > float(self.threshold), torch.full_like(routes, FROZEN_ROUTE), routes)

    def use(self, route: int):
        return self.routes.use(route)

    # -- training (called by the method at the end of a task) --------------------------------

    def train_slot(
        self,
        slot: int,
        model: nn.Module,
        data: Dataset,
        steps: int,
        batch_size: int = 64,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
        seed: int = 0,
        device: torch.device | None = None,
        cache_features: bool = False,
    ) -> list[float]:
        """Train autoencoder `slot` on `data` (images, ...) as the authors do; returns the losses.

        Adam(lr, wd); lr = lr · 0.1^⌊epoch / 10⌋ with epoch = ⌊step / batches per epoch⌋ (their
        `exp_lr_scheduler`); batches drawn without replacement per epoch from a seeded generator.
        `cache_features`: the frozen features of every image are computed once (one draw of the
        data's transform per image) instead of at every step, ~steps·batch / len(data) times cheaper.
        """
        model_was_training = model.training
        model.eval()
        ae = self.autoencoders[slot]
        ae.train()
        ae.requires_grad_(True)  # the loop froze everything it does not train
        optimizer = torch.optim.Adam(ae.parameters(), lr=lr, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        per_epoch = max(1, math.ceil(len(data) / batch_size))
        cached = self._all_features(model, data, batch_size, device) if cache_features else None
        order, losses = torch.empty(0, dtype=torch.long), []
        for step in range(steps):
            if step % per_epoch == 0:
                order = torch.randperm(len(data), generator=generator)
            rows = order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.1 ** ((step // per_epoch) // 10)
            if cached is not None:
                s = cached[rows.to(cached.device)]
            else:
                s = self.features(model, torch.stack([_image(data[int(i)]) for i in rows]).to(device))
            loss = F.mse_loss(ae(s), s)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        ae.eval()
        ae.requires_grad_(False)
        self.trained[slot] = True
        model.train(model_was_training)
        return losses

    def _all_features(self, model: nn.Module, data: Dataset, batch_size: int, device) -> Tensor:
        chunks = []
        for start in range(0, len(data), batch_size):
            images = torch.stack([_image(data[i]) for i in range(start, min(start + batch_size, len(data)))])
            chunks.append(self.features(model, images.to(device)))
        return torch.cat(chunks)

    @torch.no_grad()
    def calibrate_slot(self, slot: int, model: nn.Module, batches: Iterable[Tensor], quantile: float = 0.99) -> float:
        """τ_slot = `quantile` of per-image errors of the slot's own autoencoder on held-out images."""
        errors = torch.cat([self.errors(model, images, [slot])[:, 0].cpu() for images in batches])
        value = float(torch.quantile(errors.double(), quantile)) if len(errors) else math.nan
        self.slot_thresholds[slot] = value
        return value

    def set_threshold(self, fixed: float | None, margin: float) -> float:
        """τ = `fixed`, or (1 + margin) · the largest calibrated slot threshold."""
        if fixed is not None:
            value = float(fixed)
        else:
            known = self.slot_thresholds[torch.isfinite(self.slot_thresholds)]
            value = float((1 + margin) * known.max()) if len(known) else math.inf
        self.threshold.fill_(value)
        return value


def _image(item) -> Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


__all__ = ["FEATURES", "AutoEncoder", "AutoSelector"]
