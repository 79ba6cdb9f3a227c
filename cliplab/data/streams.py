"""Dated image–caption files for time-continual training: rows grouped into steps by a column.

Two formats, the ones `csv_captions` and the Karpathy loaders read, plus one column:

- a CSV (or TSV) with `filepath`, `caption` (or `title`) and a time column (default `year`);
  optional: `split` (train / val / test) and a class column;
- a Karpathy-style JSON (`{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}],
  "year": ...}]}`), the time value (and optional class) being a key of each image entry.

`read_caption_table` returns one row per (image, caption) with the columns `image` (resolved
path), `caption`, `time` (as text), `split` ("train", "eval" or "" when the file has none) and
`label` ("" without a class column). Nothing but the annotation file is opened here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cliplab.data.captions import CAPTION_COLUMNS, _read_csv
from cliplab.data.errors import CorruptFileError, DatasetNotFoundError

EVAL_SPLITS = ("val", "test")
TRAIN_SPLITS = ("train", "restval")
COLUMNS = ["image", "caption", "time", "split", "label"]


def annotation_path(root: Any) -> Path:
    """The annotation file: `root` itself, or the single CSV/TSV/JSON annotation in the folder `root`."""
    if root is None:
        raise ValueError("a caption stream needs root=: a CSV/TSV or Karpathy JSON file, or a folder with one")
    path = Path(root).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".json"))
        if len(found) == 1:
            return found[0]
        raise DatasetNotFoundError(
            f"caption stream: {path} holds {len(found)} annotation files ({[p.name for p in found]}); "
            "pass the CSV/TSV or JSON file itself as root",
            path,
        )
    raise DatasetNotFoundError(
        f"caption stream: {path} does not exist (expected a CSV/TSV or Karpathy JSON file)", path
    )


def _split_of(value: str) -> str:
    value = str(value).strip().lower()
    if value in EVAL_SPLITS:
        return "eval"
    if value in TRAIN_SPLITS:
        return "train"
    return value


def _from_csv(path: Path, time_column: str, caption_column: str | None, class_column: str | None, sep) -> pd.DataFrame:
    frame = _read_csv(path, sep)
    wanted = (caption_column,) if caption_column else CAPTION_COLUMNS
    caption = next((c for c in wanted if c in frame.columns), None)
    needed = {"filepath", time_column, *([class_column] if class_column else [])}
    if caption is None or not needed <= set(frame.columns):
        missing = sorted(needed - set(frame.columns)) + ([] if caption else [f"one of {list(wanted)}"])
        raise CorruptFileError(
            f"caption stream: {path} lacks column(s) {missing}; found {list(frame.columns)} "
            f"(set time_column= / caption_column= / class_column= to the names your file uses)",
            path,
        )
    return pd.DataFrame(
        {
            "image": frame["filepath"],
            "caption": frame[caption],
            "time": frame[time_column].astype(str).str.strip(),
            "split": frame["split"].map(_split_of) if "split" in frame.columns else "",
            "label": frame[class_column].astype(str).str.strip() if class_column else "",
        }
    )


def _from_karpathy(path: Path, time_column: str, class_column: str | None) -> pd.DataFrame:
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CorruptFileError(f"caption stream: cannot read {path} as Karpathy JSON ({error})", path) from error
    rows = []
    for i, image in enumerate(images):
        keys = {"filename", "sentences", time_column, *([class_column] if class_column else [])}
        if not isinstance(image, dict) or not keys <= image.keys():
            raise CorruptFileError(f"caption stream: {path} images[{i}] lacks {sorted(keys - set(image))}", path)
        file = str(Path(image.get("filepath", "")) / image["filename"])
        label = str(image[class_column]).strip() if class_column else ""
        for sentence in image["sentences"]:
            rows.append(
                (file, sentence["raw"], str(image[time_column]).strip(), _split_of(image.get("split", "")), label)
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def read_caption_table(
    root: Any,
    time_column: str = "year",
    caption_column: str | None = None,
    class_column: str | None = None,
    image_root: Any = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """One row per (image, caption) of a dated caption file (see the module docstring).

    Image paths are resolved against `image_root` (default: the annotation's folder). Rows with an
    empty caption or time value are errors naming the first one."""
    path = annotation_path(root)
    if path.suffix.lower() == ".json":
        frame = _from_karpathy(path, time_column, class_column)
    else:
        frame = _from_csv(path, time_column, caption_column, class_column, sep)
    base = Path(image_root).expanduser() if image_root is not None else path.parent
    frame["image"] = [str(base / p) for p in frame["image"]]
    empty = frame[(frame["caption"].str.strip() == "") | (frame["time"] == "")]
    if len(empty):
        raise CorruptFileError(
            f"caption stream: {path} has {len(empty)} row(s) without a caption or {time_column!r} value, "
            f"e.g. {empty.iloc[0]['image']}",
            path,
        )
    unknown = sorted(set(frame["split"]) - {"", "train", "eval"})
    if unknown:
        raise CorruptFileError(
            f"caption stream: {path} has split value(s) {unknown}; use train/restval (training) or val/test (evaluation)",
            path,
        )
    return frame.reset_index(drop=True)


def _sort_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def time_values(frame: pd.DataFrame) -> list[str]:
    """The distinct time values in order (numerically when they are numbers: 2014 < 2015 < 2016)."""
    return sorted(set(frame["time"]), key=_sort_key)


def resolve_steps(values: Sequence[str], steps: Sequence[Any] | None = None) -> list[tuple[str, list[str]]]:
    """(step name, time values) per step: one step per value, or as `steps` groups them.

    `steps=[[2014, 2015, 2016], 2017, 2018]` merges the first three (TiC-DataComp's first step) and
    names it "2014-2016"; a value the data lacks is an error listing those it has."""
    if steps is None:
        return [(v, [v]) for v in values]
    out = []
    for step in steps:
        group = [str(v) for v in (step if isinstance(step, (list, tuple)) else [step])]
        missing = [v for v in group if v not in values]
        if missing:
            raise ValueError(f"steps name time value(s) {missing} that the data lacks; it has {list(values)}")
        out.append((group[0] if len(group) == 1 else f"{group[0]}-{group[-1]}", group))
    return out


def split_images(images: Sequence[str], eval_fraction: float, seed: int) -> set[str]:
    """The images held out for evaluation when the file has no split: a seeded `eval_fraction` of
    the distinct images (at least one, never all), so no held-out image's caption is ever trained on."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    distinct = sorted(set(images))
    if len(distinct) < 2:
        raise ValueError(f"a step needs at least 2 images to hold some out for evaluation, got {len(distinct)}")
    count = min(len(distinct) - 1, max(1, round(eval_fraction * len(distinct))))
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed)).tolist()
    return {distinct[i] for i in order[:count]}


__all__ = ["annotation_path", "read_caption_table", "resolve_steps", "split_images", "time_values"]
