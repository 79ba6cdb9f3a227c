"""The study's run store: which runs a notebook asks for, training what is missing, reading results.

Runs live in one store, ``<runs_dir>/<scenario>/<label>/seed<k>``, where ``label`` is the method
name or, for an ablation variant, ``method+option=value``. A folder that holds a finished run of
the same identity (`cliplab.engine.runner.plan_run`, decided from the scenario's spec without
building data) is reused; an unfinished one resumes; one holding another run is an error. So a
notebook asking for a run another notebook already made reuses it instead of training again.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from cliplab.engine.runner import plan_run, run_scenario
from cliplab.methods import METHODS
from cliplab.results import RunFolder, RunIdentity, RunResult, load_run, load_runs
from cliplab.scenarios import scenario_spec
from cliplab.study.pool import on_gpu, resolve_jobs, run_parallel
from cliplab.study.settings import SMOKE_METHOD_OPTIONS, scenario_options


@dataclass(frozen=True)
class RunRequest:
    """One run of the study: a method (with optional option changes) on a scenario, one seed."""

    scenario: str
    method: str
    seed: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """Display name and folder name: "vr_lwf", or "vr_lwf+directions=i2t" for a variant."""
        return "+".join([self.method, *(f"{k}={v}" for k, v in self.options)])

    def folder(self, runs_dir: str | Path) -> Path:
        return Path(runs_dir) / self.scenario / self.label / f"seed{self.seed}"


def grid(scenarios: Sequence[str], methods: Sequence[str], seeds: Sequence[int]) -> list[RunRequest]:
    """Every (scenario, method, seed) with the method's default options."""
    return [RunRequest(s, m, int(k)) for s in scenarios for m in methods for k in seeds]


