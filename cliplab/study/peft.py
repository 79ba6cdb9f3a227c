"""Notebook 04's numbers: cost against retention, DDAS routing, expert usage of MoE-Adapters.

- `efficiency_frame`: one row per run: trained and total parameters (metrics.json `parameters`),
  peak training memory, training time, Last / Avg and the held-out zero-shot change;
- `routing_frame`: where each test set and probe went after the last task (DDAS: router j or
  the frozen model), as shares;
- `expert_usage_frame`: from the run's last checkpoint, how often each router chose each expert
  of each block while its task trained, and which experts ended frozen;
- `task_identity_frame`: after the last task, each task's accuracy as DDAS routed its images and
  with the images forced onto the task's own router (the task given, as an oracle): what the
  experts learned, apart from where the selector sent the images.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from safetensors.torch import load_file

from cliplab.engine.reopen import reopen_run
from cliplab.results import RunFolder, RunResult, load_run
from cliplab.study.store import RunRequest

FROZEN_LABEL = "frozen CLIP"


def _zero_shot_delta(result: RunResult, probe: str) -> float:
    curve = result.zero_shot.get(probe)
    return float(curve[-1] - curve[0]) if curve else float("nan")


SELECTOR_PARTS = ("input_router",)  # trained modules outside CLIP's towers (MoE-Adapters' DDAS autoencoders)


def _percent(part: float | None, whole: float | None) -> float:
    return 100.0 * part / whole if whole and part is not None else float("nan")


def efficiency_frame(results: Mapping[RunRequest, RunResult], probe: str = "toyworld_shape_colour") -> pd.DataFrame:
    """Per run: scenario, label, seed, parameters trained (all; in CLIP's towers and their added
    modules; in a selector outside them) and as % of the pretrained model's parameters, peak memory
    (MiB), training seconds, Last, Avg, and the change of held-out zero-shot accuracy on `probe`."""
    rows = []
    for request, result in results.items():
        params = result.extra.get("parameters", {})
        total, trained = params.get("total"), params.get("trainable")
        base = params.get("pretrained", total)  # runs recorded before `pretrained` existed: the final model
        by_part = result.extra.get("trained_by_part", {})
        selector = sum(by_part.get(part, 0) for part in SELECTOR_PARTS)
        in_clip = None if trained is None else trained - selector
        rows.append(
            {
                "scenario": request.scenario,
                "label": request.label,
                "seed": request.seed,
                "trainable": trained,
                "total": total,
                "pretrained": base,
                "trainable_pct": _percent(trained, base),
                "trainable_in_clip": in_clip,
                "trainable_in_clip_pct": _percent(in_clip, base),
                "trainable_selector": selector,
                "trained_by_part": by_part,
                "peak_memory_mib": result.extra.get("peak_memory", {}).get("training_mib"),
                "train_seconds": result.extra.get("seconds", {}).get("train"),
                "last": (result.summary or {}).get("last"),
                "avg": (result.summary or {}).get("avg"),
                "zero_shot_delta": _zero_shot_delta(result, probe),
            }
        )
    return pd.DataFrame(rows)


def routing_frame(result: RunResult, after: int = -1) -> pd.DataFrame:
    """Share (%) of each evaluated set taking each route after task `after` (default: the last).

    Rows: the tasks' test sets, then the probes; columns: the frozen model, then router j named by
    task j. Empty when the run did not route its inputs."""
    routing = result.extra.get("routing")
    if not routing:
        return pd.DataFrame()
    shares = routing["after_task"][after]
    names = {"-1": FROZEN_LABEL, **{str(j): f"router {j}: {t}" for j, t in enumerate(result.tasks)}}
    frame = pd.DataFrame(
        {row: {names.get(r, r): 100.0 * v for r, v in routes.items()} for row, routes in shares.items()}
    ).T
    columns = [c for c in names.values() if c in frame.columns]
    return frame.reindex(columns=columns).fillna(0.0)


def expert_usage_frame(folder: str, task: int | None = None) -> pd.DataFrame:
    """Long frame of MoE-Adapters' usage counts in the checkpoint after `task` (default: the last).

    Columns: tower, block, router, expert, share (% of that router's selections in the block),
    frozen (the expert was frozen by then)."""
    run = RunFolder(folder)
    paths = run.task_checkpoints()
    if not paths:
        raise FileNotFoundError(f"{folder} holds no task checkpoint")
    path = paths[-1] if task is None else run.task_checkpoint(task)
    tensors = load_file(str(path))
    rows = []
    for key, usage in tensors.items():
        if not key.endswith(".branches.moe.usage"):
            continue
        tower = "image" if key.startswith("visual.") else "text"
        block = int(key.split("resblocks.")[1].split(".")[0])
        frozen = tensors[key[: -len("usage")] + "frozen"]
        for router, counts in enumerate(usage):
            total = float(counts.sum())
            for expert, count in enumerate(counts.tolist()):
                rows.append(
                    {
                        "tower": tower,
                        "block": block,
                        "router": router,
                        "expert": expert,
                        "share": 100.0 * count / total if total else 0.0,
                        "frozen": bool(frozen[expert]),
                    }
                )
    return pd.DataFrame(rows)


ROUTED_LABEL, ORACLE_LABEL, OWN_SHARE_LABEL = "as routed", "on its own router", "% on its own router"


def task_identity_frame(
    folder: str, scenario_options: Mapping | None = None, device: str | None = None
) -> pd.DataFrame:
    """Per task of a routed task-incremental run, after its last task: the accuracy as the run
    scored it (each image on the route its selector chose), the accuracy with every test image
    forced onto that task's router, and the share of the task's images the selector sent there.
    The last row ("Last") holds the means. Re-evaluates the run's final checkpoint (seconds for
    ToyCLIP)."""
    result = load_run(folder)
    routing = result.extra.get("routing")
    if not routing:
        raise ValueError(f"{folder}: {result.method} did not route its inputs; a task-identity row needs a routed run")
    reopened = reopen_run(folder, dict(scenario_options or {}), device)
    oracle = reopened.evaluator.task_identity_row(reopened.bundle.model)
    own = routing["task_to_own_router"]  # recorded by the run (`cliplab.engine.records.routing_summary`)
    rows = {
        task: {ROUTED_LABEL: result.accuracy_matrix[-1][j], ORACLE_LABEL: oracle[j], OWN_SHARE_LABEL: 100.0 * own[j]}
        for j, task in enumerate(result.tasks)
    }
    frame = pd.DataFrame(rows).T
    frame.loc["Last"] = frame.mean()
    return frame


__all__ = [
    "FROZEN_LABEL",
    "ORACLE_LABEL",
    "OWN_SHARE_LABEL",
    "ROUTED_LABEL",
    "efficiency_frame",
    "expert_usage_frame",
    "routing_frame",
    "task_identity_frame",
]
