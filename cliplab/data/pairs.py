"""Image–caption pairs for contrastive training: items are `(transform(image), caption)`.

One item per (image, caption) pair, as open_clip's CSV and webdataset loaders yield them: an
image with five captions is five items. The default DataLoader collate stacks the images and
keeps the captions as a list of strings, which the training loop tokenises (memoised per text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cliplab.data.base import open_rgb
from cliplab.data.tensor import _check_images, to_pil


class ImageCaptionPairs(Dataset):
    """Pairs `(image of image_index[k], captions[k])`; subclasses say how to load image i."""

    def __init__(self, captions: Sequence[str], image_index: Sequence[int], transform: Any = None, name: str = "pairs"):
        if len(captions) != len(image_index):
            raise ValueError(f"{name}: {len(captions)} captions but {len(image_index)} image indices")
        bad = [c for c in captions if not isinstance(c, str) or not c.strip()]
        if bad:
            raise ValueError(f"{name}: {len(bad)} caption(s) are empty or not text, e.g. {bad[0]!r}")
        self.captions = list(captions)
        self.image_index = [int(i) for i in image_index]
        self.transform, self.name = transform, name

    def load_image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, k: int) -> tuple[Any, str]:
        image = self.load_image(self.image_index[k])
        return (self.transform(image) if self.transform is not None else image), self.captions[k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pairs={len(self)})"


class TensorCaptionPairs(ImageCaptionPairs):
    """Pairs over a uint8 image tensor N×C×H×W (ToyWorld); `image_index` defaults to one caption per image."""

    def __init__(
        self,
        images_uint8: Tensor,
        captions: Sequence[str],
        image_index: Sequence[int] | None = None,
        transform: Any = None,
        name: str = "tensor-pairs",
    ) -> None:
        _check_images(images_uint8)
        index = list(range(len(captions))) if image_index is None else list(image_index)
        super().__init__(captions, index, transform, name)
        if index and (min(index) < 0 or max(index) >= images_uint8.shape[0]):
            raise ValueError(
                f"{name}: image indices span {min(index)}..{max(index)} for {images_uint8.shape[0]} images"
            )
        self.images = images_uint8

    def load_image(self, index: int) -> Image.Image:
        return to_pil(self.images[index])


class FileCaptionPairs(ImageCaptionPairs):
    """Pairs over image files (already screened for unreadable files by the loader that made them)."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        captions: Sequence[str],
        image_index: Sequence[int],
        transform: Any = None,
        name: str = "file-pairs",
    ) -> None:
        super().__init__(captions, image_index, transform, name)
        self.paths = [str(p) for p in paths]

    def load_image(self, index: int) -> Image.Image:
        return open_rgb(self.paths[index])


__all__ = ["FileCaptionPairs", "ImageCaptionPairs", "TensorCaptionPairs"]
