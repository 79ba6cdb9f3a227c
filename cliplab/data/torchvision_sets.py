"""The 11 MTIL datasets (minus CIFAR-100, see `cifar.py`) through torchvision, as ZSCL uses them.

torchvision parses each dataset's index files; cliplab then takes the (path, label) table, applies
ZSCL's seeded 80/20 split where there is no official test split (Caltech101, EuroSAT, SUN397),
screens the images up front (`integrity.py`) and serves them as a `FileImageDataset` with the
benchmark's class names and templates. MNIST stays tensor-backed. The on-disk layouts are in
`layouts.py` and are checked before torchvision is called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torchvision
from torchvision import datasets as tvd

from cliplab.data.base import ClassificationDataset, FileImageDataset
from cliplab.data.errors import CorruptFileError, DatasetNotFoundError
from cliplab.data.integrity import check_on_corrupt, check_verify, screen_samples
from cliplab.data.layouts import LAYOUTS, require_layout, resolve_root
from cliplab.data.metadata import benchmark_classnames, load_metadata
from cliplab.data.splits import split_indices
from cliplab.data.tensor import TensorImageDataset

_NO_OFFICIAL_SPLIT = "all"  # torchvision split name passed for datasets that only have one pool


@dataclass(frozen=True)
class _Spec:
    """How to build the torchvision dataset, and our split names -> torchvision's (None: seeded split)."""

    build: Callable[[str, str, bool], Any]
    splits: Mapping[str, str] | None


_SPECS: dict[str, _Spec] = {
    "aircraft": _Spec(
        lambda r, s, d: tvd.FGVCAircraft(r, split=s, annotation_level="variant", download=d),
        {"train": "train", "val": "val", "trainval": "trainval", "test": "test"},
    ),
    "caltech101": _Spec(lambda r, s, d: tvd.Caltech101(r, target_type="category", download=d), None),
    "dtd": _Spec(
        lambda r, s, d: tvd.DTD(r, split=s, partition=1, download=d), {"train": "train", "val": "val", "test": "test"}
    ),
    "eurosat": _Spec(lambda r, s, d: tvd.EuroSAT(r, download=d), None),
    "flowers102": _Spec(
        lambda r, s, d: tvd.Flowers102(r, split=s, download=d), {"train": "train", "val": "val", "test": "test"}
    ),
    "food101": _Spec(lambda r, s, d: tvd.Food101(r, split=s, download=d), {"train": "train", "test": "test"}),
    "mnist": _Spec(lambda r, s, d: tvd.MNIST(r, train=s == "train", download=d), {"train": "train", "test": "test"}),
    "oxford_pet": _Spec(
        lambda r, s, d: tvd.OxfordIIITPet(r, split=s, target_types="category", download=d),
        {"train": "trainval", "trainval": "trainval", "test": "test"},
    ),
    "stanford_cars": _Spec(
        lambda r, s, d: tvd.StanfordCars(r, split=s, download=d), {"train": "train", "test": "test"}
    ),
    "sun397": _Spec(lambda r, s, d: tvd.SUN397(r, download=d), None),
}

#: Names served by this module.
TORCHVISION_DATASETS: tuple[str, ...] = tuple(_SPECS)


def load_torchvision(
    name: str,
    root: Any = None,
    split: str = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    verify: str = "header",
) -> ClassificationDataset:
    """One MTIL dataset split under `root` (torchvision layout), with ZSCL's names, templates and splits."""
    check_on_corrupt(on_corrupt)
    check_verify(verify)
    spec, root = _SPECS[name], resolve_root(root)
    tv_split = _tv_split(name, spec, split)
    base = _build(name, spec, root, tv_split, download)
    if name == "mnist":
        return _mnist(base, transform)
    paths, labels = sample_table(base)
    if spec.splits is None:
        keep = split_indices(len(paths), split, name)  # split first: corrupt files must not shift it
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    classnames = benchmark_classnames(name, _dataset_classes(base))
    paths, labels, dropped = screen_samples(name, paths, labels, on_corrupt, verify)
    return FileImageDataset(
        paths=paths,
        targets=labels,
        name=name,
        classnames=classnames,
        templates=load_metadata(name).templates,
        transform=transform,
        corrupt=dropped,
        on_corrupt=on_corrupt,
    )


