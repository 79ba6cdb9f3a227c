"""Class names, prompt templates and benchmark orders, read from the JSON files in `metadata/`.

The JSON files are data taken from public sources; each file names its sources under "sources".
`names_from_dataset` marks datasets whose benchmark class names are the dataset's own class list
(torchvision `classes`, '_' -> ' ', as ZSCL does); for those the JSON list is the offline copy.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from cliplab.data.errors import ClassListMismatchError, class_count_mismatch

_PACKAGE = "cliplab.data"
_FOLDER = "metadata"


class ClassPrompts:
    """What CLIP needs from a class list: `classnames` and `templates` (the evaluation ensemble),
    from which the training prompt and the class count follow. Shared by the metadata records
    and the datasets."""

    classnames: Sequence[str]
    templates: Sequence[str]

    @property
    def train_template(self) -> str:
        """The single template used for training prompts (templates[0], as in MTIL)."""
        return self.templates[0]

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


@dataclass(frozen=True)
class DatasetMetadata(ClassPrompts):
    """Class names and templates of one dataset as the benchmark uses them."""

    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    names_from_dataset: bool
    sources: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


def _read_json(filename: str) -> dict[str, Any]:
    text = resources.files(_PACKAGE).joinpath(_FOLDER).joinpath(filename).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def load_metadata(name: str) -> DatasetMetadata:
    """Metadata of a dataset with a JSON file in `cliplab/data/metadata/` (e.g. "sun397")."""
    if name not in available_metadata():
        raise KeyError(f"no class-name/template metadata for {name!r}; known: {', '.join(available_metadata())}")
    raw = _read_json(f"{name}.json")
    known = {"name", "classnames", "templates", "names_from_dataset", "sources", "num_classes", "train_template"}
    return DatasetMetadata(
        name=raw["name"],
        classnames=tuple(raw["classnames"]),
        templates=tuple(raw["templates"]),
        names_from_dataset=bool(raw["names_from_dataset"]),
        sources=dict(raw.get("sources", {})),
        extra={k: v for k, v in raw.items() if k not in known},
    )


@cache
def available_metadata() -> tuple[str, ...]:
    """Names of the datasets that ship class names and templates."""
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    names = (p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    return tuple(sorted(n for n in names if n != "orders"))


def folder_to_classname(folder: str) -> str:
    """Folder / raw label name to a prompt-ready class name ('_' -> ' ', as ZSCL and ImageFolder users expect)."""
    return folder.replace("_", " ")


def check_classnames(names: Sequence[str], num_classes: int, dataset: str, what: str = "the class list") -> list[str]:
    """Return `names` as a list if it has exactly `num_classes` non-empty strings, else raise."""
    names = list(names)
    if len(names) != num_classes:
        raise class_count_mismatch(dataset, names, num_classes, what)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ClassListMismatchError(f"{dataset}: {what} contains empty or non-string names: {bad[:5]!r}")
    return names


def check_templates(templates: Sequence[str], dataset: str) -> list[str]:
    """Templates must be format strings with exactly one '{}' slot for the class name."""
    templates = list(templates)
    if not templates:
        raise ValueError(f"{dataset}: at least one prompt template is required")
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise ValueError(f"{dataset}: templates need exactly one '{{}}' slot for the class name; got {bad[:3]!r}")
    return templates


_ORDERS = _read_json("orders.json")

#: ZSCL MTIL Order I (alphabetical), as `get_dataset` names.
MTIL_ORDER_1: list[str] = list(_ORDERS["mtil_order_1"])
#: ZSCL MTIL Order II.
MTIL_ORDER_2: list[str] = list(_ORDERS["mtil_order_2"])
#: ZSCL's CIFAR-100 class order for class-incremental learning (`cil/class_orders/cifar100.yaml`).
CIFAR100_CLASS_ORDER: list[int] = list(_ORDERS["cifar100_class_order"])


def benchmark_classnames(
    name: str, dataset_classes: Sequence[str] | None = None, num_classes: int | None = None
) -> list[str]:
    """The class names the benchmark uses for `name`, checked against the data actually on disk.

    `dataset_classes` is the dataset's own class list (torchvision `classes`, CIFAR meta names), or
    None when the format has none (then pass `num_classes`). A different *number* of classes than
    the benchmark list is an error. For `names_from_dataset` datasets the dataset's own names win
    ('_' -> ' ', as ZSCL does) and a difference from the shipped copy is only a warning.
    """
    meta = load_metadata(name)
    count = len(dataset_classes) if dataset_classes is not None else num_classes
    if count is not None and count != meta.num_classes:
        raise class_count_mismatch(name, meta.classnames, count, "cliplab's benchmark class list")
    if not (meta.names_from_dataset and dataset_classes is not None):
        return list(meta.classnames)
    names = [folder_to_classname(c) for c in dataset_classes]
    differing = [i for i, (a, b) in enumerate(zip(names, meta.classnames)) if a != b]
    if differing:
        i = differing[0]
        warnings.warn(
            f"{name}: {len(differing)} class names on disk differ from cliplab's copy "
            f"(first at index {i}: {names[i]!r} vs {meta.classnames[i]!r}); using the names on disk.",
            UserWarning,
            stacklevel=2,
        )
    return names
