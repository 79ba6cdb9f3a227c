"""Step-addressable batches: the batch of step s depends only on (seed, task, s).

That makes a resumed run see exactly the batches an uninterrupted run would have seen, without
replaying the data stream, and lets every rank of a distributed run take a disjoint share of the
same global batch.

"The batch" includes its random augmentation. Every item is loaded with torch's, NumPy's and
Python's random generators seeded from (seed, step, position in the global batch) and restored
afterwards, so a training transform such as `RandomResizedCrop` draws the same numbers whether
the run was resumed, how many loader workers there are and how many ranks share the batch, and
loading never consumes the caller's random stream. The DataLoader also gets its own generator
(it draws its workers' base seed from the global one otherwise): building the iterator after a
checkpoint's RNG state was restored then changes nothing, which is what made resumed runs drift.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def item_seed(seed: int, step: int, position: int) -> int:
    """A 63-bit seed for item `position` of the global batch of `step` (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}/{step}/{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps start..end, this rank's `(item seed, index)` pairs; each epoch is a fresh
    seeded permutation of the dataset."""

    def __init__(
        self, n_items: int, batch_size: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1
    ) -> None:
        if n_items == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.batch, self.seed, self.start, self.end = n_items, batch_size, seed, start, end
        self.rank, self.world = rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {
                epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
            }
        return self._perms[epoch]

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of the whole (all ranks) batch of `step`."""
        first = step * self.batch
        return [int(self._perm((first + k) // self.n)[(first + k) % self.n]) for k in range(self.batch)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.end):
            keyed = [(item_seed(self.seed, step, k), index) for k, index in enumerate(self.global_batch(step))]
            yield keyed[self.rank :: self.world]

    def __len__(self) -> int:
        return max(0, self.end - self.start)


class SeededItems(Dataset):
    """`dataset[index]` loaded under random generators seeded by the key's item seed.

    Keys are `(item_seed, index)`. The caller's torch (CPU), NumPy and Python random states are
    restored afterwards (once per batch: saving NumPy's state costs more than loading a small
    image), so loading is invisible to everything else that draws random numbers.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            try:
                items = []
                for seed, index in keys:
                    torch.default_generator.manual_seed(seed)
                    random.seed(seed)
                    np.random.seed(seed % 2**32)
                    items.append(self.dataset[index])
                return items
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def step_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    start: int,
    end: int,
    num_workers: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader over steps start..end of a step-addressable schedule (see the module docstring)."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start, end, rank, world)
    return keyed_loader(dataset, sampler, seed, start, num_workers)


def keyed_loader(dataset: Dataset, batch_sampler, seed: int, start: int, num_workers: int = 0) -> DataLoader:
    """A DataLoader over batches of `(item_seed, index)` keys (`SeededItems`), whose own generator
    is seeded from (seed, start): loading never touches the global random state."""
    generator = torch.Generator().manual_seed(item_seed(seed, start, -1))
    return DataLoader(SeededItems(dataset), batch_sampler=batch_sampler, num_workers=num_workers, generator=generator)
