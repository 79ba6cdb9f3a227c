#!/usr/bin/env python
"""Zero-shot evaluation throughput, classifier-cache effect, and evaluation's share of a run.

Why: every run evaluates before training and after every task (accuracy row, zero-shot probes,
retrieval probe). If that dominated the wall time, studies would be bound by evaluation, not by
the methods under study. Target: evaluation <= 20% of a default built-in scenario's wall time.

Measures (ToyCLIP, shipped weights when present, else random weights — throughput does not
depend on the weights):
- images/s through `cliplab.evaluation.zeroshot.zero_shot_accuracy` on ToyWorld probe images (the real path:
  PIL conversion + eval transform per image, then the image tower), and of the image tower alone
  on pre-transformed tensors;
- classifier build time with and without the cache of `cliplab.evaluation.zeroshot` (a cache hit still
  fingerprints the text tower: timed on its own, memoised and after `clear_classifier_cache()`,
  i.e. the full hash of the weights that follows any change of them);
- `run_scenario("toy-digits-cil", "finetune", seed=0)` with default settings: `metrics.json`
  -> `seconds` {"train", "evaluate"} as recorded by the runner;
- where one evaluation of that scenario spends its time (accuracy row, zero-shot probes,
  retrieval probe), each repeat after a change of the text tower, as after a task of whole-model
  training: classifiers are rebuilt and captions re-encoded, as in the run; plus a torch.profiler
  table of one such evaluation.

    python benchmarks/eval_share.py --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cliplab.data import TensorImageDataset
from cliplab.engine.runner import build_config, run_scenario
from cliplab.evaluation import zeroshot
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.evaluation.zeroshot import (
    _TEXT_PREFIXES,
    clear_classifier_cache,
    image_features,
    text_tower_fingerprint,
    zero_shot_accuracy,
    zero_shot_classifier,
)
from cliplab.models import TOYCLIP_CHECKPOINT, ClipBundle, load_model
from cliplab.results import METRICS_FILE, RunFolder
from cliplab.scenarios import get_scenario
from cliplab.toyworld.tasks import zero_shot_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, summary, synchronizer, timed, write_json
from report import eval_share as eval_share_tables
from report import run_shares

SHARE_TARGET = 0.20


def toyclip(device: torch.device) -> ClipBundle:
    """The shipped ToyCLIP if its checkpoint is there, else the same architecture with random weights."""
    return load_model("toyclip", pretrained=None if TOYCLIP_CHECKPOINT.exists() else "random", device=device)


def median_s(fn, repeats: int, sync) -> dict[str, float]:
    """Median and quartiles (seconds) of `repeats` timed calls after one untimed warm-up call."""
    fn()
    return summary([timed(fn, sync) for _ in range(repeats)])


def interleaved_s(fns: dict[str, Callable[[], Any]], repeats: int, sync) -> dict[str, dict[str, float]]:
    """Like `median_s` for several functions, alternated call by call so that load from other
    processes falls on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, sync))
    return {name: summary(t) for name, t in times.items()}


