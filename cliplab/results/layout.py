"""The run folder: every file a run writes, named in one place, and the record of what the run is.

    <run>/metrics.json              the results (written last: its presence marks a finished run)
    <run>/accuracy_matrix.csv       a human-readable copy of the task matrix
    <run>/loss_log.csv              per-step loss terms, appended during training
    <run>/progress.json             the run's identity and every evaluation finished so far
    <run>/checkpoints/task_<i>.safetensors     the model after task i
    <run>/checkpoints/method_<i>.safetensors   method state that outlives a task (e.g. a memory)
    <run>/checkpoints/mid_task.safetensors     the resumable state inside a task
    <run>/embeddings/<key>.safetensors         cached probe embeddings (notebook 03)
    <run>/.lock                     held while a process runs in the folder (pid, host, command)

A run's *identity* is what determines its numbers: scenario, method, model and the hash of its
starting weights, seed, the fully resolved training configuration and the engine revision.
Settings that only change how a run executes (device, progress bars, data-loader workers,
evaluation batch size) are not part of it, so a run made on a GPU is resumed or reused on a CPU.
The runner writes the identity into progress.json and never resumes a folder holding another
one (unless that run saved no training progress yet: then it is restarted with the new settings);
the study compares it to decide whether a finished folder can be reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cliplab.io import folder_lock, remove_stale_temporaries

METRICS_FILE = "metrics.json"
MATRIX_FILE = "accuracy_matrix.csv"
LOSS_LOG_FILE = "loss_log.csv"
PROGRESS_FILE = "progress.json"
CHECKPOINTS_DIR = "checkpoints"
EMBEDDINGS_DIR = "embeddings"
MID_TASK_FILE = "mid_task.safetensors"
LOCK_FILE = ".lock"

# Settings that change how a run is executed or shown, not its numbers. A mid-task checkpoint only
# reads the model, optimiser and RNG (tests/test_resume.py: a run killed with checkpoints every step
# resumes under another interval to the numbers of a run that wrote none), so a run finished with one
# interval is reused by a request with another.
RUNTIME_ONLY = ("progress", "device", "num_workers", "eval_batch_size", "checkpoint_every")


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created until something is written)."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def matrix(self) -> Path:
        return self.path / MATRIX_FILE

    @property
    def loss_log(self) -> Path:
        return self.path / LOSS_LOG_FILE

    @property
    def progress(self) -> Path:
        return self.path / PROGRESS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def mid_task(self) -> Path:
        return self.checkpoints / MID_TASK_FILE

    @property
    def embeddings(self) -> Path:
        return self.path / EMBEDDINGS_DIR

    def task_checkpoint(self, index: int) -> Path:
        return self.checkpoints / f"task_{index}.safetensors"

    def method_state(self, index: int) -> Path:
        return self.checkpoints / f"method_{index}.safetensors"

    def task_checkpoints(self) -> list[Path]:
        """The per-task model checkpoints that exist, in task order."""
        paths = list(self.checkpoints.glob("task_*.safetensors"))
        return sorted(paths, key=lambda p: int(p.stem.split("_")[1]))

    @property
    def finished(self) -> bool:
        return self.metrics.exists()

    def read_progress(self) -> dict[str, Any] | None:
        """progress.json's content (None when the run never started); a damaged file is a ValueError naming it."""
        if not self.progress.exists():
            return None
        try:
            data = json.loads(self.progress.read_text(encoding="utf-8"))
            RunIdentity.from_dict(data["spec"])
            if not isinstance(data.get("evaluations"), list):
                raise KeyError("evaluations")
        except (ValueError, KeyError, TypeError) as error:
            reason = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(
                f"{self.progress} is damaged ({reason}): the record of this run cannot be read. Delete the run "
                f"folder {self.path} to start over."
            ) from None
        return data

    def identity(self) -> RunIdentity | None:
        """The identity recorded in progress.json (None when the run never started)."""
        data = self.read_progress()
        return None if data is None else RunIdentity.from_dict(data["spec"])

    def has_training_progress(self) -> bool:
        """Whether the folder holds anything a resume would continue from: a task finished (and
        evaluated) or a checkpoint. A run that failed before that restarts from nothing."""
        data = self.read_progress()
        evaluated = len(data["evaluations"]) if data else 0
        return evaluated > 1 or self.finished or any(self.checkpoints.glob("*.safetensors"))

    def reset(self) -> None:
        """Remove what a run without training progress left (record, loss log, empty checkpoints)."""
        for path in (self.progress, self.loss_log, self.matrix, self.metrics):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the folder for one run (see `cliplab.io.folder_lock`); stale temporaries are removed."""
        with folder_lock(self.path, LOCK_FILE, purpose="cliplab run"):
            remove_stale_temporaries(self.path)
            yield self


@dataclass
class RunIdentity:
    """What identifies a run's numbers; a folder holding a different identity is never resumed into."""

    scenario: str
    method: str
    model: str
    pretrained: str | None
    seed: int
    config: dict[str, Any]
    weights: str | None = None  # content hash of local starting weights (None: a download tag or random)
    engine: int = 0  # the engine revision that made the run
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. scenario build options

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunIdentity:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def numbers_key(self) -> dict[str, Any]:
        """The identity without the settings that do not change numbers."""
        data = self.to_dict()
        data["config"] = {k: v for k, v in data["config"].items() if k not in RUNTIME_ONLY}
        return data

    def same_numbers(self, other: RunIdentity) -> bool:
        return self.numbers_key() == other.numbers_key()

    def differences(self, other: RunIdentity) -> list[str]:
        """Human-readable list of what differs (for refusing to resume into a folder)."""
        mine, theirs = self.numbers_key(), other.numbers_key()
        out = [
            f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here"
            for k in mine
            if k != "config" and mine[k] != theirs.get(k)
        ]
        a, b = mine["config"], theirs.get("config", {})
        out += [f"{k}: {b.get(k)!r} there, {a.get(k)!r} here" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        return out


__all__ = [
    "CHECKPOINTS_DIR",
    "EMBEDDINGS_DIR",
    "LOCK_FILE",
    "LOSS_LOG_FILE",
    "MATRIX_FILE",
    "METRICS_FILE",
    "MID_TASK_FILE",
    "PROGRESS_FILE",
    "RUNTIME_ONLY",
    "RunFolder",
    "RunIdentity",
]
