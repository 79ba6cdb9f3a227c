"""`digits`: scikit-learn's bundled 8×8 handwritten digits as small RGB images; no download, no root.

The 1,797 greyscale 8×8 images (ink intensity 0..16) are rendered white-on-dark (0 -> black,
16 -> white), upscaled bilinearly to `image_size` and replicated to 3 channels. The train/test
split is a seeded, stratified 80/20 split, so every class keeps its share in both parts and the
same seed always gives the same split.

Class names are number *words* ("zero".."nine"), not numerals: a word is a whole BPE token with
its own meaning in CLIP's pretraining text, whereas a bare "7" is a single character that also
stands for counts, sizes and years; the words also match the spelled-out half of torchvision's
MNIST names ("7 - seven") and CLIP_benchmark's SVHN names, so digit tasks stay comparable.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cliplab.data.metadata import load_metadata
from cliplab.data.tensor import TensorImageDataset

DIGITS_SPLITS = ("train", "test", "all")


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images 1797×8×8 (0..16) and labels.

    Read straight from scikit-learn's data file, because importing `sklearn.datasets` pulls in SciPy
    and takes seconds; falls back to `load_digits()` if the file ever moves. Same numbers either way.
    """
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target.astype(np.int64)
    raw = np.loadtxt(path, delimiter=",")
    return raw[:, :-1].reshape(-1, 8, 8), raw[:, -1].astype(np.int64)


@lru_cache(maxsize=4)
def _rendered(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _bundled_digits()
    grey = np.rint(images * (255.0 / 16.0)).astype(np.uint8)  # ink (16) -> white
    resized = [np.asarray(Image.fromarray(g).resize((image_size, image_size), Image.Resampling.BILINEAR)) for g in grey]
    return np.repeat(np.stack(resized)[:, None], 3, axis=1), labels  # N×3×S×S


def digits_split_indices(split: str, seed: int = 0, test_fraction: float = 0.2) -> np.ndarray:
    """Sorted indices (into `sklearn.datasets.load_digits()`) of the seeded stratified split: each class
    contributes round(test_fraction × its size) randomly chosen images to test, the rest to train."""
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits: split must be one of {DIGITS_SPLITS}, got {split!r}")
    labels = _rendered(8)[1]
    if split == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    test = np.sort(
        np.concatenate(
            [
                rng.permutation(members)[: round(test_fraction * len(members))]
                for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
            ]
        )
    )
    return test if split == "test" else np.setdiff1d(np.arange(len(labels)), test)


def load_digits_dataset(
    split: str = "test", transform: Any = None, image_size: int = 32, seed: int = 0, test_fraction: float = 0.2
) -> TensorImageDataset:
    """The digits dataset as `(transform(image), label)`; `.indices` are positions in `load_digits()`."""
    if image_size < 8:
        raise ValueError(f"digits: image_size must be >= 8 (the source resolution), got {image_size}")
    indices = digits_split_indices(split, seed, test_fraction)
    images, labels = _rendered(image_size)
    meta = load_metadata("digits")
    dataset = TensorImageDataset(
        torch.from_numpy(images[indices].copy()),
        labels[indices].tolist(),
        meta.classnames,
        meta.templates,
        transform=transform,
        name="digits",
    )
    dataset.indices = indices.tolist()
    return dataset


def digits_factory(
    root: Any = None,
    split: str = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    **options: Any,
) -> TensorImageDataset:
    """Registry adapter: `root`, `download`, `on_corrupt` and `verify` do not apply to a bundled dataset."""
    options.pop("verify", None)
    return load_digits_dataset(split=split, transform=transform, **options)
