"""How long one `toy-tic` run takes at default settings (issue 17's target: at most 3 minutes).

Each requested method runs once (seed 0, ToyCLIP, default settings) in a temporary folder, one after
the other in this process. Recorded per run: wall seconds, CPU seconds of this process (on a
machine shared with other work, CPU time is what an idle machine's wall time would be, since a
run uses one thread), the runner's own train / evaluate split (wall) and the load average before
and after. Notebook 05's full setting is the sum over its strategies divided by the cores it
trains on.

    .venv/bin/python benchmarks/tic_run.py --methods sequential cumulative modx
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, write_json

from cliplab.engine.runner import run_scenario

TARGET_SECONDS = 180.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(method: str, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        load_before = list(os.getloadavg())
        began, cpu = time.perf_counter(), _cpu()
        result = run_scenario("toy-tic", method, Path(folder) / "run", seed=seed, overrides=["progress=false"])
        wall, cpu = time.perf_counter() - began, _cpu() - cpu
    return {
        "method": method,
        "seed": seed,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "train_s": round(result.extra["seconds"]["train"], 1),
        "evaluate_s": round(result.extra["seconds"]["evaluate"], 1),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "within_target": cpu <= TARGET_SECONDS,
        "summary": {k: round(result.summary[k], 2) for k in ("id", "backward", "forward")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["sequential", "cumulative", "modx"])
    parser.add_argument("--out", default=str(RESULTS / "tic_run_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for method in args.methods:
        rows.append(measure(method))
        print(rows[-1], flush=True)
    write_json(Path(args.out), {"machine": machine_info(torch.device("cpu")), "target_s": TARGET_SECONDS, "runs": rows})


if __name__ == "__main__":
    main()
