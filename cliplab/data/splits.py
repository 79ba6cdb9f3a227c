"""ZSCL's seeded 80/20 split for datasets without an official test split (Caltech101, EuroSAT, SUN397).

ZSCL calls `torch.utils.data.random_split(dataset, [int(0.8 * n), n - int(0.8 * n)],
generator=torch.Generator().manual_seed(42))` over torchvision's sample order; the first part is
train, the second test. We call the same function on `range(n)` so the indices are identical,
then drop unreadable files *after* splitting, so a corrupt file never shifts the split.
"""

from __future__ import annotations

from collections.abc import Sized

import torch
from torch.utils.data import random_split

ZSCL_SPLIT_SEED = 42
ZSCL_TRAIN_RATIO = 0.8


def seeded_split_indices(
    n: int | Sized, ratio: float = ZSCL_TRAIN_RATIO, seed: int = ZSCL_SPLIT_SEED
) -> tuple[list[int], list[int]]:
    """(train, test) indices of ZSCL's random split of `n` samples (or of `len(n)` for a dataset)."""
    size = n if isinstance(n, int) else len(n)
    train_size = int(ratio * size)
    generator = torch.Generator().manual_seed(seed)
    train, test = random_split(range(size), [train_size, size - train_size], generator=generator)
    return list(train.indices), list(test.indices)


def split_indices(n: int, split: str, dataset: str) -> list[int]:
    """Indices of `split` ("train", "test" or "all") of a dataset that has no official split."""
    if split == "all":
        return list(range(n))
    if split not in ("train", "test"):
        raise ValueError(
            f"{dataset} has no official split; use split='train', 'test' (ZSCL's seeded 80/20) or 'all', got {split!r}"
        )
    train, test = seeded_split_indices(n)
    return train if split == "train" else test
