"""The benchmark scripts' own arithmetic and the README that reports them (no timing here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their `common` helpers by name
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _write_run(root: Path, folder: str, scenario: str, method: str, train: float, evaluate: float) -> None:
    path = root / folder / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"scenario": scenario, "method": method, "seconds": {"train": train, "evaluate": evaluate}})
    )


def test_run_store_shares_are_per_scenario_and_method(tmp_path: Path) -> None:
    eval_share = _module("eval_share")
    _write_run(tmp_path, "a/finetune/seed0", "a", "finetune", 75.0, 25.0)  # 25%
    _write_run(tmp_path, "a/finetune/seed1", "a", "finetune", 90.0, 10.0)  # 10%
    _write_run(tmp_path, "a/finetune/seed2", "a", "finetune", 80.0, 20.0)  # 20%
    _write_run(tmp_path, "a/lwf/seed0", "a", "lwf", 95.0, 5.0)
    _write_run(tmp_path, "a/zeroshot/seed0", "a", "zeroshot", 0.1, 10.0)  # only evaluates: left out
    rows = {(r["scenario"], r["method"]): r for r in eval_share.run_store_shares(tmp_path)["rows"]}
    assert set(rows) == {("a", "finetune"), ("a", "lwf")}
    finetune = rows[("a", "finetune")]
    assert finetune["runs"] == 3
    assert finetune["median_share"] == pytest.approx(0.20)
    assert (finetune["min_share"], finetune["max_share"]) == pytest.approx((0.10, 0.25))
    assert finetune["holds"]  # the target is <= 20%
    assert rows[("a", "lwf")]["median_share"] == pytest.approx(0.05)


def test_run_store_shares_of_an_empty_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make study"):
        _module("eval_share").run_store_shares(tmp_path / "nothing-here")


def test_benchmarks_readme_tables_are_the_result_files() -> None:
    """The generated part of benchmarks/README.md is what report.py renders from results/*.json,
    so no number there drifts from the file it came from."""
    report = _module("report")
    readme = (BENCHMARKS / "README.md").read_text()
    generated = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert report.render().strip() in generated
