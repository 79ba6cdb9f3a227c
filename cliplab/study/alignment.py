"""The embedding space over a run's checkpoints: a fixed probe, its embeddings per task, alignment tables.

Notebook 03 encodes one probe (images and one caption each) with the pretrained model and with
the model after every task of every run, caching the embeddings in the run folder, then tabulates
`cliplab.alignment`'s metrics and the per-sample rotation angles from those embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Subset

from cliplab.alignment import alignment_summary, rotation_angles, version_drift
from cliplab.checkpoints import CheckpointError, load_state_dict, load_weights, read_metadata
from cliplab.data import TensorImageDataset
from cliplab.engine.extended import load_model
from cliplab.evaluation.embed import EmbeddingCache, encode_images, encode_texts
from cliplab.results import RunFolder
from cliplab.scenarios import get_scenario
from cliplab.study.settings import needs_data, scenario_options
from cliplab.toyworld.tasks import retrieval_probe


def alignment_probe(
    scenario: str,
    eval_transform: Callable,
    size: int,
    data_root: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
    seed: int = 0,
):
    """(images dataset, one caption per image): the fixed probe every model version is encoded on.

    Toy scenarios: a ToyWorld retrieval probe (held-out seed, one full caption per image). Real
    scenarios: the first caption of each image of the scenario's retrieval set (pass e.g.
    `{"retrieval": "coco_karpathy"}` as scenario options), the first `size` images.
    """
    if not needs_data(scenario):
        probe = retrieval_probe(seed=seed, n_images=size, captions_per_image=1)
        images = TensorImageDataset(probe.images, [0] * len(probe.images), ["_"], ["{}"], transform=eval_transform)
        return images, list(probe.captions)
    built = get_scenario(scenario, **scenario_options(scenario, data_root, extra_options))
    if not built.retrieval:
        raise ValueError(
            f"{scenario} has no retrieval probe: pass scenario options such as "
            "{'retrieval': 'coco_karpathy'} (SCENARIO_OPTIONS in the notebook)"
        )
    probe = built.retrieval[0]
    owners = probe.text_image_index.tolist()
    first = {}
    for j, image in enumerate(owners):
        first.setdefault(int(image), j)
    keep = sorted(first)[:size]
    return Subset(probe.data(eval_transform), keep), [probe.captions[first[i]] for i in keep]


def _cache_key(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(str(p) for p in parts))


def encode_probe(
    model: torch.nn.Module, tokenizer: Callable, probe, cache=None, key: str = "", batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """(I, T) embeddings of the probe, cached under `key` when a cache is given."""
    images, captions = probe

    def compute_images() -> Tensor:
        return encode_images(model, images, batch_size=batch_size)

    def compute_texts() -> Tensor:
        return encode_texts(model, tokenizer, captions, batch_size=batch_size)

    if cache is None:
        return compute_images(), compute_texts()
    return (
        cache.get_or_compute(_cache_key(key, "images"), compute_images),
        cache.get_or_compute(_cache_key(key, "texts"), compute_texts),
    )


def embed_run(
    folder: str | Path,
    probe,
    tokenizer: Callable,
    device: str | None = None,
    probe_name: str = "probe",
    batch_size: int = 256,
) -> list[tuple[Tensor, Tensor]]:
    """(I, T) of the probe after every task of a run, cached in `<run>/embeddings/`.

    The checkpoint files carry their architecture (and, for a method that added modules, which
    backbone and modules: `cliplab.load_model`), so any run folder can be embedded alone.
    """
    run = RunFolder(folder)
    paths = run.task_checkpoints()
    if not paths:
        raise FileNotFoundError(f"{folder} has no per-task checkpoints (was it run with keep_checkpoints=last?)")
    cache, loaded, out = EmbeddingCache(run.embeddings), None, []
    for index, path in enumerate(paths):
        key = _cache_key(probe_name, f"n{len(probe[1])}", f"task{index}")
        model = None
        if not all(_cache_key(key, m) in cache for m in ("images", "texts")):
            loaded = checkpoint_model(path, loaded, device)
            model = loaded[0]
        out.append(encode_probe(model, tokenizer, probe, cache, key, batch_size))
    return out


def checkpoint_model(
    path: str | Path, previous: tuple[torch.nn.Module, dict] | None = None, device: str | None = None
) -> tuple[torch.nn.Module, dict]:
    """(model, metadata) of a task checkpoint, ready for evaluation.

    With `previous` (the model and metadata of the run's previous checkpoint) describing the same
    model (same metadata but the task index, same tensor names and shapes) the file's tensors
    are loaded into it: a checkpoint that holds only a method's added modules (adapters, LoRA,
    MoE-Adapters) replaces just those. Otherwise (the first checkpoint, CLL-CLIP's vocabulary grown
    by a language) the model is built afresh by `cliplab.load_model`, which loads the backbone a
    parameter-efficient checkpoint names and adds the method's modules before the stored tensors.
    """
    meta = {k: v for k, v in read_metadata(path).items() if k != "extra"}
    if previous is not None and previous[1] == meta:
        try:
            load_weights(previous[0], load_state_dict(path), path, partial=meta.get("partial") == "true")
            return previous[0], meta
        except CheckpointError:  # another shape (a grown vocabulary): build it afresh
            pass
    return load_model(str(path), device=device).model, meta


Embeddings = tuple[Tensor, Tensor]  # (I, T) of one model version on the probe


def alignment_frame(
    reference: Embeddings, versions: Mapping[tuple[str, int], Sequence[Embeddings]], temperature: float
) -> pd.DataFrame:
    """Long table (method, seed, task, metric, value) of every alignment number of every version.

    `reference` = (I₀, T₀) of the pretrained model (task 0); `versions[(label, seed)]` = (I, T)
    after task 1..T. Metrics: `alignment_summary` of the version and `version_drift` from θ₀.
    """
    I0, T0 = reference
    rows = []
    for (label, seed), embeddings in versions.items():
        for task, (I, T) in enumerate([reference, *embeddings]):
            values = {**alignment_summary(I, T, temperature), **version_drift(I0, T0, I, T, temperature)}
            rows += [(label, seed, task, metric, float(v)) for metric, v in values.items()]
    return pd.DataFrame(rows, columns=["method", "seed", "task", "metric", "value"])


def final_alignment(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Metrics after the last task, mean over seeds: one row per method, plus the pretrained row."""
    last = table[table["task"] == table.groupby("method")["task"].transform("max")]
    wide = last[last["metric"].isin(metrics)].pivot_table(index="method", columns="metric", values="value", sort=False)
    first = table[(table["task"] == 0) & table["metric"].isin(metrics)]
    pretrained = first.groupby("metric")["value"].mean().rename("pretrained").to_frame().T
    return pd.concat([pretrained, wide])[list(metrics)]


def rotation_angle_table(
    reference: tuple[Tensor, Tensor],
    versions: Mapping[str, tuple[Tensor, Tensor]],
    method: str | None = None,
) -> pd.DataFrame:
    """Long table (task, modality, angle[, method]) of per-sample rotation from `reference`.

    `reference` = (I₀, T₀) of the pretrained model; `versions` maps a task label to (I_t, T_t)
    on the same probe set. Angles in degrees from `cliplab.alignment.rotation_angles`.
    """
    I0, T0 = reference
    frames = []
    for task, (I, T) in versions.items():
        for modality, old, new in (("image", I0, I), ("text", T0, T)):
            angles = rotation_angles(old, new).numpy()
            frames.append(pd.DataFrame({"task": task, "modality": modality, "angle": angles}))
    table = pd.concat(frames, ignore_index=True)
    if method is not None:
        table["method"] = method
    return table


__all__ = [
    "Embeddings",
    "alignment_frame",
    "alignment_probe",
    "checkpoint_model",
    "embed_run",
    "encode_probe",
    "final_alignment",
    "rotation_angle_table",
]
