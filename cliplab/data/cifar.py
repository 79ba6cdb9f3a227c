"""CIFAR-10 / CIFAR-100 from torchvision's on-disk pickle format (`cifar-10-batches-py`, `cifar-100-python`).

The batches are read here rather than through `torchvision.datasets.CIFAR*` so that every failure
names its file: a missing batch raises `DatasetNotFoundError`, an MD5 mismatch or an unreadable or
malformed pickle raises `CorruptFileError`. File names and MD5 sums are torchvision's own; download
goes through torchvision. `verify_checksums=False` (with a warning) loads modified or synthetic
copies, e.g. the tiny test fixtures, without weakening the default.

A pickle can run code when it is loaded, so batches are always read by `SafeUnpickler`, which
builds only what a CIFAR file holds (dicts, lists, str, bytes, numbers, NumPy arrays and dtypes)
and refuses any other global: a tampered file is a `CorruptFileError`, never executed code.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity

from cliplab.data.errors import CorruptFileError, DatasetNotFoundError
from cliplab.data.layouts import require_layout, resolve_root
from cliplab.data.metadata import benchmark_classnames, load_metadata
from cliplab.data.tensor import TensorImageDataset

_TV_CLASSES = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
_LABEL_KEYS = ("labels", "fine_labels")  # torchvision takes whichever the batch has
_PIXELS = 3 * 32 * 32


def load_cifar(
    name: str,
    root: Any = None,
    split: str = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    verify_checksums: bool = True,
    verify: str = "header",
) -> TensorImageDataset:
    """CIFAR-10 or CIFAR-100 `split` ("train"/"test") under `root` with the benchmark's names and templates.

    `on_corrupt` and `verify` are accepted for a uniform call signature; pickled batches hold no image
    files, so any damage is a `CorruptFileError` naming the batch file.
    """
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")
    tv_cls, root = _TV_CLASSES[name], resolve_root(root)
    if download:
        _download(tv_cls, name, root, split)
    require_layout(name, root, split)
    folder = root / tv_cls.base_folder
    batches = [(folder / f, md5) for f, md5 in (tv_cls.train_list if split == "train" else tv_cls.test_list)]
    meta_file = (folder / tv_cls.meta["filename"], tv_cls.meta["md5"])
    _check_checksums(name, batches + [meta_file], verify_checksums)
    images, labels = _read_batches(name, [path for path, _ in batches])
    classnames = benchmark_classnames(name, _read_label_names(name, meta_file[0], tv_cls.meta["key"]))
    return TensorImageDataset(images, labels, classnames, load_metadata(name).templates, transform=transform, name=name)


def _download(tv_cls: type, name: str, root: Path, split: str) -> None:
    try:
        tv_cls(str(root), train=split == "train", download=True)
    except (OSError, RuntimeError) as error:
        raise DatasetNotFoundError(
            f"{name}: download into {root} failed ({error}). Without internet, place "
            f"the torchvision-format files at {root / tv_cls.base_folder}.",
            root,
        ) from error


def _check_checksums(name: str, files: list[tuple[Path, str]], verify: bool) -> None:
    if not verify:
        warnings.warn(
            f"{name}: MD5 checksums not verified (verify_checksums=False); use only for "
            f"deliberately modified or synthetic copies.",
            UserWarning,
            stacklevel=3,
        )
        return
    for path, md5 in files:
        if not check_integrity(str(path), md5):
            raise CorruptFileError(
                f"{name}: {path} fails its MD5 check (expected {md5}): the file is damaged or not the official "
                f"release. Delete it and pass download=True, or pass verify_checksums=False to load a "
                f"deliberately modified copy.",
                path,
            )


# The globals a CIFAR pickle references: NumPy's array reconstruction (its module moved to
# numpy._core in NumPy 2), the bytes constructor of protocol-2 pickles written by Python 3
# (`_codecs.encode(text, "latin1")`) and harmless builtin containers. Everything else a CIFAR file
# holds (dicts, lists, str, numbers) is made by pickle opcodes without any global.
_NUMPY_GLOBALS = {"_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype"}
_NUMPY_MODULES = (
    "numpy",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
)
_BUILTINS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} (not part of a CIFAR batch)")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data and NumPy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module == "_codecs" and name == "encode":
            return _latin1_bytes
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not part of a CIFAR batch)")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id (not part of a CIFAR batch)")


def _unpickle(name: str, path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            return SafeUnpickler(handle, encoding="latin1").load()
    except Exception as error:  # any unpickling failure means: not a usable CIFAR file
        raise CorruptFileError(
            f"{name}: cannot read {path} as a CIFAR pickle ({type(error).__name__}: {error})", path
        ) from None


def _read_batches(name: str, paths: list[Path]) -> tuple[torch.Tensor, list[int]]:
    data, labels = [], []
    for path in paths:
        batch_data, batch_labels = _read_batch(name, path)
        data.append(batch_data)
        labels.extend(batch_labels)
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))  # rows are R, G, B planes
    return images, labels


def _read_batch(name: str, path: Path) -> tuple[np.ndarray, list[int]]:
    entry = _unpickle(name, path)
    label_key = next((k for k in _LABEL_KEYS if isinstance(entry, dict) and k in entry), None)
    if label_key is None or "data" not in entry:
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise CorruptFileError(f"{name}: {path} lacks the 'data' and 'labels'/'fine_labels' keys (found {found})", path)
    data, labels = np.asarray(entry["data"]), [int(v) for v in entry[label_key]]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS or len(labels) != len(data):
        raise CorruptFileError(
            f"{name}: {path} holds data {data.dtype} {data.shape} with {len(labels)} labels; "
            f"expected uint8 N×{_PIXELS} with N labels",
            path,
        )
    return data, labels


def _read_label_names(name: str, path: Path, key: str) -> list[str]:
    entry = _unpickle(name, path)
    if not isinstance(entry, dict) or key not in entry:
        raise CorruptFileError(f"{name}: {path} lacks the {key!r} key of a CIFAR meta file", path)
    return [str(n) for n in entry[key]]
