"""Throughput of ToyWorld data generation on one CPU thread.

Measures images per second for three stages at 32 and 64 px:

* ``render``                   -- `render(scene, size)` on pre-sampled scenes;
* ``scenes+render``            -- `sample_scenes` then `render`;
* ``scenes+render+captions``   -- `sample_scenes`, `caption_batch`, then `render`.

Each stage is timed `--repeats` times and the median is reported, both as CPU time of this
thread (robust when other processes share the cores) and as wall-clock time. `--baseline FILE`
additionally times `render` from another copy of `render.py` (e.g. the implementation before an
optimisation) interleaved with the current one, and reports the speed-up as the median of the
per-repeat ratios, which is what to trust on a loaded machine.

Usage:  python benchmarks/toyworld_generation.py [--n 20000] [--repeats 5]
            [--baseline benchmarks/baselines/render_whole_batch.py]   (what `make bench` runs)
Writes: benchmarks/results/toyworld_generation.json
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from cliplab.toyworld.render import render
from cliplab.toyworld.world import _rng, caption_batch, combos_of, sample_scenes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_json
from report import toyworld as toyworld_table

RESULTS = Path(__file__).resolve().parent / "results" / "toyworld_generation.json"


def machine() -> dict[str, object]:
    """Where the numbers were measured (`common.machine_info`), plus the CPU kernels torch picked."""
    return {
        **machine_info(torch.device("cpu")),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": np.__version__,
    }


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) of one call."""
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - cpu, time.perf_counter() - wall


def stages(n: int, size: int, rep: int) -> dict[str, Callable[[], object]]:
    """The measured stages; each draws fresh scenes (rep-dependent seed) where it samples."""
    scene = sample_scenes(_rng(5, rep), n, combos_of("all"))

    def scenes_render() -> None:
        render(sample_scenes(_rng(6, rep), n, combos_of("all")), size)

    def scenes_render_captions() -> None:
        rng = _rng(7, rep)
        fresh = sample_scenes(rng, n, combos_of("all"))
        caption_batch(fresh, rng)
        render(fresh, size)

    return {
        "render": lambda: render(scene, size),
        "scenes+render": scenes_render,
        "scenes+render+captions": scenes_render_captions,
    }


def load_baseline(path: str) -> ModuleType:
    """Import another copy of render.py under a private name."""
    spec = importlib.util.spec_from_file_location("_baseline_render", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def measure(n: int, size: int, repeats: int, baseline: ModuleType | None) -> dict[str, dict[str, float]]:
    """Median images/s (CPU and wall) per stage; with a baseline, its render and the speed-up."""
    samples: dict[str, list[tuple[float, float]]] = {}
    render(sample_scenes(_rng(4, 0), min(n, 256), combos_of("all")), size)  # warm-up
    for rep in range(repeats):
        runs = stages(n, size, rep)
        if baseline is not None:
            scene = sample_scenes(_rng(5, rep), n, combos_of("all"))
            runs["render (baseline)"] = lambda scene=scene: baseline.render(scene, size)
        for name, fn in runs.items():
            samples.setdefault(name, []).append(timed(fn))
    table = {
        name: {
            "images_per_s_cpu": n / statistics.median(c for c, _ in s),
            "images_per_s_wall": n / statistics.median(w for _, w in s),
        }
        for name, s in samples.items()
    }
    if baseline is not None:
        for k, clock in enumerate(("cpu", "wall")):
            ratios = [old[k] / new[k] for old, new in zip(samples["render (baseline)"], samples["render"])]
            table["render"][f"speedup_vs_baseline_{clock}"] = statistics.median(ratios)
    return table


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="images per call at 32 px (64 px uses n/4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--baseline", help="path of another render.py to compare `render` against")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    began = time.perf_counter()
    baseline = load_baseline(args.baseline) if args.baseline else None
    before = machine()
    results, counts = {}, {}
    for size in args.sizes:
        counts[size] = max(1, args.n * 32 * 32 // (size * size))
        results[size] = measure(counts[size], size, args.repeats, baseline)
    report = {
        "machine": before,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "repeats": args.repeats,
        "images_per_call": {str(s): c for s, c in counts.items()},
        "baseline": args.baseline,
        "note": "medians over repeats; cpu = this thread's CPU time, wall = elapsed time",
        "results": {str(s): t for s, t in results.items()},
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    print(toyworld_table(report))
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
