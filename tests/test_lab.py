"""`cliplab lab`'s working copy and command line, and `cliplab explore`'s (the browser test drives them)."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from cliplab.cli import main
from cliplab.study.lab import (
    LAB_NOTEBOOKS,
    PAIRING,
    SETTINGS_DIR,
    explore_command,
    explore_environment,
    explorer_notebook,
    kernel_metadata,
    lab_command,
    prepare_workspace,
)
from cliplab.study.notebooks import notebooks_dir


def _sources(path: Path) -> list[str]:
    return [cell.source for cell in jupytext.read(path).cells]


def test_the_working_copy_pairs_each_notebook_with_its_outputs_and_the_kernel_jupyterlab_writes(tmp_path):
    copies = prepare_workspace(tmp_path / "lab", log=lambda _: None)
    assert [c.name for c in copies] == list(LAB_NOTEBOOKS)
    metadata = kernel_metadata()
    assert metadata["kernelspec"]["name"] == "python3" and metadata["language_info"]["name"] == "python"
    for copy in copies:
        outputs = json.loads(copy.with_name(f"{copy.stem}.outputs.ipynb").read_text())
        assert outputs["metadata"]["kernelspec"] == metadata["kernelspec"]
        assert outputs["metadata"]["language_info"] == metadata["language_info"]
        assert jupytext.read(copy).metadata["jupytext"]["formats"] == PAIRING
        assert _sources(copy) == _sources(notebooks_dir() / copy.name), f"{copy.name} is not a faithful copy"
    assert "outputs.ipynb" in (tmp_path / "lab" / "README.md").read_text()


def test_outputs_come_back_when_a_copy_is_reopened(tmp_path):
    """What JupyterLab's contents manager (jupytext's) serves for the .py copy carries the saved outputs."""
    from jupytext import TextFileContentsManager

    prepare_workspace(tmp_path, log=lambda _: None)
    manager = TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get("01_forgetting.py")
    cell = next(i for i, c in enumerate(model["content"].cells) if c.cell_type == "code")
    model["content"].cells[cell].outputs = [{"output_type": "stream", "name": "stdout", "text": "output kept 4711\n"}]
    model["content"].cells[cell].execution_count = 1
    manager.save(model, "01_forgetting.py")
    reopened = TextFileContentsManager(root_dir=str(tmp_path)).get("01_forgetting.py")
    assert reopened["content"].cells[cell].outputs[0]["text"] == "output kept 4711\n"
    assert "4711" not in (tmp_path / "01_forgetting.py").read_text()  # the text copy stays text
    assert "4711" in (tmp_path / "01_forgetting.outputs.ipynb").read_text()


def test_existing_copies_are_kept_until_refresh(tmp_path):
    copy = prepare_workspace(tmp_path, log=lambda _: None)[1]
    copy.write_text(copy.read_text().replace("SEEDS = [0, 1, 2]", "SEEDS = [0]"))
    notes = []
    prepare_workspace(tmp_path, log=notes.append)
    assert "SEEDS = [0]\n" in copy.read_text() and not notes
    prepare_workspace(tmp_path, refresh=True, log=notes.append)
    assert "SEEDS = [0, 1, 2]" in copy.read_text()


def test_jupyterlab_gets_the_default_viewer_the_hidden_outputs_and_allow_root_as_root(tmp_path, monkeypatch):
    overrides = json.loads((SETTINGS_DIR / "overrides.json").read_text())
    viewer = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"]
    bundles = Path(jupytext.__file__).parents[4] / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext"
    assert any(viewer in p.read_text(errors="ignore") for p in bundles.rglob("*.js")), f"no viewer named {viewer!r}"
    command = lab_command(notebooks_dir().parent / "lab", ["--port=1"])
    assert command[1:3] == ["-m", "jupyterlab"] and command[-1] == "--port=1"
    assert f"--LabApp.app_settings_dir={SETTINGS_DIR}" in command
    assert "--LabApp.default_url=/lab/tree/lab" in command
    assert "--ContentsManager.hide_globs=*.outputs.ipynb" in command
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert "--allow-root" in lab_command(tmp_path)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "--allow-root" not in lab_command(tmp_path) and "--LabApp.default_url=/lab" in lab_command(tmp_path)


def test_cliplab_lab_prepare_only_makes_the_copies(tmp_path, capsys):
    assert main(["lab", "--dir", str(tmp_path / "w"), "--prepare-only"]) == 0
    assert sorted(p.name for p in (tmp_path / "w").glob("*.py")) == sorted(LAB_NOTEBOOKS)
    assert "working copies" in capsys.readouterr().out


def test_the_explorer_is_served_from_a_notebook_with_the_run_folder_in_the_environment(tmp_path):
    notebook = explorer_notebook(tmp_path)
    assert "explorer_app()" in notebook.read_text()
    command = explore_command(notebook, ["--port=1"])
    assert command[1:4] == ["-m", "voila", str(notebook)] and "--strip_sources=True" in command
    (tmp_path / "runs").mkdir()
    assert explore_environment(tmp_path / "runs")["CLIPLAB_RUNS"] == str((tmp_path / "runs").resolve())
    with pytest.raises(FileNotFoundError, match="no run folder"):
        explore_environment(tmp_path / "missing")
