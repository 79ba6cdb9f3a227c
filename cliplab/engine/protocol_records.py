"""What `metrics.json` adds for the open-domain and online protocols (written by the runner).

Open domain (`protocol: "open_domain_til" | "open_domain_cil"`):

    "odcl": {"setting": "cil",
             "til": {"accuracy_matrix": [[...]], "summary": {"transfer", "avg", "last", "seen_avg"}},
             "cil": {...}, "zero_shot_row": [...]}

and `summary` = the usual summary of the run's own matrix plus `seen_avg`.

Online (`protocol: "online"`):

    "anytime": {"samples": [...], "accuracy": [...]},      every eval_period stream samples
    "exposed_accuracy": [...],                              after each task, over every exposed class
    "class_accuracy": [[...], ...],                          after each task, per class (0: not exposed)
    "stream": {...}                                           the Si-Blurry split (pools, dropped classes)

and `summary` = `a_auc`, `a_avg`, `a_last`, `f_last` (`cliplab.evaluation.online_metrics`) plus the
matrix metrics where the matrix allows them (NaN where a task exposed no class of its own).
"""

from __future__ import annotations

import math
from typing import Any

from cliplab.evaluation.metrics import (
    SUMMARY_KEYS,
    average_forgetting,
    backward_transfer,
    continual_summary,
    mtil_avg,
    mtil_last,
    mtil_transfer,
)
from cliplab.evaluation.online_metrics import odcl_summary, online_summary, seen_average

_MATRIX_METRICS = {
    "transfer": mtil_transfer,
    "avg": mtil_avg,
    "last": mtil_last,
    "bwt": backward_transfer,
    "forgetting": average_forgetting,
}


def _tolerant_summary(matrix) -> dict[str, float]:
    """The matrix metrics, each NaN when a cell it needs is missing."""
    out = {}
    for key in SUMMARY_KEYS:
        try:
            out[key] = _MATRIX_METRICS[key](matrix)
        except ValueError:
            out[key] = math.nan
    return out


def protocol_record(scenario, progress: dict[str, Any], evaluations: list[dict]) -> tuple[dict | None, dict]:
    """(summary or None for the default one, extra keys of metrics.json) for `scenario`'s protocol."""
    after = evaluations[1:]
    if scenario.protocol.startswith("open_domain"):
        setting = scenario.protocol.rsplit("_", 1)[1]
        odcl: dict[str, Any] = {"setting": setting, "zero_shot_row": evaluations[0]["extra"]["til"]}
        for key in ("til", "cil"):
            matrix = [e["extra"][key] for e in after]
            odcl[key] = {"accuracy_matrix": matrix, "summary": odcl_summary(matrix)}
        primary = odcl[setting]["accuracy_matrix"]
        return {**continual_summary(primary), "seen_avg": seen_average(primary)}, {"odcl": odcl}
    if scenario.protocol == "online":
        records = progress.get("anytime", [])
        anytime = [r for r in records if r["accuracy"] is not None and not math.isnan(r["accuracy"])]
        exposed = [e["seen_accuracy"] for e in after]
        classes = [e["extra"]["class_accuracy"] for e in after]
        online = online_summary(
            [r["accuracy"] for r in anytime],
            [a for a in exposed if a is not None],  # a task before any class was exposed has none
            classes,
            [r["samples"] for r in anytime],
        )
        extra = {
            "anytime": {
                "samples": [r["samples"] for r in anytime],
                "accuracy": [r["accuracy"] for r in anytime],
                "exposed_classes": [r["exposed"] for r in anytime],
                "task": [r["task"] for r in anytime],
            },
            "exposed_accuracy": exposed,
            "class_accuracy": classes,
            "stream": dict(scenario.stream.info),
        }
        return {**_tolerant_summary([e["accuracy"] for e in after]), **online}, extra
    return None, {}


__all__ = ["protocol_record"]
