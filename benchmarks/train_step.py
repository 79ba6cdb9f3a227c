#!/usr/bin/env python
"""Per-step cost of every continual-learning method in cliplab's one training loop.

Why: the methods differ only in what they add to a fine-tuning step (a distillation batch, a
frozen teacher's forward, replayed texts, a weight ensemble, ...). This measures what each
addition costs, with the same model, batch and device for all methods, in one process, so the
ratios to plain fine-tuning come from one run of a shared, noisy machine.

How: a two-task class-incremental Scenario of random uint8 images (plus reference data for ZSCL:
random images and 10,000 ToyWorld captions) runs through the real engine
(`cliplab.engine.runner._run_task` -> `cliplab.engine.loop.train_task`). The second task is the
one timed, so iCaRL has an exemplar memory to distil on. The method's `after_step` hook is wrapped
to timestamp the end of every step: per-task setup (teacher copies, text encodings, loaders)
never enters ms/step, while everything the loop does per step (data, forward, backward, optimiser,
hooks, loss log) does. Variants are interleaved over repeats; the median step is reported.

Peak memory and FLOPs come from a separate process per variant, side by side up to the core count
on CPU (CPU: max RSS via
`resource.getrusage`; CUDA: `torch.cuda.max_memory_allocated`), FLOPs of one step from
`torch.utils.flop_counter.FlopCounterMode`.

    python benchmarks/train_step.py --device cpu
    python benchmarks/train_step.py --device cuda --model ViT-B-16

The parameter-efficient methods (`adapter`, `lora`, `moe_adapters`, and `moe_adapters_ddas`, whose
`end_task` trains the auto-selector's autoencoder) are not in the default set; `--peft` times them
against `finetune` into `results/peft_step_<device>.json` (on ToyCLIP with the toy presets, on an
open_clip model with the authors' MTIL settings: 22 experts, bottleneck 64).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cliplab.data import TensorImageDataset
from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.extended import extend
from cliplab.engine.runner import _run_task
from cliplab.engine.sampling import step_loader
from cliplab.engine.student import frozen_copy
from cliplab.methods import Method, get_method
from cliplab.methods.icarl import ICaRL
from cliplab.methods.zscl import WeightEnsemble
from cliplab.models import ClipBundle, load_model
from cliplab.results import append_loss_log
from cliplab.scenarios.base import ReferenceData, Scenario, Task
from cliplab.toyworld import caption_batch, combos_of, sample_scenes
from cliplab.utils import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, summary, synchronizer, table, timed, write_json

TIMED_TASK = 1  # the second task: iCaRL's memory holds exemplars of the first
HOOKS = ("extra_inputs", "losses", "distill_tokens")  # method hooks timed inside each step
PROBE_MARK = "TRAIN_STEP_PROBE "


@dataclass(frozen=True)
class Variant:
    """One row of the table: a method with option overrides (`key=value` as `--set` takes)."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    reference_style: bool = False  # teacher texts re-encoded every step, fp32 (expensive: fewer steps)
    peft: bool = False  # a parameter-efficient method: timed with --peft, not by default


def peft_variants(model: str) -> list[Variant]:
    """adapter, LoRA and MoE-Adapters with the toy presets on ToyCLIP, the authors' MTIL settings otherwise."""
    toy = model.lower() == "toyclip"
    moe = {"method.n_experts": 8, "method.bottleneck": 16} if toy else {"method.n_experts": 22}
    lr = {"lr": 3e-3} if toy else {"lr": 1e-3}
    return [
        Variant("adapter", "adapter", {**lr, **({"method.bottleneck": 16} if toy else {})}, peft=True),
        Variant("lora", "lora", dict(lr), peft=True),
        Variant("moe_adapters", "moe_adapters", {**lr, **moe, "method.ddas": False}, peft=True),
        Variant("moe_adapters_ddas", "moe_adapters", {**lr, **moe}, peft=True),
    ]


