"""`cliplab table`: the mean ± std table of a folder of runs, as Markdown or plain text.

This is how README.md's results table is made: every run under a folder (for the study,
`runs/study/runs/<scenario>/<label>/seed<k>`) grouped by scenario and label (the method, or an
ablation variant such as `vr_lwf+directions=i2t`), with each quantity's mean ± sample std over
seeds and the number of seeds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from cliplab.results import format_summary, load_runs, summary_table

# Column header -> `summary_table` quantity. Δ = final minus before training, in points.
README_COLUMNS = {
    "Transfer": "transfer", "Avg": "avg", "Last": "last", "BWT": "bwt",
    "Δ zero-shot shape+colour": "zero_shot_delta/toyworld_shape_colour",
    "Δ zero-shot shape": "zero_shot_delta/toyworld_shape",
    "Δ retrieval i2t R@1": "retrieval_delta/toyworld/i2t_r1",
}


def run_label(run: str) -> str:
    """`<scenario>/<label>/seed<k>` -> label; a run folder outside that layout keeps its path."""
    parts = Path(run).parts
    return parts[-2] if len(parts) >= 3 else run


def results_table(runs: str | os.PathLike, columns: dict[str, str] | None = None, scenario: str | None = None,
                  labels: Sequence[str] | None = None, decimals: int = 1) -> pd.DataFrame:
    """"mean ± std" per (scenario, label) of `columns` (header -> quantity) and a `seeds` count.

    `labels` selects and orders rows (default: every label, alphabetically); a quantity a run
    lacks (e.g. ToyWorld probes on a real scenario) is left empty.
    """
    columns = columns or README_COLUMNS
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


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (GitHub Markdown); method labels in backticks."""
    header = ["method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (_, label), row in table.iterrows():
        lines.append("| " + " | ".join([f"`{label}`", *(str(v) for v in row.values)]) + " |")
    return "\n".join(lines)


def add_table_command(sub) -> None:
    p = sub.add_parser("table", help="mean ± std table over seeds of a folder of runs (README's results table)")
    p.add_argument("runs", help="folder searched recursively for metrics.json (e.g. runs/study/runs)")
    p.add_argument("--scenario", default=None, help="only this scenario (default: every scenario, one table each)")
    p.add_argument("--labels", nargs="*", default=None, help="rows to show, in this order (default: all)")
    p.add_argument("--markdown", action="store_true", help="GitHub Markdown instead of plain text")
    p.set_defaults(func=_cmd_table)


def _cmd_table(args) -> int:
    table = results_table(args.runs, scenario=args.scenario, labels=args.labels)
    for scenario in dict.fromkeys(table.index.get_level_values("scenario")):
        part = table.xs(scenario, level="scenario", drop_level=False)
        print(f"**{scenario}**\n\n{to_markdown(part)}\n" if args.markdown else f"{scenario}\n{part.droplevel(0)}\n")
    return 0


__all__ = ["README_COLUMNS", "add_table_command", "results_table", "run_label", "to_markdown"]
