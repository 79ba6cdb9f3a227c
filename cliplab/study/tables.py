"""Tables of the study: mean ± std over seeds, per method and scenario.

- `results_table` / `to_markdown`: README's results tables (`cliplab table RUNS_DIR`), one row per
  method or ablation variant of a run folder laid out as `<scenario>/<label>/seed<k>`;
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

from cliplab.evaluation.metrics import SUMMARY_KEYS
from cliplab.results import RunResult, format_summary, load_runs, summary_table
from cliplab.results.views import final_accuracy

# Column header -> `summary_table` quantity. Δ = final minus before training, in points.
README_COLUMNS = {
    "Transfer": "transfer",
    "Avg": "avg",
    "Last": "last",
    "BWT": "bwt",
    "Δ zero-shot shape+colour": "zero_shot_delta/toyworld_shape_colour",
    "Δ zero-shot shape": "zero_shot_delta/toyworld_shape",
    "Δ retrieval i2t R@1": "retrieval_delta/toyworld/i2t_r1",
}
# The same for time-continual runs: TiC's summaries of retrieval R@1 and of zero-shot classification.
TIME_CONTINUAL_COLUMNS = {
    "ID": "id",
    "backward": "backward",
    "forward": "forward",
    "classification ID": "classification_id",
    "classification backward": "classification_backward",
    "Δ zero-shot shape": "zero_shot_delta/toyworld_shape",
    "Δ retrieval i2t R@1": "retrieval_delta/toyworld/i2t_r1",
}

# The same for language-continual runs: text→image R@1 per language (weakest and mean after the
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


def run_label(run: str) -> str:
    """`<scenario>/<label>/seed<k>` -> label; a run folder outside that layout keeps its path."""
    parts = Path(run).parts
    return parts[-2] if len(parts) >= 3 else run


def results_table(
    runs: str | os.PathLike,
    columns: dict[str, str] | None = None,
    scenario: str | None = None,
    labels: Sequence[str] | None = None,
    decimals: int = 1,
) -> pd.DataFrame:
    """ "mean ± std" per (scenario, label) of `columns` (header -> quantity) and a `seeds` count.

    `labels` selects and orders rows (default: every label, alphabetically); a quantity a run
    lacks (e.g. ToyWorld probes on a real scenario) is left empty. Without `columns`,
    time-continual runs (a summary with `id`) get `TIME_CONTINUAL_COLUMNS`, language-continual ones
    (a summary with `i2t_last`) `LANGUAGE_CONTINUAL_COLUMNS`, the others `README_COLUMNS`.
    """
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
    df = _with_weakest_task(df)
    table = summary_table(df, by=("scenario", "label"))
    if columns is None:
        summaries = df[df["kind"] == "summary"].groupby("run")["metric"].agg(set)
        time_continual = len(summaries) and all("id" in metrics for metrics in summaries)
        languages = len(summaries) and all("i2t_last" in metrics for metrics in summaries)
        columns = (
            TIME_CONTINUAL_COLUMNS if time_continual else LANGUAGE_CONTINUAL_COLUMNS if languages else README_COLUMNS
        )
    present = {header: q for header, q in columns.items() if q in table.columns.get_level_values(0)}
    out = format_summary(table[list(present.values())], decimals=decimals).set_axis(list(present), axis=1)
    out = out.reindex(columns=list(columns), fill_value="")
    counts = table.xs("n", level=1, axis=1)  # a one-task run has no Transfer: count any quantity
    out["seeds"] = counts.max(axis=1).astype(int).values
    if labels:
        order = {label: i for i, label in enumerate(labels)}
        out = out.sort_index(level="label", key=lambda idx: idx.map(order), sort_remaining=False)
    return out


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
    """`results_table` of `runs` as text: one table per scenario (GitHub Markdown or plain), with the
    columns of its protocol (`TIME_CONTINUAL_COLUMNS` for time-continual scenarios)."""
    df = load_runs(runs)
    parts = []
    for name in [scenario] if scenario else sorted(set(df["scenario"])):
        present = set(df.loc[df["scenario"] == name, "run"].map(run_label))
        if labels and not present & set(labels):
            continue
        part = results_table(runs, scenario=name, labels=labels)
        parts.append(f"**{name}**\n\n{to_markdown(part)}\n" if markdown else f"{name}\n{part.droplevel(0)}\n")
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
    per_run = pd.DataFrame(
        [
            {
                **{k: (r.summary or {}).get(k, math.nan) for k in SUMMARY_KEYS},
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
    "README_COLUMNS",
    "TIME_CONTINUAL_COLUMNS",
    "headline_numbers",
    "method_table",
    "render_tables",
    "results_table",
    "run_label",
    "to_markdown",
    "zero_shot_summary",
]