def variants(vocab_size: int, model: str = "toyclip") -> list[Variant]:
    """Every method at its (ZSCL) defaults, then the kd-on-CE-batch and reference-style variants,
    then the parameter-efficient ones (`peft=True`, not run by default)."""
    reference = {"method.cache_teacher_texts": False, "precision": "fp32"}
    return [
        Variant("finetune", "finetune"),
        Variant("lwf", "lwf"),
        Variant("vr_lwf", "vr_lwf", {"method.vocab_size": vocab_size}),
        Variant("vr_lwf_kd_ce_batch", "vr_lwf", {"method.vocab_size": vocab_size, "method.kd_images": "ce_batch"}),
        Variant("icarl", "icarl"),
        Variant("wise_ft", "wise_ft"),
        Variant("zscl", "zscl"),
        Variant("vr_lwf_reference", "vr_lwf", {"method.vocab_size": vocab_size, **reference}, True),
        Variant("zscl_reference", "zscl", reference, True),
        *peft_variants(model),
    ]


@dataclass
class Settings:
    """Everything that must be equal for all variants of one run (recorded in the JSON)."""

    device: str
    model: str
    pretrained: str | None
    batch_size: int
    steps: int  # timed steps per run, after the dropped first step and `warmup` more
    warmup: int
    reference_steps: int  # timed steps per run of a reference-style variant
    repeats: int
    reference_repeats: int  # rounds (the first ones) that include the reference-style variants
    n_train: int  # random images per task (and reference images)
    n_captions: int  # ZSCL reference captions
    vocab_size: int  # VR-LwF pseudo-texts K
    num_workers: int
    threads: int  # torch intra-op threads (0 = torch's default)
    seed: int = 0


# -- the benchmark scenario --------------------------------------------------------------------


def toyworld_captions(n: int, seed: int) -> list[str]:
    """n ToyWorld captions (the stand-in for ZSCL's Conceptual Captions); no image is rendered."""
    rng = np.random.default_rng(seed)
    texts, _ = caption_batch(sample_scenes(rng, n, combos_of("train")), rng)
    return texts


def _random_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _random_task(index: int, n: int, size: int, generator: torch.Generator) -> Task:
    names = [f"class {2 * index}", f"class {2 * index + 1}"]
    data = partial(
        TensorImageDataset,
        _random_images(n, size, generator),
        [i % 2 for i in range(n)],
        names,
        ["a photo of a {}.", "an image of a {}."],
    )
    return Task(f"task{index}", names, "a photo of a {}.", ["a photo of a {}.", "an image of a {}."], data, data)


def bench_scenario(image_size: int, n_train: int, n_captions: int, seed: int) -> Scenario:
    """Two 2-class tasks of random images; reference data = random images + ToyWorld captions."""
    generator = torch.Generator().manual_seed(seed)
    tasks = [_random_task(i, n_train, image_size, generator) for i in range(2)]
    ref_images = partial(
        TensorImageDataset, _random_images(n_train, image_size, generator), [0] * n_train, ["_"], ["{}"]
    )
    reference = ReferenceData(ref_images, toyworld_captions(n_captions, seed))
    return Scenario("bench-random", "class_incremental", tasks, reference=reference)


@dataclass
class Bench:
    """The model, its frozen initial copy and weights, and the scenario shared by every run."""

    bundle: ClipBundle
    scenario: Scenario
    device: torch.device
    initial: torch.nn.Module
    initial_state: dict[str, torch.Tensor] | None  # to restore the weights between runs
    image_size: int


def build_bench(settings: Settings, restorable: bool = True) -> Bench:
    """Load the model with random weights and build the scenario at the model's image size.

    `restorable=False` (a single run) keeps no copy of the initial weights, so that peak memory
    counts only what training itself holds (the runner's frozen initial copy included).
    """
    seed_everything(settings.seed)
    device = torch.device(settings.device)
    bundle = load_model(settings.model, pretrained=settings.pretrained, device=device)
    size = bundle.model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    scenario = bench_scenario(size, settings.n_train, settings.n_captions, settings.seed)
    state = copy.deepcopy(bundle.model.state_dict()) if restorable else None
    return Bench(bundle, scenario, device, frozen_copy(bundle.model), state, size)


