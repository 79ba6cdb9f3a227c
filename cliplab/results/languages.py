"""Numbers of language-continual runs (`toy-languages`, CLL-CLIP) shaped for reading and drawing.

* `language_matrix_frame`: S[i, j] = retrieval R@1 in language j after learning language i (text→image,
  the accuracy matrix, or image→text), mean over seeds, with the pretrained model's row;
* `language_summary`: per run, what the issue's targets read: the final R@1 in every learned
  language against the pretrained model's English one, English kept or lost, BWT.

Percent throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cliplab.results.record import RunResult
from cliplab.results.views import BEFORE, step_labels

DIRECTIONS = ("t2i_r1", "i2t_r1")


def _language_runs(results: Sequence[RunResult]) -> list[str]:
    if not results:
        raise ValueError("no runs given")
    if any(r.extra.get("protocol") != "language_continual" for r in results):
        raise ValueError("these numbers need language-continual runs (protocol language_continual, e.g. toy-languages)")
    tasks = results[0].tasks
    if any(r.tasks != tasks for r in results):
        raise ValueError("runs cover different languages; average only runs of one scenario and setting")
    return tasks


def language_matrix_frame(results: Sequence[RunResult], direction: str = "t2i_r1") -> tuple[pd.DataFrame, pd.Series]:
    """Mean over runs of R@1 in each language (columns) after each task (rows "after <language>"),
    and the row of the pretrained model (zero-shot: before any language is learned)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    tasks = _language_runs(results)
    matrices = [r.extra["retrieval_matrices"][direction] for r in results]
    before = [r.extra["retrieval_zero_shot_rows"][direction] for r in results]
    frame = pd.DataFrame(
        np.mean(np.asarray(matrices, dtype=float), axis=0), index=step_labels(tasks)[1:], columns=tasks
    )
    return frame, pd.Series(np.mean(np.asarray(before, dtype=float), axis=0), index=tasks, name=BEFORE)


def language_summary(result: RunResult, english_probe: str = "english") -> dict[str, float]:
    """One run's final numbers (text→image R@1 unless named otherwise):

    - `english_before` / `english_after`: English R@1 of the pretrained model and after the last task;
    - `english_delta`: their difference (points; within −2 is "English kept" in issue 18's target);
    - `min_language` / `mean_language`: the lowest and mean R@1 over the learned languages after the
      last task, and `min_language_ratio` = `min_language` / `english_before` (target ≥ 0.7);
    - `bwt`: backward transfer of the language matrix; `i2t_mean_language`: image→text mean."""
    _language_runs([result])
    english = result.retrieval[english_probe]["t2i_r1"]
    last = np.asarray(result.accuracy_matrix[-1], dtype=float)
    i2t_last = np.asarray(result.extra["retrieval_matrices"]["i2t_r1"][-1], dtype=float)
    return {
        "english_before": float(english[0]),
        "english_after": float(english[-1]),
        "english_delta": float(english[-1] - english[0]),
        "min_language": float(last.min()),
        "mean_language": float(last.mean()),
        "min_language_ratio": float(last.min() / english[0]) if english[0] else float("nan"),
        "bwt": float(result.summary["bwt"]) if result.summary else float("nan"),
        "i2t_mean_language": float(i2t_last.mean()),
    }


def language_summary_frame(results: dict[str, Sequence[RunResult]]) -> pd.DataFrame:
    """`language_summary` of every run, one row per (label, seed)."""
    rows = [{"label": label, "seed": r.seed, **language_summary(r)} for label, runs in results.items() for r in runs]
    return pd.DataFrame(rows)


__all__ = ["DIRECTIONS", "language_matrix_frame", "language_summary", "language_summary_frame"]
