"""`cliplab study` runs notebooks that share no runs side by side (`LANES`): 01-04 in this process,
05-07 in a child process, so that one lane's last long run or figures leave no core idle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from terminal import start_as_from_a_terminal

from cliplab.study.notebooks import LANES, NOTEBOOKS, LaneFailed, plan_lanes, run_study


def _notebook(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(
        "# %% tags=['parameters']\nOUT_DIR = None\nRUNS_DIR = None\nFIGURES_DIR = None\nINTERACTIVE = True\n"
        f"SMOKE = False\n\n# %%\n{body}\n"
    )
    return path


def test_the_study_notebooks_form_two_lanes_and_others_keep_their_order(tmp_path):
    paths = [Path("notebooks") / name for name in NOTEBOOKS]
    assert [[p.name for p in group] for group in plan_lanes(paths, 2)] == [list(LANES[0]), list(LANES[1])]
    assert plan_lanes(paths, 1) == [paths]
    assert plan_lanes(paths[3:6], 2) == [[paths[3]], paths[4:6]]  # 04 alone in the first lane, 05-06 beside it
    mine = paths[:2] + [tmp_path / "99_mine.py"]
    assert plan_lanes(mine, 2) == [mine]  # a notebook that is not the study's may share any run: in order
    with pytest.raises(ValueError, match="lanes must be >= 1"):
        run_study(tmp_path, notebooks=paths[:1], lanes=0)


def test_lanes_run_side_by_side_and_a_failure_in_the_other_lane_is_reported(tmp_path, capfd):
    """01 waits until 05 (the other lane, a child process) has started: only side by side can both end.
    Then a failing 06 in the child lane makes the study fail with its error printed."""
    flag = tmp_path / "05_started"
    wait = f"""import pathlib, time
flag = pathlib.Path({str(flag)!r})
for _ in range(600):
    if flag.exists():
        break
    time.sleep(0.1)
assert flag.exists(), "the other lane never started"
"""
    first = _notebook(tmp_path, "01_forgetting.py", wait)
    other = _notebook(tmp_path, "05_continual_pretraining.py", f"import pathlib\npathlib.Path({str(flag)!r}).touch()")
    executed = run_study(tmp_path / "out", notebooks=[first, other], figures=tmp_path / "fig", lanes=2)
    assert [p.name for p in executed] == ["01_forgetting.ipynb", "05_continual_pretraining.ipynb"]
    assert all(p.exists() for p in executed)

    failing = _notebook(tmp_path, "06_open_domain_and_online.py", "raise RuntimeError('broken on purpose')")
    with pytest.raises(LaneFailed, match="beside this one failed"):
        run_study(tmp_path / "out2", notebooks=[first, other, failing], figures=tmp_path / "fig", lanes=2)
    err = capfd.readouterr().err
    assert "cliplab study: a notebook failed in cell" in err and "broken on purpose" in err


def test_ctrl_c_stops_both_lanes_and_their_kernels_within_seconds(tmp_path):
    """SIGINT to the study's process group (a terminal's Ctrl-C) while 01 and 05 run side by side:
    the study exits within seconds and neither lane's kernel survives it."""
    pids = {name: tmp_path / f"{name}.pid" for name in ("01", "05")}
    body = "import os, pathlib, time\npathlib.Path({!r}).write_text(str(os.getpid()))\ntime.sleep(120)"
    first = _notebook(tmp_path, "01_forgetting.py", body.format(str(pids["01"])))
    other = _notebook(tmp_path, "05_continual_pretraining.py", body.format(str(pids["05"])))
    script = (
        "import sys\nfrom cliplab.study.notebooks import run_study\n"
        f"run_study({str(tmp_path / 'out')!r}, notebooks=[{str(first)!r}, {str(other)!r}], "
        f"figures={str(tmp_path / 'fig')!r}, lanes=2)\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = start_as_from_a_terminal(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(p.exists() and p.read_text() for p in pids.values()):
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    kernels = [int(p.read_text()) for p in pids.values()]
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert time.monotonic() - start < 15, process.stdout.read()
    assert process.returncode != 0
    time.sleep(1.0)
    for pid in kernels:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the kernel is gone
