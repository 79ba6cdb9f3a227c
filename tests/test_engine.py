"""The training engine end to end: resume after a kill, multi-process agreement, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cliplab.checkpoints import CheckpointError, load_state_dict
from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.loop import NonFiniteLossError, resume_step
from cliplab.engine.runner import run_scenario

FAST = [
    "steps_per_task=8",
    "checkpoint_every=2",
    "batch_size=16",
    "probe_size=60",
    "retrieval_size=30",
    "max_eval_images=80",
    "progress=false",
]


def _cli(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "cliplab.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run_args(out: Path, method: str = "zscl", extra: list[str] | None = None) -> list[str]:
    sets = [f"--set={s}" for s in FAST + ["method.avg_freq=2", "method.n_reference_texts=200"] + (extra or [])]
    return [
        "run",
        "--scenario",
        "toy-digits-cil",
        "--method",
        method,
        "--seed",
        "3",
        "--out",
        str(out),
        "--pretrained",
        "random",
        *sets,
    ]


def _metrics(folder: Path) -> dict:
    data = json.loads((folder / "metrics.json").read_text())
    return {k: data[k] for k in ("accuracy_matrix", "zero_shot", "retrieval", "summary")}


def _saved_step(mid: Path, task_index: int) -> int:
    """The step of `task_index`'s mid-task state on disk, 0 if there is none (or it was just removed)."""
    try:
        return resume_step(mid, task_index)
    except (FileNotFoundError, CheckpointError):
        return 0


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics_as_an_uninterrupted_run(tmp_path):
    """SIGKILL in the middle of task 2, rerun the same command: identical numbers (CPU, fixed seed)."""
    reference = _cli(_run_args(tmp_path / "reference"))
    killed_dir = tmp_path / "killed"
    victim = _cli(_run_args(killed_dir))
    mid = killed_dir / "checkpoints" / "mid_task.safetensors"
    deadline = time.time() + 600
    while time.time() < deadline and victim.poll() is None:
        # task 1's own state: task 0's stays on disk a moment after its evaluation is recorded
        if _saved_step(mid, task_index=1) > 0:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run finished before it could be killed mid-task"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed_dir / "metrics.json").exists() and mid.exists()
    resumed = _cli(_run_args(killed_dir))
    assert resumed.wait() == 0, resumed.stdout.read()
    assert reference.wait() == 0, reference.stdout.read()
    assert _metrics(killed_dir) == _metrics(tmp_path / "reference")
    assert not mid.exists(), "the mid-task state is removed once the run is finished"


@pytest.mark.slow
def test_two_gloo_processes_agree_with_one_process(tmp_path):
    """torchrun with 2 CPU ranks (each half of every batch) agrees with one process.

    Stated tolerance: gradients agree to float32 reduction order; Adam's normalisation amplifies
    that for near-zero gradients, so weights are compared relative to how far training moved
    them: mean |Δ| below 2% of the mean update, fewer than 0.1% of parameters differing by more
    than 10% of the mean update (Adam turns a near-zero gradient's sign noise into a full step
    for a handful of them), and the accuracy row within 2 points.
    """
    sets = [f"--set={s}" for s in FAST + ["max_tasks=1", "steps_per_task=4", "augment=false"]]
    args = [
        "run",
        "--scenario",
        "toy-digits-cil",
        "--method",
        "finetune",
        "--seed",
        "5",
        "--pretrained",
        "random",
        *sets,
    ]
    single = _cli(args + ["--out", str(tmp_path / "single")])
    assert single.wait() == 0, single.stdout.read()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29531",
            "-m",
            "cliplab.cli",
            *args,
            "--out",
            str(tmp_path / "ddp"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    a = load_state_dict(tmp_path / "single" / "checkpoints" / "task_0.safetensors")
    b = load_state_dict(tmp_path / "ddp" / "checkpoints" / "task_0.safetensors")
    start = load_state_dict_of_random_toyclip(seed=5)
    flat = lambda d: torch.cat([d[k].flatten() for k in sorted(d)])
    moved, gap = (flat(a) - flat(start)).abs(), (flat(a) - flat(b)).abs()
    assert moved.max() > 1e-4, "training changed the weights"
    assert gap.mean() < 0.02 * moved.mean(), f"mean gap {gap.mean():.2e} vs mean update {moved.mean():.2e}"
    outliers = (gap > 0.1 * moved.mean()).float().mean().item()
    assert outliers < 1e-3, f"{outliers:.2%} of parameters differ by more than 10% of the mean update"
    rows = [_metrics(tmp_path / name)["accuracy_matrix"][0] for name in ("single", "ddp")]
    assert all(abs(x - y) <= 2.0 for x, y in zip(*rows)), rows


def load_state_dict_of_random_toyclip(seed: int) -> dict[str, torch.Tensor]:
    from cliplab.models import load_model
    from cliplab.utils import seed_everything

    seed_everything(seed)
    return {k: v.clone() for k, v in load_model("toyclip", pretrained="random").model.state_dict().items()}


def test_a_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        run_scenario(
            "toy-digits-cil",
            "finetune",
            tmp_path,
            pretrained="random",
            seed=0,
            overrides=FAST + ["max_tasks=1", "lr=1e30", "steps_per_task=3"],
        )


def test_unknown_method_scenario_and_setting_are_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'sgd'.*vr_lwf"):
        run_scenario("toy-digits-cil", "sgd", tmp_path, pretrained="random")
    with pytest.raises(ValueError, match="unknown scenario 'mnist-cil'.*toy-digits-cil"):
        run_scenario("mnist-cil", "finetune", tmp_path, pretrained="random")
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'"):
        apply_overrides(TrainConfig(), ["learning_rate=1e-4"])
    with pytest.raises(ValueError, match="train_mode"):
        apply_overrides(TrainConfig(), ["train_mode=vision"])


def test_overrides_parse_numbers_booleans_and_method_options():
    config = apply_overrides(TrainConfig(), ["lr=1e-4", "augment=false", "method.T=3", "method.directions=i2t"])
    assert config.lr == pytest.approx(1e-4) and config.augment is False
    assert config.method == {"T": 3, "directions": "i2t"}


def test_a_folder_holding_another_run_is_not_resumed_into(tmp_path):
    run_scenario("toy-digits-cil", "zeroshot", tmp_path, pretrained="random", seed=0, overrides=FAST + ["max_tasks=1"])
    with pytest.raises(ValueError, match="already holds a different run"):
        run_scenario(
            "toy-digits-cil", "finetune", tmp_path, pretrained="random", seed=0, overrides=FAST + ["max_tasks=1"]
        )
