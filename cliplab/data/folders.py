"""`imagefolder`: any tree `root/<split>/<class>/<image>`; class names are folder names with '_' -> ' '.

Labels follow the sorted class-folder names, as in torchvision's ImageFolder. Because every split
is indexed on its own, all split folders under `root` (train, val, test, ...) must hold the same
class folders: otherwise label 3 could mean different classes in train and test, so a difference
raises `ClassListMismatchError` (an empty class folder is allowed and keeps the classes aligned).
Images are screened up front; `on_corrupt` decides whether unreadable files are skipped or fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchvision.datasets.folder import IMG_EXTENSIONS

from cliplab.data.base import FileImageDataset
from cliplab.data.errors import ClassListMismatchError, DatasetNotFoundError
from cliplab.data.integrity import screen_samples
from cliplab.data.metadata import folder_to_classname

#: Folder names treated as sibling splits whose class folders must match.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test", "trainval")
DEFAULT_TEMPLATES = ("a photo of a {}.",)


def load_image_folder(
    root: Any = None,
    split: str | None = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    verify: str = "header",
    name: str | None = None,
) -> FileImageDataset:
    """Images under `root/split/<class>/` (or `root/<class>/` with `split=None`); generic template
    "a photo of a {}." unless `get_dataset(..., templates=[...])` overrides it."""
    if root is None:
        raise ValueError("imagefolder needs root=: the folder that holds <split>/<class>/<image> files")
    root = Path(root).expanduser()
    split_dir = _split_dir(root, split)
    classes = class_folders(split_dir)
    _check_sibling_splits(root, split_dir, classes)
    name = name or root.name
    paths, labels, dropped = screen_samples(name, *_scan(split_dir, classes), on_corrupt, verify)
    return FileImageDataset(
        paths=paths,
        targets=labels,
        name=name,
        transform=transform,
        corrupt=dropped,
        on_corrupt=on_corrupt,
        classnames=[folder_to_classname(c) for c in classes],
        templates=DEFAULT_TEMPLATES,
    )


def _split_dir(root: Path, split: str | None) -> Path:
    split_dir = root if split is None else root / split
    if split_dir.is_dir():
        return split_dir
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    hint = f"; folders found in {root}: {', '.join(found)}" if found else ""
    flat = " If those are class folders (no split level), pass split=None." if found and split else ""
    raise DatasetNotFoundError(
        f"imagefolder: expected {split_dir} but it does not exist{hint}.\n"
        f"Expected layout: root/<split>/<class>/<image>.png (or .jpg, ...), e.g. {root}/test/cat/0001.png.{flat}",
        split_dir,
    )


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of a split folder."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(
            f"imagefolder: no class folders in {split_dir}; expected {split_dir}/<class>/<image>", split_dir
        )
    return classes


def _check_sibling_splits(root: Path, split_dir: Path, classes: list[str]) -> None:
    if split_dir == root:
        return
    for sibling in sorted(root.iterdir()):
        if sibling == split_dir or sibling.name not in SPLIT_NAMES or not sibling.is_dir():
            continue
        other = class_folders(sibling)
        if other != classes:
            only_here, only_there = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
            raise ClassListMismatchError(
                f"imagefolder: {split_dir} has {len(classes)} class folders but {sibling} has {len(other)} "
                f"({len(classes)} != {len(other)} or different names); only in {split_dir.name}: {only_here}, "
                f"only in {sibling.name}: {only_there}. Labels would not line up across splits; create the "
                f"missing folders (they may be empty)."
            )


def _scan(split_dir: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(
            p
            for p in (split_dir / cls).rglob("*")
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith(".")
        )
        paths.extend(str(p) for p in files)
        labels.extend([label] * len(files))
    if not paths:
        raise DatasetNotFoundError(
            f"imagefolder: no image files ({', '.join(IMG_EXTENSIONS)}) under {split_dir}", split_dir
        )
    return paths, labels
