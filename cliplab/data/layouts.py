"""Where each local dataset lives under `root`: the torchvision on-disk layouts, and how to get them.

Used to check for the data *before* torchvision is called, so a missing dataset raises a
`DatasetNotFoundError` naming the exact missing path, the expected tree and the remedy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cliplab.data.errors import missing_dataset

#: Environment variable for the default data root (used when `root=None`).
DATA_ROOT_ENV = "CLIPLAB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/cliplab/data")

_DOWNLOAD = "pass download=True on a machine with internet (torchvision downloads it into root), or place the "


@dataclass(frozen=True)
class Layout:
    """Required paths (relative to root, for a torchvision split name) and a human-readable tree."""

    required: Callable[[str], list[str]]
    tree: str
    how_to_get: str


def resolve_root(root: str | os.PathLike | None) -> Path:
    """`root`, else $CLIPLAB_DATA, else ~/.cache/cliplab/data."""
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


def _tv(files: str) -> str:
    return _DOWNLOAD + f"torchvision-format files at {files}."


LAYOUTS: dict[str, Layout] = {
    "cifar10": Layout(
        lambda s: (
            ["cifar-10-batches-py/batches.meta"]
            + (
                [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
                if s == "train"
                else ["cifar-10-batches-py/test_batch"]
            )
        ),
        "root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}  (python pickle batches)",
        _tv("root/cifar-10-batches-py/ (extract cifar-10-python.tar.gz into root)"),
    ),
    "cifar100": Layout(
        lambda s: ["cifar-100-python/meta", f"cifar-100-python/{s}"],
        "root/cifar-100-python/{train, test, meta}  (python pickle batches)",
        _tv("root/cifar-100-python/ (extract cifar-100-python.tar.gz into root)"),
    ),
    "aircraft": Layout(
        lambda s: [
            "fgvc-aircraft-2013b/data/variants.txt",
            f"fgvc-aircraft-2013b/data/images_variant_{s}.txt",
            "fgvc-aircraft-2013b/data/images",
        ],
        "root/fgvc-aircraft-2013b/data/{variants.txt, images_variant_<split>.txt, images/<id>.jpg}",
        _tv("root/fgvc-aircraft-2013b/ (extract fgvc-aircraft-2013b.tar.gz into root)"),
    ),
    "caltech101": Layout(
        lambda s: ["caltech101/101_ObjectCategories"],
        "root/caltech101/101_ObjectCategories/<category>/image_0001.jpg  (incl. BACKGROUND_Google, ignored)",
        _tv("root/caltech101/101_ObjectCategories/ (download=True needs the gdown package)"),
    ),
    "dtd": Layout(
        lambda s: [f"dtd/dtd/labels/{s}1.txt", "dtd/dtd/images"],
        "root/dtd/dtd/{images/<class>/<file>.jpg, labels/{train,val,test}1.txt}",
        _tv("root/dtd/dtd/ (extract dtd-r1.0.1.tar.gz into root/dtd)"),
    ),
    "eurosat": Layout(
        lambda s: ["eurosat/2750"],
        "root/eurosat/2750/<Class>/<Class>_<n>.jpg  (RGB EuroSAT, 10 class folders)",
        _tv("root/eurosat/2750/ (extract EuroSAT.zip into root/eurosat)"),
    ),
    "flowers102": Layout(
        lambda s: ["flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"],
        "root/flowers-102/{jpg/image_00001.jpg, imagelabels.mat, setid.mat}",
        _tv("root/flowers-102/ (102flowers.tgz extracted, plus imagelabels.mat and setid.mat)"),
    ),
    "food101": Layout(
        lambda s: [f"food-101/meta/{s}.json", "food-101/images"],
        "root/food-101/{images/<class>/<id>.jpg, meta/{train,test}.json}",
        _tv("root/food-101/ (extract food-101.tar.gz into root)"),
    ),
    "mnist": Layout(
        lambda s: [
            f"MNIST/raw/{p}-{kind}-idx{d}-ubyte"
            for p in ("train", "t10k")  # torchvision wants all 4
            for kind, d in (("images", 3), ("labels", 1))
        ],
        "root/MNIST/raw/{train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte  (all four, uncompressed)",
        _tv("root/MNIST/raw/ (the four IDX files, gunzipped)"),
    ),
    "oxford_pet": Layout(
        lambda s: ["oxford-iiit-pet/images", f"oxford-iiit-pet/annotations/{s}.txt"],
        "root/oxford-iiit-pet/{images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt}",
        _tv("root/oxford-iiit-pet/ (extract images.tar.gz and annotations.tar.gz there)"),
    ),
    "stanford_cars": Layout(
        lambda s: (
            ["stanford_cars/devkit/cars_meta.mat"]
            + (
                ["stanford_cars/devkit/cars_train_annos.mat", "stanford_cars/cars_train"]
                if s == "train"
                else ["stanford_cars/cars_test_annos_withlabels.mat", "stanford_cars/cars_test"]
            )
        ),
        "root/stanford_cars/{devkit/{cars_meta.mat, cars_train_annos.mat}, cars_train/, cars_test/,\n"
        "                    cars_test_annos_withlabels.mat}",
        "torchvision cannot download Stanford Cars (the original URL is dead); download a mirror "
        "(e.g. the Kaggle copy) by hand and place the torchvision-format files at root/stanford_cars/.",
    ),
    "sun397": Layout(
        lambda s: ["SUN397/ClassName.txt"],
        "root/SUN397/{ClassName.txt, a/abbey/sun_<id>.jpg, ...}",
        _tv("root/SUN397/ (extract SUN397.tar.gz into root)"),
    ),
}


def require_layout(name: str, root: Path, tv_split: str) -> None:
    """Raise `DatasetNotFoundError` for the first required path of `name` missing under `root`."""
    layout = LAYOUTS[name]
    for relative in layout.required(tv_split):
        path = root / relative
        if not path.exists():
            first_missing = _first_missing(root, Path(relative))
            needed = "" if first_missing == path else f" (needed: {path})"
            raise missing_dataset(name, first_missing, f"  {layout.tree}\n  (root = {root}){needed}", layout.how_to_get)


def _first_missing(root: Path, relative: Path) -> Path:
    """The shallowest missing folder on the way to `root/relative` (or root itself)."""
    if not root.exists():
        return root
    path = root
    for part in relative.parts:
        path = path / part
        if not path.exists():
            return path
    return path
