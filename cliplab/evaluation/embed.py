"""Run the towers over images and texts: the one encoding loop, and an on-disk embedding cache.

`image_features` is the single image-encoding loop of cliplab (zero-shot accuracy, the scenario
evaluator, retrieval, iCaRL's herding and the alignment probes all go through it): eval mode, no
gradients, L2-normalised float32 features on the CPU, labels kept when the data yields them.
`encode_texts` is its text twin. `EmbeddingCache` stores one safetensors file per key, written
atomically, so every alignment metric compares tensors computed once per checkpoint on the same
probe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cliplab.io import atomic_path

__all__ = ["EmbeddingCache", "encode_images", "encode_texts", "image_features", "model_temperature"]

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _encode(model: nn.Module, batches: Iterator[Tensor], encode: Callable, device: torch.device) -> Tensor:
    """Run `encode` on each batch of token ids in eval mode under no_grad; restore the model's mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [F.normalize(encode(b.to(device)).float(), dim=-1).cpu() for b in batches]
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("nothing to encode: the input is empty")
    return torch.cat(chunks)


def image_features(
    model: nn.Module, images: Dataset | Iterable | Tensor, batch_size: int = 256, device=None
) -> tuple[Tensor, Tensor | None]:
    """L2-normalised image features (N x d, float32, CPU) and the labels when the data yields them.

    `images`: a preprocessed N x 3 x H x W tensor, a Dataset of (image, label, ...) tuples, or an
    iterable of such batches. Runs in eval mode under no_grad and restores the model's mode.
    """
    device = _model_device(model, device)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        with torch.no_grad():
            for batch in _batches(images, batch_size):
                x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                feats.append(model.encode_image(x.to(device), normalize=True).float().cpu())
                if y is not None and torch.is_tensor(y):
                    labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("nothing to encode: the input is empty")
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def _batches(images, batch_size: int):
    """Batches of a preprocessed N x 3 x H x W tensor, of a Dataset, or an iterable of batches as given."""
    if torch.is_tensor(images):
        return images.split(batch_size)
    if isinstance(images, Dataset):
        return DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=0)
    return images


def encode_images(
    model: nn.Module,
    images: Tensor | Dataset | Iterable,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Tensor:
    """L2-normalised image embeddings (N x d, float32, CPU): `image_features` without the labels.

    `images` is a preprocessed N x 3 x H x W tensor or a Dataset yielding (image, ...) tuples
    (extra items such as labels are ignored). `device` defaults to the model's device.
    """
    features, _ = image_features(model, images, batch_size, device)
    return features


def encode_texts(
    model: nn.Module,
    tokenizer: Callable[[list[str]], Tensor],
    texts: Sequence[str],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Tensor:
    """L2-normalised text embeddings (N x d, float32, CPU) from `model.encode_text`.

    `tokenizer` maps a list of strings to a LongTensor of token ids (e.g.
    `open_clip.get_tokenizer(name)`); texts are tokenised batch by batch.
    """
    dev = _model_device(model, device)
    texts = list(texts)
    batches = (tokenizer(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size))
    return _encode(model, batches, model.encode_text, dev)


def model_temperature(model: nn.Module) -> float:
    """Softmax temperature τ = 1/exp(logit_scale) of an open_clip model (≈ 0.01 for CLIP)."""
    return float(torch.exp(-model.logit_scale.detach().float()).item())


class EmbeddingCache:
    """Folder of safetensors files, one per key: compute an embedding once, then reload it.

    Keys are file-name safe strings such as "task3-vrlwf-images"; each maps to
    `folder/<key>.safetensors`. Use one key per (checkpoint, probe set, modality).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        """File that holds `key` (the key must match [A-Za-z0-9][A-Za-z0-9._=+-]*)."""
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"invalid cache key {key!r}: use letters, digits and . _ = + -")
        return self.folder / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def get_or_compute(self, key: str, fn: Callable[[], Tensor]) -> Tensor:
        """Return the cached tensor for `key`; on a miss call `fn()`, store its result, return it."""
        path = self.path(key)
        if path.exists():
            return load_file(path)["embeddings"]
        tensor = fn()
        if not isinstance(tensor, Tensor):
            raise TypeError(f"fn must return a Tensor, got {type(tensor).__name__}")
        tensor = tensor.detach().cpu().contiguous()
        with atomic_path(path) as tmp:
            save_file({"embeddings": tensor}, str(tmp), metadata={"key": key})
        return tensor
