"""Independent runs side by side on a CPU machine: a small process pool for whole training runs.

A ToyCLIP step is too small for torch's intra-op threads to keep several cores busy: two
single-threaded runs on two cores finish in about the time one run takes alone. The study
therefore trains its independent runs (methods, seeds, ablation variants) in parallel worker
processes, each limited to `cores // jobs` threads. GPU runs stay sequential (`jobs=1`).

Stopping: Ctrl-C in a terminal or Kernel → Interrupt in JupyterLab (which sends SIGINT to the
kernel's whole process group) must stop training within seconds. Workers therefore ignore SIGINT
and leave the decision to the parent, which cancels the runs not started yet and sends SIGTERM to
the workers. A worker unwinds the run it is training (so the temporary files of atomic writes are
removed) and exits at once; what it finished — whole tasks and mid-task checkpoints — is on disk,
and re-running the same request resumes from there.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

MAX_AUTO_JOBS = 4  # each worker holds its own model, data and probes (about 1 GB for ToyCLIP)
STOP_GRACE_SECONDS = 10.0  # how long a terminated worker may take to unwind before it is killed


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
    return 1 if on_gpu(device) else max(1, min(cpu_cores(), MAX_AUTO_JOBS, pending))


def on_gpu(device: str | None) -> bool:
    """Whether runs on `device` (None: CUDA when available) train on a GPU."""
    return device not in (None, "cpu") or (device is None and _cuda_available())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _limit_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


class _Terminated(BaseException):
    """Raised in a worker by SIGTERM: unwinds the call (finally blocks run), then the worker exits."""


_in_call = False  # in a worker: whether a call is running (SIGTERM unwinds it) or the worker idles


def _on_sigterm(signum: int, frame: Any) -> None:
    if _in_call:
        raise _Terminated()
    os._exit(128 + signum)


def _init_worker(threads: int) -> None:
    """Worker set-up: the parent alone reacts to Ctrl-C / Interrupt; SIGTERM stops the current call."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _limit_threads(threads)


def _call(function: Callable[..., Any], args: tuple) -> Any:
    """`function(*args)` in a worker; a SIGTERM unwinds it and ends the worker process."""
    global _in_call
    _in_call = True
    try:
        return function(*args)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)  # unwound: atomic writes removed their temporary files
    finally:
        _in_call = False


def _stop_workers(pool: ProcessPoolExecutor, futures: Sequence[Any]) -> None:
    """Cancel what has not started and terminate the workers (SIGTERM, then SIGKILL after a grace)."""
    for future in futures:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def run_parallel(
    function: Callable[..., Any], calls: Sequence[tuple], jobs: int, on_done: Callable[[tuple, Any], None] | None = None
) -> list[Any]:
    """`function(*args)` for every `args` in `calls`, `jobs` at a time; results in call order.

    `function` must be importable (a module-level function): workers are spawned, not forked,
    so a CUDA context or a Jupyter kernel's threads are never copied. From a script, call it
    under `if __name__ == "__main__":` (spawned workers import the main module). Calls start in the
    order given (put the longest first). The first exception is re-raised once the calls
    already running have finished (their finished work is kept on disk by the runner); calls
    not started yet are cancelled. On KeyboardInterrupt (Ctrl-C, Kernel → Interrupt) the calls
    not started are cancelled, the running ones terminated (see the module docstring), and the
    KeyboardInterrupt is re-raised within seconds.
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
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(_call, function, args): i for i, args in enumerate(calls)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)  # report each as it ends
                for future in done:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()
                    if on_done:
                        on_done(calls[futures[future]], future.result())
        except KeyboardInterrupt:
            _stop_workers(pool, list(futures))
            raise
        return [future.result() for future in sorted(futures, key=futures.get)]


__all__ = ["MAX_AUTO_JOBS", "STOP_GRACE_SECONDS", "cpu_cores", "on_gpu", "resolve_jobs", "run_parallel"]
