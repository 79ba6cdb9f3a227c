"""Tables of the study: mean ± std over seeds, per method and scenario.

- `results_table` / `to_markdown` / `render_tables`: README's results tables (`cliplab table
  RUNS_DIR`), one row per method or ablation variant of a run folder laid out as
  `<scenario>/<label>/seed<k>`, one table per scenario with the columns its protocol defines
  (`PROTOCOL_COLUMNS`: no Transfer for class-incremental runs) and a note on reading them;
- `method_table`: any `summary_table` quantities as "mean ± std" strings (notebooks);
- `headline_numbers`, `zero_shot_summary`: the numbers each notebook records in its metrics.json.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd

from cliplab.evaluation.metrics import PROTOCOL_SUMMARY_KEYS, SUMMARY_KEYS
from cliplab.results import RunResult, format_summary, load_runs, run_summary, summary_table
from cliplab.results.views import final_accuracy

# Column header -> `summary_table` quantity. Δ = final minus before training, in points.
PROBE_COLUMNS = {
    "Δ zero-shot shape+colour": "zero_shot_delta/toyworld_shape_colour",
    "Δ zero-shot shape": "zero_shot_delta/toyworld_shape",
    "Δ retrieval i2t R@1": "retrieval_delta/toyworld/i2t_r1",
}
# Time-continual runs: TiC's summaries of retrieval R@1 and of zero-shot classification.
TIME_CONTINUAL_COLUMNS = {
    "ID": "id",
    "backward": "backward",
    "forward": "forward",
    "classification ID": "classification_id",
    "classification backward": "classification_backward",
    "Δ zero-shot shape": "zero_shot_delta/toyworld_shape",
    "Δ retrieval i2t R@1": "retrieval_delta/toyworld/i2t_r1",
}

# Language-continual runs: text→image R@1 per language (weakest and mean after the
# last language, BWT), image→text, and English on the same test images.
LANGUAGE_CONTINUAL_COLUMNS = {
    "Last t2i R@1": "last",
    "weakest language": "last_min",
    "BWT": "bwt",
    "Last i2t R@1": "i2t_last",
    "Δ English t2i R@1": "retrieval_delta/english/t2i_r1",
    "Δ English i2t R@1": "retrieval_delta/english/i2t_r1",
    "Δ zero-shot shape+colour": "zero_shot_delta/toyworld_shape_colour",
}
# The columns of each protocol's table. Class-incremental Avg / Last are the average incremental
# accuracy and the last step's accuracy on all seen classes (ZSCL's CIL tables); task-incremental
# Transfer / Avg / Last are ZSCL's MTIL metrics; a one-session run has one accuracy.
PROTOCOL_COLUMNS = {
    "task_incremental": {"Transfer": "transfer", "Avg": "avg", "Last": "last", "BWT": "bwt", **PROBE_COLUMNS},
    "class_incremental": {"Avg": "avg", "Last": "last", "BWT": "bwt", **PROBE_COLUMNS},
    "one_session": {"Accuracy": "last", **PROBE_COLUMNS},
    "open_domain_til": {"Transfer": "transfer", "Avg": "avg", "Last": "last", "SeenAvg": "seen_avg", **PROBE_COLUMNS},
    "open_domain_cil": {"Transfer": "transfer", "Avg": "avg", "Last": "last", "SeenAvg": "seen_avg", **PROBE_COLUMNS},
    "online": {"A_auc": "a_auc", "A_avg": "a_avg", "A_last": "a_last", "F_last": "f_last", **PROBE_COLUMNS},
    "time_continual": TIME_CONTINUAL_COLUMNS,
    "language_continual": LANGUAGE_CONTINUAL_COLUMNS,
}
README_COLUMNS = PROTOCOL_COLUMNS["task_incremental"]  # a table over several protocols: every column
# What a reader of each protocol's table must know that the numbers do not say.
PROTOCOL_NOTES = {
    "class_incremental": (
        "Avg = mean over steps of the accuracy on all classes seen so far; Last = that accuracy after the "
        "last step; no Transfer (not defined for this protocol). BWT compares task j after the last step "
        "with task j right after it was learned, and in between the label space grows: a task's images "
        "are classified among more and more classes, so even the untrained `zeroshot` row has BWT < 0."
    ),
    "one_session": "One task: Accuracy after it; Transfer, BWT and forgetting are not defined.",
    "online": (
        "A_auc = mean of the anytime accuracies (every eval_period stream samples, on the classes exposed so "
        "far); A_avg / A_last = accuracy on every exposed class, mean over tasks / after the last; F_last = "
        "mean per-class forgetting after the last task (SIT's metrics)."
    ),
    "open_domain_cil": "SeenAvg = mean over domains of the accuracy after every task since the domain was learned.",
    "open_domain_til": "SeenAvg = mean over domains of the accuracy after every task since the domain was learned.",
}


def run_label(run: str) -> str:
    """`<scenario>/<label>/seed<k>` -> label; a run folder outside that layout keeps its path."""
    parts = Path(run).parts
    return parts[-2] if len(parts) >= 3 else run


def _runs_frame(runs: str | os.PathLike, scenario: str | None, labels: Sequence[str] | None) -> pd.DataFrame:
    """The tidy runs under `runs` with a `label` column, of one scenario and these labels if given."""
    df = load_runs(runs)
    if df.empty:
        raise FileNotFoundError(f"no runs (metrics.json) under {runs}")
    df["label"] = df["run"].map(run_label)
    if scenario:
        df = df[df["scenario"] == scenario]
        if df.empty:
            raise ValueError(f"no runs of scenario {scenario!r} under {runs}")
    if labels:
        df = df[df["label"].isin(labels)]
    return _with_weakest_task(df)


def _table(df: pd.DataFrame, columns: dict[str, str], labels: Sequence[str] | None, decimals: int) -> pd.DataFrame:
    table = summary_table(df, by=("scenario", "label"))
    present = {header: q for header, q in columns.items() if q in table.columns.get_level_values(0)}
    out = format_summary(table[list(present.values())], decimals=decimals).set_axis(list(present), axis=1)
    out = out.reindex(columns=list(columns), fill_value="")
    counts = table.xs("n", level=1, axis=1)  # a one-task run has no Transfer: count any quantity
    out["seeds"] = counts.max(axis=1).astype(int).values
    if labels:
        order = {label: i for i, label in enumerate(labels)}
        out = out.sort_index(level="label", key=lambda idx: idx.map(order), sort_remaining=False)
    return out


def protocol_of(df: pd.DataFrame, scenario: str) -> str:
    """The protocol of `scenario`'s runs in a tidy table (one protocol per scenario)."""
    protocols = sorted(set(df.loc[df["scenario"] == scenario, "protocol"]))
    if len(protocols) != 1:
        raise ValueError(f"runs of scenario {scenario!r} record several protocols {protocols}; keep them apart")
    return protocols[0]


