"""Machinery behind the study notebooks (notebooks/01-03): settings, the run store, alignment over
checkpoints, JSON headline numbers and optional widgets.

The notebooks tell the story; everything with a loop or a branch lives here so each notebook cell
is a few calls. Runs live in one store, ``<runs_dir>/<scenario>/<label>/seed<k>``, where ``label``
is the method name or, for an ablation variant, ``method+option=value``. Because a run folder
resumes (``cliplab.engine.runner.run_scenario``), a notebook that asks for a run another notebook
already finished with the same settings reuses it instead of training again.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cliplab.results import METRICS_FILE, RunResult, load_run, load_runs

# SMOKE = True: every notebook end to end in seconds per run (tests, a first look on a laptop).
SMOKE_SETTINGS: dict[str, Any] = {
    "steps_per_task": 3, "batch_size": 8, "warmup_steps": 1, "lr": 5e-4, "probe_size": 32,
    "retrieval_size": 24, "max_eval_images": 40, "max_tasks": 2, "checkpoint_every": 0,
}
# Method options that only make the smoke settings cheaper (memory, reference texts, snapshots).
SMOKE_METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "zscl": {"n_reference_texts": 200},
    "icarl": {"memory_size": 40, "max_candidates": 200},
    "vr_lwf": {"vocab_size": 200},
}
SMOKE_ALIGNMENT_PROBE = 32  # image-caption pairs of the alignment probe under SMOKE


# --- settings -------------------------------------------------------------------------------

def study_settings(smoke: bool, steps_per_task: int | None = None, device: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """TrainConfig overrides shared by every run of the study (scenario defaults for the rest).

    `steps_per_task=None` keeps the scenario's default (SMOKE: `SMOKE_SETTINGS`). Progress bars
    are off: papermill logs and notebook cells stay readable. The device is only recorded when
    given, so runs made on "auto" resume on any machine.
    """
    settings: dict[str, Any] = {"progress": False}
    if smoke:
        settings.update(SMOKE_SETTINGS)
    if steps_per_task is not None:
        settings["steps_per_task"] = int(steps_per_task)
    if device not in (None, "auto"):
        settings["device"] = device
    settings.update(extra or {})
    return settings


def runs_root(runs_dir: str | Path, smoke: bool) -> Path:
    """The run store to use: `runs_dir`, or `<runs_dir>-smoke` for SMOKE runs.

    Smoke and full runs of the same (scenario, method, seed) have different settings, so they
    cannot share a folder; keeping them apart lets a notebook switch SMOKE on and off.
    """
    return Path(f"{runs_dir}-smoke") if smoke else Path(runs_dir)


_TOY_PROBE_OPTIONS = ("probe_size", "retrieval_size", "probe_seed")


def scenario_options(scenario: str, data_root: str | None = None, extra: Mapping[str, Any] | None = None,
                     settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build options of a scenario: toy scenarios take their probe sizes, real ones `root` + extras.

    Passing the probe sizes of `settings` up front builds a toy scenario once with the right
    probes (the runner would otherwise build it with the defaults, then again).
    """
    if scenario.startswith("toy-"):
        return {k: settings[k] for k in _TOY_PROBE_OPTIONS if k in (settings or {})}
    return {**({"root": data_root} if data_root else {}), **(extra or {})}


def one_session_settings(settings: Mapping[str, Any], multi_session: str) -> dict[str, Any]:
    """Settings for the one-session twin of a multi-session scenario: the same total step budget.

    The single session trains for (steps per task x number of tasks) of `multi_session` under
    `settings`, so any STEPS_PER_TASK / max_tasks choice stays matched (defaults:
    toy-digits-ost 300 steps = 5 tasks x 60 of toy-digits-cil). Known before any run is
    trained, so both regimes can train side by side. Epoch-based protocols keep their epochs.
    """
    one = {k: v for k, v in settings.items() if k != "max_tasks"}  # one task anyway
    defaults, n_tasks = _scenario_shape(multi_session)
    if {**defaults, **settings}.get("epochs_per_task") is None:
        steps = settings.get("steps_per_task") or defaults["steps_per_task"]
        one["steps_per_task"] = int(steps) * min(settings.get("max_tasks") or n_tasks, n_tasks)
    return one


# --- the run store --------------------------------------------------------------------------

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


