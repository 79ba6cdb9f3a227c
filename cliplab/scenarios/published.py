"""Published benchmarks on local data: CIFAR-100 class-incremental (10/20/50 steps) and MTIL.

Defaults are ZSCL's (§3 of the reference notes; `cil/configs/class/*`, `mtil/scripts/*`):
CIFAR-100 CIL — ZSCL's class order, 1 epoch per task, batch 64, lr 7.1e-6, 30 warm-up steps,
prompt "a bad photo of a {}.", distillation weight 5 per direction; iCaRL as ZSCL's CIL code
(class-agnostic memory of 5,000 herded from the first 10,000 images of each task, previous-task
teacher, no cross-entropy on exemplars); ZSCL with a weight ensemble every 10 steps whose final
weights count only on the interval, and no L2. Distillation images of the current task or memory
go through the train transform there (the methods' `kd_transform=auto`). MTIL — 1,000 iterations
per task, lr 1e-5 (5e-5 for Aircraft and MNIST), 100 warm-up steps, single training template,
ensembled evaluation templates, iCaRL as ZSCL's MTIL code (memory 10,000 of the first 30,000
images, pretrained teacher), ZSCL with L2 1 and a weight ensemble every 100 of 1,000 steps.

Datasets are read from `root` in their torchvision layouts (see docs/datasets.md). A spec takes its
class names and templates from the shipped metadata; building checks that every dataset's files
are in place (a missing one names the path and the layout) but opens nothing: the data is read
when a run needs it. Optional scenario options add what the papers used beside the tasks:
- `reference_images` (an ImageFolder root, e.g. ImageNet train) and `reference_captions` (a CSV of
  filepath,caption like Conceptual Captions) — ZSCL's reference data;
- `probes` (dataset names under `root` never trained on, e.g. ["cifar10"]) — zero-shot retention;
- `retrieval` (e.g. "coco_karpathy" or "flickr30k_karpathy" under `root`) — a retrieval probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cliplab.data import CIFAR100_CLASS_ORDER, get_dataset, load_metadata, require_local_dataset
from cliplab.scenarios.base import (
    ClassSubset,
    ProbeSet,
    ReferenceData,
    RetrievalSet,
    Scenario,
    ScenarioSpec,
    Task,
    TaskSpec,
)
from cliplab.scenarios.peft_presets import cifar_cil_presets, mtil_presets

CIFAR_CIL_DEFAULTS = {
    "epochs_per_task": 1.0,
    "batch_size": 64,
    "lr": 7.1e-6,
    "warmup_steps": 30,
    "weight_decay": 0.0,
    "label_smoothing": 0.2,
    "seed": 42,
}
CIFAR_CIL_METHODS = {
    "lwf": {"weight": 5.0},
    "vr_lwf": {"weight": 5.0},
    "icarl": {"weight": 5.0, "variant": "zscl", "teacher": "previous", "memory_size": 5000, "max_candidates": 10000},
    "zscl": {"weight": 5.0, "avg_freq": 10, "final_snapshot": "on_interval", "l2": 0.0},
}
MTIL_DEFAULTS = {
    "steps_per_task": 1000,
    "batch_size": 64,
    "lr": 1e-5,
    "lr_per_task": {"aircraft": 5e-5, "mnist": 5e-5},
    "warmup_steps": 100,
    "weight_decay": 0.0,
    "label_smoothing": 0.2,
    "seed": 42,
}
MTIL_METHODS = {"icarl": {"memory_size": 10000, "max_candidates": 30000, "variant": "zscl"}}
CIL_TEMPLATE = "a bad photo of a {}."


def require_root(root: str | Path | None, scenario: str) -> Path:
    """The one policy for a published scenario without `root`: a ValueError saying how to pass it."""
    if root is None:
        raise ValueError(
            f"scenario {scenario!r} reads local datasets: pass root=<folder> (CLI: --root), see docs/datasets.md"
        )
    return Path(root).expanduser()


def _dataset(name: str, root: Path, split: str, class_ids: Sequence[int] | None = None, **options):
    def factory(transform=None):
        data = get_dataset(name, root=root, split=split, transform=transform, **options)
        return data if class_ids is None else ClassSubset(data, list(class_ids))

    return factory


class _CaptionedImages(Dataset):
    """A caption dataset's images as `(image, image index)`: the captions travel in `RetrievalSet.captions`,
    and per-image caption lists of different lengths (COCO: 5 to 7) cannot go through the default collate.

    Batched loading (what the evaluator's DataLoader does) leaves out an image that fails to decode
    (warned and listed in `.corrupt` by the caption dataset), and `.captions` / `.text_image_index`,
    read after the images, leave out its captions: the evaluator scores what it could read."""

    captions_follow_images = True  # the evaluator takes `.captions` / `.text_image_index` from here

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.data[index][0], index

    def __getitems__(self, indices: list[int]) -> list[tuple]:
        return [(item[0], index) for index, item in self.data.indexed_items(indices)]

    @property
    def corrupt(self) -> list[str]:
        return self.data.corrupt

    @property
    def captions(self) -> list[str]:
        return self.data.captions

    @property
    def text_image_index(self) -> list[int]:
        return self.data.text_image_index


def _caption_images(name: str, root: Path, split: str):
    def factory(transform=None):
        return _CaptionedImages(get_dataset(name, root=root, split=split, transform=transform))

    return factory


def _extras(
    scenario: Scenario, root: Path, reference_images=None, reference_captions=None, probes=(), retrieval=None
) -> Scenario:
    """Attach the optional reference data and probes named by the scenario options."""
    if reference_images and reference_captions:
        captions = get_dataset("csv_captions", root=reference_captions, split="all", verify="none").captions
        # An ImageNet-train-sized folder: skip the up-front per-file check (1.28M files).
        scenario.reference = ReferenceData(
            _dataset("imagefolder", Path(reference_images), "train", verify="none"), list(captions)
        )
    for name in probes:
        data = get_dataset(name, root=root, split="test")
        scenario.probes.append(
            ProbeSet(name, _dataset(name, root, "test"), list(data.classnames), list(data.templates))
        )
    if retrieval:
        data = get_dataset(retrieval, root=root, split="test")
        scenario.retrieval.append(
            RetrievalSet(
                retrieval,
                _caption_images(retrieval, root, "test"),
                list(data.captions),
                torch.as_tensor(data.text_image_index),
            )
        )
    return scenario


EXTRA_OPTIONS = ("root", "reference_images", "reference_captions", "probes", "retrieval")


def cifar100_cil_spec(increment: int) -> ScenarioSpec:
    """CIFAR-100 in 100/increment tasks with ZSCL's class order (names from the shipped metadata)."""
    names = load_metadata("cifar100").classnames
    tasks = [
        TaskSpec(
            f"classes_{k * increment:02d}-{(k + 1) * increment - 1:02d}",
            tuple(names[c] for c in CIFAR100_CLASS_ORDER[k * increment : (k + 1) * increment]),
        )
        for k in range(100 // increment)
    ]
    return ScenarioSpec(
        f"cifar100-cil-{100 // increment}",
        "class_incremental",
        tasks,
        defaults=dict(CIFAR_CIL_DEFAULTS),
        method_defaults={**{k: dict(v) for k, v in CIFAR_CIL_METHODS.items()}, **cifar_cil_presets(increment)},
        description="ZSCL's CIFAR-100 class-incremental protocol.",
        needs_root=True,
        build_options=EXTRA_OPTIONS,
    )


def build_cifar100_cil(spec: ScenarioSpec, root=None, **extras) -> Scenario:
    folder = require_root(root, spec.name)
    for split in ("train", "test"):
        require_local_dataset("cifar100", folder, split)
    increment = len(spec.tasks[0].classnames)
    tasks = []
    for k, task in enumerate(spec.tasks):
        ids = CIFAR100_CLASS_ORDER[k * increment : (k + 1) * increment]
        tasks.append(
            Task(
                task.name,
                list(task.classnames),
                CIL_TEMPLATE,
                [CIL_TEMPLATE],
                _dataset("cifar100", folder, "train", ids),
                _dataset("cifar100", folder, "test", ids),
            )
        )
    return _extras(Scenario.from_spec(spec, tasks), folder, **extras)


def mtil_spec(order: Sequence[str], name: str, datasets: Sequence[str] | None = None) -> ScenarioSpec:
    """MTIL: the datasets in `order` (or the subset `datasets`, kept in that order), task-incremental."""
    if datasets is not None and set(datasets) - set(order):
        raise ValueError(f"unknown MTIL dataset(s) {sorted(set(datasets) - set(order))}; known: {list(order)}")
    chosen = [d for d in order if datasets is None or d in datasets]
    return ScenarioSpec(
        name,
        "task_incremental",
        [TaskSpec(d, tuple(load_metadata(d).classnames)) for d in chosen],
        defaults=dict(MTIL_DEFAULTS),
        method_defaults={**{k: dict(v) for k, v in MTIL_METHODS.items()}, **mtil_presets()},
        description="ZSCL's multi-domain task-incremental benchmark.",
        needs_root=True,
        build_options=EXTRA_OPTIONS,
    )


def build_mtil(spec: ScenarioSpec, root=None, **extras) -> Scenario:
    folder = require_root(root, spec.name)
    for task in spec.tasks:  # every dataset present before anything trains
        for split in ("train", "test"):
            require_local_dataset(task.name, folder, split)
    tasks = []
    for task in spec.tasks:
        meta = load_metadata(task.name)
        tasks.append(
            Task(
                task.name,
                list(task.classnames),
                meta.train_template,
                list(meta.templates),
                _dataset(task.name, folder, "train"),
                _dataset(task.name, folder, "test"),
            )
        )
    return _extras(Scenario.from_spec(spec, tasks), folder, **extras)


__all__ = [
    "CIFAR_CIL_DEFAULTS",
    "CIFAR_CIL_METHODS",
    "CIL_TEMPLATE",
    "MTIL_DEFAULTS",
    "MTIL_METHODS",
    "build_cifar100_cil",
    "build_mtil",
    "cifar100_cil_spec",
    "mtil_spec",
    "require_root",
]
