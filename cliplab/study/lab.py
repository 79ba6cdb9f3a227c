"""`cliplab lab` / `make lab` and `cliplab explore` / `make explore`: the notebooks in a browser.

**JupyterLab.** The tracked notebooks (`notebooks/*.py`, jupytext py:percent text) are copied
once into a working folder, `lab/` beside `notebooks/` (git-ignored; the same depth, so every
relative path in a notebook means the same). Each copy is *paired* (jupytext) with a
`<name>.outputs.ipynb` that keeps its outputs across sessions and is hidden from the file
browser. JupyterLab starts on the checkout with `lab/` open, and a shipped setting
(`cliplab/study/jupyterlab/overrides.json`: the default viewer of Python files is jupytext's
notebook view) makes a double-click open a `.py` notebook *as a notebook*. The copies carry the
kernel metadata JupyterLab writes on open (the kernelspec this environment installs, the
language_info ipykernel reports), so a notebook opens without unsaved changes. Saving rewrites
the copy, never `notebooks/`: whoever means to change a tracked notebook copies it back (or opens
`notebooks/` directly). `--refresh` replaces the copies by the tracked notebooks.

**The explorer.** `notebooks/explorer.py` is converted to a notebook under `runs/explorer/` and
served by Voilà (code hidden, widgets live) with the run folder in `$CLIPLAB_RUNS`.

As root, JupyterLab refuses to start without `--allow-root`; it is added then.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cliplab.study.notebooks import KERNEL, NOTEBOOKS, ensure_kernel, notebooks_dir

SETTINGS_DIR = Path(__file__).resolve().parent / "jupyterlab"  # overrides.json: the default viewers
EXPLORER = "explorer.py"
LAB_NOTEBOOKS = (*NOTEBOOKS, EXPLORER)
PAIRING = "py:percent,.outputs.ipynb"  # the copy (what you edit) and its outputs, side by side
HIDDEN = ("__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", "*.outputs.ipynb")  # jupyter_server's, + outputs

LAB_README = """# Your working copies of the cliplab notebooks

Made by `cliplab lab` (or `make lab`) from `../notebooks/`. Double-click a notebook to open it;
edit and save freely: the tracked notebooks in `../notebooks/` do not change. Outputs are kept in
the paired `*.outputs.ipynb` files (hidden in JupyterLab's file browser) and come back when you
reopen a notebook. `cliplab lab --refresh` replaces these copies by the tracked notebooks (your
edits and outputs here are lost). To change a tracked notebook, copy the file back to
`../notebooks/`.
"""


def lab_dir() -> Path:
    """`lab/` beside `notebooks/` in the source checkout."""
    return notebooks_dir().parent / "lab"


def kernel_metadata(kernel: str = KERNEL) -> dict:
    """The `kernelspec` and `language_info` JupyterLab records when the kernel starts.

    Written into the copies beforehand, so that opening a notebook changes nothing in it (else
    the tab shows unsaved changes before the user touched anything).
    """
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(ensure_kernel(kernel))
    return {
        "kernelspec": {"name": kernel, "display_name": spec.display_name, "language": spec.language},
        "language_info": dict(IPythonKernel.language_info),
    }


def prepare_workspace(dest: str | os.PathLike | None = None, refresh: bool = False, log=print) -> list[Path]:
    """Copy the study notebooks and the explorer into `dest` (default `lab/`), paired with their
    outputs notebooks; existing copies are kept (the user's work) unless `refresh`. Returns the
    `.py` copies."""
    import jupytext

    dest = Path(dest) if dest is not None else lab_dir()
    dest.mkdir(parents=True, exist_ok=True)
    metadata = kernel_metadata()
    copies = []
    for name in LAB_NOTEBOOKS:
        source, copy = notebooks_dir() / name, dest / name
        outputs = dest / f"{copy.stem}.outputs.ipynb"
        copies.append(copy)
        if copy.exists() and not refresh:
            if source.stat().st_mtime > copy.stat().st_mtime:
                log(f"note: {source} changed after your copy {copy}; `cliplab lab --refresh` replaces the copies")
            continue
        notebook = jupytext.read(source)
        notebook.metadata.update(metadata)
        notebook.metadata.setdefault("jupytext", {})["formats"] = PAIRING
        notebook.metadata["jupytext"].pop("text_representation", None)
        jupytext.write(notebook, outputs)  # first: the text copy must not be older than its outputs
        jupytext.write(notebook, copy, fmt="py:percent")
    readme = dest / "README.md"
    if refresh or not readme.exists():
        readme.write_text(LAB_README, encoding="utf-8")
    return copies


def _root_flags() -> list[str]:
    return ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def lab_command(dest: str | os.PathLike | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The `jupyter lab` command line: the checkout as root folder, `dest` open, the shipped
    default viewers, the outputs notebooks hidden, `--allow-root` as root, then `extra`."""
    dest = Path(dest) if dest is not None else lab_dir()
    root = notebooks_dir().parent
    try:
        start = dest.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # a folder outside the checkout: serve that folder itself
        root, start = dest, ""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{start}" if start else "--LabApp.default_url=/lab",
        f"--LabApp.app_settings_dir={SETTINGS_DIR}",
        *(f"--ContentsManager.hide_globs={pattern}" for pattern in HIDDEN),
        *_root_flags(),
        *extra,
    ]


def explorer_notebook(dest: str | os.PathLike | None = None) -> Path:
    """`notebooks/explorer.py` as an .ipynb (what Voilà serves), in `dest` (default runs/explorer/)."""
    import jupytext

    dest = Path(dest) if dest is not None else notebooks_dir().parent / "runs" / "explorer"
    dest.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(notebooks_dir() / EXPLORER)
    notebook.metadata.update(kernel_metadata())
    target = dest / "explorer.ipynb"
    jupytext.write(notebook, target)
    return target


def explore_command(notebook: str | os.PathLike, extra: Sequence[str] = ()) -> list[str]:
    """The Voilà command line serving the explorer notebook (code hidden), then `extra`."""
    return [sys.executable, "-m", "voila", str(notebook), "--strip_sources=True", *extra]


def explore_environment(runs: str | os.PathLike | None) -> dict[str, str]:
    """The environment for Voilà's kernel: `$CLIPLAB_RUNS` (absolute) when a run folder is given."""
    from cliplab.study.explorer import RUNS_ENV

    env = dict(os.environ)
    if runs is not None:
        folder = Path(runs).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"no run folder {folder}: give a folder such as runs/study/runs")
        env[RUNS_ENV] = str(folder)
    return env


__all__ = [
    "LAB_NOTEBOOKS",
    "PAIRING",
    "SETTINGS_DIR",
    "explore_command",
    "explore_environment",
    "explorer_notebook",
    "kernel_metadata",
    "lab_command",
    "lab_dir",
    "prepare_workspace",
]
