#!/usr/bin/env python
"""ToyCLIP pretraining throughput: scenes/s of `cliplab.pretrain` steps (render + forward/backward).

Why: the shipped ToyCLIP checkpoint is regenerated with `make toyclip`; this says how fast the
recipe's loop runs on this machine, and how much of a step is ToyWorld rendering versus the model.

How: `pretrain_toyclip` runs twice into temporary folders (never the shipped checkpoint), with
N and N + `--steps` steps; both runs do the same set-up, final monitor evaluation and checkpoint,
so the difference of their wall times is the cost of `--steps` loop steps alone. Rendering of
the same batches (`ToyWorld.training_batch`) is timed on its own.

    python benchmarks/pretrain_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cliplab.pretrain import PretrainConfig, pretrain_toyclip
from cliplab.toyworld import ToyWorld

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, summary, timed, write_json
from report import pretrain as pretrain_table


def pretrain_seconds(steps: int, batch_size: int) -> float:
    """Wall seconds of a whole `pretrain_toyclip` call of `steps` steps, in a temporary folder."""
    config = PretrainConfig(steps=steps, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        pretrain_toyclip(
            config, out_path=Path(tmp) / "toyclip.safetensors", work_dir=Path(tmp) / "work", progress=False
        )
        return time.perf_counter() - began


def loop_step_seconds(steps: int, base: int, batch_size: int, repeats: int) -> list[float]:
    """Seconds per loop step, from (T(base + steps) - T(base)) / steps, once per repeat."""
    out = []
    for _ in range(repeats):
        short, long = pretrain_seconds(base, batch_size), pretrain_seconds(base + steps, batch_size)
        out.append((long - short) / steps)
    return out


def render_step_seconds(steps: int, batch_size: int) -> list[float]:
    """Seconds to generate one pretraining batch (scenes, captions, truth, rendering) alone."""
    world = ToyWorld()
    world.training_batch(0, 0, batch_size)
    return [timed(lambda s=s: world.training_batch(0, s, batch_size)) for s in range(1, steps + 1)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed loop steps (difference of two runs)")
    p.add_argument("--base", type=int, default=2, help="steps of the shorter run")
    p.add_argument("--batch-size", type=int, default=PretrainConfig().batch_size)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: robust on a shared machine; the recipe itself used 2; 0 = torch's default)",
    )
    p.add_argument("--out", type=Path, default=None, help="default results/pretrain_throughput_cpu.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    info = machine_info(torch.device("cpu"))
    step = summary(loop_step_seconds(args.steps, args.base, args.batch_size, args.repeats))
    render = summary(render_step_seconds(args.steps, args.batch_size))
    recipe = PretrainConfig()
    result: dict[str, Any] = {
        "benchmark": "pretrain_throughput",
        "machine": info,
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "method": f"(T({args.base}+{args.steps} steps) - T({args.base} steps)) / {args.steps}, {args.repeats} repeat(s)",
        "ms_per_step": 1000 * step["median"],
        "scenes_per_s": args.batch_size / step["median"],
        "render_ms_per_step": 1000 * render["median"],
        "render_scenes_per_s": args.batch_size / render["median"],
        "render_share_of_step": render["median"] / step["median"],
        "full_recipe_minutes_estimate": recipe.steps * step["median"] / 60,
        "recipe": asdict(recipe),
    }
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    print(pretrain_table(result))
    write_json(args.out or RESULTS / "pretrain_throughput_cpu.json", result)
    print(f"total {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
