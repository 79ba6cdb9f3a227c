"""Results layout: round trip, atomicity, validation, tidy loading and seed summaries."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliplab import results
from cliplab.evaluation.metrics import SUMMARY_KEYS
from cliplab.results import (
    RunResult,
    append_loss_log,
    format_summary,
    load_loss_log,
    load_run,
    load_runs,
    save_run,
    summary_table,
)

TASKS = ["aircraft", "dtd"]
MATRIX = [[40.0, 30.0], [20.0, 60.0]]  # transfer 30, avg 37.5, last 40, bwt -20, forgetting 20


def make_run(method: str = "lwf", seed: int = 0, last_zero_shot: float = 50.0, **overrides) -> RunResult:
    fields = dict(
        method=method,
        scenario="mtil",
        model="toy-vit",
        seed=seed,
        tasks=TASKS,
        accuracy_matrix=MATRIX,
        config={"lr": 1e-5, "distill": {"weight": 1.0}},
        zero_shot={"imagenet": [60.0, 55.0, last_zero_shot]},
        retrieval={"coco": {"i2t_r1": [30.0, 28.0, 25.0], "t2i_r1": [20.0, 19.0, 18.0]}},
    )
    fields.update(overrides)
    return RunResult(**fields)


def test_round_trip_and_summary_filled(tmp_path):
    run = make_run(accuracy_matrix=np.array(MATRIX), extra={"notes": "toy"})
    save_run(run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.summary == pytest.approx(
        {"transfer": 30.0, "avg": 37.5, "last": 40.0, "bwt": -20.0, "forgetting": 20.0}
    )
    assert loaded == RunResult(**{**run.__dict__, "summary": loaded.summary})
    assert loaded.accuracy_matrix == MATRIX and loaded.extra == {"notes": "toy"}
    assert load_run(tmp_path / "run" / "metrics.json") == loaded
    csv = pd.read_csv(tmp_path / "run" / "accuracy_matrix.csv", index_col="after_task")
    assert list(csv.columns) == TASKS and list(csv.index) == TASKS
    assert csv.to_numpy().tolist() == MATRIX


def test_nan_round_trips_as_null(tmp_path):
    run = make_run(tasks=["only"], accuracy_matrix=[[70.0]], zero_shot={"p": [60.0, 50.0]}, retrieval={})
    save_run(run, tmp_path)
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert raw["summary"]["transfer"] is None and raw["summary"]["last"] == 70.0
    loaded = load_run(tmp_path)
    assert math.isnan(loaded.summary["bwt"]) and loaded == RunResult(**{**run.__dict__, "summary": loaded.summary})


def test_failed_write_keeps_previous_metrics(tmp_path, monkeypatch):
    save_run(make_run(seed=1), tmp_path)
    before = (tmp_path / "metrics.json").read_text()

    real_write = Path.write_text

    def broken_write(path, text, *args, **kwargs):
        real_write(path, text[: len(text) // 2], *args, **kwargs)
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(Path, "write_text", broken_write)
    with pytest.raises(RuntimeError, match="mid-write"):
        save_run(make_run(seed=2), tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "metrics.json").read_text() == before
    assert load_run(tmp_path).seed == 1
    assert sorted(os.listdir(tmp_path)) == ["accuracy_matrix.csv", "metrics.json"]  # no temp files left


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"zero_shot": {"imagenet": [60.0, 55.0]}}, r"zero_shot\['imagenet'\] has 2 entries; expected T \+ 1 = 3"),
        ({"retrieval": {"coco": {"i2t_r1": [1.0]}}}, r"retrieval\['coco'\]\['i2t_r1'\] has 1 entries"),
        ({"accuracy_matrix": [[40.0, 30.0]]}, "T x T = 2 x 2"),
        ({"accuracy_matrix": [[40.0, 30.0], [20.0]]}, "T x T"),
        ({"accuracy_matrix": [[0.4, 130.0], [20.0, 60.0]]}, r"\[0, 100\]"),
        ({"tasks": ["a", "a"]}, "distinct"),
        ({"seed": "0"}, "seed must be an integer"),
        ({"method": ""}, "method must be a non-empty string"),
        ({"summary": {"avg": 1.0}}, "summary must contain"),
        ({"zero_shot": {"imagenet": [60.0, "x", 1.0]}}, "list of numbers"),
    ],
)
def test_validation_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_run(**overrides)


def test_save_rejects_mutated_or_unserialisable_results(tmp_path):
    run = make_run()
    run.tasks = ["a", "b", "c"]
    with pytest.raises(ValueError, match="T x T = 3 x 3"):
        save_run(run, tmp_path)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_run(make_run(config={"path": object()}), tmp_path)
    with pytest.raises(ValueError, match="pass summary="):
        save_run(make_run(accuracy_matrix=[[40.0, None], [20.0, 60.0]]), tmp_path)
    assert not (tmp_path / "metrics.json").exists()
    nan = float("nan")
    partial = make_run(accuracy_matrix=[[40.0, nan], [20.0, 60.0]], summary=dict.fromkeys(SUMMARY_KEYS, nan))
    save_run(partial, tmp_path)
    assert load_run(tmp_path) == partial


def _three_runs(root):
    # lwf: seeds 0 and 1; zscl: seed 0 -> 3 runs over 2 seeds.
    save_run(make_run("lwf", 0, last_zero_shot=50.0), root / "lwf" / "seed0")
    save_run(
        make_run("lwf", 1, last_zero_shot=40.0, accuracy_matrix=[[40.0, 30.0], [30.0, 80.0]]), root / "lwf" / "seed1"
    )
    save_run(make_run("zscl", 0, last_zero_shot=58.0), root / "zscl" / "seed0")


def test_load_runs_tidy_rows(tmp_path):
    _three_runs(tmp_path)
    df = load_runs(tmp_path, config_keys=("distill.weight",))
    assert list(df.columns[:12]) == results.TIDY_COLUMNS and "distill.weight" in df
    assert set(df["protocol"]) == {"task_incremental"}  # make_run records none: the default
    assert sorted(df["run"].unique()) == ["lwf/seed0", "lwf/seed1", "zscl/seed0"]
    # per run: 4 accuracy + 3 zero-shot + 2 x 3 retrieval + 5 summary = 18 rows.
    assert len(df) == 3 * 18
    assert df.groupby("kind").size().to_dict() == {"accuracy": 12, "retrieval": 18, "summary": 15, "zero_shot": 9}
    cell = df[(df.run == "lwf/seed1") & (df.kind == "accuracy") & (df.step == 2) & (df.task == "aircraft")]
    assert cell["value"].tolist() == [30.0]
    zs = df[(df.run == "zscl/seed0") & (df.kind == "zero_shot")].sort_values("step")
    assert zs["value"].tolist() == [60.0, 55.0, 58.0] and zs["step"].tolist() == [0, 1, 2]
    assert set(df["seed"]) == {0, 1} and df["value"].dtype == float
    same = load_runs([tmp_path / "lwf" / "seed0", tmp_path / "lwf" / "seed1", tmp_path / "zscl"])
    assert len(same) == len(df) and same["run"].nunique() == 3


def test_summary_table_mean_std_over_seeds(tmp_path):
    _three_runs(tmp_path)
    table = summary_table(load_runs(tmp_path))
    lwf = table.loc[("lwf", "mtil")]
    # last: seed0 (20 + 60) / 2 = 40, seed1 (30 + 80) / 2 = 55 -> mean 47.5, sample std 15 / sqrt(2).
    assert lwf[("last", "mean")] == pytest.approx(47.5)
    assert lwf[("last", "std")] == pytest.approx(15.0 / math.sqrt(2.0))
    assert lwf[("last", "n")] == 2
    # final zero-shot 50 and 40 -> 45 ± 7.07; change from 60 -> -15.
    assert lwf[("zero_shot/imagenet", "mean")] == pytest.approx(45.0)
    assert lwf[("zero_shot/imagenet", "std")] == pytest.approx(math.sqrt(50.0))
    assert lwf[("zero_shot_delta/imagenet", "mean")] == pytest.approx(-15.0)
    assert lwf[("retrieval/coco/i2t_r1", "mean")] == pytest.approx(25.0)
    assert lwf[("retrieval_delta/coco/t2i_r1", "mean")] == pytest.approx(-2.0)
    zscl = table.loc[("zscl", "mtil")]
    assert zscl[("zero_shot/imagenet", "mean")] == 58.0 and math.isnan(zscl[("zero_shot/imagenet", "std")])
    text = format_summary(table)
    assert text.loc[("lwf", "mtil"), "last"] == "47.5 ± 10.6" and text.loc[("zscl", "mtil"), "last"] == "40.0"


def test_summary_table_rejects_duplicate_seeds(tmp_path):
    _three_runs(tmp_path)
    save_run(make_run("lwf", 0), tmp_path / "lwf" / "seed0-rerun")
    with pytest.raises(ValueError, match="same seed"):
        summary_table(load_runs(tmp_path))


def test_load_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such"):
        load_runs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        load_runs(tmp_path)


def test_append_loss_log_header_once_and_survives(tmp_path):
    append_loss_log(tmp_path, {"step": 0, "loss": 2.5, "kd": 0.1})
    append_loss_log(tmp_path, [{"step": 1, "loss": 2.0, "kd": 0.2}, {"step": 2, "loss": 1.5}])
    lines = (tmp_path / "loss_log.csv").read_text().splitlines()
    assert lines == ["step,loss,kd", "0,2.5,0.1", "1,2.0,0.2", "2,1.5,"]
    log = load_loss_log(tmp_path)
    assert log["loss"].tolist() == [2.5, 2.0, 1.5] and math.isnan(log["kd"].iloc[2])
    with pytest.raises(ValueError, match="unknown keys"):
        append_loss_log(tmp_path, {"step": 3, "acc": 1.0})


def test_loss_log_recovers_from_a_cut_line(tmp_path):
    append_loss_log(tmp_path, {"step": 0, "loss": 2.5})
    with open(tmp_path / "loss_log.csv", "a") as handle:
        handle.write("1,2.")  # killed mid-line: "2." may be a truncated "2.25"
    assert load_loss_log(tmp_path)["step"].tolist() == [0]
    append_loss_log(tmp_path, {"step": 2, "loss": 1.5})
    log = load_loss_log(tmp_path)
    assert log["step"].tolist() == [0, 2] and log["loss"].tolist() == [2.5, 1.5]


def test_summary_table_without_curves(tmp_path):
    save_run(make_run(zero_shot={}, retrieval={}), tmp_path / "a")
    save_run(make_run(seed=1, zero_shot={}, retrieval={}), tmp_path / "b")
    table = summary_table(load_runs(tmp_path))
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == ["transfer", "avg", "last", "bwt", "forgetting"]
    assert table.loc[("lwf", "mtil"), ("avg", "std")] == 0.0
