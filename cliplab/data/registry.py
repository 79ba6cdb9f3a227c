"""The one place that maps dataset names to factories, and `get_dataset`, the single entry point.

A factory is called as `factory(root=..., split=..., transform=..., download=..., on_corrupt=...,
**options)` and returns a dataset. Code outside the package adds names with `register_dataset`.
`require_local_dataset` checks that a dataset's files are in place without opening them (what
published scenarios do when they are built).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cliplab.data.builtin import digits_factory
from cliplab.data.captions import load_csv_captions, load_karpathy
from cliplab.data.cifar import load_cifar
from cliplab.data.errors import UnknownDatasetError
from cliplab.data.folders import load_image_folder
from cliplab.data.integrity import check_on_corrupt
from cliplab.data.layouts import require_layout, resolve_root
from cliplab.data.torchvision_sets import TORCHVISION_DATASETS, load_torchvision, require_torchvision_files

Factory = Callable[..., Dataset]

_REGISTRY: dict[str, Factory] = {
    "digits": digits_factory,
    "cifar10": partial(load_cifar, "cifar10"),
    "cifar100": partial(load_cifar, "cifar100"),
    **{name: partial(load_torchvision, name) for name in TORCHVISION_DATASETS},
    "imagefolder": load_image_folder,
    "coco_karpathy": partial(load_karpathy, "coco_karpathy"),
    "flickr30k_karpathy": partial(load_karpathy, "flickr30k_karpathy"),
    "csv_captions": load_csv_captions,
}

#: Other spellings (ZSCL's script names and common short names) -> registered name.
_ALIASES = {
    "fgvc_aircraft": "aircraft",
    "flowers": "flowers102",
    "food": "food101",
    "oxfordpet": "oxford_pet",
    "pets": "oxford_pet",
    "stanfordcars": "stanford_cars",
    "cars": "stanford_cars",
}


def register_dataset(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make `get_dataset(name, ...)` call `factory`; refuses to replace a name unless `overwrite=True`."""
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def list_datasets() -> list[str]:
    """All names `get_dataset` accepts (aliases excluded)."""
    return sorted(_REGISTRY)


def get_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "test",
    transform: Callable | None = None,
    download: bool = False,
    on_corrupt: str = "skip",
    *,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    **options: Any,
) -> Dataset:
    """Open dataset `name` (see `list_datasets()`) at `root` for `split`.

    Classification datasets yield `(transform(image), label)` and carry `.classnames`, `.templates`,
    `.train_template`, `.targets`, `.name`, `.corrupt`; caption datasets yield
    `(transform(image), captions)` and carry `.captions` and `.text_image_index`.
    `classnames=` / `templates=` replace the shipped lists (a wrong number of names raises
    `ClassListMismatchError`); other keyword `options` go to the dataset's factory (e.g.
    `image_size` for digits, `verify` for file-based sets, `verify_checksums` for CIFAR).
    """
    check_on_corrupt(on_corrupt)
    factory = _lookup(name)
    dataset = factory(root=root, split=split, transform=transform, download=download, on_corrupt=on_corrupt, **options)
    if classnames is not None:
        _require(dataset, "set_classnames", name, "classnames").set_classnames(classnames)
    if templates is not None:
        _require(dataset, "set_templates", name, "templates").set_templates(templates)
    return dataset


def _lookup_name(name: str) -> str:
    return _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name


def _lookup(name: str) -> Factory:
    key = _lookup_name(name)
    if key not in _REGISTRY:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def require_local_dataset(name: str, root: str | Path | None, split: str = "test") -> None:
    """Raise `DatasetNotFoundError` (naming the missing path and the layout) unless the files of a
    file-based dataset's `split` are under `root`. Nothing is opened or parsed: a cheap check for
    code that must fail early (building a published scenario) but loads the data later."""
    key = _lookup_name(name)
    if key in ("cifar10", "cifar100"):
        require_layout(key, resolve_root(root), split)
    elif key in TORCHVISION_DATASETS:
        require_torchvision_files(key, root, split)


def _require(dataset: Dataset, method: str, name: str, option: str) -> Any:
    if not hasattr(dataset, method):
        raise TypeError(f"{name}: {option}= applies to classification datasets only")
    return dataset
