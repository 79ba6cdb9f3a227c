"""Ctrl-C / Kernel → Interrupt stops training within seconds, says how to resume, and resuming works.

Jupyter interrupts a kernel by sending SIGINT to its whole process group, workers included; a
terminal's Ctrl-C does the same to the foreground group. Both are reproduced here with `killpg`
on a subprocess started in its own session. Before the fix, the pool's `with` block waited for
every queued run and the workers went on training (issue 19).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from terminal import start_as_from_a_terminal

import cliplab.study as sh
from cliplab.cli import main
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.study.store import RUN_START_SECONDS, SECONDS_PER_COST, WORKER_START_SECONDS, estimate_seconds

needs_toyclip = pytest.mark.skipif(not TOYCLIP_CHECKPOINT.exists(), reason="the shipped ToyCLIP checkpoint is missing")
STOP_LIMIT = 10.0  # seconds from SIGINT to exit, with room for a loaded 2-core machine
# finetune writes a mid-task checkpoint every 10 steps: the interrupt comes after the first one
SETTINGS = {**sh.SMOKE_SETTINGS, "steps_per_task": 40, "batch_size": 4, "checkpoint_every": 10, "progress": False}

SCRIPT = """
import json, sys
import cliplab.study as sh

if __name__ == "__main__":
    requests = [sh.RunRequest("toy-digits-cil", m, 0) for m in ("finetune", "zeroshot")]
    sh.run_requests(requests, sys.argv[1], settings=json.loads(sys.argv[2]), smoke=True, jobs=2,
                    log=lambda line: print(line, flush=True))
"""


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    # its own process group, as a kernel has: killpg reaches its workers
    return start_as_from_a_terminal(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _group_alive(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[0] == str(pgid) and "Z" not in line.split()[1]]


def _interrupt(process: subprocess.Popen) -> float:
    """SIGINT to the process group (what Jupyter's Interrupt and a terminal's Ctrl-C do); seconds to exit."""
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return time.monotonic() - start


def test_the_estimate_packs_runs_longest_first_on_the_workers():
    one = RUN_START_SECONDS + SECONDS_PER_COST * 350  # toy-digits-cil finetune: (60 steps + 10) x 5 tasks
    assert estimate_seconds([350], jobs=2) == pytest.approx(one)  # one run trains in-process
    # 600, 400, 300, 200 on two spawned workers, longest first: {600, 200} and {400, 300}
    costs = [300, 600, 200, 400]
    start = WORKER_START_SECONDS + 2 * RUN_START_SECONDS
    assert estimate_seconds(costs, jobs=2) == pytest.approx(start + SECONDS_PER_COST * 800)
    assert estimate_seconds(costs, jobs=1) == pytest.approx(4 * RUN_START_SECONDS + SECONDS_PER_COST * 1500)


@pytest.mark.slow
@needs_toyclip
def test_interrupt_stops_parallel_runs_within_seconds_and_running_again_resumes(tmp_path):
    store = tmp_path / "runs"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    process = _start([sys.executable, str(script), str(store), json.dumps(SETTINGS)], tmp_path)
    finetune = store / "toy-digits-cil" / "finetune" / "seed0"
    mid = finetune / "checkpoints" / "mid_task.safetensors"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not mid.exists():
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read()
    seconds = _interrupt(process)
    output = process.stdout.read()
    assert seconds < STOP_LIMIT, f"took {seconds:.1f} s to stop:\n{output}"
    assert process.returncode != 0
    assert output.startswith("training 2 runs, 2 at a time: roughly") and "estimate" in output, output
    kept = re.search(r"interrupted: (\d) of 2 runs finished and are kept", output)
    assert kept and "again to go on: finished runs are reused, unfinished ones resume" in output, output
    time.sleep(1.0)
    assert not _group_alive(process.pid), "worker processes survived the interrupt"
    assert not list(store.rglob("*.tmp")), "an interrupted atomic write left its temporary file"
    assert not (finetune / "metrics.json").exists() and mid.exists()

    messages = []
    requests = [sh.RunRequest("toy-digits-cil", m, 0) for m in ("finetune", "zeroshot")]
    sh.run_requests(requests, store, settings=SETTINGS, smoke=True, jobs=1, log=messages.append)
    assert sum(m.startswith("reuse") for m in messages) == int(kept.group(1)), messages
    assert not mid.exists() and (finetune / "metrics.json").exists()
    finished = json.loads((finetune / "metrics.json").read_text())
    assert len(finished["accuracy_matrix"]) == 2


@pytest.mark.slow
@needs_toyclip
def test_ctrl_c_in_cliplab_run_stops_and_the_same_command_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in SETTINGS.items() if k != "progress"] + ["--set=progress=false"]
    args = ["run", "--scenario", "toy-digits-cil", "--method", "finetune", "--seed", "0", "--out", str(out), *sets]
    process = _start([sys.executable, "-m", "cliplab.cli", *args], tmp_path)
    mid = out / "checkpoints" / "mid_task.safetensors"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not mid.exists():
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read()
    seconds = _interrupt(process)
    output = process.stdout.read()
    assert seconds < STOP_LIMIT, output
    assert process.returncode == 130, output
    assert "cliplab run: interrupted. Run the same command again to resume" in output
    assert mid.exists() and not (out / "metrics.json").exists()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"] == str(out)
    assert not mid.exists()
