"""The notebooks as a workshop participant uses them: JupyterLab and the explorer in a real browser.

JupyterLab starts on a working copy made by `cliplab lab`'s `prepare_workspace` (SMOKE set in the
copies; notebooks 02-07 narrowed to the runs 01 trains plus one or two runs of their own methods,
as a teacher would for a quick check), and headless Chromium — Debian's `chromium` package,
driven by Playwright's Python package — double-clicks each notebook. Checked: it opens as a notebook without unsaved changes; Run All
ends with no error output and at least one figure; Kernel → Interrupt stops a training cell
within seconds and Run All again resumes; a widget redraws its figure when changed; saving keeps
the outputs in the paired notebook and leaves the tracked notebooks alone. Then the explorer
(`cliplab explore`'s Voilà page) shows figures and redraws when a control changes.

Skipped, with the package to install, where Chromium or Playwright is missing (`.ci/run` installs
both). 312 s measured on the 2-core machine while it was shared (load average 5–6); less idle.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.study.lab import explore_command, explore_environment, explorer_notebook, lab_command, prepare_workspace
from cliplab.study.notebooks import NOTEBOOKS, notebooks_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INTERRUPT_LIMIT = 15.0  # seconds from Kernel → Interrupt to an idle kernel (a loaded 2-core machine)
TOKEN = "cliplab-browser-test"
# Narrowed parameters (SMOKE everywhere): 02 and 03 reuse the two runs 01 trains; 04-07 add one or
# two runs of the methods they are about (the full method lists run headlessly in test_notebooks).
PARAMETERS = {
    "01_forgetting.py": {"SMOKE": True, "DEVICE": "cpu", "OST_SCENARIO": None},
    "02_vr_lwf.py": {
        "SMOKE": True,
        "DEVICE": "cpu",
        "SCENARIOS": ["toy-digits-cil"],
        "METHODS": ["zeroshot", "finetune"],
        "ABLATION_SCENARIO": None,
    },
    "03_alignment.py": {"SMOKE": True, "DEVICE": "cpu", "METHODS": ["finetune"], "FOCUS": ["finetune"]},
    "04_parameter_efficient.py": {
        "SMOKE": True,
        "DEVICE": "cpu",
        "SCENARIOS": ["toy-digits-cil"],
        "METHODS": ["zeroshot", "finetune", "lora"],
    },
    "05_continual_pretraining.py": {
        "SMOKE": True,
        "DEVICE": "cpu",
        "METHODS": ["sequential", "modx"],
        "STRUCTURE_METHODS": ["sequential", "modx"],
    },
    "06_open_domain_and_online.py": {
        "SMOKE": True,
        "DEVICE": "cpu",
        "METHODS": {"toy-odcl-cil": ["zeroshot", "coleclip"], "toy-si-blurry": ["continual_clip", "sit"]},
    },
    "07_new_languages.py": {"SMOKE": True, "DEVICE": "cpu", "METHODS": ["zeroshot", "cll_clip"], "VARIANTS": {}},
}
LATER = [name for name in PARAMETERS if name != "01_forgetting.py"]  # opened after 01 trained its runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Chromium is missing: install Debian's package (apt-get install chromium)"
    ),
    pytest.mark.skipif(not TOYCLIP_CHECKPOINT.exists(), reason="the shipped ToyCLIP checkpoint is missing"),
]
playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is missing: pip install playwright (the test extras)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parameters(copy: Path, values: dict) -> None:
    """Edit `NAME = value` lines of the copy's parameters cell, as a participant would, and save the pair."""
    import jupytext

    outputs = copy.with_name(f"{copy.stem}.outputs.ipynb")
    notebook = jupytext.read(outputs)  # the full metadata (language_info is not in the text header)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    for name, value in values.items():  # a value may span several lines (06's METHODS dict)
        lines = cell.source.split("\n")
        found = [n for n in ast.parse(cell.source).body if isinstance(n, ast.Assign) and n.targets[0].id == name]
        assert len(found) == 1, f"{copy.name} has no parameter {name}"
        lines[found[0].lineno - 1 : found[0].end_lineno] = [f"{name} = {value!r}"]
        cell.source = "\n".join(lines)
    jupytext.write(notebook, outputs)
    jupytext.write(notebook, copy, fmt="py:percent")


