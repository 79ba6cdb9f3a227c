"""One entry point to every CLIP model cliplab runs: ToyCLIP, open_clip architectures, local files.

`load_model` returns the model with its tokenizer and train/eval transforms, built by open_clip
so that ToyCLIP, a random-weight ViT-B-16 on a GPU server and OpenAI's ViT-B-16 go through the
same code. Weights never come from pickle for files we write (safetensors), and a request for
weights that are not on this machine fails with a message saying how to provide them. A weights
file that cannot be used (empty, truncated, another architecture's, naming an architecture open_clip
does not know) is a one-line `CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import open_clip
import torch

from cliplab.checkpoints import CheckpointError, load_state_dict, load_weights, read_metadata
from cliplab.tokens import fit_token_embedding
from cliplab.utils import resolve_device

TOYCLIP = "ToyCLIP"
TOYCLIP_TAG = "toyworld"
_ASSETS = resources.files("cliplab") / "assets"
TOYCLIP_CONFIG_PATH = Path(str(_ASSETS / "ToyCLIP.json"))
TOYCLIP_CHECKPOINT = Path(str(_ASSETS / "toyclip.safetensors"))
_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


class ClipBundle(NamedTuple):
    """A model with what it needs to be used: unpack as `model, tokenizer, train_tf, eval_tf = ...`."""

    model: torch.nn.Module
    tokenizer: Callable
    train_transform: Callable
    eval_transform: Callable
    name: str
    pretrained: str | None

    def __repr__(self) -> str:
        return f"ClipBundle(name={self.name!r}, pretrained={self.pretrained!r})"


class PretrainedWeightsUnavailable(FileNotFoundError):
    """Requested weights are not on this machine (no internet, wrong tag or path)."""


def _register_toyclip() -> None:
    if TOYCLIP not in open_clip.list_models():
        open_clip.add_model_config(TOYCLIP_CONFIG_PATH)


def toyclip_config() -> dict:
    """ToyCLIP's open_clip model config (a small ViT + text transformer, see assets/ToyCLIP.json)."""
    return json.loads(TOYCLIP_CONFIG_PATH.read_text())


def _is_path(name: str) -> bool:
    return name.endswith(_FILE_SUFFIXES) or os.sep in name or Path(name).exists()


def load_model(
    name: str = "toyclip",
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | None = None,
) -> ClipBundle:
    """Load a CLIP model, its tokenizer and its train/eval transforms.

    - `"toyclip"`: our ToyWorld-pretrained checkpoint (shipped); `pretrained="random"` gives the
      same architecture with random weights (the "no pretraining" baseline).
    - an open_clip architecture (`"ViT-B-16"`), with an optional `pretrained` tag (`"openai"`) or
      a local checkpoint file in open_clip or safetensors format; `None` means random weights.
    - a path to a safetensors file written by cliplab (it records its architecture).
    """
    _register_toyclip()
    target = resolve_device(device)
    if name.lower() == "toyclip":
        bundle = _load_toyclip(pretrained)
    elif _is_path(name):
        bundle = _load_cliplab_file(Path(name))
    else:
        bundle = _load_open_clip(name, pretrained, cache_dir)
    bundle.model.to(target).eval()
    return bundle


class _NoRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning: `_bundle` loads the weights itself
    right after (or was asked for random weights), so the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _bundle(
    architecture: str, pretrained: str | None, state_dict: dict | None, label: str, source: str | None = None
) -> ClipBundle:
    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)  # open_clip logs through the root logger
    try:
        model, train_tf, eval_tf = open_clip.create_model_and_transforms(architecture)
    finally:
        logging.getLogger().removeFilter(quiet)
    tokenizer = open_clip.get_tokenizer(architecture)
    if state_dict is not None:
        hint = (
            f"Pass the architecture it was saved for (--model ARCH --pretrained {source}), or a checkpoint of "
            f"{architecture}."
        )
        fit_token_embedding(model, state_dict, getattr(tokenizer, "eot_token_id", None))  # an expanded vocabulary
        load_weights(model, state_dict, source or pretrained, hint)
    return ClipBundle(model, tokenizer, train_tf, eval_tf, label, pretrained)


def architecture_bundle(architecture: str, label: str | None = None) -> ClipBundle:
    """An open_clip architecture (or "ToyCLIP") with random weights, its tokenizer and transforms."""
    _register_toyclip()
    return _bundle(architecture, None, None, label or ("toyclip" if architecture == TOYCLIP else architecture))


