"""Image–caption datasets for retrieval: Karpathy-split COCO / Flickr30k JSON and caption CSVs.

Items are `(transform(image), [caption, ...])`. For retrieval metrics the dataset also exposes
`.captions` (all captions, flat) and `.text_image_index` (caption j describes image
`text_image_index[j]`). Use `caption_collate` as the DataLoader `collate_fn`.

Empty (or blank) captions are skipped, and an image left without any caption is skipped with
them (it would be a retrieval query without an answer); both are counted in one warning.
An image that fails to decode when a DataLoader loads it is left out of the batch, and `.captions`
and `.text_image_index` then leave out its captions, so read them after the images; fetched alone
(`dataset[i]`) it is a `CorruptImageError` (its captions cannot be given to another image).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from cliplab.data.base import LoadFailures, open_rgb
from cliplab.data.errors import CorruptFileError, DatasetNotFoundError
from cliplab.data.integrity import check_on_corrupt, screen_samples

_KARPATHY_FILES = {
    "coco_karpathy": ("dataset_coco.json", None),
    "flickr30k_karpathy": ("dataset_flickr30k.json", "flickr30k-images"),
}
#: Our split names -> Karpathy "split" values ("train" includes COCO's "restval", the usual 113k train set).
KARPATHY_SPLITS = {
    "train": ("train", "restval"),
    "restval": ("restval",),
    "val": ("val",),
    "test": ("test",),
    "all": ("train", "restval", "val", "test"),
}
CAPTION_COLUMNS = ("caption", "title")  # "title" is Conceptual Captions' column name in ZSCL's CSV


class CaptionDataset(Dataset):
    """Images with one or more captions each, screened for unreadable files up front."""

    def __init__(
        self,
        *,
        name: str,
        image_paths: Sequence[str | Path],
        captions_per_image: Sequence[Sequence[str]],
        transform: Any = None,
        corrupt: Sequence[str] = (),
        on_corrupt: str = "skip",
    ) -> None:
        if len(image_paths) != len(captions_per_image):
            raise ValueError(f"{name}: {len(image_paths)} images but {len(captions_per_image)} caption lists")
        self.name = name
        self.image_paths = [str(p) for p in image_paths]
        self.captions_per_image = [list(c) for c in captions_per_image]
        bare = next((p for p, caps in zip(self.image_paths, self.captions_per_image) if not caps), None)
        if bare is not None:
            raise ValueError(f"{name}: image {bare} has no caption; every image of a caption dataset needs one")
        self.transform = transform
        self.corrupt = [str(p) for p in corrupt]
        self.skipper = LoadFailures(name, check_on_corrupt(on_corrupt), self.corrupt)

    @property
    def captions(self) -> list[str]:
        """Every caption, flat, of the images that are not known to be unreadable."""
        return self._flat()[0]

    @property
    def text_image_index(self) -> list[int]:
        """Caption j describes image `text_image_index[j]`, counted among the images not known to be unreadable."""
        return self._flat()[1]

    def _flat(self) -> tuple[list[str], list[int]]:
        failed = self.skipper.failed
        if getattr(self, "_flat_key", None) != len(failed):
            captions, owners, kept = [], [], 0
            for i, caps in enumerate(self.captions_per_image):
                if i not in failed:
                    captions += caps
                    owners += [kept] * len(caps)
                    kept += 1
            self._flat_cache, self._flat_key = (captions, owners), len(failed)
        return self._flat_cache

    def __len__(self) -> int:
        return len(self.image_paths)

    def _load(self, index: int):
        return open_rgb(self.image_paths[index])

    def _item(self, index: int, image) -> tuple[Any, list[str]]:
        return (self.transform(image) if self.transform is not None else image), list(self.captions_per_image[index])

    def __getitem__(self, index: int) -> tuple[Any, list[str]]:
        image = self.skipper.load(index, self._load)
        if image is None:
            raise CorruptFileError(
                f"{self.name}: image {self.image_paths[index]} cannot be decoded; its captions cannot be given to "
                "another image. Load the dataset through a DataLoader (unreadable images are left out and their "
                "captions with them) or open it with verify='full' to screen every image first.",
                self.image_paths[index],
            )
        return self._item(index, image)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, list[str]]]:
        return [item for _, item in self.indexed_items(indices)]

    def indexed_items(self, indices: Sequence[int]) -> list[tuple[int, tuple[Any, list[str]]]]:
        """`(index, item)` for the images of `indices` that decode: `__getitems__` with the indices kept."""
        return [(i, self._item(i, image)) for i, image in self.skipper.readable(indices, self._load)]

    def __repr__(self) -> str:
        return (
            f"CaptionDataset(name={self.name!r}, images={len(self)}, captions={len(self.captions)}, "
            f"corrupt={len(self.corrupt)})"
        )


def caption_collate(batch: Sequence[tuple[Any, list[str]]]) -> tuple[Any, list[list[str]]]:
    """Stack image tensors (or keep a list of PIL images) and keep the caption lists as lists."""
    images, captions = zip(*batch)
    stacked = torch.stack(images) if all(isinstance(i, torch.Tensor) for i in images) else list(images)
    return stacked, [list(c) for c in captions]


def _build(
    name: str,
    paths: list[Path],
    captions: list[list[str]],
    transform: Any,
    on_corrupt: str,
    verify: str,
    image_root: Path,
    source: Path,
) -> CaptionDataset:
    paths, captions = _without_empty_captions(name, paths, captions, source)
    if paths and not any(p.exists() for p in paths):
        raise DatasetNotFoundError(
            f"{name}: none of the {len(paths)} images exist, e.g. {paths[0]}; check image_root (used: {image_root})",
            paths[0],
        )
    kept, kept_captions, dropped = screen_samples(name, paths, captions, on_corrupt, verify)
    return CaptionDataset(
        name=name,
        image_paths=kept,
        captions_per_image=kept_captions,
        transform=transform,
        corrupt=dropped,
        on_corrupt=on_corrupt,
    )


def _without_empty_captions(
    name: str, paths: list[Path], captions: list[list[str]], source: Path
) -> tuple[list[Path], list[list[str]]]:
    """Drop blank captions, then images left without one; one warning counts both."""
    cleaned = [[c for c in caps if isinstance(c, str) and c.strip()] for caps in captions]
    empty = sum(len(caps) for caps in captions) - sum(len(caps) for caps in cleaned)
    bare = [str(p) for p, caps in zip(paths, cleaned) if not caps]
    if not empty and not bare:
        return paths, captions
    if len(bare) == len(paths):
        raise CorruptFileError(f"{name}: {source} has no non-empty caption", source)
    shown = f" ({', '.join(bare[:3])}{', ...' if len(bare) > 3 else ''})" if bare else ""
    warnings.warn(
        f"{name}: {source}: skipped {empty} empty caption(s) and {len(bare)} image(s) left without a caption{shown}",
        UserWarning,
        stacklevel=4,
    )
    kept = [i for i, caps in enumerate(cleaned) if caps]
    return [paths[i] for i in kept], [cleaned[i] for i in kept]


def load_karpathy(
    name: str,
    root: Any = None,
    split: str = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    verify: str = "header",
    annotation: Any = None,
    image_root: Any = None,
) -> CaptionDataset:
    """A Karpathy-split caption dataset: `root/dataset_coco.json` (or `annotation=`) plus its images.

    Image paths are `image_root/<filepath>/<filename>` (`filepath` is optional, as in Flickr30k);
    `image_root` defaults to `root` (COCO) or `root/flickr30k-images` when that folder exists.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"{name}: split must be one of {sorted(KARPATHY_SPLITS)}, got {split!r}")
    default_file, image_folder = _KARPATHY_FILES[name]
    if root is None and annotation is None:
        raise ValueError(f"{name} needs root= (the folder with {default_file}) or annotation=")
    root = Path(root if root is not None else Path(annotation).parent).expanduser()
    ann = Path(annotation).expanduser() if annotation is not None else root / default_file
    if not ann.is_file():
        raise DatasetNotFoundError(
            f"{name}: expected the Karpathy split file {ann} but it does not exist.\nExpected layout: "
            f"root/{default_file} + root/<filepath>/<filename> images. cliplab cannot download it: get "
            f"caption_datasets.zip (Karpathy's splits) and the images, then pass root=.",
            ann,
        )
    images = [im for im in _read_karpathy(name, ann) if im["split"] in KARPATHY_SPLITS[split]]
    if not images:
        raise DatasetNotFoundError(f"{name}: {ann} has no images with split in {KARPATHY_SPLITS[split]}", ann)
    img_root = _image_root(root, image_root, image_folder)
    paths = [img_root / im.get("filepath", "") / im["filename"] for im in images]
    captions = [[s["raw"] for s in im["sentences"]] for im in images]
    return _build(name, paths, captions, transform, on_corrupt, verify, img_root, ann)