def _serve(command: list[str], url: str, env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    _stop(process)
    raise AssertionError(f"{command[2]} did not start:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def workspace(module_tmp_path):
    """JupyterLab on a fresh working copy in SMOKE, and a browser page on it."""
    root = module_tmp_path
    copies = {p.name: p for p in prepare_workspace(root / "lab", log=lambda _: None)}
    for name, values in PARAMETERS.items():
        _set_parameters(copies[name], values)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "JUPYTER_RUNTIME_DIR": str(root / "rt")}
    extra = [
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.workspaces_dir={root / 'workspaces'}",
    ]
    server = _serve(
        lab_command(root / "lab", extra), f"http://127.0.0.1:{port}/api/status?token={TOKEN}", env, root / "lab.log"
    )
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(root / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"http://127.0.0.1:{port}/lab?token={TOKEN}&reset")
        try:
            yield {"root": root, "page": page, "port": port, "env": env}
        finally:
            browser.close()
            _stop(server)


def _kernel_busy(panel) -> bool:
    """A cell queued or running ([*]), or the panel's execution indicator not idle."""
    state = panel.evaluate(
        """p => ({
            prompts: [...p.querySelectorAll('.jp-InputPrompt')].map(e => e.textContent),
            status: [...p.querySelectorAll('.jp-Notebook-ExecutionIndicator')].map(e => e.dataset.status),
        })"""
    )
    return any("*" in prompt for prompt in state["prompts"]) or any(s != "idle" for s in state["status"])


def _wait_idle(panel, timeout: float) -> float:
    """Seconds until no cell runs and the kernel is idle."""
    start = time.monotonic()
    while _kernel_busy(panel):
        assert time.monotonic() - start < timeout, f"still running after {timeout:.0f} s"
        time.sleep(0.5)
    return time.monotonic() - start


def _menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-content .lm-Menu-itemLabel").get_by_text(item, exact=True).first.click()


def _open(page, name: str):
    """Double-click `name` in the file browser; the notebook panel once its kernel is idle."""
    page.locator(".jp-DirListing-itemText", has_text=name).first.dblclick()
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    panel.locator(".jp-Cell").first.wait_for()
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=120_000)
    time.sleep(1.0)  # JupyterLab writes kernelspec / language_info right after the kernel connects
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").first
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), f"{name} shows unsaved changes on open"
    return panel


def _run_all(page, panel, timeout: float) -> float:
    _menu(page, "Run", "Run All Cells")
    time.sleep(1.0)
    return _wait_idle(panel, timeout)


def _save_and_read(page, copy: Path) -> dict:
    """Ctrl+S; the paired outputs notebook as saved."""
    outputs = copy.with_name(f"{copy.stem}.outputs.ipynb")
    before = outputs.stat().st_mtime
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while outputs.stat().st_mtime == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outputs.stat().st_mtime != before, "saving did not write the outputs notebook"
    return json.loads(outputs.read_text())


def _check_outputs(notebook: dict, name: str) -> None:
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in "".join(o["text"])], name
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1, f"{name} shows no figure"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["execution_count"], f"{name}: a cell did not run: {''.join(cell['source'])[:80]}"


def _close(page, port: int) -> None:
    """Close the current tab (saved), then shut its kernel down."""
    _menu(page, "File", "Close Tab")
    _shut_down_kernels(port)


def _shut_down_kernels(port: int) -> None:
    base = f"http://127.0.0.1:{port}/api/kernels"
    with urllib.request.urlopen(f"{base}?token={TOKEN}") as response:
        kernels = json.load(response)
    for kernel in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{base}/{kernel['id']}?token={TOKEN}", method="DELETE"))


def _image_sources(locator) -> list[str]:
    return locator.locator("img").evaluate_all("imgs => imgs.map(i => i.src)")


