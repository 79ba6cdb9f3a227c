"""Exceptions and warnings of the dataset layer.

Each error says what was expected, where, and what to do about it, so a user never has to
decode a bare torchvision `RuntimeError` or a crash inside a DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or one of its required files) is not where it is expected."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:  # FileNotFoundError would otherwise print "[Errno ...]" forms
        return self.args[0]


class CorruptFileError(OSError):
    """A data file exists but cannot be used: bad checksum, unreadable bytes or wrong structure."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:
        return self.args[0]


class CorruptImageError(CorruptFileError):
    """An image file cannot be opened or decoded (raised with `on_corrupt="error"`)."""


class ClassListMismatchError(ValueError):
    """A class-name list does not fit the dataset's labels (count or names)."""


class UnknownDatasetError(ValueError):
    """`get_dataset` was given a name that no factory is registered under."""


class CorruptImageWarning(UserWarning):
    """Unreadable images were found and skipped (`on_corrupt="skip"`)."""


def missing_dataset(name: str, path: Path, layout: str, how_to_get: str) -> DatasetNotFoundError:
    """Build the standard "dataset not found" error: the missing path, the expected layout, the remedy."""
    message = (
        f"{name} not found: {path} does not exist.\nExpected layout:\n{layout.rstrip()}\nTo get the data: {how_to_get}"
    )
    return DatasetNotFoundError(message, path)


def class_count_mismatch(dataset: str, names: Sequence[str], expected: int, what: str) -> ClassListMismatchError:
    """Error for a class-name list whose length differs from the dataset's number of classes."""
    return ClassListMismatchError(
        f"{dataset}: {what} has {len(names)} class names but the dataset has {expected} classes "
        f"({len(names)} != {expected})."
    )
