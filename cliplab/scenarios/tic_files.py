"""`tic-captions`: TiC-CLIP's time-continual protocol on your own dated image–caption files.

A CSV/TSV (`filepath`, `caption` or `title`, a time column) or a Karpathy-style JSON (a time key
per image) is split into steps by the time column (`time_column`, default `year`; any column
works), in order; `steps=[[2014, 2015, 2016], 2017, ...]` merges values into one step, as
TiC-DataComp's first step. Each step trains on its `train` rows and is evaluated on its held-out
images: the rows marked `val`/`test` in a `split` column, else a seeded `eval_fraction` of its
images (all captions of a held-out image are held out). With `class_column`, each step's
held-out images are also classified zero-shot among every class of the file (TiC-DataCompNet's
fixed class list), with `class_templates`.

To run TiC-DataComp's yearly splits: write one row per (image file, caption, year) from its
webdataset shards and the eval UIDs it publishes (`split=test`), then
`cliplab run --scenario tic-captions --scenario-option root=tic.csv --method cumulative ...`.
Reading the spec opens the annotation file only (to know the steps); images are screened when
the scenario is built and read when a run needs them. DDP works as elsewhere (`torchrun`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from cliplab.data import FileCaptionPairs, FileImageDataset
from cliplab.data.base import open_rgb
from cliplab.data.integrity import screen_samples
from cliplab.data.streams import read_caption_table, resolve_steps, split_images, time_values
from cliplab.scenarios.base import RetrievalSet, Scenario, ScenarioSpec, TaskSpec, TimeStep
from cliplab.scenarios.published import _extras

SOURCE_OPTIONS = ("root", "time_column", "caption_column", "class_column", "steps", "image_root", "sep")
BUILD_OPTIONS = ("eval_fraction", "split_seed", "class_templates", "verify", "probe_root", "probes", "retrieval")
TIC_CAPTIONS_DEFAULTS = {
    "steps_per_task": 1000,
    "batch_size": 256,
    "lr": 1e-5,  # continuing a pretrained CLIP; TiC's 5e-4 is for its from-scratch scales (batch 4,096+)
    "warmup_steps": 100,
    "weight_decay": 0.2,
    "weight_decay_scope": "matrices",
    "betas": (0.9, 0.98),
    "adam_eps": 1e-6,
    "freeze_logit_scale": False,
    "label_smoothing": 0.0,
    "seed": 0,
}


def tic_captions_spec(
    root: Any = None,
    time_column: str = "year",
    caption_column: str | None = None,
    class_column: str | None = None,
    steps: list | None = None,
    image_root: Any = None,
    sep: str | None = None,
) -> ScenarioSpec:
    """The steps of a dated caption file (reads the annotation file, no image)."""
    source = {
        "root": root,
        "time_column": time_column,
        "caption_column": caption_column,
        "class_column": class_column,
        "steps": steps,
        "image_root": image_root,
        "sep": sep,
    }
    frame = _table(source)
    classes = tuple(sorted(set(frame["label"]))) if class_column else ()
    tasks = [TaskSpec(name, classes) for name, _ in resolve_steps(time_values(frame), steps)]
    return ScenarioSpec(
        "tic-captions",
        "time_continual",
        tasks,
        defaults=dict(TIC_CAPTIONS_DEFAULTS),
        description=f"image-caption pairs of {root} in steps of {time_column!r}",
        needs_root=True,
        build_options=BUILD_OPTIONS,
        source=source,
    )


def _table(source: dict) -> pd.DataFrame:
    args = {k: source[k] for k in ("time_column", "caption_column", "class_column", "image_root", "sep")}
    return read_caption_table(source["root"], **args)


class _HeldOutImages(Dataset):
    """A step's held-out images as `(image, index)` (their captions travel in the RetrievalSet)."""

    def __init__(self, paths: list[str], transform=None) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = open_rgb(self.paths[i])
        return (self.transform(image) if self.transform is not None else image), i


def _step(name: str, rows: pd.DataFrame, classes: list[str], templates: list[str], has_classes: bool, **screen):
    """The TimeStep of one step's rows (columns as `read_caption_table`, plus `held_out`)."""
    parts = {}
    for held_out in (False, True):
        part = rows[rows["held_out"] == held_out]
        paths = list(dict.fromkeys(part["image"]))
        kept, _, _ = screen_samples(f"{name} ({'eval' if held_out else 'train'})", paths, paths, **screen)
        keep = set(kept)
        parts[held_out] = (kept, part[part["image"].isin(keep)])
        if not kept:
            raise ValueError(f"step {name!r} has no readable {'held-out' if held_out else 'training'} image")
    (train_paths, train_rows), (eval_paths, eval_rows) = parts[False], parts[True]
    position = {p: i for i, p in enumerate(train_paths)}
    pool = partial(
        _file_pairs, train_paths, list(train_rows["caption"]), [position[p] for p in train_rows["image"]], name
    )
    eval_index = {p: i for i, p in enumerate(eval_paths)}
    retrieval = RetrievalSet(
        f"{name}_retrieval",
        partial(_HeldOutImages, eval_paths),
        list(eval_rows["caption"]),
        torch.tensor([eval_index[p] for p in eval_rows["image"]]),
    )
    test = None
    if has_classes:
        label_of = dict(zip(eval_rows["image"], eval_rows["label"]))
        targets = [classes.index(label_of[p]) for p in eval_paths]
        test = partial(_labelled, eval_paths, targets, classes, templates, f"{name}_classes")
    return TimeStep(name, list(classes), templates[0], list(templates), pool, test, retrieval=retrieval)


def _file_pairs(paths, captions, index, name, transform=None):
    return FileCaptionPairs(paths, captions, index, transform=transform, name=f"{name}_pool")


def _labelled(paths, targets, classes, templates, name, transform=None):
    return FileImageDataset(
        paths=paths, targets=targets, classnames=classes, templates=templates, transform=transform, name=name
    )


def build_tic_captions(
    spec: ScenarioSpec,
    eval_fraction: float = 0.1,
    split_seed: int = 0,
    class_templates: list[str] | None = None,
    verify: str = "header",
    probe_root: Any = None,
    probes: list[str] = (),
    retrieval: str | None = None,
) -> Scenario:
    source = spec.source
    frame = _table(source)
    classes = list(spec.tasks[0].classnames) if spec.tasks else []
    templates = list(class_templates or ["a photo of a {}."])
    steps = []
    for task, (_, values) in zip(spec.tasks, resolve_steps(time_values(frame), source["steps"])):
        rows = frame[frame["time"].isin(values)].copy()
        if (rows["split"] == "").all():
            held = split_images(list(rows["image"]), eval_fraction, split_seed)
            rows["held_out"] = rows["image"].isin(held)
        else:
            rows["held_out"] = rows["split"] == "eval"
        screen = {"on_corrupt": "skip", "verify": verify}
        steps.append(_step(task.name, rows, classes, templates, bool(source["class_column"]), **screen))
    scenario = Scenario.from_spec(spec, steps, options={"eval_fraction": eval_fraction, "split_seed": split_seed})
    if probes or retrieval:
        if probe_root is None:
            raise ValueError("probes= and retrieval= name datasets under probe_root=; pass probe_root")
        from pathlib import Path

        scenario = _extras(scenario, Path(probe_root).expanduser(), probes=probes, retrieval=retrieval)
    return scenario


__all__ = ["BUILD_OPTIONS", "SOURCE_OPTIONS", "TIC_CAPTIONS_DEFAULTS", "build_tic_captions", "tic_captions_spec"]
