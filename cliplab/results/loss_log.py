"""The per-step loss log of a run (`loss_log.csv`): append-only, safe against kills."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

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


def load_loss_log(folder: str | os.PathLike) -> pd.DataFrame:
    """Read ``loss_log.csv``, skipping a last line cut by a kill (one without a trailing newline)."""
    path = Path(folder) / LOSS_LOG_FILE
    text = path.read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text if text.endswith("\n") else text[: text.rfind("\n") + 1]))
