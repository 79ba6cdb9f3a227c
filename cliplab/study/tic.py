"""What notebook 05 (continual contrastive pretraining) computes beyond the runs themselves.

- `world_examples`: example training pairs of every step of the drifting ToyWorld;
- `time_probe`: a step's held-out image–caption pairs, the fixed probe of the structure analysis;
- `compute_frame`: per run, the samples it trained on, a compute estimate with teacher forwards,
  the measured training seconds and TiC's summaries — "strategies vs compute";
- `structure_frame`: how far each version moved the similarity structure of old data, from the
  time-0 model and from the previous step (Mod-X's own quantity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cliplab.alignment import modx_drift, unmatched_similarity_drift
from cliplab.evaluation.retrieval import retrieval_scores
from cliplab.results import load_loss_log, load_run
from cliplab.scenarios import get_scenario
from cliplab.study.settings import scenario_options
from cliplab.study.store import RunRequest
from cliplab.toyworld import drift

# Methods that run a frozen teacher forward on every training batch (images and captions).
TEACHER_METHODS = ("lwf", "modx")
# Cost of one sample in forward passes: a training step is a forward and a backward (~2 forwards).
TRAIN_COST, TEACHER_COST = 3.0, 1.0


def world_examples(per_step: int = 6, seed: int = 0) -> list[tuple[str, np.ndarray, list[str]]]:
    """(step name, uint8 images N x 3 x H x W, captions) of the first pairs of every toy-tic pool;
    step "t0" is the world ToyCLIP was pretrained on."""
    from cliplab.toyworld import ToyWorld

    images, captions, _ = ToyWorld().training_batch(seed, 0, per_step)
    out = [("t0", images.numpy(), list(captions))]
    for t in range(1, drift.N_STEPS + 1):
        images, captions = drift.training_pool(seed, t, per_step)
        out.append((f"t{t}", images.numpy(), captions))
    return out


def vocabulary_changes() -> pd.DataFrame:
    """Per step of toy-tic: the words (and phrases) that come into use and those that go out of use."""
    rows, previous = [], None
    for t in range(1, drift.N_STEPS + 1):
        words = drift.vocabulary(t)
        new = sorted(words - previous) if previous is not None else []
        gone = sorted(previous - words) if previous is not None else []
        rows.append({"step": f"t{t}", "new words": ", ".join(new), "out of use": ", ".join(gone), "in use": len(words)})
        previous = words
    return pd.DataFrame(rows).set_index("step")


def time_probe(
    scenario: str,
    eval_transform: Callable,
    step: int = 0,
    data_root: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
):
    """(images dataset, one caption per image) of step `step`'s held-out retrieval pairs (the
    first caption of each image), the same pairs the accuracy matrix's column `step` uses."""
    built = get_scenario(scenario, **scenario_options(scenario, data_root, extra_options))
    retrieval = built.tasks[step].retrieval
    first: dict[int, int] = {}
    for j, image in enumerate(retrieval.text_image_index.tolist()):
        first.setdefault(int(image), j)
    images = retrieval.data(eval_transform)
    keep = sorted(first)
    return torch.utils.data.Subset(images, keep), [retrieval.captions[first[i]] for i in keep]


def compute_frame(requests: Sequence[RunRequest], runs_dir: str | Path) -> pd.DataFrame:
    """One row per run: `samples` (training pairs drawn, all steps), `compute` (forward passes per
    sample: 3 for a training step, +1 for a teacher forward; in units of one sequential run),
    `train_seconds` (measured), and the run's summaries `id`, `backward`, `forward` (+ classification)."""
    rows = []
    for request in requests:
        folder = request.folder(runs_dir)
        result = load_run(folder)
        log = load_loss_log(folder)
        steps = int((log["term"] == "total").sum())
        samples = steps * int(result.config["batch_size"])
        cost = TRAIN_COST + (TEACHER_COST if request.method in TEACHER_METHODS else 0.0)
        summary = result.summary or {}
        rows.append(
            {
                "label": request.label,
                "seed": request.seed,
                "samples": samples,
                "forward_passes": samples * cost,
                "train_seconds": float(result.extra.get("seconds", {}).get("train", np.nan)),
                **{k: summary.get(k, np.nan) for k in ("id", "backward", "forward")},
                **{k: summary.get(k, np.nan) for k in ("classification_id", "classification_backward")},
            }
        )
    frame = pd.DataFrame(rows)
    base = frame.loc[frame["label"] == "sequential", "forward_passes"]
    unit = float(base.mean()) if len(base) else float(frame["forward_passes"].min())
    frame["compute"] = frame["forward_passes"] / unit
    return frame


def structure_frame(
    reference: tuple[Tensor, Tensor],
    versions: Mapping[tuple[str, int], Sequence[tuple[Tensor, Tensor]]],
    temperature: float,
) -> pd.DataFrame:
    """Long table (label, seed, step, metric, value) on a fixed probe of old data.

    `reference` = (I, T) of the time-0 model; `versions[(label, seed)]` = (I, T) after each step.
    Metrics: `unmatched_drift_from_start` (KL of each row's distribution over the *wrong* pairs at the
    model's temperature, from the time-0 model; `cliplab.alignment.unmatched_similarity_drift`),
    `modx_drift_from_previous` (`cliplab.alignment.modx_drift`: Mod-X's distilled quantity between consecutive versions, τ = 1) and
    `probe_r1` (mean retrieval R@1 on the probe). Step 0 is the time-0 model."""
    rows = []
    I0, T0 = reference
    for (label, seed), embeddings in versions.items():
        chain = [reference, *embeddings]
        for step, (I, T) in enumerate(chain):
            scores = retrieval_scores(I, T)
            values = {
                "unmatched_drift_from_start": unmatched_similarity_drift(I0, T0, I, T, temperature),
                "modx_drift_from_previous": 0.0 if step == 0 else modx_drift(*chain[step - 1], I, T, temperature=1.0),
                "probe_r1": (scores["i2t_r1"] + scores["t2i_r1"]) / 2,
            }
            rows += [(label, seed, step, metric, value) for metric, value in values.items()]
    return pd.DataFrame(rows, columns=["label", "seed", "step", "metric", "value"])


__all__ = ["compute_frame", "structure_frame", "time_probe", "vocabulary_changes", "world_examples"]