def _load_toyclip(pretrained: str | None) -> ClipBundle:
    if pretrained == "random":
        return _bundle(TOYCLIP, "random", None, "toyclip")
    if pretrained not in (None, TOYCLIP_TAG):
        path = _existing(pretrained)
        return _bundle(TOYCLIP, pretrained, _weights_file(path), "toyclip", str(path))
    if not TOYCLIP_CHECKPOINT.exists():
        raise PretrainedWeightsUnavailable(
            f"the ToyCLIP checkpoint is missing at {TOYCLIP_CHECKPOINT}. It ships with the repository; "
            "regenerate it with `cliplab pretrain-toy` (about 40 minutes on 2 CPU cores)."
        )
    hint = "The shipped checkpoint is damaged: restore it with `git checkout` or regenerate it with `cliplab pretrain-toy`."
    state = load_state_dict(TOYCLIP_CHECKPOINT, hint=hint)
    return _bundle(TOYCLIP, TOYCLIP_TAG, state, "toyclip", str(TOYCLIP_CHECKPOINT))


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise PretrainedWeightsUnavailable(
            f"checkpoint file {path} does not exist. Pass the path of a local checkpoint "
            "(safetensors, or an open_clip .pt/.bin state dict)."
        )
    return path


def _load_cliplab_file(path: Path) -> ClipBundle:
    path = _existing(path)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path} is not a safetensors file, so its architecture is unknown. Load it with the "
            f"architecture named: load_model('ViT-B-16', pretrained='{path}')."
        )
    meta = read_metadata(path, hint=_FILE_HINT)
    if meta.get("extension"):
        raise ValueError(
            f"{path} holds a model extended by method {meta['extension'].get('method')!r} (its added modules"
            f"{' only' if meta.get('partial') else ''}): load it with cliplab.load_model(path), which rebuilds them"
        )
    architecture = meta.get("architecture")
    if not architecture:
        raise ValueError(
            f"{path} has no cliplab metadata naming its architecture. Load it with the architecture "
            f"named: load_model('ViT-B-16', pretrained='{path}')."
        )
    _register_toyclip()
    if architecture not in open_clip.list_models():
        raise CheckpointError(
            f"{path} names architecture {architecture!r}, which open_clip does not know (cliplab knows "
            f"{TOYCLIP!r} and open_clip.list_models()). The file may come from a newer open_clip or have damaged "
            f"metadata; load it with the architecture named: --model ARCH --pretrained {path}.",
            path,
        )
    label = "toyclip" if architecture == TOYCLIP else architecture
    return _bundle(architecture, str(path), load_state_dict(path, hint=_FILE_HINT), label, str(path))


_FILE_HINT = "Copy it again from where it was made, or pass another checkpoint."


def _load_open_clip(name: str, pretrained: str | None, cache_dir: str | None) -> ClipBundle:
    if name not in open_clip.list_models():
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise ValueError(
            f"unknown model {name!r}: use 'toyclip', a checkpoint path, or an open_clip architecture ({known}, ...)"
        )
    if pretrained and _is_path(pretrained):
        path = _existing(pretrained)
        return _bundle(name, str(path), _weights_file(path), name, str(path))
    try:
        model, train_tf, eval_tf = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, cache_dir=cache_dir
        )
    except Exception as error:  # open_clip raises many types for a failed download / unknown tag
        raise _explain_missing_weights(name, pretrained, error) from error
    return ClipBundle(model, open_clip.get_tokenizer(name), train_tf, eval_tf, name, pretrained)


def _weights_file(path: Path) -> dict:
    """A state dict from a safetensors file or an open_clip-format .pt/.bin file."""
    return load_state_dict(path, hint=_FILE_HINT) if path.suffix == ".safetensors" else _torch_state_dict(path)


def _torch_state_dict(path: Path) -> dict:
    """An open_clip-format checkpoint (.pt/.bin), read with `weights_only=True` (no pickle code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable open_clip checkpoint ({type(error).__name__}: {error})") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in state.items()}


def _explain_missing_weights(name: str, tag: str | None, error: Exception) -> Exception:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        return ValueError(f"{name} has no pretrained tag {tag!r}; known tags: {tags}, or pass a local file path")
    return PretrainedWeightsUnavailable(
        f"could not load pretrained weights {name!r} / {tag!r} ({type(error).__name__}: {error}). "
        "This machine may have no internet. Either download them once on a machine that has internet "
        f"(`open_clip.create_model('{name}', pretrained='{tag}')` fills the Hugging Face cache; copy it "
        "and set HF_HOME), or pass a local file: "
        f"load_model('{name}', pretrained='/path/to/open_clip_pytorch_model.bin'). "
        "On a machine without internet, HF_HUB_OFFLINE=1 makes this fail at once instead of after retries."
    )


@lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def weights_fingerprint(model: str, pretrained: str | None) -> str | None:
    """Content hash of the local weights `load_model(model, pretrained)` starts from.

    None for a download tag or random weights. Part of a run's identity, so regenerating the
    shipped ToyCLIP (or editing a local checkpoint) is never mistaken for the same run.
    """
    if model.lower() == "toyclip" and pretrained in (None, TOYCLIP_TAG):
        path = TOYCLIP_CHECKPOINT
    else:
        candidates = [Path(p) for p in (pretrained, model) if p and Path(p).is_file()]
        if not candidates:
            return None
        path = candidates[0]
    return _file_digest(str(path), path.stat().st_mtime_ns) if path.exists() else None


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())
