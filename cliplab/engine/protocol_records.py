"""What `metrics.json` adds for the open-domain, online, time- and language-continual protocols
(written by the runner; the task-by-task protocols need nothing beyond the default record).

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

Time-continual and language-continual (retrieval matrices): see `_time_continual_record` and
`_language_continual_record`.
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
    time_continual_summary,
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
    if scenario.protocol == "time_continual":
        extra: dict[str, Any] = {}
        return _time_continual_record(evaluations, extra), extra
    if scenario.protocol == "language_continual":
        extra = {}
        return _language_continual_record(evaluations, extra), extra
    return None, {}


def _time_continual_record(evaluations: list[dict], extra: dict) -> dict[str, float]:
    """TiC-CLIP's record. `accuracy_matrix` is retrieval R@1 (mean of both directions); `extra` gets
    `classification_matrix` (zero-shot top-1 on each step's labelled images, NaN without them), its
    row before training and `retrieval_matrices` (`i2t_r1`, `t2i_r1`). The summary holds
    `continual_summary` plus TiC's `id` / `backward` / `forward` of the retrieval matrix and, when
    no classification cell is NaN, the same three of the classification matrix (`classification_id`, ...)."""
    before, after = evaluations[0], evaluations[1:]
    nan = lambda row: [math.nan if v is None else v for v in row]
    classification = [nan(e["rows"]["classification"]) for e in after]
    extra["classification_matrix"] = classification
    extra["classification_zero_shot_row"] = nan(before["rows"]["classification"])
    extra["retrieval_matrices"] = {k: [e["rows"][k] for e in after] for k in ("i2t_r1", "t2i_r1")}
    matrix = [e["accuracy"] for e in after]
    summary = {**continual_summary(matrix), **time_continual_summary(matrix)}
    if not any(math.isnan(v) for row in classification for v in row):
        summary.update({f"classification_{k}": v for k, v in time_continual_summary(classification).items()})
    return summary


def _language_continual_record(evaluations: list[dict], extra: dict) -> dict[str, float]:
    """CLL-CLIP's record. `accuracy_matrix` is text→image R@1 per language (`zero_shot_row`: the
    pretrained model's); `extra` gets `retrieval_matrices` (`i2t_r1`, `t2i_r1`) and their rows before
    training (`retrieval_zero_shot_rows`). The summary is `continual_summary` of the text→image
    matrix plus the same metrics of the image→text one (`i2t_last`, `i2t_bwt`, ...)."""
    before, after = evaluations[0], evaluations[1:]
    keys = ("i2t_r1", "t2i_r1")
    extra["retrieval_matrices"] = {k: [e["rows"][k] for e in after] for k in keys}
    extra["retrieval_zero_shot_rows"] = {k: before["rows"][k] for k in keys}
    i2t = continual_summary(extra["retrieval_matrices"]["i2t_r1"])
    return {**continual_summary([e["accuracy"] for e in after]), **{f"i2t_{k}": v for k, v in i2t.items()}}


__all__ = ["protocol_record"]
