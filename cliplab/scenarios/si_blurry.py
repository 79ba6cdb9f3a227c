"""The Si-Blurry stream (Moon et al., ICCV 2023, "MVP"): stochastic, blurry task boundaries.

Online continual learning without clean tasks: N % of the classes are *disjoint* (each appears
in exactly one task), the rest are *blurry*; M % of the blurry classes' samples are moved to other
tasks, so a class may show up before its "home" task; the number of classes per task is random
(stochastic cut points, so a task may get none). SIT (Wang et al. 2024) and MVP train on it.

Written from the description of the reference sampler (`utils/online_sampler.py` of
moonjunyyy/Si-Blurry, stochastic branch; identical in Debatrix/LifeLong-CLIP), with one
`torch.Generator` seeded by the run seed and the draws in the reference's order, so a split is a
pure function of (labels, T, N, M, seed):

1. ``D = ⌊⌊C·N/100⌋ / T⌋·T`` disjoint classes, ``Bl = ⌊(C − D)/T⌋·T`` blurry ones; the classes
   beyond ``D + Bl`` never appear (the reference drops them silently; we warn).
2. ``randperm(C)``: the first D are disjoint, the next Bl blurry.
3. Stochastic split: T−1 sorted cut points drawn uniformly (with replacement) in [0, D) cut the
   disjoint pool into T chunks (possibly empty); the same in [0, Bl) for the blurry pool.
   (``stochastic=False``: T equal chunks.)
4. Every training sample goes to the task holding its class, in dataset order.
5. Blurring: ``nb = ⌊#blurry-class samples · M/100⌋``; T−1 sorted cut points in [0, nb) give the
   amount a_i each task gives away: task i's *first* a_i blurry-class samples (dataset order) go to
   a pool, the pool is shuffled, and task i takes the next a_i of it. A task with fewer blurry
   samples than a_i gives what it has and the last tasks get what remains (the reference's slicing).
   (``stochastic=False``: every task gives M % of its own blurry samples; the pool is split equally.)
6. Each task's samples (its disjoint + blurry ones) are shuffled; the stream is task 0, then 1, ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SiBlurrySplit:
    """A Si-Blurry stream: per task, the dataset indices in stream order, and the class pools."""

    tasks: list[list[int]]  # dataset indices of each task, in stream order
    disjoint_classes: list[list[int]]  # per task: classes only that task shows
    blurry_classes: list[list[int]]  # per task: its "home" blurry classes (some samples move away)
    dropped_classes: list[int]  # classes that never appear (rounding of D and Bl)
    moved: int  # blurry-class samples moved to another task's stream position

    @property
    def stream(self) -> list[int]:
        """The whole stream: dataset indices of task 0, then task 1, ..."""
        return [i for task in self.tasks for i in task]

    def home_classes(self, task: int) -> list[int]:
        return sorted(self.disjoint_classes[task] + self.blurry_classes[task])


def _cuts(generator: torch.Generator, high: int, n_tasks: int) -> list[int]:
    """0, T−1 sorted uniform cut points in [0, high), high."""
    inner = torch.randint(0, high, (n_tasks - 1,), generator=generator).sort().values.tolist()
    return [0, *inner, high]


def si_blurry_split(
    labels: Sequence[int],
    n_tasks: int = 5,
    n_percent: int = 50,
    m_percent: int = 10,
    seed: int = 0,
    stochastic: bool = True,
    n_classes: int | None = None,
) -> SiBlurrySplit:
    """Split a labelled training set into a Si-Blurry stream of `n_tasks` tasks (see the module doc).

    `labels[i]` is the class of dataset item i; `n_classes` defaults to max(labels) + 1. N and M are
    percentages (MVP / SIT: N = 50, M = 10, stochastic, T = 5).
    """
    targets = [int(y) for y in labels]
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if not 0 <= n_percent <= 100 or not 0 <= m_percent <= 100:
        raise ValueError(f"N and M are percentages in [0, 100], got N={n_percent}, M={m_percent}")
    if not targets:
        raise ValueError("cannot build a stream from an empty dataset")
    n_classes = max(targets) + 1 if n_classes is None else int(n_classes)
    if min(targets) < 0 or max(targets) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{min(targets)}, {max(targets)}]")
    disjoint_num = (n_classes * n_percent // 100) // n_tasks * n_tasks
    blurry_num = (n_classes - disjoint_num) // n_tasks * n_tasks
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n_classes, generator=generator).tolist()
    disjoint_pool, blurry_pool = order[:disjoint_num], order[disjoint_num : disjoint_num + blurry_num]
    dropped = sorted(order[disjoint_num + blurry_num :])
    if dropped:
        warnings.warn(
            f"Si-Blurry with {n_classes} classes, T={n_tasks}, N={n_percent}: classes {dropped} never appear "
            f"(D = {disjoint_num} disjoint and Bl = {blurry_num} blurry classes are multiples of T, as in the "
            "reference sampler); choose T dividing the class counts to keep every class",
            stacklevel=2,
        )
    disjoint = _chunks(generator, disjoint_pool, n_tasks, stochastic)
    blurry = _chunks(generator, blurry_pool, n_tasks, stochastic)
    owner = {c: ("d", t) for t, cs in enumerate(disjoint) for c in cs}
    owner.update({c: ("b", t) for t, cs in enumerate(blurry) for c in cs})
    disjoint_idx: list[list[int]] = [[] for _ in range(n_tasks)]
    blurry_idx: list[list[int]] = [[] for _ in range(n_tasks)]
    for i, y in enumerate(targets):
        if y in owner:
            kind, t = owner[y]
            (disjoint_idx if kind == "d" else blurry_idx)[t].append(i)
    moved = _blur(generator, blurry_idx, m_percent, stochastic)
    tasks = []
    for t in range(n_tasks):
        items = disjoint_idx[t] + blurry_idx[t]
        perm = torch.randperm(len(items), generator=generator).tolist()
        tasks.append([items[k] for k in perm])
    return SiBlurrySplit(tasks, disjoint, blurry, dropped, moved)


def _chunks(generator: torch.Generator, pool: list[int], n_tasks: int, stochastic: bool) -> list[list[int]]:
    if not pool:
        return [[] for _ in range(n_tasks)]
    if not stochastic:
        size = len(pool) // n_tasks
        return [pool[t * size : (t + 1) * size] for t in range(n_tasks)]
    cuts = _cuts(generator, len(pool), n_tasks)
    return [pool[cuts[t] : cuts[t + 1]] for t in range(n_tasks)]


def _blur(generator: torch.Generator, blurry_idx: list[list[int]], m_percent: int, stochastic: bool) -> int:
    """Move M % of the blurry-class samples across tasks, in place; returns how many were moved."""
    n_tasks = len(blurry_idx)
    if stochastic:
        total = sum(len(b) for b in blurry_idx) * m_percent // 100
        if total <= 0:
            return 0
        cuts = _cuts(generator, total, n_tasks)
        amounts = [cuts[t + 1] - cuts[t] for t in range(n_tasks)]
    else:
        amounts = [len(b) * m_percent // 100 for b in blurry_idx]
    pool: list[int] = []
    for t in range(n_tasks):
        pool += blurry_idx[t][: amounts[t]]
        blurry_idx[t] = blurry_idx[t][amounts[t] :]
    pool = [pool[k] for k in torch.randperm(len(pool), generator=generator).tolist()]
    moved = len(pool)
    if not stochastic:
        amounts = [moved // n_tasks] * n_tasks
    for t in range(n_tasks):
        blurry_idx[t] += pool[: amounts[t]]
        pool = pool[amounts[t] :]
    return moved


def exposure_order(labels: Sequence[int], stream: Sequence[int]) -> list[int]:
    """Classes in the order of their first appearance in `stream` (dataset indices into `labels`)."""
    seen: dict[int, None] = {}
    for i in stream:
        seen.setdefault(int(labels[i]), None)
    return list(seen)


__all__ = ["SiBlurrySplit", "exposure_order", "si_blurry_split"]