def _image_root(root: Path, image_root: Any, image_folder: str | None) -> Path:
    if image_root is not None:
        return Path(image_root).expanduser()
    if image_folder is not None and (root / image_folder).is_dir():
        return root / image_folder
    return root


def _read_karpathy(name: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(f"{name}: cannot read {path} as JSON ({error})", path) from error
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise CorruptFileError(f"{name}: {path} has no 'images' list (Karpathy format expected)", path)
    for i, im in enumerate(images):
        missing = sorted({"filename", "split", "sentences"} - set(im)) if isinstance(im, dict) else ["everything"]
        if not missing and not (
            isinstance(im["sentences"], list) and all(isinstance(s, dict) and "raw" in s for s in im["sentences"])
        ):
            missing = ["sentences[*]['raw']"]
        if missing:
            raise CorruptFileError(
                f"{name}: {path} images[{i}] lacks {', '.join(map(repr, missing))}: not Karpathy's format (each image "
                "needs 'filename', 'split' and 'sentences', a list of {'raw': caption})",
                path,
            )
    return images


def load_csv_captions(
    root: Any = None,
    split: str = "test",
    transform: Any = None,
    download: bool = False,
    on_corrupt: str = "skip",
    verify: str = "header",
    caption_column: str | None = None,
    sep: str | None = None,
    image_root: Any = None,
) -> CaptionDataset:
    """Captions from a CSV with columns `filepath` and `caption` (or `title`); a repeated filepath is one
    image with several captions. `root` is the CSV file (the file *is* the split) or a folder holding
    `<split>.csv`. Relative filepaths are resolved against `image_root` (default: the CSV's folder)."""
    path = _csv_path(root, split)
    frame = _read_csv(path, sep)
    column = _caption_column(frame, path, caption_column)
    grouped: dict[str, list[str]] = {}
    for filepath, caption in zip(frame["filepath"], frame[column]):
        grouped.setdefault(filepath, []).append(caption)
    img_root = Path(image_root).expanduser() if image_root is not None else path.parent
    paths = [img_root / fp for fp in grouped]
    return _build(path.stem, paths, list(grouped.values()), transform, on_corrupt, verify, img_root, path)


def _csv_path(root: Any, split: str) -> Path:
    if root is None:
        raise ValueError("csv_captions needs root=: a CSV file, or a folder with <split>.csv")
    root = Path(root).expanduser()
    if root.is_file():
        return root
    candidate = root / f"{split}.csv"
    if candidate.is_file():
        return candidate
    found = sorted(p.name for p in root.glob("*.csv")) if root.is_dir() else []
    raise DatasetNotFoundError(
        f"csv_captions: expected {candidate} (or pass the CSV file itself as root)"
        + (f"; CSV files in {root}: {', '.join(found)}" if found else ""),
        candidate,
    )


def _read_csv(path: Path, sep: str | None) -> pd.DataFrame:
    try:
        if sep is None:
            with open(path, encoding="utf-8") as handle:
                sep = "\t" if "\t" in handle.readline() else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as error:
        raise CorruptFileError(
            f"csv_captions: {path} is not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} at "
            f"position {error.start}); convert it, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8.csv",
            path,
        ) from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CorruptFileError(f"csv_captions: cannot parse {path} ({type(error).__name__}: {error})", path) from None


def _caption_column(frame: pd.DataFrame, path: Path, requested: str | None) -> str:
    wanted = (requested,) if requested else CAPTION_COLUMNS
    column = next((c for c in wanted if c in frame.columns), None)
    if "filepath" not in frame.columns or column is None:
        raise CorruptFileError(
            f"csv_captions: {path} needs columns 'filepath' and one of {list(wanted)}; found {list(frame.columns)}",
            path,
        )
    return column