def ablation(
    scenario: str, method: str, choices: Mapping[str, Sequence[Any]], seeds: Sequence[int], smoke: bool = False
) -> list[RunRequest]:
    """One-factor-at-a-time variants of `method`: each changes ONE option from its default.

    A value equal to the default is the main run itself and is not repeated. Under `smoke`
    only the first non-default value of each option runs.
    """
    defaults = {f.name: f.default for f in fields(METHODS[method].Options)}
    unknown = set(choices) - set(defaults)
    if unknown:
        raise ValueError(f"{method} has no option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    requests = []
    for option, values in choices.items():
        changed = [v for v in values if v != defaults[option]][: 1 if smoke else None]
        requests += [RunRequest(scenario, method, int(k), ((option, v),)) for v in changed for k in seeds]
    return requests


def _overrides(request: RunRequest, settings: Mapping[str, Any], smoke: bool) -> dict[str, Any]:
    options = {**(SMOKE_METHOD_OPTIONS.get(request.method, {}) if smoke else {}), **dict(request.options)}
    return {**settings, **{f"method.{k}": v for k, v in options.items()}}


def _finished(folder: Path, identity: RunIdentity) -> bool:
    """True when `folder` holds a finished run of exactly this identity (nothing is loaded but its record)."""
    run = RunFolder(folder)
    stored = run.identity() if run.finished else None
    return stored is not None and stored.same_numbers(identity)


def run_requests(
    requests: Iterable[RunRequest],
    runs_dir: str | Path,
    model: str = "toyclip",
    pretrained: str | None = None,
    settings: Mapping[str, Any] | None = None,
    smoke: bool = False,
    data_root: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Run (or resume, or reuse) every request under `settings`; return their folders in order.

    A finished folder made by the study with the same settings is reused without loading
    anything; a folder holding a different run raises `ValueError` (pick another RUNS_DIR).
    Runs still to do are trained `jobs` at a time (see `run_batches`).
    """
    return run_batches(
        [(requests, settings or {})], runs_dir, model, pretrained, smoke, data_root, extra_options, jobs, log
    )


def run_batches(
    batches: Sequence[tuple[Iterable[RunRequest], Mapping[str, Any]]],
    runs_dir: str | Path,
    model: str = "toyclip",
    pretrained: str | None = None,
    smoke: bool = False,
    data_root: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """`run_requests` for several (requests, settings) batches trained in one pool.

    Runs still to do are trained `jobs` at a time in worker processes (None: one per CPU core,
    one on a GPU; see `cliplab.study.pool`), the most expensive first, so one-session twins
    or ablation variants fill the cores while the long runs train. A run's numbers do not
    depend on `jobs`: it is seeded and single-process either way.
    """
    folders, todo, seen = [], [], {}
    for requests, settings in batches:
        for request in requests:
            folder = request.folder(runs_dir)
            folders.append(folder)
            overrides = _overrides(request, settings, smoke)
            options = scenario_options(request.scenario, data_root, extra_options)
            _, identity = plan_run(
                request.scenario, request.method, model, pretrained, request.seed, overrides, options
            )
            record = identity.numbers_key()
            if folder in seen:  # asked twice (e.g. a grid run that is also the ablation's baseline)
                if seen[folder] != record:
                    raise ValueError(
                        f"{folder} is requested twice with different settings; give one of them another label"
                    )
                continue
            seen[folder] = record
            if _finished(folder, identity):
                log(f"reuse  {folder}")
                continue
            todo.append((request, str(folder), overrides, options, model, pretrained))
    if not todo:
        return folders
    todo.sort(key=lambda call: -_expected_cost(call[0], call[2], call[3]))
    devices = {call[2].get("device") for call in todo}
    device = devices.pop() if len(devices) == 1 else None
    jobs = resolve_jobs(jobs, len(todo), device)
    log(_plan_message(todo, jobs, model, device))
    finished = []

    def done(call, seconds):
        finished.append(call)
        log(f"ran    {call[1]}  ({seconds:.0f} s)")

    try:
        run_parallel(_run_one, todo, jobs, on_done=done)
    except KeyboardInterrupt:
        log(
            f"interrupted: {len(finished)} of {len(todo)} runs finished and are kept; the others stopped at their "
            "last finished task or mid-task checkpoint, or had not started. Run this cell (or the same command) "
            "again to go on: finished runs are reused, unfinished ones resume."
        )
        raise
    return folders


# Relative cost of a training step, for ordering runs (the longest start first): methods with a
# second (distillation or memory) batch cost about twice fine-tuning (benchmarks/README.md).
# TiC's strategies: the oracle trains t x C at step t, (T + 1) / 2 = 3 times the others over 5 steps.
_STEP_COST = {
    "zeroshot": 0.0,
    "continual_clip": 0.0,
    "finetune": 1.0,
    "wise_ft": 1.0,
    "sequential": 1.0,
    "cumulative": 1.0,
    "restart": 1.0,
    "oracle": 3.0,
    "cll_clip": 1.0,
}


def _expected_cost(request: RunRequest, overrides: Mapping[str, Any], options: Mapping[str, Any]) -> float:
    """Steps x tasks x step cost from the scenario's spec (epoch-based protocols count 100 steps a task)."""
    spec = scenario_spec(request.scenario, **options)
    steps = overrides.get("steps_per_task") or spec.defaults.get("steps_per_task") or 100
    tasks = min(overrides.get("max_tasks") or len(spec.tasks), len(spec.tasks))
    return (_STEP_COST.get(request.method, 2.0) * float(steps) + 10.0) * tasks


# Seconds per unit of `_expected_cost` for ToyCLIP on one core of the 2-core CPU machine the study is
# measured on (two runs side by side): `toy-digits-cil` / `finetune` (350 units) trains in 52 s and
# evaluates in 16 s (benchmarks/README.md), and notebook 02's runs (about 9,980 units, two at a time)
# took 1,003 s: both about 0.19 s a unit. Starting a run (building the scenario's data and probes,
# loading the model) adds RUN_START_SECONDS, and a spawned worker importing torch and cliplab
# WORKER_START_SECONDS (when runs train side by side).
SECONDS_PER_COST = 0.19
RUN_START_SECONDS = 6.0
WORKER_START_SECONDS = 8.0


def estimate_seconds(costs: Sequence[float], jobs: int) -> float:
    """Wall time of runs of these `_expected_cost`s trained `jobs` at a time, longest first (an estimate)."""
    workers = [WORKER_START_SECONDS if jobs > 1 and len(costs) > 1 else 0.0] * max(1, min(jobs, len(costs)))
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(workers, workers[0] + RUN_START_SECONDS + SECONDS_PER_COST * cost)
    return max(workers)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(10, round(seconds, -1)):.0f} s"
    if seconds < 5400:
        return f"{round(seconds / 60):.0f} min"
    return f"{seconds // 3600:.0f} h {round(seconds % 3600 / 60):.0f} min"


def _plan_message(todo: Sequence[tuple], jobs: int, model: str, device: str | None) -> str:
    """What is about to train and roughly how long (said before training starts)."""
    head = f"training {len(todo)} run{'s' if len(todo) > 1 else ''}, {jobs} at a time"
    if model != "toyclip" or on_gpu(device):
        eta = "no time estimate (it is calibrated for ToyCLIP on a CPU)"
    else:
        seconds = estimate_seconds([_expected_cost(call[0], call[2], call[3]) for call in todo], jobs)
        eta = f"roughly {_duration(seconds)} (an estimate from the runs' steps, measured on a 2-core CPU)"
    return f"{head}: {eta}. Interrupt (Ctrl-C) stops within seconds; running again resumes."


def _run_one(
    request: RunRequest,
    folder: str,
    overrides: Mapping[str, Any],
    options: Mapping[str, Any],
    model: str,
    pretrained: str | None,
) -> float:
    """Train (or resume) one request into `folder`; return its seconds."""
    start = time.perf_counter()
    try:
        run_scenario(
            request.scenario,
            request.method,
            folder,
            model=model,
            pretrained=pretrained,
            seed=request.seed,
            overrides=dict(overrides),
            scenario_options=dict(options),
        )
    except ValueError as error:
        if "already holds a different run" not in str(error):
            raise
        raise ValueError(f"{error} In a notebook: set RUNS_DIR to a new folder.") from error
    return time.perf_counter() - start


def load_results(requests: Sequence[RunRequest], runs_dir: str | Path) -> dict[RunRequest, RunResult]:
    """The finished `RunResult` of every request."""
    return {r: load_run(r.folder(runs_dir)) for r in requests}


def by_label(results: Mapping[RunRequest, RunResult], scenario: str | None = None) -> dict[str, list[RunResult]]:
    """Results grouped by label (seeds in one list), optionally of one scenario only."""
    groups: dict[str, list[RunResult]] = {}
    for request, result in results.items():
        if scenario is None or request.scenario == scenario:
            groups.setdefault(request.label, []).append(result)
    return groups


def tidy_runs(requests: Sequence[RunRequest], runs_dir: str | Path) -> pd.DataFrame:
    """`cliplab.results.load_runs` rows of exactly these runs, in request order, plus a `label` column."""
    root = Path(runs_dir)
    wanted = {r.folder(root).relative_to(root).as_posix(): r.label for r in requests}
    df = load_runs(root)
    df = df[df["run"].isin(wanted)].copy()
    missing = set(wanted) - set(df["run"])
    if missing:
        raise FileNotFoundError(f"runs not finished under {root}: {sorted(missing)}")
    df.insert(1, "label", df["run"].map(wanted))
    order = {run: i for i, run in enumerate(wanted)}  # the requests' order: METHODS order in every figure
    return df.sort_values("run", key=lambda runs: runs.map(order), kind="stable").reset_index(drop=True)


__all__ = [
    "RunRequest",
    "ablation",
    "by_label",
    "estimate_seconds",
    "grid",
    "load_results",
    "run_batches",
    "run_requests",
    "tidy_runs",
]
