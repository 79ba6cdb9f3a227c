"""In-memory image datasets: uint8 tensors converted to PIL lazily (digits, CIFAR, MNIST, ToyWorld)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cliplab.data.base import ClassificationDataset


def to_pil(x: Tensor | np.ndarray) -> Image.Image:
    """One image to an RGB PIL image.

    Tensors are channel-first (C×H×W, C in {1, 3}); NumPy arrays are channel-last (H×W×C) as PIL and
    torchvision's raw arrays are; 2-D inputs are greyscale. uint8 is taken as 0..255, floats as 0..1.
    """
    array = _to_hwc(x)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array))  # H×W×3 uint8 -> mode "RGB"


def _to_hwc(x: Tensor | np.ndarray) -> np.ndarray:
    channel_first = isinstance(x, Tensor)
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected one image with 2 or 3 dims, got shape {tuple(array.shape)}")
    if channel_first:
        array = array.transpose(1, 2, 0)
    if array.shape[2] not in (1, 3):
        layout = "C×H×W" if channel_first else "H×W×C"
        raise ValueError(f"expected 1 or 3 channels in {layout} layout, got shape {tuple(x.shape)}")
    return array


class TensorImageDataset(ClassificationDataset):
    """A classification dataset over a uint8 tensor N×C×H×W (C = 1 or 3), PIL-converted per item."""

    def __init__(
        self,
        images_uint8: Tensor,
        labels: Sequence[int] | Tensor,
        classnames: Sequence[str],
        templates: Sequence[str],
        transform: Any = None,
        name: str = "tensor-images",
    ) -> None:
        _check_images(images_uint8)
        targets = labels.tolist() if isinstance(labels, Tensor) else list(labels)
        if len(targets) != images_uint8.shape[0]:
            raise ValueError(f"{name}: {images_uint8.shape[0]} images but {len(targets)} labels")
        super().__init__(name=name, targets=targets, classnames=classnames, templates=templates, transform=transform)
        self.images = images_uint8

    def load_image(self, index: int) -> Image.Image:
        return to_pil(self.images[index])


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise TypeError(
            f"images must be a torch.uint8 tensor, got {type(images).__name__}"
            f"{'' if not isinstance(images, Tensor) else ' of ' + str(images.dtype)}"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be N×C×H×W with C in (1, 3), got shape {tuple(images.shape)}")
