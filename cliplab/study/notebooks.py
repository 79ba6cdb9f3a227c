"""`cliplab study`: execute the study notebooks in order, headlessly, with papermill.

The notebooks (`notebooks/01_forgetting.py`, `02_vr_lwf.py`, `03_alignment.py`,
`04_parameter_efficient.py`, `05_continual_pretraining.py`, `06_open_domain_and_online.py`,
`07_new_languages.py`) are jupytext py:percent text files. Each is read with jupytext, given a `python3` kernelspec, and executed by
papermill with the study's parameters injected after its `parameters` cell. Outputs:

    <out>/<notebook>.ipynb          the executed notebook (outputs included)
    <out>/<notebook>/metrics.json   its headline numbers
    <out>/runs/<scenario>/<label>/seed<k>   the training runs, shared by the notebooks (runs-smoke/ with smoke)
    <figures>/<NN>_<name>.png       every figure

Because the runs are shared and resumable, notebook 02 reuses 01's runs, 03 and 04 reuse 02's, and a
second `cliplab study` only re-executes the notebooks (fast).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cliplab.study.parameters import check_parameters, notebook_defaults, notebook_parameters

NOTEBOOKS = (
    "01_forgetting.py",
    "02_vr_lwf.py",
    "03_alignment.py",
    "04_parameter_efficient.py",
    "05_continual_pretraining.py",
    "06_open_domain_and_online.py",
    "07_new_languages.py",
)
KERNEL = "python3"
# Notebooks that train or read the same runs run one after another: 01-04 share toy-digits-cil and
# toy-mtil runs (02 reuses 01's, 03 and 04 reuse 02's). 05-07 train scenarios of their own, so their
# lane may run beside the first one (`run_study(lanes=2)`). Each lane trains its runs `JOBS` at a
# time (up to MAX_AUTO_JOBS workers), so a second lane only pays where one lane cannot fill the
# cores: by default from 2 * MAX_AUTO_JOBS cores on. On the 2-core machine two lanes put four
# single-threaded runs on two cores: the study took 38 min 28 s against 36 min 20 s in one lane.
LANES = (NOTEBOOKS[:4], NOTEBOOKS[4:])
LANE_GRACE_SECONDS = 3.0  # after an interrupt, how long a lane may take to see it before it is told


def notebooks_dir() -> Path:
    """`notebooks/` of the source checkout this package is installed from (editable install)."""
    folder = Path(__file__).resolve().parents[2] / "notebooks"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no notebooks/ next to the cliplab package ({folder}); run the study from a source checkout "
            "installed with `pip install -e .`, or pass notebooks= explicitly"
        )
    return folder


def _python_names() -> set[str]:
    major, minor = sys.version_info[:2]
    return {"python", f"python{major}", f"python{major}.{minor}"}


def ensure_kernel(name: str = KERNEL) -> str:
    """Make sure kernel `name` starts THIS interpreter (the one with cliplab installed).

    jupyter_client replaces a bare "python" in a kernelspec by the current interpreter, so
    ipykernel's own spec qualifies. If the spec is missing, or points at another Python, one is
    installed into this environment (`ipykernel install --prefix sys.prefix`) and that folder
    is put first on JUPYTER_PATH for this process and the kernels it starts.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        command = KernelSpecManager().get_kernel_spec(name).argv[0]
        if command in _python_names() or Path(command).resolve() == Path(sys.executable).resolve():
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=name, prefix=sys.prefix)
    share = str(Path(sys.prefix) / "share" / "jupyter")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([share, *filter(None, [os.environ.get("JUPYTER_PATH")])])
    return name


def read_notebook(path: str | os.PathLike, kernel: str = KERNEL):
    """A py:percent file as an nbformat notebook with the kernelspec papermill needs."""
    import jupytext

    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    notebook.metadata.setdefault("language_info", {"name": "python"})
    return notebook


class RunLog:
    """A file-like sink for a kernel's stdout that echoes the run store's lines to the terminal.

    `cliplab study` shows, per notebook, what it is about to train and roughly how long, each run
    as it ends, and how to resume after an interrupt — the lines `cliplab.study.store` prints —
    without the rest of the cell output (`--log-output` streams everything).
    """

    PREFIXES = ("training ", "ran ", "interrupted:")

    def __init__(self, prefix: str = "", stream=None) -> None:
        self.prefix, self.stream, self.pending = prefix, stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith(self.PREFIXES):
                print(f"{self.prefix}{line}", file=self.stream or sys.stdout, flush=True)
        return len(text)

    def flush(self) -> None:
        pass


