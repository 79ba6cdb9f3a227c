"""Resuming is exact: from every mid-task checkpoint, with the loss log written once per step.

A kill is simulated in-process (an exception raised right after a step is logged and before its
checkpoint is written, the worst moment for the loss log); `tests/test_engine.py` kills a real
process with SIGKILL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cliplab.engine.loop as loop
from cliplab.checkpoints import CheckpointError, load_state_dict
from cliplab.engine.runner import run_scenario
from cliplab.engine.sampling import step_loader
from cliplab.results.loss_log import load_loss_log

STEPS = 2
TINY = [
    f"steps_per_task={STEPS}",
    "checkpoint_every=1",
    "batch_size=8",
    "warmup_steps=1",
    "lr=1e-3",
    "probe_size=20",
    "retrieval_size=10",
    "max_eval_images=20",
    "max_tasks=2",
    "progress=false",
]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in cliplab catches it."""


def _run(folder: Path, kill_at: tuple[int, int] | None = None, monkeypatch=None, extra: tuple[str, ...] = ()) -> None:
    if kill_at is not None:
        original = loop._log

        def log_then_die(run_dir, ctx, step, *args):
            original(run_dir, ctx, step, *args)
            if (ctx.task_index, step) == kill_at:
                raise _Killed

        monkeypatch.setattr(loop, "_log", log_then_die)
    try:
        run_scenario("toy-digits-cil", "lwf", folder, pretrained="random", seed=1, overrides=[*TINY, *extra])
    finally:
        if kill_at is not None:
            monkeypatch.setattr(loop, "_log", original)


def _outcome(folder: Path) -> tuple[dict, dict, list]:
    data = json.loads((folder / "metrics.json").read_text())
    metrics = {k: data[k] for k in ("accuracy_matrix", "zero_shot", "retrieval", "summary")}
    weights = load_state_dict(folder / "checkpoints" / "task_1.safetensors")
    log = load_loss_log(folder)
    return metrics, weights, log.to_dict("records")


def test_a_run_resumed_from_every_mid_task_checkpoint_ends_with_identical_numbers(tmp_path, monkeypatch):
    """Kill after step s+1 is logged (checkpoint s is the last one written), resume, compare.

    Before batches had their own generator, the resumed run built its DataLoader iterator after
    restoring the RNG, which drew one number the uninterrupted run drew earlier: every later
    augmentation changed, and with it the weights.
    """
    _run(tmp_path / "reference")
    metrics, weights, log = _outcome(tmp_path / "reference")
    keys = [(row["task"], row["step"], row["term"]) for row in log]
    assert len(keys) == len(set(keys)) == 2 * STEPS * 4  # ce, kd_i2t, kd_t2i, total per step, once each
    for task in (0, 1):
        for checkpoint in range(1, STEPS):
            folder = tmp_path / f"killed_{task}_{checkpoint}"
            with pytest.raises(_Killed):
                _run(folder, kill_at=(task, checkpoint + 1), monkeypatch=monkeypatch)
            mid = loop.read_metadata(folder / "checkpoints" / "mid_task.safetensors")["state"]["state"]
            assert mid == {"step": checkpoint, "task_index": task}
            _run(folder)
            resumed_metrics, resumed_weights, resumed_log = _outcome(folder)
            where = f"resumed from step {checkpoint} of task {task}"
            assert resumed_metrics == metrics, where
            assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights), where
            assert resumed_log == log, f"{where}: the loss log has duplicated or missing rows"


def test_the_checkpoint_interval_is_not_part_of_a_runs_identity(tmp_path, monkeypatch):
    """A run killed with checkpoints every step resumes under another interval (the toy scenarios'
    default changed from 20 to 60 steps) and ends with the numbers of a run that wrote none."""
    _run(tmp_path / "none", extra=("checkpoint_every=0",))
    metrics, weights, _ = _outcome(tmp_path / "none")
    folder = tmp_path / "killed"
    with pytest.raises(_Killed):
        _run(folder, kill_at=(1, 2), monkeypatch=monkeypatch)
    assert (folder / "checkpoints" / "mid_task.safetensors").exists()
    _run(folder, extra=("checkpoint_every=5",))
    resumed, resumed_weights, _ = _outcome(folder)
    assert resumed == metrics
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)
    with pytest.raises(ValueError, match="lr: 0.001 there, 0.002 here"):  # a setting that changes numbers
        _run(folder, extra=("lr=2e-3",))


def test_batches_do_not_depend_on_the_global_rng_or_on_where_iteration_starts():
    """The batch of step s, augmentation included, is the same from a fresh start, from a resume at
    s, after any draw from torch's global generator and with loader workers; the caller's RNG is
    left untouched."""
    data = torch.utils.data.TensorDataset(torch.arange(10.0).reshape(10, 1).expand(10, 4).clone(), torch.arange(10))

    class Noisy(torch.utils.data.Dataset):  # a random "augmentation" drawn from the global torch RNG
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            x, y = data[i]
            return x + torch.rand(4), y

    def batch(start: int, step: int, workers: int = 0):
        loader = iter(step_loader(Noisy(), 4, seed=7, start=start, end=step + 1, num_workers=workers))
        for _ in range(step - start):
            next(loader)
        return next(loader)

    torch.manual_seed(0)
    first = batch(0, 3)
    torch.rand(5)  # the global stream moves on
    state = torch.get_rng_state()
    resumed = batch(3, 3)
    assert torch.equal(torch.get_rng_state(), state), "loading must not consume the caller's random numbers"
    assert torch.equal(first[0], resumed[0]) and torch.equal(first[1], resumed[1])
    assert not torch.equal(batch(0, 2)[0], first[0])  # and steps differ from one another
    assert torch.equal(batch(2, 3, workers=2)[0], first[0]), "nor on the number of loader workers"


def test_a_damaged_checkpoint_of_the_run_is_named_with_what_to_do(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    with pytest.raises(_Killed):
        _run(folder, kill_at=(1, 2), monkeypatch=monkeypatch)
    task, mid = folder / "checkpoints" / "task_0.safetensors", folder / "checkpoints" / "mid_task.safetensors"
    intact = task.read_bytes()
    task.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{task}: the file is empty .*delete the run folder {folder}"):
        _run(folder)
    task.write_bytes(intact)
    mid.write_bytes(mid.read_bytes()[:4000])  # a disk that lost the end of the file
    with pytest.raises(CheckpointError, match=rf"{mid}: the file is truncated .*Delete it and run the same command"):
        _run(folder)
    mid.unlink()
    _run(folder)  # the task restarts from its beginning, as the message says
    assert (folder / "metrics.json").exists()
