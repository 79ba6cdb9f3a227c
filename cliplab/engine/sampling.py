"""Step-addressable batches: the batch of step s depends only on (seed, task, s).

That makes a resumed run see exactly the batches an uninterrupted run would have seen, without
replaying the data stream, and lets every rank of a distributed run take a disjoint share of the
same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Yields the index lists of steps start..end; each epoch is a fresh seeded permutation."""

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
        first = step * self.batch
        return [int(self._perm((first + k) // self.n)[(first + k) % self.n]) for k in range(self.batch)]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            indices = self.global_batch(step)
            yield indices[self.rank :: self.world]

    def __len__(self) -> int:
        return max(0, self.end - self.start)


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
    """A DataLoader over steps start..end of a step-addressable schedule."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start, end, rank, world)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)


def cycle_steps(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    start: int,
    end: int,
    num_workers: int = 0,
    rank: int = 0,
    world: int = 1,
):
    """Iterator of `(images, labels)` batches for steps start..end."""
    return iter(step_loader(dataset, batch_size, seed, start, end, num_workers, rank, world))
