"""Shared test fixtures: folders that module-scoped fixtures fill, removed when their module ends.

A whole-tower run of ToyCLIP writes a 40 MB checkpoint per task, and the suite makes hundreds of
runs: kept to the end of the session, they filled about 8 GB, more than some machines of this
workplace have free (a CI run errored in most tests of its last quarter, as a full disk makes it).
Now a test's own `tmp_path` is removed when it passes (`tmp_path_retention_policy = "failed"` in
pyproject.toml), and `module_tmp_path` removes the folder of a module's fixtures (a smoke study, a run store)
when their module ends, keeping them when a test of the module failed so that it can be read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PEAK_DISK_GB = 3.0  # the suite's largest use of its temporary folder at once (measured: 2.6 to 2.8 GB)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say up front, even under -q, when the disk may be too small: a full disk shows up only later,
    as failures and fixture errors in whatever tests run then."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller says it
        return
    folder = Path(session.config.option.basetemp or tempfile.gettempdir())
    free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free / 1e9
    if free < PEAK_DISK_GB:
        reporter.write_line(
            f"WARNING: {free:.1f} GB free for the tests' folders ({folder}); the suite needs about "
            f"{PEAK_DISK_GB:.0f} GB at its peak. Free some space, or give a larger disk with --basetemp.",
            yellow=True,
        )


@pytest.fixture(scope="module")
def module_tmp_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What `tmp_path` is to a test, for a module's fixtures: removed when the module ends, kept when
    one of its tests failed."""
    failed_before = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__)
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)