def ablation(scenario: str, method: str, choices: Mapping[str, Sequence[Any]], seeds: Sequence[int],
             smoke: bool = False) -> list[RunRequest]:
    """One-factor-at-a-time variants of `method`: each changes ONE option from its default.

    A value equal to the default is the main run itself and is not repeated. Under `smoke`
    only the first non-default value of each option runs.
    """
    from cliplab.methods import METHODS

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


REQUEST_FILE = "study_request.json"  # what the study asked of a run folder (reuse check)


@lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def weights_fingerprint(model: str, pretrained: str | None) -> str | None:
    """Content hash of the local weights a run starts from (None for downloaded tags / random).

    Part of the reuse record, so regenerating the shipped ToyCLIP (or editing a local
    checkpoint) makes the study train again instead of reusing runs of the old weights.
    """
    from cliplab.models import TOYCLIP_CHECKPOINT

    if model.lower() == "toyclip" and pretrained in (None, "toyworld"):
        path = TOYCLIP_CHECKPOINT
    else:
        candidates = [Path(p) for p in (pretrained, model) if p and Path(p).is_file()]
        if not candidates:
            return None
        path = candidates[0]
    return _file_digest(str(path), path.stat().st_mtime_ns) if path.exists() else None


def _request_record(request: RunRequest, model: str, pretrained: str | None, overrides: Mapping[str, Any]) -> dict:
    """What identifies a run's numbers: settings that only change how it runs (device, progress
    bars) are left out, as the runner does, so a run made on a GPU is reused on a CPU."""
    from cliplab.engine.runner import ENGINE_REVISION, RUNTIME_ONLY  # the runner's lists: one source of truth

    numbers = {k: v for k, v in overrides.items() if k not in RUNTIME_ONLY}
    return jsonable({"engine": ENGINE_REVISION, "scenario": request.scenario, "method": request.method,
                     "seed": request.seed, "model": model,
                     "pretrained": pretrained, "weights": weights_fingerprint(model, pretrained),
                     "overrides": numbers})


def _finished(folder: Path, record: dict) -> bool:
    """True when `folder` holds a finished run that the study started with exactly `record`.

    Same scenario, method, seed, model, weights and overrides (scenario defaults come from the
    code) means the same configuration, so nothing needs loading. Other folders go through the
    runner, which checks its own record and resumes or refuses.
    """
    import json

    marker = folder / REQUEST_FILE
    if not (folder / METRICS_FILE).exists() or not marker.exists():
        return False
    return json.loads(marker.read_text()) == json.loads(json.dumps(record))


def run_requests(requests: Iterable[RunRequest], runs_dir: str | Path, model: str = "toyclip",
                 pretrained: str | None = None, settings: Mapping[str, Any] | None = None,
                 smoke: bool = False, data_root: str | None = None,
                 extra_options: Mapping[str, Any] | None = None, jobs: int | None = None,
                 log: Callable[[str], None] = print) -> list[Path]:
    """Run (or resume, or reuse) every request under `settings`; return their folders in order.

    A finished folder made by the study with the same settings is reused without loading
    anything; a folder holding a different run raises `ValueError` (pick another RUNS_DIR).
    Runs still to do are trained `jobs` at a time (see `run_batches`).
    """
    return run_batches([(requests, settings or {})], runs_dir, model, pretrained, smoke, data_root,
                       extra_options, jobs, log)