def throughput(
    bundle: ClipBundle, n_images: int, repeats: int, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """images/s of zero_shot_accuracy (classifier cached) and of the image tower alone."""
    task = zero_shot_tasks(seed=0, n=n_images)["shape_colour"]
    data = TensorImageDataset(task.images, task.labels, task.classnames, ["{}"], transform=bundle.eval_transform)
    tensors = torch.stack([data[i][0] for i in range(len(data))])
    got = interleaved_s(
        {
            "full": lambda: zero_shot_accuracy(
                bundle.model,
                bundle.tokenizer,
                data,
                task.classnames,
                task.templates,
                batch_size=batch_size,
                device=device,
            ),
            "tower": lambda: image_features(bundle.model, tensors, batch_size, device),
        },
        repeats,
        synchronizer(device),
    )
    return {
        "n_images": n_images,
        "batch_size": batch_size,
        "classes": len(task.classnames),
        "zero_shot_accuracy_images_per_s": n_images / got["full"]["median"],
        "zero_shot_accuracy_s": got["full"],
        "image_tower_only_images_per_s": n_images / got["tower"]["median"],
        "image_tower_only_s": got["tower"],
    }


def classifier_cost(bundle: ClipBundle, repeats: int, device: torch.device) -> dict[str, Any]:
    """Build time of each probe's classifier without the cache, with it (a hit), and the fingerprint."""
    sync, out = synchronizer(device), {}
    for name, task in zero_shot_tasks(seed=0, n=8).items():
        args = (bundle.model, bundle.tokenizer, task.classnames, task.templates)
        uncached = median_s(
            lambda args=args: zero_shot_classifier(*args, device=device, use_cache=False), repeats, sync
        )
        cached = median_s(lambda args=args: zero_shot_classifier(*args, device=device, use_cache=True), repeats, sync)
        out[name] = {
            "prompts": len(task.classnames) * len(task.templates),
            "uncached_ms": 1000 * uncached["median"],
            "cached_ms": 1000 * cached["median"],
            "speedup": uncached["median"] / cached["median"],
        }
    fingerprint = median_s(lambda: text_tower_fingerprint(bundle.model), repeats, sync)
    full = median_s(lambda: (clear_classifier_cache(), text_tower_fingerprint(bundle.model)), repeats, sync)
    return {
        "probes": out,
        "text_tower_fingerprint_ms": 1000 * fingerprint["median"],
        "text_tower_fingerprint_full_ms": 1000 * full["median"],
    }


def _evaluation_parts(evaluator: ScenarioEvaluator, model, last_task: int) -> dict[str, Callable[[], Any]]:
    """The three parts of `ScenarioEvaluator.evaluate`, each callable on its own."""
    return {
        "accuracy_row": lambda: evaluator.accuracy_row(model, last_task),
        "zero_shot_probes": lambda: evaluator.probe_accuracies(model),
        "retrieval_probe": lambda: evaluator.probe_retrieval(model),
    }


def change_text_tower(model) -> None:
    """A tiny in-place change of one text-tower tensor: what a training step does to the cache keys."""
    tensor = next(t for n, t in model.state_dict().items() if n.startswith(_TEXT_PREFIXES) and t.is_floating_point())
    with torch.no_grad():
        tensor.mul_(1.0 + 1e-6)


def matmul_ceiling(device: torch.device, repeats: int) -> float:
    """GFLOP/s of one large fp32 matrix product shaped like the image tower's MLP (4,352 tokens =
    256 images x 17, width 192 -> 768): what this device's BLAS reaches at best with these threads,
    the ceiling against which the evaluation's rate is read."""
    a, b = torch.randn(256 * 17, 192, device=device), torch.randn(192, 768, device=device)
    seconds = median_s(lambda: [a @ b for _ in range(20)], repeats, synchronizer(device))["median"]
    return 20 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / 1e9 / seconds


def evaluation_breakdown(
    bundle: ClipBundle, scenario_name: str, repeats: int, device: torch.device, profile_path: Path
) -> dict[str, Any]:
    """Where one evaluation of the scenario's last task spends its time, and how many images it encodes.

    Every repeat follows a change of the text tower (as after a task of whole-model training), so
    classifiers are rebuilt and captions re-encoded as in the run; the evaluator's caches of what
    does not depend on the weights (transformed images, tokens) are warm, as from the second
    evaluation of a run on. Also writes a torch.profiler table of one evaluation (parts labelled)
    to `profile_path`.
    """
    scenario = get_scenario(scenario_name)
    evaluator = ScenarioEvaluator(
        scenario, bundle.eval_transform, bundle.tokenizer, build_config(scenario, "finetune", None, 0)
    )
    model, sync = bundle.model, synchronizer(device)
    parts = _evaluation_parts(evaluator, model, len(scenario.tasks) - 1)
    times: dict[str, list[float]] = {name: [] for name in parts}
    with torch.no_grad():
        evaluator.evaluate(model, len(scenario.tasks) - 1)  # warm-up: the first evaluation of a run
        for _ in range(repeats):
            change_text_tower(model)
            for name, part in parts.items():
                times[name].append(timed(part, sync))
        change_text_tower(model)
        with torch.profiler.profile() as profiler:
            for name, part in parts.items():
                with torch.profiler.record_function(f"evaluate.{name}"):
                    part()
    text = profiler.key_averages().table(sort_by="cpu_time_total", row_limit=20)
    flops = {}
    for name, part in parts.items():
        change_text_tower(model)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            part()
        flops[name] = counter.get_total_flops()
    threads = torch.get_num_threads()
    profile_path.write_text(
        f"one evaluation of {scenario_name}, ToyCLIP, {threads} thread(s), after a change of the "
        f"text tower (classifiers rebuilt, captions re-encoded)\n\n{text}\n"
    )
    probe_sets = {id(data): len(data) for _, data in evaluator.probes}  # the evaluator encodes each once
    return {
        "seconds": {k: summary(v)["median"] for k, v in times.items()},
        "gflop": {k: v / 1e9 for k, v in flops.items()},
        "gflop_per_s": {k: flops[k] / 1e9 / summary(v)["median"] for k, v in times.items()},
        "matmul_ceiling_gflop_per_s": matmul_ceiling(device, repeats),
        "after": "a change of the text tower (classifiers rebuilt, captions re-encoded)",
        "images_encoded": {
            "tests": sum(len(d) for d in evaluator.tests),
            "zero_shot_probes": sum(probe_sets.values()),
            "retrieval_probe": sum(len(d) for _, d in evaluator.retrieval),
        },
        "captions_encoded": sum(len(r.captions) for r, _ in evaluator.retrieval),
        "zero_shot_probes": len(evaluator.probes),
        "distinct_probe_image_sets": len(probe_sets),
        "classifier_lookups": len(evaluator.tests) + len(evaluator.probes),
    }


class FingerprintMeter:
    """Counts and times `text_tower_fingerprint` calls (every classifier-cache lookup makes one).

    Installed by replacing the module attribute that `zero_shot_classifier` looks up at call time;
    the function itself is unchanged.
    """

    def __init__(self) -> None:
        self.calls, self.seconds = 0, 0.0
        self._original = zeroshot.text_tower_fingerprint

    def __enter__(self) -> FingerprintMeter:
        def counted(model):
            began = time.perf_counter()
            try:
                return self._original(model)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - began

        zeroshot.text_tower_fingerprint = counted
        return self

    def __exit__(self, *exc) -> None:
        zeroshot.text_tower_fingerprint = self._original


def scenario_share(scenario: str, method: str, seed: int, device: str) -> dict[str, Any]:
    """Run a built-in scenario with default settings; read the runner's train/evaluate seconds."""
    with tempfile.TemporaryDirectory() as out, FingerprintMeter() as meter:
        began = time.perf_counter()
        run_scenario(scenario, method, out, seed=seed, overrides={"device": device} if device != "cpu" else None)
        wall = time.perf_counter() - began
        metrics = json.loads(RunFolder(out).metrics.read_text())
    seconds = metrics.get("seconds") or metrics.get("extra", {}).get("seconds")
    share = seconds["evaluate"] / (seconds["train"] + seconds["evaluate"])
    return {
        "scenario": scenario,
        "method": method,
        "seed": seed,
        "seconds": seconds,
        "call_wall_s": round(wall, 2),
        "evaluate_share": share,
        "target": SHARE_TARGET,
        "holds": bool(share <= SHARE_TARGET),
        "classifier_lookups": meter.calls,
        "fingerprint_seconds": round(meter.seconds, 2),
    }


def run_store_shares(runs: Path) -> dict[str, Any]:
    """Evaluation share of every finished run under `runs` (each `metrics.json` -> `seconds`), per
    scenario and method: median, range and count over the runs found (seeds, ablation cells).

    Measures nothing itself: it reads what the runner recorded while a study trained, e.g. the
    runs of `make study` in `runs/study/runs`, so the share is seen for every method and built-in
    scenario, not only for the one run this script times.
    """
    shares: dict[tuple[str, str], list[float]] = {}
    for path in sorted(runs.rglob(METRICS_FILE)):
        metrics = json.loads(path.read_text())
        seconds = metrics.get("seconds")
        if not seconds or metrics.get("method") == "zeroshot":  # zeroshot only evaluates
            continue
        share = seconds["evaluate"] / (seconds["train"] + seconds["evaluate"])
        shares.setdefault((metrics["scenario"], metrics["method"]), []).append(share)
    if not shares:
        raise SystemExit(
            f"no finished runs (metrics.json with 'seconds') under {runs}; run `make study` first "
            "or pass the run store of your own study"
        )
    rows = [
        {
            "scenario": sc,
            "method": m,
            "runs": len(v),
            "median_share": float(statistics.median(v)),
            "min_share": min(v),
            "max_share": max(v),
            "holds": bool(statistics.median(v) <= SHARE_TARGET),
        }
        for (sc, m), v in sorted(shares.items())
    ]
    return {"benchmark": "eval_share_runs", "runs": str(runs), "target": SHARE_TARGET, "rows": rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=1000, help="ToyWorld probe images for the throughput")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (TrainConfig.eval_batch_size)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scenario", default="toy-digits-cil")
    p.add_argument("--skip-share", action="store_true", help="skip the scenario run")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: robust on a shared machine; 0 = torch's default)",
    )
    p.add_argument(
        "--from-runs",
        type=Path,
        default=None,
        metavar="RUNS",
        help="only summarise the evaluation share of the finished runs under RUNS (e.g. runs/study/runs) "
        "into results/eval_share_runs.json; measures nothing",
    )
    p.add_argument("--out", type=Path, default=None, help="default results/eval_share_<device>.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_runs:
        result = run_store_shares(args.from_runs)
        print(run_shares(result))
        write_json(args.out or RESULTS / "eval_share_runs.json", result)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    began, device = time.perf_counter(), torch.device(args.device)
    out = args.out or RESULTS / f"eval_share_{device.type}.json"
    bundle = toyclip(device)
    result: dict[str, Any] = {
        "benchmark": "eval_share",
        "machine": machine_info(device),
        "model": "toyclip",
        "weights": bundle.pretrained,
    }
    result["throughput"] = throughput(bundle, args.images, args.repeats, args.batch_size, device)
    result["classifier"] = classifier_cost(bundle, args.repeats, device)
    if not args.skip_share:
        result["share"] = scenario_share(args.scenario, "finetune", 0, args.device)
        profile = out.with_name(f"profile_evaluate_{device.type}.txt")
        result["evaluation_breakdown"] = evaluation_breakdown(bundle, args.scenario, 3, device, profile)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(eval_share_tables(result))
    write_json(out, result)
    print(f"total {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
