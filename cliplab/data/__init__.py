"""cliplab's dataset layer: one entry point, `get_dataset`, for built-in, torchvision-format and
local-folder datasets, with the class names and prompt templates the benchmarks use.

    >>> from cliplab.data import get_dataset
    >>> test = get_dataset("digits", split="test")                      # bundled, no download
    >>> c100 = get_dataset("cifar100", root="~/data", split="train")    # torchvision layout
    >>> c100.classnames[:2], c100.train_template
    (['apple', 'aquarium fish'], 'a photo of a {}.')

See docs/datasets.md for the expected on-disk layouts and where each list comes from.
"""

from cliplab.data.base import ClassificationDataset, FileImageDataset
from cliplab.data.captions import CaptionDataset, caption_collate
from cliplab.data.errors import (
    ClassListMismatchError,
    CorruptFileError,
    CorruptImageError,
    CorruptImageWarning,
    DatasetNotFoundError,
    UnknownDatasetError,
)
from cliplab.data.metadata import (
    CIFAR100_CLASS_ORDER,
    MTIL_ORDER_1,
    MTIL_ORDER_2,
    DatasetMetadata,
    available_metadata,
    load_metadata,
)
from cliplab.data.pairs import FileCaptionPairs, ImageCaptionPairs, TensorCaptionPairs
from cliplab.data.registry import get_dataset, list_datasets, register_dataset, require_local_dataset
from cliplab.data.splits import seeded_split_indices
from cliplab.data.tensor import TensorImageDataset, to_pil

#: The 11 MTIL datasets (Order I).
MTIL_DATASETS: list[str] = list(MTIL_ORDER_1)

__all__ = [
    "CIFAR100_CLASS_ORDER",
    "MTIL_DATASETS",
    "MTIL_ORDER_1",
    "MTIL_ORDER_2",
    "CaptionDataset",
    "ClassListMismatchError",
    "ClassificationDataset",
    "CorruptFileError",
    "CorruptImageError",
    "CorruptImageWarning",
    "DatasetMetadata",
    "DatasetNotFoundError",
    "FileCaptionPairs",
    "FileImageDataset",
    "ImageCaptionPairs",
    "TensorCaptionPairs",
    "TensorImageDataset",
    "UnknownDatasetError",
    "available_metadata",
    "caption_collate",
    "get_dataset",
    "list_datasets",
    "load_metadata",
    "register_dataset",
    "require_local_dataset",
    "seeded_split_indices",
    "to_pil",
]