def require_torchvision_files(name: str, root: Any, split: str) -> None:
    """Raise `DatasetNotFoundError` unless the files of `name`'s `split` are under `root` (nothing is opened)."""
    require_layout(name, resolve_root(root), _tv_split(name, _SPECS[name], split))


def _tv_split(name: str, spec: _Spec, split: str) -> str:
    if spec.splits is None:
        if split not in ("train", "test", "all"):
            raise ValueError(
                f"{name} has no official split; use 'train' or 'test' (ZSCL's seeded 80/20) or 'all', got {split!r}"
            )
        return _NO_OFFICIAL_SPLIT
    if split not in spec.splits:
        raise ValueError(f"{name}: split must be one of {sorted(spec.splits)}, got {split!r}")
    return spec.splits[split]


def _layout_present(name: str, root: Path, tv_split: str) -> bool:
    return all((root / rel).exists() for rel in LAYOUTS[name].required(tv_split))


def _build(name: str, spec: _Spec, root: Path, tv_split: str, download: bool) -> Any:
    """Construct the torchvision dataset; missing data and parse failures become cliplab errors."""
    present = _layout_present(name, root, tv_split)
    if not present and not download:
        require_layout(name, root, tv_split)
    try:
        base = spec.build(str(root), tv_split, download and not present)
    except (RuntimeError, OSError, ValueError, KeyError, IndexError, ImportError) as error:
        if not present:
            raise DatasetNotFoundError(
                f"{name}: download into {root} failed ({type(error).__name__}: {error}). {LAYOUTS[name].how_to_get}",
                root,
            ) from error
        raise CorruptFileError(
            f"{name}: torchvision could not read the files under {root} ({type(error).__name__}: {error})", root
        ) from error
    require_layout(name, root, tv_split)  # a download that produced another layout is still "not found"
    return base


def sample_table(base: Any) -> tuple[list[str], list[int]]:
    """(image paths, labels) in torchvision's sample order, for the file-based torchvision datasets."""
    try:
        if isinstance(base, tvd.Caltech101):
            folder = os.path.join(base.root, "101_ObjectCategories")
            paths = [os.path.join(folder, base.categories[y], f"image_{i:04d}.jpg") for i, y in zip(base.index, base.y)]
            return paths, list(base.y)
        if isinstance(base, (tvd.StanfordCars, tvd.EuroSAT)):
            pairs = base._samples if isinstance(base, tvd.StanfordCars) else base.samples
            return [str(p) for p, _ in pairs], [int(t) for _, t in pairs]
        files = base._images if isinstance(base, tvd.OxfordIIITPet) else base._image_files
        return [str(p) for p in files], [int(t) for t in base._labels]
    except AttributeError as error:
        raise RuntimeError(
            f"torchvision {torchvision.__version__} changed the internals of "
            f"{type(base).__name__} that cliplab reads ({error}); cliplab supports torchvision "
            f"<= 0.29.1"
        ) from error


def _dataset_classes(base: Any) -> list[str] | None:
    """The dataset's own class list (None for Flowers102, which has only numeric labels)."""
    if isinstance(base, tvd.Caltech101):
        return list(base.categories)
    return list(base.classes) if hasattr(base, "classes") else None


def _mnist(base: Any, transform: Any) -> TensorImageDataset:
    classnames = benchmark_classnames("mnist", list(base.classes))
    return TensorImageDataset(
        base.data.unsqueeze(1),
        base.targets,
        classnames,
        load_metadata("mnist").templates,
        transform=transform,
        name="mnist",
    )
