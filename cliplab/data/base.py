"""Classification datasets: `(transform(image), label)` plus the text side CLIP needs.

Every classification dataset in cliplab is a `ClassificationDataset`: it carries `.classnames`,
`.templates` (the evaluation ensemble), `.train_template` (= templates[0], the MTIL training
prompt), `.targets`, `.name` and `.corrupt` (paths skipped as unreadable). Subclasses only say how
to load image `i` as a PIL image.

Unreadable files are screened out when a dataset is opened (`cliplab.data.integrity`); a file that
passes screening and still fails to decode when it is loaded (changed since, or damaged in a way
the header check cannot see) is skipped there too, with `on_corrupt="skip"` (the default): batched
loading (`__getitems__`, what a DataLoader uses) leaves it out of the batch, single-item access
(`dataset[i]`, e.g. the training sampler) returns the next readable sample of the same class
instead (so a wrapper that relabels by index stays right). Either way
the file is added to `.corrupt` (in the process that loaded it) and reported once as a
`CorruptImageWarning`. With `on_corrupt="error"` it is a `CorruptImageError` naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from cliplab.data.errors import ClassListMismatchError, CorruptImageError, CorruptImageWarning
from cliplab.data.integrity import check_on_corrupt
from cliplab.data.metadata import ClassPrompts, check_classnames, check_templates

Transform = Callable[[Image.Image], Any]


class ClassificationDataset(ClassPrompts, Dataset):
    """Base class: labels, class names and templates; subclasses implement `load_image`."""

    def __init__(
        self,
        *,
        name: str,
        targets: Sequence[int],
        classnames: Sequence[str],
        templates: Sequence[str],
        transform: Transform | None = None,
        corrupt: Sequence[str] = (),
        on_corrupt: str = "skip",
    ) -> None:
        self.name = name
        self.targets: list[int] = [int(t) for t in targets]
        self.transform = transform
        self.corrupt: list[str] = [str(p) for p in corrupt]
        self.skipper = LoadFailures(name, check_on_corrupt(on_corrupt), self.corrupt)
        self.classnames: list[str] = self._checked_names(classnames, len(classnames), "the class list")
        self.templates: list[str] = check_templates(templates, name)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Replace the class names; the new list must have one name per class of this dataset."""
        self.classnames = self._checked_names(classnames, self.num_classes, "the classnames you passed")

    def set_templates(self, templates: Sequence[str]) -> None:
        """Replace the prompt templates (the first one becomes `train_template`)."""
        self.templates = check_templates(templates, self.name)

    def load_image(self, index: int) -> Image.Image:
        """The RGB PIL image of sample `index` (before `transform`)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        index = _checked_index(index, len(self))
        label = self.targets[index]
        same_class = (j for j in _from(index, len(self)) if self.targets[j] == label)
        index, image = self.skipper.first_readable(index, same_class, self.load_image)
        return self._item(index, image)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        loaded = self.skipper.readable(indices, self.load_image)
        return [self._item(i, image) for i, image in loaded]

    def _item(self, index: int, image: Image.Image) -> tuple[Any, int]:
        return (self.transform(image) if self.transform is not None else image), self.targets[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, samples={len(self)}, classes={self.num_classes}, "
            f"templates={len(self.templates)}, corrupt={len(self.corrupt)})"
        )

    def _checked_names(self, names: Sequence[str], expected: int, what: str) -> list[str]:
        names = check_classnames(names, expected, self.name, what)
        if self.targets and (min(self.targets) < 0 or max(self.targets) >= len(names)):
            raise ClassListMismatchError(
                f"{self.name}: labels span {min(self.targets)}..{max(self.targets)} but {what} has only "
                f"{len(names)} names ({max(self.targets) + 1} classes needed)."
            )
        return names


class FileImageDataset(ClassificationDataset):
    """Images read from files on disk (unreadable files are screened out before construction)."""

    def __init__(self, *, paths: Sequence[str | Path], targets: Sequence[int], **kwargs: Any) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} labels")
        super().__init__(targets=targets, **kwargs)
        self.paths: list[str] = [str(p) for p in paths]

    def load_image(self, index: int) -> Image.Image:
        return open_rgb(self.paths[index])


class LoadFailures:
    """Images that failed to decode when loaded: skipped per `on_corrupt`, recorded in `corrupt`."""

    def __init__(self, name: str, on_corrupt: str, corrupt: list[str]) -> None:
        self.name, self.on_corrupt, self.corrupt = name, on_corrupt, corrupt
        self.failed: set[int] = set()

    def load(self, index: int, load: Callable[[int], Any]) -> Any | None:
        """`load(index)`, or None when the image cannot be decoded (recorded; raised with "error")."""
        if index in self.failed:
            return None
        try:
            return load(index)
        except CorruptImageError as error:
            if self.on_corrupt == "error":
                raise
            self.failed.add(index)
            path = str(error.path) if error.path is not None else f"item {index}"
            self.corrupt.append(path)
            warnings.warn(
                f"{self.name}: skipped an image that failed to decode when loaded ({error}); "
                f"{len(self.corrupt)} unreadable image(s) skipped so far (listed in .corrupt)",
                CorruptImageWarning,
                stacklevel=4,
            )
            return None

    def readable(self, indices: Sequence[int], load: Callable[[int], Any]) -> list[tuple[int, Any]]:
        """(index, loaded) for the indices that decode; all failing is a `CorruptImageError`."""
        loaded = [(i, self.load(i, load)) for i in indices]
        kept = [(i, item) for i, item in loaded if item is not None]
        if indices and not kept:
            raise CorruptImageError(
                f"{self.name}: none of the {len(indices)} images of a batch can be decoded (e.g. {self.corrupt[-1]}); "
                "the files may have changed since the dataset was opened",
                self.corrupt[-1] if self.corrupt else None,
            )
        return kept

    def first_readable(self, index: int, candidates: Iterable[int], load: Callable[[int], Any]) -> tuple[int, Any]:
        """Item `index`, or the first of `candidates` that decodes when it cannot be."""
        for candidate in candidates:
            item = self.load(candidate, load)
            if item is not None:
                return candidate, item
        raise CorruptImageError(
            f"{self.name}: item {index} cannot be decoded and no replacement can ({self.corrupt[-1]})",
            self.corrupt[-1] if self.corrupt else None,
        )


def _checked_index(index: int, n: int) -> int:
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} items")
    return index


def _from(index: int, n: int) -> Iterator[int]:
    """index, index + 1, ..., wrapping around: every index once."""
    return ((index + offset) % n for offset in range(n))


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to RGB; failures name the file (never an anonymous worker crash)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # any decoder failure means the same thing here: unreadable file
        raise CorruptImageError(f"cannot decode image {path}: {type(error).__name__}: {error}", path) from error