def run_batches(batches: Sequence[tuple[Iterable[RunRequest], Mapping[str, Any]]], runs_dir: str | Path,
                model: str = "toyclip", pretrained: str | None = None, smoke: bool = False,
                data_root: str | None = None, extra_options: Mapping[str, Any] | None = None,
                jobs: int | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """`run_requests` for several (requests, settings) batches trained in one pool.

    Runs still to do are trained `jobs` at a time in worker processes (None: one per CPU core,
    one on a GPU; see `cliplab.engine.pool`), the most expensive first, so one-session twins
    or ablation variants fill the cores while the long runs train. A run's numbers do not
    depend on `jobs`: it is seeded and single-process either way.
    """
    from cliplab.engine.pool import resolve_jobs, run_parallel

    folders, todo, seen = [], [], {}
    for requests, settings in batches:
        for request in requests:
            folder = request.folder(runs_dir)
            folders.append(folder)
            overrides = _overrides(request, settings, smoke)
            record = _request_record(request, model, pretrained, overrides)
            if folder in seen:  # asked twice (e.g. a grid run that is also the ablation's baseline)
                if seen[folder] != record:
                    raise ValueError(f"{folder} is requested twice with different settings; give one of them another label")
                continue
            seen[folder] = record
            if _finished(folder, record):
                log(f"reuse  {folder}")
                continue
            options = scenario_options(request.scenario, data_root, extra_options, settings)
            todo.append((request, str(folder), overrides, options, model, pretrained, record))
    todo.sort(key=lambda call: -_expected_cost(call[0], call[2]))
    devices = {call[2].get("device") for call in todo}
    jobs = resolve_jobs(jobs, len(todo), devices.pop() if len(devices) == 1 else None)
    if len(todo) > 1 and jobs > 1:
        log(f"training {len(todo)} runs, {jobs} at a time")
    run_parallel(_run_one, todo, jobs, on_done=lambda call, seconds: log(f"ran    {call[1]}  ({seconds:.0f} s)"))
    return folders


# Relative cost of a training step, for ordering runs (the longest start first): methods with a
# second (distillation or memory) batch cost about twice fine-tuning (benchmarks/README.md).
_STEP_COST = {"zeroshot": 0.0, "finetune": 1.0, "wise_ft": 1.0}


def _expected_cost(request: RunRequest, overrides: Mapping[str, Any]) -> float:
    """Steps x tasks x step cost from the scenario's defaults (1.0 when they need local data)."""
    try:
        scenario = _scenario_shape(request.scenario)
    except (ValueError, TypeError, FileNotFoundError):  # a real scenario without its root
        return 1.0
    steps = overrides.get("steps_per_task") or scenario[0].get("steps_per_task") or 100
    tasks = min(overrides.get("max_tasks") or scenario[1], scenario[1])
    return (_STEP_COST.get(request.method, 2.0) * float(steps) + 10.0) * tasks


@lru_cache(maxsize=None)
def _scenario_shape(name: str) -> tuple[dict[str, Any], int]:
    from cliplab.engine.scenario import get_scenario

    scenario = get_scenario(name)
    return dict(scenario.defaults), len(scenario.tasks)


def _run_one(request: RunRequest, folder: str, overrides: Mapping[str, Any], options: Mapping[str, Any],
             model: str, pretrained: str | None, record: Mapping[str, Any]) -> float:
    """Train one request into `folder` and mark it as made by the study; return its seconds."""
    from cliplab.engine.runner import run_scenario
    from cliplab.io import write_json_atomic

    start = time.perf_counter()
    try:
        run_scenario(request.scenario, request.method, folder, model=model, pretrained=pretrained,
                     seed=request.seed, overrides=dict(overrides), scenario_options=dict(options))
    except ValueError as error:
        if "already holds a different run" not in str(error):
            raise
        raise ValueError(f"{error} In a notebook: set RUNS_DIR to a new folder.") from error
    write_json_atomic(Path(folder) / REQUEST_FILE, record)
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


# --- tables ---------------------------------------------------------------------------------

def method_table(df: pd.DataFrame, by: Sequence[str] = ("label", "scenario"),
                 quantities: Sequence[str] = ("transfer", "avg", "last", "forgetting"),
                 decimals: int = 1) -> pd.DataFrame:
    """Transfer / Avg / Last (and any other `summary_table` quantity) as "mean ± std" strings.

    A quantity also selects everything under it ("zero_shot_delta" = every probe's delta) and
    may be a shell pattern ("retrieval_delta/*/i2t_r1").
    """
    from fnmatch import fnmatchcase

    from cliplab.results import format_summary, summary_table

    table = summary_table(df, by=by)
    names = list(dict.fromkeys(table.columns.get_level_values(0)))
    keep = [n for n in names if any(n.startswith(q + "/") or fnmatchcase(n, q) for q in quantities)]
    return format_summary(table[keep], decimals=decimals)


def zero_shot_summary(results: Sequence[RunResult]) -> dict[str, float]:
    """Mean over runs of held-out zero-shot (mean over probes) and I→T / T→I R@1, before vs after."""
    def mean_over(runs, pick) -> float:
        values = [pick(r) for r in runs]
        return float(np.nanmean(values)) if values else math.nan

    def probe_mean(r: RunResult, step: int) -> float:
        return float(np.mean([c[step] for c in r.zero_shot.values()]))

    def recall(r: RunResult, metric: str, step: int) -> float:
        return float(np.mean([c[metric][step] for c in r.retrieval.values()]))

    return {
        "zero_shot_before": mean_over(results, lambda r: probe_mean(r, 0)),
        "zero_shot_after": mean_over(results, lambda r: probe_mean(r, -1)),
        "i2t_r1_before": mean_over(results, lambda r: recall(r, "i2t_r1", 0)),
        "i2t_r1_after": mean_over(results, lambda r: recall(r, "i2t_r1", -1)),
        "t2i_r1_before": mean_over(results, lambda r: recall(r, "t2i_r1", 0)),
        "t2i_r1_after": mean_over(results, lambda r: recall(r, "t2i_r1", -1)),
    }


def headline_numbers(results: Sequence[RunResult]) -> dict[str, float]:
    """The numbers a notebook records for one method: means over seeds (and std for n > 1).

    Continual summary (transfer, avg, last, bwt, forgetting), learned-class accuracy after the
    last task, plasticity (mean of the matrix diagonal), and `zero_shot_summary`.
    """
    from cliplab.metrics import SUMMARY_KEYS
    from cliplab.plots.continual import final_accuracy

    per_run = pd.DataFrame([{
        **{k: (r.summary or {}).get(k, math.nan) for k in SUMMARY_KEYS},
        "final_accuracy": final_accuracy(r),
        "plasticity": float(np.nanmean(np.diag(np.asarray(r.accuracy_matrix, dtype=float)))),
    } for r in results])
    out = {**per_run.mean().to_dict(), **zero_shot_summary(results), "n_seeds": len(results)}
    if len(results) > 1:
        out.update({f"{k}_std": v for k, v in per_run.std().to_dict().items()})
    return out


# --- alignment over checkpoints -------------------------------------------------------------

def alignment_probe(scenario: str, eval_transform: Callable, size: int, data_root: str | None = None,
                    extra_options: Mapping[str, Any] | None = None, seed: int = 0):
    """(images dataset, one caption per image): the fixed probe every model version is encoded on.

    Toy scenarios: a ToyWorld retrieval probe (held-out seed, one full caption per image). Real
    scenarios: the first caption of each image of the scenario's retrieval set (pass e.g.
    `{"retrieval": "coco_karpathy"}` as scenario options), the first `size` images.
    """
    from torch.utils.data import Subset

    if scenario.startswith("toy-"):
        from cliplab.data import TensorImageDataset
        from cliplab.toyworld.tasks import retrieval_probe

        probe = retrieval_probe(seed=seed, n_images=size, captions_per_image=1)
        images = TensorImageDataset(probe.images, [0] * len(probe.images), ["_"], ["{}"], transform=eval_transform)
        return images, list(probe.captions)
    from cliplab.engine.scenario import get_scenario

    built = get_scenario(scenario, **scenario_options(scenario, data_root, extra_options))
    if not built.retrieval:
        raise ValueError(f"{scenario} has no retrieval probe: pass scenario options such as "
                         "{'retrieval': 'coco_karpathy'} (SCENARIO_OPTIONS in the notebook)")
    probe = built.retrieval[0]
    owners = probe.text_image_index.tolist()
    first = {}
    for j, image in enumerate(owners):
        first.setdefault(int(image), j)
    keep = sorted(first)[:size]
    return Subset(probe.data(eval_transform), keep), [probe.captions[first[i]] for i in keep]


def _cache_key(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(str(p) for p in parts))


def encode_probe(model: torch.nn.Module, tokenizer: Callable, probe, cache=None, key: str = "",
                 batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """(I, T) embeddings of the probe, cached under `key` when a cache is given."""
    from cliplab.embed import encode_images, encode_texts

    images, captions = probe

    def compute_images() -> Tensor:
        return encode_images(model, images, batch_size=batch_size)

    def compute_texts() -> Tensor:
        return encode_texts(model, tokenizer, captions, batch_size=batch_size)

    if cache is None:
        return compute_images(), compute_texts()
    return (cache.get_or_compute(_cache_key(key, "images"), compute_images),
            cache.get_or_compute(_cache_key(key, "texts"), compute_texts))


def checkpoint_paths(folder: str | Path) -> list[Path]:
    """The per-task checkpoints `task_<i>.safetensors` of a run, in task order."""
    paths = list((Path(folder) / "checkpoints").glob("task_*.safetensors"))
    return sorted(paths, key=lambda p: int(p.stem.split("_")[1]))


def embed_run(folder: str | Path, probe, tokenizer: Callable, device: str | None = None,
              probe_name: str = "probe", batch_size: int = 256) -> list[tuple[Tensor, Tensor]]:
    """(I, T) of the probe after every task of a run, cached in `<run>/embeddings/`.

    The checkpoint files carry their architecture, so any run folder can be embedded alone.
    """
    from cliplab.checkpoints import load_state_dict
    from cliplab.embed import EmbeddingCache
    from cliplab.models import load_model

    paths = checkpoint_paths(folder)
    if not paths:
        raise FileNotFoundError(f"{folder} has no per-task checkpoints (was it run with keep_checkpoints=last?)")
    cache, model, out = EmbeddingCache(Path(folder) / "embeddings"), None, []
    for index, path in enumerate(paths):
        key = _cache_key(probe_name, f"n{len(probe[1])}", f"task{index}")
        if not all(_cache_key(key, m) in cache for m in ("images", "texts")) and model is None:
            model = load_model(str(path), device=device).model
        if model is not None:
            model.load_state_dict(load_state_dict(path))
        out.append(encode_probe(model, tokenizer, probe, cache, key, batch_size))
    return out


Embeddings = tuple[Tensor, Tensor]  # (I, T) of one model version on the probe


def alignment_frame(reference: Embeddings, versions: Mapping[tuple[str, int], Sequence[Embeddings]],
                    temperature: float) -> pd.DataFrame:
    """Long table (method, seed, task, metric, value) of every alignment number of every version.

    `reference` = (I₀, T₀) of the pretrained model (task 0); `versions[(label, seed)]` = (I, T)
    after task 1..T. Metrics: `alignment_summary` of the version and `version_drift` from θ₀.
    """
    from cliplab.alignment import alignment_summary, version_drift

    I0, T0 = reference
    rows = []
    for (label, seed), embeddings in versions.items():
        for task, (I, T) in enumerate([reference, *embeddings]):
            values = {**alignment_summary(I, T, temperature), **version_drift(I0, T0, I, T, temperature)}
            rows += [(label, seed, task, metric, float(v)) for metric, v in values.items()]
    return pd.DataFrame(rows, columns=["method", "seed", "task", "metric", "value"])


def final_alignment(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Metrics after the last task, mean over seeds: one row per method, plus the pretrained row."""
    last = table[table["task"] == table.groupby("method")["task"].transform("max")]
    wide = last[last["metric"].isin(metrics)].pivot_table(index="method", columns="metric", values="value", sort=False)
    first = table[(table["task"] == 0) & table["metric"].isin(metrics)]
    pretrained = first.groupby("metric")["value"].mean().rename("pretrained").to_frame().T
    return pd.concat([pretrained, wide])[list(metrics)]


# --- headline numbers and widgets -----------------------------------------------------------

def jsonable(value: Any) -> Any:
    """Nested dicts/lists/DataFrames of numbers as plain JSON (NaN/inf become None)."""
    if isinstance(value, pd.DataFrame):
        return {str(k): jsonable(v) for k, v in value.to_dict(orient="index").items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.generic, Tensor)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def explore(function: Callable[..., Any], enabled: bool = True, **controls: Any):
    """Attach ipywidgets controls to `function` (JupyterLab); a no-op headless or without ipywidgets.

    `controls` are `ipywidgets.interact` abbreviations: a list gives a dropdown, a (min, max)
    tuple of ints a slider. Returns the widget or None.
    """
    if not enabled:
        return None
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets.interact(function, **controls)


__all__ = [
    "SMOKE_SETTINGS", "SMOKE_METHOD_OPTIONS", "SMOKE_ALIGNMENT_PROBE", "RunRequest", "ablation", "alignment_frame",
    "alignment_probe", "by_label", "checkpoint_paths", "embed_run", "encode_probe", "explore", "final_alignment",
    "grid", "headline_numbers", "jsonable", "load_results", "method_table", "one_session_settings", "run_requests",
    "runs_root", "scenario_options", "study_settings", "tidy_runs", "weights_fingerprint", "zero_shot_summary",
]