def train_config(settings: Settings, variant: Variant, steps: int) -> TrainConfig:
    """TrainConfig defaults (ZSCL's) with the bench's batch, length and device; no checkpoints."""
    base = {
        "steps_per_task": steps,
        "batch_size": settings.batch_size,
        "checkpoint_every": 0,
        "progress": False,
        "seed": settings.seed,
        "device": settings.device,
        "num_workers": settings.num_workers,
    }
    return apply_overrides(TrainConfig(), {**base, **variant.overrides})


def seed_memory(method: Method, scenario: Scenario) -> None:
    """iCaRL distils only on exemplars: give it a full memory of the first task's images."""
    if isinstance(method, ICaRL):
        data = scenario.tasks[0].train_data(None)
        rows = [[0, i, data.targets[i]] for i in range(min(method.options.memory_size, len(data)))]
        method.load_state_tensors({"memory": torch.tensor(rows)})


# -- instrumentation --------------------------------------------------------------------------


class StepClock:
    """Timestamps the end of every step (after `after_step`) and times the method's hooks."""

    def __init__(self, device: torch.device) -> None:
        self.sync = synchronizer(device)
        self.ticks: list[float] = []
        self.cpu_ticks: list[float] = []  # process CPU time: robust to other processes taking the cores
        self.buckets: list[dict[str, float]] = []  # hook seconds of step k (bucket 0 = step 1)
        self._current: dict[str, float] = {}
        self.setup_s: dict[str, float] = {}

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def instrument(self, method: Method) -> None:
        """Wrap the instance's hooks (the loop calls them through the instance)."""
        for name in HOOKS:
            if hasattr(method, name):
                setattr(method, name, self._timed_hook(name, getattr(method, name)))
        for name in ("begin_task", "end_task"):
            setattr(method, name, self._timed_setup(name, getattr(method, name)))
        after_step = method.after_step

        def timed_after_step(ctx, step: int) -> None:
            after_step(ctx, step)
            self.ticks.append(self.now())
            self.cpu_ticks.append(time.process_time())
            self.buckets.append(self._current)
            self._current = {}

        method.after_step = timed_after_step

    def _timed_hook(self, name: str, hook: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            began = self.now()
            with torch.profiler.record_function(f"method.{name}"):
                result = hook(*args, **kwargs)
            self._current[name] = self._current.get(name, 0.0) + self.now() - began
            return result

        return wrapper

    def _timed_setup(self, name: str, hook: Callable) -> Callable:
        def wrapper(ctx) -> None:
            began = self.now()
            hook(ctx)
            self.setup_s[name] = self.now() - began

        return wrapper

    def step_ms(self, drop: int) -> list[float]:
        """Durations of steps 2.. (step 1 holds the loaders' start-up), minus `drop` more."""
        return (np.diff(self.ticks) * 1000).tolist()[drop:]

    def step_cpu_ms(self, drop: int) -> list[float]:
        """CPU time of the same steps (this process, all its threads)."""
        return (np.diff(self.cpu_ticks) * 1000).tolist()[drop:]

    def hook_ms(self, drop: int) -> list[dict[str, float]]:
        return [{k: 1000 * v for k, v in b.items()} for b in self.buckets[1:]][drop:]


class FlopWindow:
    """FLOPs (matmuls, convolutions, attention; forward and backward) of exactly step 2."""

    def __init__(self) -> None:
        self.mode = FlopCounterMode(display=False)
        self.flops: int | None = None

    def instrument(self, method: Method) -> None:
        after_step = method.after_step

        def counting_after_step(ctx, step: int) -> None:
            after_step(ctx, step)
            if step == 1:
                self.mode.__enter__()
            elif step == 2:
                self.mode.__exit__(None, None, None)
                self.flops = int(self.mode.get_total_flops())

        method.after_step = counting_after_step


def run_once(bench: Bench, settings: Settings, variant: Variant, steps: int, *instruments) -> None:
    """Train the timed task for `steps` steps from the initial weights, with instruments attached."""
    if bench.initial_state is not None:
        bench.bundle.model.load_state_dict(bench.initial_state)
    config = train_config(settings, variant, steps)
    method = get_method(variant.method, config.method)
    seed_memory(method, bench.scenario)
    for instrument in instruments:
        instrument.instrument(method)
    bundle, initial = bench.bundle, bench.initial
    if method.model_extension(bench.scenario) is not None:  # adapters, LoRA, experts: on a copy of the model
        model = copy.deepcopy(bundle.model) if bench.initial_state is not None else bundle.model
        extend(model, method, bench.scenario)
        bundle, initial = bundle._replace(model=model), frozen_copy(model)
    with tempfile.TemporaryDirectory() as run_dir:
        _run_task(bench.scenario, method, bundle, config, bench.device, initial, TIMED_TASK, Path(run_dir))


def timed_steps(settings: Settings, variant: Variant) -> tuple[int, int]:
    """(steps to run, intervals to drop) for one timed run of `variant`."""
    if variant.reference_style:
        return 1 + settings.reference_steps, 0
    return 1 + settings.warmup + settings.steps, settings.warmup


# -- timing (this process) --------------------------------------------------------------------


@dataclass
class Samples:
    """What the timed runs of one variant recorded (steps pooled over runs)."""

    steps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    hooks: list[dict[str, float]] = field(default_factory=list)
    setup: list[dict[str, float]] = field(default_factory=list)
    paired: list[float] = field(default_factory=list)  # per run: its median / the adjacent finetune runs'
    paired_cpu: list[float] = field(default_factory=list)


def timed_run(bench: Bench, settings: Settings, variant: Variant, into: Samples, label: str) -> tuple[float, float]:
    """One run of `variant`; adds its steps to `into`; returns its median wall and CPU ms/step."""
    n, drop = timed_steps(settings, variant)
    clock = StepClock(bench.device)
    run_once(bench, settings, variant, n, clock)
    wall, cpu = clock.step_ms(drop), clock.step_cpu_ms(drop)
    into.steps += wall
    into.cpu += cpu
    into.hooks += clock.hook_ms(drop)
    into.setup.append({k: 1000 * v for k, v in clock.setup_s.items()})
    print(f"  {label} {variant.name:<20} {np.median(wall):9.1f} ms/step", flush=True)
    return float(np.median(wall)), float(np.median(cpu))


def time_variants(bench: Bench, settings: Settings, chosen: list[Variant]) -> dict[str, dict[str, Any]]:
    """Rounds of finetune, v1, finetune, v2, ..., finetune (rotated order of the other variants).

    Each variant's ratio to finetune is taken against the finetune runs just before and after it
    (paired), and the median over rounds is reported: a burst of load from another process that
    spans both cancels, one that hits a single run is an outlier among rounds.
    """
    finetune, others = chosen[0], chosen[1:]
    samples = {v.name: Samples() for v in chosen}
    run_once(bench, settings, finetune, 3)  # warm the process up (allocator, kernels, caches)
    for r in range(settings.repeats):
        label = f"round {r + 1}/{settings.repeats}"
        this_round = [v for v in others if r < settings.reference_repeats or not v.reference_style]
        before = timed_run(bench, settings, finetune, samples[finetune.name], label)
        for variant in this_round[r % max(1, len(this_round)) :] + this_round[: r % max(1, len(this_round))]:
            mine = timed_run(bench, settings, variant, samples[variant.name], label)
            after = timed_run(bench, settings, finetune, samples[finetune.name], label)
            samples[variant.name].paired.append(2 * mine[0] / (before[0] + after[0]))
            samples[variant.name].paired_cpu.append(2 * mine[1] / (before[1] + after[1]))
            before = after
    return {v.name: _timing_row(samples[v.name], v is finetune) for v in chosen}


def _timing_row(s: Samples, is_finetune: bool) -> dict[str, Any]:
    stats = summary(s.steps)
    names = sorted({k for h in s.hooks for k in h})
    return {
        "ms_per_step": stats["median"],
        "ms_per_step_q1": stats["q1"],
        "ms_per_step_q3": stats["q3"],
        "ms_per_step_min": min(s.steps),
        "timed_steps": stats["n"],
        "cpu_ms_per_step": summary(s.cpu)["median"],
        "ratio_to_finetune": 1.0 if is_finetune else summary(s.paired)["median"],
        "ratio_to_finetune_per_round": [round(x, 3) for x in s.paired],
        "cpu_ratio_to_finetune": 1.0 if is_finetune else summary(s.paired_cpu)["median"],
        "hooks_ms_per_step": {k: float(np.median([h.get(k, 0.0) for h in s.hooks])) for k in names},
        "begin_task_ms": float(np.median([x.get("begin_task", np.nan) for x in s.setup])),
        "end_task_ms": float(np.median([x.get("end_task", np.nan) for x in s.setup])),
    }


# -- memory and FLOPs (one process per variant) ----------------------------------------------


def probe(settings: Settings, variant: Variant) -> dict[str, Any]:
    """In a fresh process: peak memory of 2 training steps and the FLOPs of one step."""
    bench = build_bench(settings, restorable=False)
    out: dict[str, Any] = {"rss_setup_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if bench.device.type == "cuda":
        torch.cuda.synchronize()
        out["cuda_setup_mb"] = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    flops = FlopWindow()
    run_once(bench, settings, variant, 2, flops)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if bench.device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["flops_per_step"] = flops.flops
    return out


def probe_in_subprocess(settings: Settings, variant: Variant) -> dict[str, Any]:
    """Run `probe` in a new interpreter so max RSS is this variant's alone.

    The interpreter is started by a small `sh` that forks it: Linux carries the RSS high-water
    mark of the image a process had before `execve` into `ru_maxrss`, so a child forked directly
    from this (large) process would report this process's RSS instead of its own.
    """
    cmd = [sys.executable, __file__, "--probe", variant.name, "--settings-json", json.dumps(asdict(settings))]
    done = subprocess.run(["/bin/sh", "-c", '"$0" "$@"; exit $?', *cmd], capture_output=True, text=True)
    lines = [l for l in done.stdout.splitlines() if l.startswith(PROBE_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"memory probe of {variant.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(PROBE_MARK) :])


def probe_all(settings: Settings, chosen: list[Variant]) -> dict[str, dict[str, Any]]:
    """`probe_in_subprocess` for every variant; on CPU with a fixed thread count, as many at once as
    there are cores (max RSS and FLOPs are per process, so running side by side changes neither:
    only the timings above need a quiet machine). On a GPU one at a time."""
    at_once = 1
    if settings.device == "cpu" and settings.threads:
        at_once = max(1, min(len(chosen), (os.cpu_count() or 1) // settings.threads))
    print(f"  memory/FLOPs of {len(chosen)} variants (one process each, {at_once} at a time)", flush=True)
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        done = pool.map(lambda v: probe_in_subprocess(settings, v), chosen)
        return {variant.name: probed for variant, probed in zip(chosen, done)}


# -- engine overheads measured on their own ---------------------------------------------------


def overheads(bench: Bench, settings: Settings) -> dict[str, float]:
    """Per-step costs of the loop that are not a method's: data, loss log; and ZSCL's WE snapshot."""
    sync = synchronizer(bench.device)
    data = bench.scenario.tasks[TIMED_TASK].train_data(bench.bundle.train_transform)
    batches = iter(step_loader(data, settings.batch_size, 0, 0, 10**6, settings.num_workers))
    next(batches)
    fetch = [timed(lambda: next(batches)) for _ in range(20)]
    with tempfile.TemporaryDirectory() as tmp:
        row = [
            {"task": "t", "step": 1, "lr": 1e-5, "term": k, "value": 1.0} for k in ("ce", "kd_i2t", "kd_t2i", "total")
        ]
        log = [timed(lambda: append_loss_log(tmp, row)) for _ in range(50)]
    ensemble = WeightEnsemble(bench.bundle.model)
    snapshot = [timed(lambda: ensemble.add(bench.bundle.model), sync) for _ in range(5)]
    return {
        "ce_batch_fetch_ms": 1000 * float(np.median(fetch)),
        "loss_log_append_ms": 1000 * float(np.median(log)),
        "zscl_weight_ensemble_add_ms": 1000 * float(np.median(snapshot)),
    }


# -- profile (for targets that miss) ----------------------------------------------------------


class _ProfilerStep:
    def __init__(self, profiler) -> None:
        self.profiler = profiler

    def instrument(self, method: Method) -> None:
        after_step = method.after_step

        def stepping(ctx, step: int) -> None:
            after_step(ctx, step)
            self.profiler.step()

        method.after_step = stepping


def profile_variant(bench: Bench, settings: Settings, variant: Variant, steps: int = 3) -> str:
    """torch.profiler table of `steps` steps (after one unrecorded step) of one variant."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    schedule = torch.profiler.schedule(wait=0, warmup=1, active=steps, repeat=1)
    with torch.profiler.profile(activities=activities, schedule=schedule) as profiler:
        run_once(bench, settings, variant, 1 + steps, StepClock(bench.device), _ProfilerStep(profiler))
    key = "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    ops = profiler.key_averages().table(sort_by=key, row_limit=25)
    hooks = profiler.key_averages().table(sort_by="cpu_time_total", row_limit=12)
    return f"{variant.name}, {steps} steps, {settings.device}\n\n## by self time\n{ops}\n\n## by total time\n{hooks}\n"


# -- report -----------------------------------------------------------------------------------

BF16_DENSE_TFLOPS = {  # vendor datasheets, dense (no sparsity)
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
}


def bf16_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a known GPU (the longest matching name wins), else None."""
    matches = [k for k in BF16_DENSE_TFLOPS if k in device_name]
    return BF16_DENSE_TFLOPS[max(matches, key=len)] if matches else None


TARGETS = [  # (label, variant, reference variant or None, op, limit)
    ("lwf <= 2.6x finetune", "lwf", None, "<=", 2.6),
    ("vr_lwf <= 2.6x finetune", "vr_lwf", None, "<=", 2.6),
    ("zscl <= 2.8x finetune", "zscl", None, "<=", 2.8),
    ("icarl <= 2.6x finetune", "icarl", None, "<=", 2.6),
    ("wise_ft <= 1.05x finetune", "wise_ft", None, "<=", 1.05),
    ("vr_lwf kd on CE batch <= 1.5x finetune", "vr_lwf_kd_ce_batch", None, "<=", 1.5),
    ("vr_lwf >= 3x faster than reference style", "vr_lwf_reference", "vr_lwf", ">=", 3.0),
    ("zscl >= 3x faster than reference style", "zscl_reference", "zscl", ">=", 3.0),
]


def check_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it holds (skipped if a variant was not run)."""
    out = []
    for label, name, base, op, limit in TARGETS:
        if name not in rows or (base or "finetune") not in rows:
            continue
        ratio = rows[name]["ratio_to_finetune"]
        value = ratio / rows[base]["ratio_to_finetune"] if base else ratio
        holds = value <= limit if op == "<=" else value >= limit
        out.append({"target": label, "value": round(value, 3), "limit": limit, "holds": bool(holds)})
    return out


def add_derived(rows: dict[str, dict[str, Any]], settings: Settings, peak_tflops: float | None) -> None:
    """Ratios to finetune, images/s, achieved FLOP/s and the fraction of the bf16 peak."""
    base = rows["finetune"]["ms_per_step"]
    for row in rows.values():
        seconds = row["ms_per_step"] / 1000
        row["ratio_of_median_ms"] = row["ms_per_step"] / base
        row["images_per_s"] = settings.batch_size / seconds
        flops = row.get("flops_per_step")
        if flops:
            row["gflop_per_step"] = flops / 1e9
            row["achieved_tflops"] = flops / seconds / 1e12
            if peak_tflops:
                row["fraction_of_bf16_peak"] = flops / seconds / (peak_tflops * 1e12)


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def print_report(rows: dict[str, dict[str, Any]], targets: list[dict[str, Any]], cuda: bool) -> None:
    """The results table and the targets, as markdown."""
    header = [
        "variant",
        "ms/step",
        "q1-q3",
        "x finetune",
        "x finetune (CPU time)",
        "img/s",
        "extra_inputs ms",
        "losses ms",
        "GFLOP/step",
        "peak MiB" + (" (CUDA)" if cuda else " (RSS)"),
    ] + (["% bf16 peak"] if cuda else [])
    body = []
    for name, r in rows.items():
        hooks = r["hooks_ms_per_step"]
        peak = r.get("cuda_peak_mb") if cuda else r.get("peak_rss_mb")
        cells = [
            name,
            _fmt(r["ms_per_step"]),
            f"{_fmt(r['ms_per_step_q1'])}-{_fmt(r['ms_per_step_q3'])}",
            _fmt(r["ratio_to_finetune"], 2),
            _fmt(r.get("cpu_ratio_to_finetune"), 2),
            _fmt(r["images_per_s"], 0),
            _fmt(hooks.get("extra_inputs")),
            _fmt(hooks.get("losses")),
            _fmt(r.get("gflop_per_step")),
            _fmt(peak, 0),
        ]
        if cuda:
            cells.append(_fmt(100 * r["fraction_of_bf16_peak"], 1) if r.get("fraction_of_bf16_peak") else "-")
        body.append(cells)
    print(table(body, header))
    print()
    print(
        table(
            [[t["target"], t["value"], t["limit"], "yes" if t["holds"] else "NO"] for t in targets],
            ["target", "measured", "limit", "holds"],
        )
    )


# -- entry points -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--model", default=None, help="toyclip (CPU default) or an open_clip architecture, e.g. ViT-B-16")
    p.add_argument("--batch-size", type=int, default=None, help="CE (and distillation) batch; default 32 CPU, 64 CUDA")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run; default 5 CPU, 20 CUDA")
    p.add_argument("--warmup", type=int, default=1, help="further steps dropped after the first")
    p.add_argument(
        "--reference-steps", type=int, default=None, help="timed steps per reference-style run; default 2 CPU, 5 CUDA"
    )
    p.add_argument("--repeats", type=int, default=4, help="rounds over all variants")
    p.add_argument(
        "--reference-repeats",
        type=int,
        default=None,
        help="rounds that include the reference-style variants; default 1 CPU (a zscl_reference "
        "step takes ~12 s there), all on CUDA",
    )
    p.add_argument("--n-train", type=int, default=256, help="random images per task and reference images")
    p.add_argument("--captions", type=int, default=10_000, help="ZSCL reference captions")
    p.add_argument("--vocab-size", type=int, default=1000, help="VR-LwF pseudo-texts K")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers; default 0 CPU, 8 CUDA")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads; default 1 on CPU (robust on a shared machine), torch's default on CUDA; 0 = torch's",
    )
    p.add_argument("--variants", default=None, help="comma-separated subset of variant names")
    p.add_argument("--peft", action="store_true", help="time adapter, lora and moe_adapters against finetune")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory/FLOP processes")
    p.add_argument("--profile", default=None, help="only profile this variant (torch.profiler) and save the table")
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak of the GPU if not in the table")
    p.add_argument("--out", type=Path, default=None, help="result file (default results/train_step_<device>.json)")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--settings-json", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    cuda = args.device.startswith("cuda")
    model = args.model or ("ViT-B-16" if cuda else "toyclip")
    return Settings(
        device=args.device,
        model=model,
        pretrained="random" if model.lower() == "toyclip" else None,
        batch_size=args.batch_size or (64 if cuda else 32),
        steps=args.steps or (20 if cuda else 5),
        warmup=args.warmup,
        reference_steps=args.reference_steps or (5 if cuda else 2),
        repeats=args.repeats,
        reference_repeats=args.reference_repeats or (args.repeats if cuda else 1),
        n_train=args.n_train,
        n_captions=args.captions,
        vocab_size=args.vocab_size,
        num_workers=args.num_workers if args.num_workers is not None else (8 if cuda else 0),
        threads=args.threads if args.threads is not None else (0 if cuda else 1),
    )


def set_threads(settings: Settings) -> None:
    """Fix torch's thread count (with 2 threads on 2 shared cores, OpenMP spin-waits whenever another
    process takes a core, and single steps become up to 10x slower)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)


def chosen_variants(settings: Settings, names: str | None, peft: bool = False) -> list[Variant]:
    every = variants(settings.vocab_size, settings.model)
    if not names:
        return [v for v in every if v.peft == peft or (peft and v.name == "finetune")]
    wanted = names.split(",")
    unknown = sorted(set(wanted) - {v.name for v in every})
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {[v.name for v in every]}")
    return [v for v in every if v.name in wanted]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.probe:
        settings = Settings(**json.loads(args.settings_json))
        set_threads(settings)
        print(PROBE_MARK + json.dumps(probe(settings, chosen_variants(settings, args.probe)[0])))
        return
    began = time.perf_counter()
    settings = settings_from(args)
    set_threads(settings)
    device = torch.device(settings.device)
    chosen = chosen_variants(settings, args.variants, args.peft)
    if "finetune" not in [v.name for v in chosen]:
        chosen = [variants(settings.vocab_size)[0], *chosen]
    bench = build_bench(settings)
    if args.profile:
        text = profile_variant(bench, settings, chosen_variants(settings, args.profile)[0])
        path = RESULTS / f"profile_{args.profile}_{device.type}.txt"
        path.write_text(text)
        print(text, f"\nwrote {path}")
        return
    print(
        f"timing {len(chosen)} variants on {settings.device} ({settings.model}, batch {settings.batch_size}, "
        f"{bench.image_size}px, {settings.repeats} rounds)",
        flush=True,
    )
    info = machine_info(device)
    rows = time_variants(bench, settings, chosen)
    extra = overheads(bench, settings)
    if not args.no_memory:
        for name, probed in probe_all(settings, chosen).items():
            rows[name].update(probed)
    peak = args.peak_tflops or (bf16_peak_tflops(info.get("gpu", "")) if device.type == "cuda" else None)
    add_derived(rows, settings, peak)
    for variant in chosen:
        rows[variant.name] = {"method": variant.method, "overrides": variant.overrides, **rows[variant.name]}
    targets = check_targets(rows)
    print_report(rows, targets, device.type == "cuda")
    result = {
        "benchmark": "train_step",
        "machine": info,
        "settings": asdict(settings),
        "image_size": bench.image_size,
        "precision": "bf16 autocast (reference style: fp32)" if device.type == "cuda" else "fp32",
        "bf16_peak_tflops": peak,
        "timed_task": TIMED_TASK,
        "timing": "ms_per_step: median over all timed steps of all runs; a step = one after_step timestamp to "
        "the next (step 1 of each run and `warmup` more dropped). ratio_to_finetune: median over rounds "
        "of the run's median step / the mean of the finetune runs just before and after it (paired). "
        "images/s counts CE-batch images.",
        "methods": rows,
        "overheads_ms": extra,
        "targets": targets,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    default = f"{'peft_step' if args.peft else 'train_step'}_{device.type}.json"
    write_json(args.out or RESULTS / default, result)
    print(f"total {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