def test_notebooks_open_run_interrupt_redraw_and_keep_outputs(workspace):
    page, root = workspace["page"], workspace["root"]
    assert set(PARAMETERS) == set(NOTEBOOKS), "every study notebook is opened here: give a new one its parameters"
    tracked = {name: hashlib.sha256((notebooks_dir() / name).read_bytes()).hexdigest() for name in NOTEBOOKS}
    page.locator(".jp-DirListing-itemText", has_text="01_forgetting.py").first.wait_for(timeout=120_000)
    names = page.locator(".jp-DirListing-itemText").all_inner_texts()
    assert not [n for n in names if n.endswith(".outputs.ipynb")], f"outputs notebooks are listed: {names}"

    # 01 with an empty run store: interrupt the training cell, then Run All again resumes.
    panel = _open(page, "01_forgetting.py")
    _menu(page, "Run", "Run All Cells")
    panel.locator(".jp-OutputArea-output", has_text="training ").first.wait_for(timeout=180_000)
    assert panel.locator(".cliplab-smoke-banner").count() >= 1, "no SMOKE banner"
    time.sleep(2.0)  # the workers are importing and training
    _menu(page, "Kernel", "Interrupt Kernel")
    stopped = _wait_idle(panel, timeout=60)
    assert stopped < INTERRUPT_LIMIT, f"Interrupt took {stopped:.1f} s"
    assert panel.locator(".jp-OutputArea-output", has_text="again to go on").count() >= 1
    print(f"Interrupt stopped the training cell in {stopped:.1f} s")
    print(f"01: Run All again (resuming) took {_run_all(page, panel, timeout=420):.0f} s")

    # a widget redraws: the accuracy-matrix explorer's method dropdown
    interact = panel.locator(".widget-interact").first
    before = _image_sources(interact)
    assert before, "the interact widget shows no figure"
    dropdown = interact.locator("select").first
    dropdown.select_option(index=1 - dropdown.evaluate("select => select.selectedIndex"))  # the other method
    deadline = time.monotonic() + 30
    while _image_sources(interact) == before and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _image_sources(interact) != before, "the figure did not change with the widget"
    _check_outputs(_save_and_read(page, root / "lab" / "01_forgetting.py"), "01_forgetting")
    page.screenshot(path=root / "01_forgetting.png")  # for a person to look at when it fails
    _close(page, workspace["port"])

    for name in LATER:
        panel = _open(page, name)
        print(f"{name}: Run All took {_run_all(page, panel, timeout=300):.0f} s")
        _check_outputs(_save_and_read(page, root / "lab" / name), name)
        page.screenshot(path=root / f"{name}.png")
        _close(page, workspace["port"])

    smoke_out = root / "runs" / "study-smoke"
    assert {p.name for p in smoke_out.iterdir()} >= {name.split(".")[0] for name in PARAMETERS} | {"figures"}
    assert not (root / "runs" / "study" / "01_forgetting").exists(), "SMOKE wrote into the full study's folder"
    after = {name: hashlib.sha256((notebooks_dir() / name).read_bytes()).hexdigest() for name in NOTEBOOKS}
    assert after == tracked, "the tracked notebooks changed"


def test_the_explorer_page_shows_figures_and_redraws(workspace):
    runs = workspace["root"] / "runs" / "study" / "runs-smoke"
    if not runs.is_dir():
        pytest.skip("needs the runs the notebook test trains")
    port = _free_port()
    command = explore_command(
        explorer_notebook(workspace["root"] / "explorer"), ["--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    )
    env = {
        **explore_environment(runs),
        "OMP_NUM_THREADS": "1",
        "JUPYTER_RUNTIME_DIR": workspace["env"]["JUPYTER_RUNTIME_DIR"],
    }
    server = _serve(command, f"http://127.0.0.1:{port}/", env, workspace["root"] / "explorer.log")
    try:
        page = workspace["page"]
        page.goto(f"http://127.0.0.1:{port}/")
        explorer = page.locator(".cliplab-explorer")
        explorer.wait_for(timeout=180_000)
        deadline = time.monotonic() + 180
        while len(_image_sources(explorer)) < 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        before = _image_sources(explorer)
        assert len(before) == 4, f"the explorer shows {len(before)} of its 4 figures"
        explorer.locator("select").nth(1).select_option("zeroshot")  # the method dropdown
        deadline = time.monotonic() + 120
        while _image_sources(explorer)[:1] == before[:1] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _image_sources(explorer)[:1] != before[:1], "the accuracy matrix did not redraw"
        assert "Traceback" not in explorer.inner_text()
        page.screenshot(path=workspace["root"] / "explorer.png", full_page=True)
    finally:
        _stop(server)