def execute_notebook(
    path: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, Any],
    log_output: bool = False,
    timeout: int | None = None,
    stdout_file: Any = None,
) -> Path:
    """Execute one notebook with papermill into `output` (.ipynb); return that path.

    The kernel runs in the current directory, so relative paths in `parameters` (a data
    root, a checkpoint file) mean what they mean on the command line. A failing cell raises
    `papermill.PapermillExecutionError`; the partly executed notebook is still written to
    `output` for inspection.
    """
    import papermill

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = read_notebook(path)
    known = set(notebook_parameters(notebook))
    papermill.execute_notebook(
        notebook,
        str(output),
        parameters={k: v for k, v in parameters.items() if k in known},
        kernel_name=ensure_kernel(),
        language="python",
        cwd=os.getcwd(),
        log_output=log_output,
        progress_bar=False,
        execution_timeout=timeout,
        stdout_file=stdout_file,
    )
    return output


def study_parameters(out: Path, figures: Path, stem: str, params: Mapping[str, Any] | None, smoke: bool) -> dict:
    """Parameters injected into one notebook: its own OUT_DIR, the shared RUNS_DIR and FIGURES_DIR."""
    injected: dict[str, Any] = {
        "OUT_DIR": str(out / stem),
        "RUNS_DIR": str(out / "runs"),
        "FIGURES_DIR": str(figures),
        "INTERACTIVE": False,
    }
    if smoke:
        injected["SMOKE"] = True
    return {**injected, **dict(params or {})}


class LaneFailed(RuntimeError):
    """A notebook of a lane run beside this process failed (its error was printed by that lane)."""


def run_study(
    out: str | os.PathLike = "runs/study",
    params: dict | None = None,
    notebooks: Sequence[str | os.PathLike] | None = None,
    figures: str | os.PathLike = "figures",
    smoke: bool = False,
    log_output: bool = False,
    lanes: int | None = None,
) -> list[Path]:
    """Execute the study notebooks; return the executed notebooks' paths, in notebook order.

    Each notebook receives the `params` its parameters cell defines (a name no notebook
    defines is an error, which catches typos; a value of another type than the parameter's
    default is one too, before any notebook runs). `smoke` sets SMOKE=True everywhere and starts
    the kernels with one thread. `lanes`: how many groups of `LANES` run side by side (None: two
    on a CPU machine with two or more cores, one on a GPU or when `notebooks` are not the
    study's); the first lane runs in this process, the others in child processes. A failing
    notebook stops the study with `papermill.PapermillExecutionError` (or `LaneFailed` when it
    was in another lane); Ctrl-C stops every lane.
    """
    out, figures = Path(out).resolve(), Path(figures).resolve()
    paths = [Path(p) for p in notebooks] if notebooks else [notebooks_dir() / name for name in NOTEBOOKS]
    defaults = {path.name: notebook_defaults(read_notebook(path)) for path in paths}
    known = {name for values in defaults.values() for name in values}
    unknown = sorted(set(params or {}) - known)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; the notebooks define {sorted(known)}")
    check_parameters(params or {}, defaults)
    groups = plan_lanes(paths, _resolve_lanes(lanes, params))
    with _kernel_threads(1 if smoke else None):
        spec = {"out": str(out), "params": params or {}, "figures": str(figures), "smoke": smoke, "log": log_output}
        children = [_start_lane({**spec, "paths": [str(p) for p in group]}) for group in groups[1:]]
        try:
            executed = _run_lane(groups[0], out, figures, params, smoke, log_output)
        except BaseException:
            _stop_lanes(children)
            raise
        _wait_lanes(children)
    executed += [out / f"{p.name.split('.')[0]}.ipynb" for group in groups[1:] for p in group]
    order = {p.name.split(".")[0]: i for i, p in enumerate(paths)}
    return sorted(executed, key=lambda target: order[target.stem])