def results_table(
    runs: str | os.PathLike,
    columns: dict[str, str] | None = None,
    scenario: str | None = None,
    labels: Sequence[str] | None = None,
    decimals: int = 1,
) -> pd.DataFrame:
    """ "mean ± std" per (scenario, label) of `columns` (header -> quantity) and a `seeds` count.

    `columns=None`: the columns of the runs' protocol (`PROTOCOL_COLUMNS`), or every column
    (`README_COLUMNS`) when the runs mix protocols, cells a protocol does not define left empty.
    `labels` selects and orders rows (default: every label, alphabetically); a quantity a run
    lacks (e.g. ToyWorld probes on a real scenario) is left empty.
    """
    df = _runs_frame(runs, scenario, labels)
    if columns is None:
        protocols = set(df["protocol"])
        columns = PROTOCOL_COLUMNS.get(protocols.pop(), README_COLUMNS) if len(protocols) == 1 else README_COLUMNS
    return _table(df, columns, labels, decimals)


def _with_weakest_task(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus a summary row `last_min` per run: its lowest accuracy after the last task (for
    language-continual runs, the weakest learned language's text→image R@1)."""
    final = df[(df["kind"] == "accuracy") & (df["step"] == df.groupby("run")["step"].transform("max"))]
    if final.empty:
        return df
    rows = final.groupby("run", sort=False).agg({c: "first" for c in df.columns if c not in ("value", "task")})
    rows = rows.assign(
        kind="summary", metric="last_min", task=None, value=final.groupby("run", sort=False)["value"].min()
    )
    return pd.concat([df, rows.reset_index(drop=True)[df.columns]], ignore_index=True)


def render_tables(
    runs: str | os.PathLike, scenario: str | None = None, labels: Sequence[str] | None = None, markdown: bool = False
) -> str:
    """The runs as text: one table per scenario (GitHub Markdown or plain), each with the columns
    of its protocol (`PROTOCOL_COLUMNS`) and, below it, the protocol's note (`PROTOCOL_NOTES`)."""
    df = _runs_frame(runs, scenario, labels)
    parts = []
    for name in dict.fromkeys(df["scenario"]):
        protocol = protocol_of(df, name)
        part = _table(df[df["scenario"] == name], PROTOCOL_COLUMNS.get(protocol, README_COLUMNS), labels, 1)
        note = PROTOCOL_NOTES.get(protocol)
        if markdown:
            parts.append(f"**{name}**\n\n{to_markdown(part)}\n" + (f"\n{note}\n" if note else ""))
        else:
            parts.append(f"{name}\n{part.droplevel(0)}\n" + (f"{note}\n" if note else ""))
    return "\n".join(parts)


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (GitHub Markdown); method labels in backticks."""
    header = ["method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (_, label), row in table.iterrows():
        lines.append("| " + " | ".join([f"`{label}`", *(str(v) for v in row.values)]) + " |")
    return "\n".join(lines)


def method_table(
    df: pd.DataFrame,
    by: Sequence[str] = ("label", "scenario"),
    quantities: Sequence[str] = ("transfer", "avg", "last", "forgetting"),
    decimals: int = 1,
) -> pd.DataFrame:
    """Transfer / Avg / Last (and any other `summary_table` quantity) as "mean ± std" strings.

    A quantity also selects everything under it ("zero_shot_delta" = every probe's delta) and
    may be a shell pattern ("retrieval_delta/*/i2t_r1").
    """
    table = summary_table(df, by=by)
    names = list(dict.fromkeys(table.columns.get_level_values(0)))
    keep = [n for n in names if any(n.startswith(q + "/") or fnmatchcase(n, q) for q in quantities)]
    return format_summary(table[keep], decimals=decimals)


def mean_std_table(frame: pd.DataFrame, by: Sequence[str], value: str = "value", decimals: int = 1) -> pd.DataFrame:
    """Mean (and std over seeds when a group has more than one) of `value` per `by` group, `by[-1]`
    unstacked into columns. With one seed there is no std column at all (not a column of NaN)."""
    grouped = frame.groupby(list(by), sort=False)[value]
    stats = ["mean", "std"] if grouped.size().max() > 1 else ["mean"]
    return grouped.agg(stats).unstack().round(decimals)


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

    The summary metrics the runs' protocol defines (`PROTOCOL_SUMMARY_KEYS`: transfer, avg, last,
    bwt, forgetting for task-incremental runs; no transfer for class-incremental ones, whose avg /
    last are the average incremental and last accuracy on all seen classes), learned-class accuracy
    after the last task, plasticity (mean of the matrix diagonal), and `zero_shot_summary`.
    """
    defined = {k for r in results for k in PROTOCOL_SUMMARY_KEYS.get(r.protocol, SUMMARY_KEYS)}
    keys = [k for k in SUMMARY_KEYS if k in defined]
    per_run = pd.DataFrame(
        [
            {
                **{k: (r.summary or run_summary(r)).get(k, math.nan) for k in keys},
                "final_accuracy": final_accuracy(r),
                "plasticity": float(np.nanmean(np.diag(np.asarray(r.accuracy_matrix, dtype=float)))),
            }
            for r in results
        ]
    )
    out = {**per_run.mean().to_dict(), **zero_shot_summary(results), "n_seeds": len(results)}
    if len(results) > 1:
        out.update({f"{k}_std": v for k, v in per_run.std().to_dict().items()})
    return out


__all__ = [
    "PROTOCOL_COLUMNS",
    "PROTOCOL_NOTES",
    "README_COLUMNS",
    "TIME_CONTINUAL_COLUMNS",
    "headline_numbers",
    "mean_std_table",
    "method_table",
    "protocol_of",
    "render_tables",
    "results_table",
    "run_label",
    "to_markdown",
    "zero_shot_summary",
]
