"""Notebook 06's numbers: the open-domain table, the online stream's anytime curves and summaries.

- `odcl_table`: per method, CoLeCLIP's four metrics for TIL and CIL (Transfer = unseen domains,
  SeenAvg = seen domains, Avg, Last) and the change of held-out ToyWorld zero-shot accuracy;
- `anytime_frame` / `online_table`: the anytime-accuracy curve of every online run (long form),
  and A_auc / A_avg / A_last / F_last with the held-out zero-shot change;
- `stability_points`: one point per run for the stability–plasticity figure: held-out zero-shot
  after the last task (up) against what the protocol calls learning (right): the mean of the
  matrix diagonal for task sequences, A_auc on an online stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cliplab.results import RunResult
from cliplab.study.store import RunRequest

HELD_OUT = "toyworld_shape_colour"  # the held-out shape+colour probe of the ToyWorld scenarios


def requests_for(methods: Mapping[str, Sequence[str]], seeds: Sequence[int]) -> list[RunRequest]:
    """Run requests from `{scenario: [label, ...]}`; a label is a method name or a variant
    "method+option=value" (e.g. "sit+pet=adapter"), values parsed like `--set`."""
    from cliplab.engine.config import parse_value

    requests = []
    for scenario, labels in methods.items():
        for label in labels:
            method, *options = str(label).split("+")
            pairs = tuple((k, parse_value(v)) for k, v in (o.split("=", 1) for o in options))
            requests += [RunRequest(scenario, method, int(seed), pairs) for seed in seeds]
    return requests


def _delta(result: RunResult, probe: str = HELD_OUT) -> float:
    curve = result.zero_shot.get(probe)
    return float(curve[-1] - curve[0]) if curve else math.nan


def _mean_std(frame: pd.DataFrame, by: str = "label") -> pd.DataFrame:
    """Mean ± std over seeds as "m ± s" strings (just "m" for one seed), methods in their order."""
    grouped = frame.groupby(by, sort=False)
    mean, std, n = grouped.mean(numeric_only=True), grouped.std(numeric_only=True), grouped.size()
    out = mean.round(1).astype(str)
    for label in mean.index:
        if n[label] > 1:
            out.loc[label] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(mean.loc[label], std.loc[label])]
    return out


def odcl_frame(results: Mapping[RunRequest, RunResult]) -> pd.DataFrame:
    """One row per open-domain run: label, seed, {til,cil}_{transfer,seen_avg,avg,last}, zero-shot change."""
    rows = []
    for request, result in results.items():
        odcl = result.extra.get("odcl")
        if not odcl:
            continue
        row = {"label": request.label, "seed": request.seed}
        for setting in ("til", "cil"):
            row.update({f"{setting}_{k}": v for k, v in odcl[setting]["summary"].items()})
        row["zero_shot_delta"] = _delta(result)
        rows.append(row)
    return pd.DataFrame(rows)


def odcl_table(results: Mapping[RunRequest, RunResult]) -> pd.DataFrame:
    """CoLeCLIP's table: unseen domains (Transfer), seen domains (SeenAvg), Avg, Last, for TIL and
    CIL, and the held-out zero-shot change; mean ± std over seeds."""
    frame = odcl_frame(results).drop(columns="seed")
    table = _mean_std(frame)
    names = {
        "transfer": "unseen (Transfer)",
        "seen_avg": "seen (SeenAvg)",
        "avg": "Avg",
        "last": "Last",
    }
    table.columns = pd.MultiIndex.from_tuples(
        [
            (c.split("_", 1)[0].upper(), names[c.split("_", 1)[1]])
            if c.startswith(("til_", "cil_"))
            else ("held-out", "Δ shape+colour zero-shot")
            for c in table.columns
        ]
    )
    return table


def anytime_frame(results: Mapping[RunRequest, RunResult]) -> pd.DataFrame:
    """Long table: label, seed, samples (stream samples seen), accuracy (%) on the exposed classes."""
    rows = []
    for request, result in results.items():
        anytime = result.extra.get("anytime")
        if anytime:
            rows += [(request.label, request.seed, n, a) for n, a in zip(anytime["samples"], anytime["accuracy"])]
    return pd.DataFrame(rows, columns=["label", "seed", "samples", "accuracy"])


def task_boundaries(result: RunResult) -> list[int]:
    """Stream positions where tasks 2..T start (from the run's anytime records and stream sizes)."""
    sizes = result.extra.get("stream", {}).get("task_sizes", [])[: len(result.tasks)]
    return [int(b) for b in np.cumsum(sizes)[:-1]]


def online_table(results: Mapping[RunRequest, RunResult]) -> pd.DataFrame:
    """A_auc, A_avg, A_last, F_last and the held-out zero-shot change, mean ± std over seeds."""
    rows = [
        {
            "label": request.label,
            **{k: (result.summary or {}).get(k, math.nan) for k in ("a_auc", "a_avg", "a_last", "f_last")},
            "zero_shot_delta": _delta(result),
        }
        for request, result in results.items()
        if result.extra.get("protocol") == "online"
    ]
    table = _mean_std(pd.DataFrame(rows))
    table.columns = ["A_auc", "A_avg", "A_last", "F_last", "Δ held-out shape+colour zero-shot"]
    return table


def odcl_means(results: Mapping[RunRequest, RunResult]) -> dict[str, dict[str, float]]:
    """{label: means over seeds of `odcl_frame`'s columns} (a notebook's headline numbers)."""
    frame = odcl_frame(results).drop(columns="seed")
    return {label: row.to_dict() for label, row in frame.groupby("label", sort=False).mean().iterrows()}


def online_means(results: Mapping[RunRequest, RunResult]) -> dict[str, dict[str, float]]:
    """{label: means over seeds of A_auc, A_avg, A_last, F_last and the held-out zero-shot change}."""
    rows = [
        {
            "label": request.label,
            **{k: (result.summary or {}).get(k, math.nan) for k in ("a_auc", "a_avg", "a_last", "f_last")},
            "zero_shot_delta": _delta(result),
        }
        for request, result in results.items()
        if result.extra.get("protocol") == "online"
    ]
    frame = pd.DataFrame(rows).groupby("label", sort=False).mean()
    return {label: row.to_dict() for label, row in frame.iterrows()}


def stability_points(results: Mapping[RunRequest, RunResult], probes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per run: label, scenario, seed, plasticity (mean diagonal, or A_auc online), retention (held-out
    zero-shot after the last task, mean over the ToyWorld probes) and its pretrained value."""
    rows = []
    for request, result in results.items():
        names = probes or [p for p in result.zero_shot if p.startswith("toyworld_")] or list(result.zero_shot)
        online = result.extra.get("protocol") == "online"
        matrix = np.asarray(result.accuracy_matrix, dtype=float)
        rows.append(
            {
                "label": request.label,
                "scenario": request.scenario,
                "seed": request.seed,
                "plasticity": (result.summary or {}).get("a_auc") if online else float(np.nanmean(np.diag(matrix))),
                "retention": float(np.mean([result.zero_shot[p][-1] for p in names])),
                "retention_before": float(np.mean([result.zero_shot[p][0] for p in names])),
                "online": online,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "HELD_OUT",
    "anytime_frame",
    "odcl_frame",
    "odcl_means",
    "odcl_table",
    "online_means",
    "online_table",
    "requests_for",
    "stability_points",
    "task_boundaries",
]