def plan_lanes(paths: Sequence[Path], lanes: int) -> list[list[Path]]:
    """The notebooks grouped into `LANES` (each group in order), or one group when `lanes` is 1 or a
    notebook is not one of the study's (its runs may overlap anything)."""
    if lanes <= 1 or any(not any(p.name in lane for lane in LANES) for p in paths):
        return [list(paths)]
    groups = [[p for p in paths if p.name in lane] for lane in LANES]
    return [group for group in groups if group][:lanes] or [list(paths)]


def _resolve_lanes(lanes: int | None, params: Mapping[str, Any] | None) -> int:
    if lanes is not None:
        if int(lanes) < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        return int(lanes)
    from cliplab.study.pool import MAX_AUTO_JOBS, cpu_cores, on_gpu

    return 1 if on_gpu((params or {}).get("DEVICE")) or cpu_cores() < len(LANES) * MAX_AUTO_JOBS else len(LANES)


def _run_lane(
    paths: Sequence[Path], out: Path, figures: Path, params: Mapping[str, Any] | None, smoke: bool, log_output: bool
) -> list[Path]:
    executed = []
    for path in paths:
        stem = path.name.split(".")[0]
        start = time.perf_counter()
        print(f"[study] {stem} ...", flush=True)
        target = execute_notebook(
            path,
            out / f"{stem}.ipynb",
            study_parameters(out, figures, stem, params, smoke),
            log_output=log_output,
            stdout_file=None if log_output else RunLog(f"[study] {stem}: "),
        )
        print(f"[study] {stem} done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        executed.append(target)
    return executed


def _start_lane(spec: Mapping[str, Any]) -> subprocess.Popen:
    """A child process running one lane (`python -m cliplab.study.notebooks SPEC`), in this process group
    so that a terminal's Ctrl-C reaches it too; its output goes to this process's."""
    return subprocess.Popen([sys.executable, "-m", "cliplab.study.notebooks", json.dumps(spec)])


def _stop_lanes(children: Sequence[subprocess.Popen]) -> None:
    """After an interrupt or a failure here: let the other lanes stop (a terminal's Ctrl-C reached them
    too), tell those that did not see it, and wait for them; their finished runs are kept."""
    deadline = time.monotonic() + LANE_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)
    for child in children:
        child.wait()


def _wait_lanes(children: Sequence[subprocess.Popen]) -> None:
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        _stop_lanes(children)
        raise
    if any(child.returncode for child in children):
        raise LaneFailed("a notebook of the lane run beside this one failed (its error is printed above)")


def _lane_main(spec_json: str) -> int:
    """Entry point of a lane's child process: run its notebooks; 1 on a failed notebook, 130 on Ctrl-C."""
    from papermill.exceptions import PapermillExecutionError

    spec = json.loads(spec_json)
    out = Path(spec["out"])
    try:
        _run_lane(
            [Path(p) for p in spec["paths"]], out, Path(spec["figures"]), spec["params"], spec["smoke"], spec["log"]
        )
    except KeyboardInterrupt:
        return 130
    except PapermillExecutionError as error:
        print(f"cliplab study: {failure_message(error, out)}", file=sys.stderr, flush=True)
        return 1
    return 0


def failure_message(error: Any, out: Path) -> str:
    """What `cliplab study` says of a failed notebook (a `papermill.PapermillExecutionError`)."""
    return (
        f"a notebook failed in cell {error.exec_count} with {error.ename}: {error.evalue}\n"
        f"the executed notebook (with the traceback) is under {out}"
    )


@contextmanager
def _kernel_threads(threads: int | None) -> Iterator[None]:
    """Start kernels with `threads` OpenMP/MKL threads unless the user already chose a number.

    Smoke runs push tiny tensors through a tiny model: one thread is as fast on a quiet
    machine, and on a busy one spinning OpenMP threads make it up to ten times slower.
    """
    names = [n for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if threads is not None and n not in os.environ]
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)


__all__ = [
    "LANES",
    "NOTEBOOKS",
    "LaneFailed",
    "RunLog",
    "ensure_kernel",
    "execute_notebook",
    "failure_message",
    "plan_lanes",
    "read_notebook",
    "run_study",
    "study_parameters",
]


if __name__ == "__main__":  # a lane of `run_study`, started by `_start_lane`
    sys.exit(_lane_main(sys.argv[1]))
