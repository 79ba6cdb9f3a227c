"""The per-step loss log of a run (`loss_log.csv`): append-only, safe against kills.

A killed run resumes from its last checkpoint and trains the steps after it again; before it
does, `rewind_loss_log` drops the rows those steps had already logged, so every (task, step, term)
appears once and the log of a resumed run equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cliplab.io import atomic_path
from cliplab.results.layout import LOSS_LOG_FILE


def append_loss_log(folder: str | os.PathLike, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Path:
    """Append rows to ``loss_log.csv`` (header once, from the first row's keys), flush and fsync.

    Append-only (not atomic by design): each call is one ``write`` of whole lines, so a kill loses
    at most the rows of that call (a cut last line is dropped before the next append). Later rows
    must use the header's columns (missing -> empty); tensors are stored via ``.item()``.
    """
    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    path = Path(folder) / LOSS_LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        return path
    header = None
    if path.exists():
        _drop_partial_line(path)
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
    columns = header or list(rows[0])
    rows = [{k: v.item() if hasattr(v, "item") else v for k, v in row.items()} for row in rows]  # tensors
    unknown = sorted({key for row in rows for key in row} - set(columns))
    if unknown:
        raise ValueError(f"loss log columns are fixed by its header {columns}; unknown keys {unknown}")
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=columns, lineterminator="\n")
    if header is None:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(lines.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _drop_partial_line(path: Path) -> None:
    """Truncate a last line cut by a kill (no trailing newline): its numbers may be truncated."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = handle.seek(max(0, size - 65536))
        tail = handle.read()
        if tail and not tail.endswith(b"\n"):
            handle.truncate(start + tail.rfind(b"\n") + 1)


def rewind_loss_log(folder: str | os.PathLike, task: str, step: int) -> int:
    """Drop the rows of `task` logged after `step` (the steps a resume trains again); returns how many.

    The file is rewritten atomically, and only when something is dropped. A last line cut by a
    kill is dropped too.
    """
    path = Path(folder) / LOSS_LOG_FILE
    if not path.exists() or path.stat().st_size == 0:
        return 0
    _drop_partial_line(path)
    with open(path, newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines(keepends=True)
    if not lines:
        return 0
    header = next(csv.reader(lines[:1]))
    if "task" not in header or "step" not in header:
        raise ValueError(f"{path} has no 'task' and 'step' columns (found {header}); it is not a cliplab loss log")
    t, s = header.index("task"), header.index("step")
    keep = [lines[0]]
    for line, row in zip(lines[1:], csv.reader(lines[1:])):
        if not (len(row) > max(t, s) and row[t] == task and _after(row[s], step)):
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep), encoding="utf-8")
    return dropped


def _after(value: str, step: int) -> bool:
    try:
        return int(float(value)) > step
    except ValueError:
        return False


def load_loss_log(folder: str | os.PathLike) -> pd.DataFrame:
    """Read ``loss_log.csv``, skipping a last line cut by a kill (one without a trailing newline)."""
    path = Path(folder) / LOSS_LOG_FILE
    text = path.read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text if text.endswith("\n") else text[: text.rfind("\n") + 1]))
