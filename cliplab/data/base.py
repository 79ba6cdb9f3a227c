"""Classification datasets: `(transform(image), label)` plus the text side CLIP needs.

Every classification dataset in cliplab is a `ClassificationDataset`: it carries `.classnames`,
`.templates` (the evaluation ensemble), `.train_template` (= templates[0], the MTIL training
prompt), `.targets`, `.name` and `.corrupt` (paths skipped as unreadable). Subclasses only say how
to load image `i` as a PIL image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from cliplab.data.errors import ClassListMismatchError, CorruptImageError
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
    ) -> None:
        self.name = name
        self.targets: list[int] = [int(t) for t in targets]
        self.transform = transform
        self.corrupt: list[str] = [str(p) for p in corrupt]
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
        image = self.load_image(index)
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


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to RGB; failures name the file (never an anonymous worker crash)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # any decoder failure means the same thing here: unreadable file
        raise CorruptImageError(f"cannot decode image {path}: {type(error).__name__}: {error}", path) from error
