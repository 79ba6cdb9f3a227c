"""Independent runs side by side on a CPU machine: a small process pool for whole training runs.

A ToyCLIP step is too small for torch's intra-op threads to keep several cores busy: two
single-threaded runs on two cores finish in about the time one run takes alone. The study
therefore trains its independent runs (methods, seeds, ablation variants) in parallel worker
processes, each limited to `cores // jobs` threads. GPU runs stay sequential (`jobs=1`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

MAX_AUTO_JOBS = 4  # each worker holds its own model, data and probes (about 1 GB for ToyCLIP)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | None, pending: int, device: str | None) -> int:
    """How many runs to train at once: `jobs` if given, else one per core on CPU (at most
    `MAX_AUTO_JOBS`) and one on a GPU, never more than there are runs."""
    if jobs is not None:
        if int(jobs) < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        return max(1, min(int(jobs), pending))
    on_gpu = device not in (None, "cpu") or (device is None and _cuda_available())
    return 1 if on_gpu else max(1, min(cpu_cores(), MAX_AUTO_JOBS, pending))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _limit_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def run_parallel(
    function: Callable[..., Any], calls: Sequence[tuple], jobs: int, on_done: Callable[[tuple, Any], None] | None = None
) -> list[Any]:
    """`function(*args)` for every `args` in `calls`, `jobs` at a time; results in call order.

    `function` must be importable (a module-level function): workers are spawned, not forked,
    so a CUDA context or a Jupyter kernel's threads are never copied. From a script, call it
    under `if __name__ == "__main__":` (spawned workers import the main module). Calls start in the
    order given (put the longest first). The first exception is re-raised once the calls
    already running have finished (their finished work is kept on disk by the runner); calls
    not started yet are cancelled.
    """
    if jobs <= 1 or len(calls) <= 1:
        results = []
        for args in calls:
            results.append(function(*args))
            if on_done:
                on_done(args, results[-1])
        return results
    threads = max(1, cpu_cores() // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(function, *args): i for i, args in enumerate(calls)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                if on_done:
                    on_done(calls[futures[future]], future.result())
        return [future.result() for future in sorted(futures, key=futures.get)]


__all__ = ["MAX_AUTO_JOBS", "cpu_cores", "resolve_jobs", "run_parallel"]
