"""Class-incremental runs are summarised with the class-incremental formulas (issue 14, item 1).

metrics.json of a class-incremental run holds `class_incremental_accuracy` and `task_test_sizes`;
its summary's Avg / Last are the average incremental and last accuracy on all seen classes, its
Transfer is null; tables show each protocol's columns. Hand-computed numbers and one real run of
the tiny CLIP through the runner.
"""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch
from test_methods import CONTEXT, TEMPLATE, _factory, _uint8_images, tiny_clip, to_tensor
from test_results import make_run

from cliplab.engine.runner import run_scenario
from cliplab.evaluation.metrics import protocol_summary
from cliplab.models import ClipBundle
from cliplab.results import RunResult, load_run, load_runs, save_run
from cliplab.scenarios.base import Scenario, Task
from cliplab.study.tables import headline_numbers, method_table, render_tables, results_table

torch.set_num_threads(1)

NAN = math.nan
CIL_MATRIX = [[90.0, 20.0, 10.0], [60.0, 80.0, 30.0], [40.0, 50.0, 70.0]]
SIZES = [100, 50, 50]
# acc_1 = 90; acc_2 = (100*60 + 50*80) / 150 = 66.67; acc_3 = (100*40 + 50*50 + 50*70) / 200 = 50.
STEPS = [90.0, 10000.0 / 150.0, 50.0]


def cil_run(seed: int = 0, **extra) -> RunResult:
    fields = {"protocol": "class_incremental", "class_incremental_accuracy": STEPS, "task_test_sizes": SIZES}
    return make_run(
        "finetune",
        seed,
        scenario="toy-cil",
        tasks=["t1", "t2", "t3"],
        accuracy_matrix=CIL_MATRIX,
        zero_shot={"imagenet": [60.0, 55.0, 50.0, 45.0]},
        retrieval={"coco": {"i2t_r1": [30.0, 28.0, 25.0, 20.0], "t2i_r1": [20.0, 19.0, 18.0, 17.0]}},
        extra={**fields, **extra},
    )


def test_class_incremental_summary_by_hand():
    summary = protocol_summary(CIL_MATRIX, "class_incremental", task_test_sizes=SIZES)
    assert summary["avg"] == pytest.approx((90.0 + 10000.0 / 150.0 + 50.0) / 3)  # 68.89, not the MTIL 50.0
    assert summary["last"] == pytest.approx(50.0)
    assert math.isnan(summary["transfer"])
    assert summary["bwt"] == pytest.approx(((40 - 90) + (50 - 80)) / 2)  # -40, from the task matrix
    assert summary["forgetting"] == pytest.approx(((90 - 40) + (80 - 50)) / 2)
    assert protocol_summary(CIL_MATRIX, "class_incremental", STEPS) == summary
    assert protocol_summary(CIL_MATRIX, "task_incremental")["avg"] == pytest.approx(50.0)  # MTIL: every cell
    with pytest.raises(ValueError, match="class_incremental_accuracy .* or task_test_sizes"):
        protocol_summary(CIL_MATRIX, "class_incremental")
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_summary(CIL_MATRIX, "domain_incremental")


def test_save_run_writes_the_class_incremental_summary(tmp_path):
    save_run(cil_run(), tmp_path)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["schema_version"] == 2 and data["protocol"] == "class_incremental"
    assert data["summary"]["transfer"] is None  # not defined for this protocol
    assert data["summary"]["avg"] == pytest.approx(sum(STEPS) / 3) and data["summary"]["last"] == pytest.approx(50.0)
    assert data["task_test_sizes"] == SIZES
    assert load_run(tmp_path).summary["avg"] == pytest.approx(sum(STEPS) / 3)


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"class_incremental_accuracy": [90.0, 66.0, 50.0]}, r"class_incremental_accuracy\[1\] = 66.0 but"),
        ({"class_incremental_accuracy": [90.0, 50.0]}, "T = 3 percentages"),
        ({"task_test_sizes": [100, 0, 50]}, "positive integers"),
        ({"task_test_sizes": [100.5, 50, 50]}, "positive integers"),
    ],
)
def test_inconsistent_class_incremental_records_are_rejected(extra, message):
    with pytest.raises(ValueError, match=message):
        cil_run(**extra)


def test_schema_1_files_load_with_the_class_incremental_summary(tmp_path):
    """Old files stored MTIL's Avg for class-incremental runs and no task_test_sizes: the summary is
    recomputed from their per-step accuracies; without those, Avg and Last are NaN with a warning."""
    data = cil_run().to_json_dict()
    data.pop("task_test_sizes")
    data.update(
        schema_version=1, summary={"transfer": 25.0, "avg": 50.0, "last": 53.3, "bwt": -40.0, "forgetting": 40.0}
    )
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps(data))
    summary = load_run(tmp_path / "old").summary
    assert summary["avg"] == pytest.approx(sum(STEPS) / 3) and summary["last"] == pytest.approx(50.0)
    assert math.isnan(summary["transfer"]) and summary["bwt"] == pytest.approx(-40.0)
    data.pop("class_incremental_accuracy")
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "metrics.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="older.*cannot be computed"):
        summary = load_run(tmp_path / "older").summary
    assert math.isnan(summary["avg"]) and math.isnan(summary["last"]) and summary["forgetting"] == 40.0
    frame = load_runs(tmp_path / "old")
    assert frame.loc[(frame["kind"] == "summary") & (frame["metric"] == "avg"), "value"].tolist() == pytest.approx(
        [sum(STEPS) / 3]
    )


def test_tables_show_each_protocols_columns(tmp_path):
    for seed in (0, 1):
        save_run(cil_run(seed), tmp_path / "toy-cil" / "finetune" / f"seed{seed}")
    save_run(make_run("lwf", 0), tmp_path / "mtil" / "lwf" / "seed0")
    chunks = render_tables(tmp_path, markdown=True).split("**")  # "**<scenario>**" heads each table
    tables = dict(zip(chunks[1::2], chunks[2::2]))
    cil_table, mtil_table = tables["toy-cil"], tables["mtil"]
    assert "| method | Avg | Last | BWT |" in cil_table and "| Transfer" not in cil_table
    assert "| `finetune` | 68.9 ± 0.0 | 50.0 ± 0.0 | -40.0 ± 0.0 |" in cil_table
    assert "untrained `zeroshot` row has BWT < 0" in cil_table
    assert "| method | Transfer | Avg | Last | BWT |" in mtil_table and "zeroshot" not in mtil_table
    only_cil = results_table(tmp_path, scenario="toy-cil")
    assert "Transfer" not in only_cil.columns and only_cil.loc[("toy-cil", "finetune"), "Avg"] == "68.9 ± 0.0"
    mixed = results_table(tmp_path)  # both protocols: every column, undefined cells empty
    assert mixed.loc[("toy-cil", "finetune"), "Transfer"] == "" and mixed.loc[("mtil", "lwf"), "Transfer"] == "30.0"
    df = load_runs(tmp_path)
    df["label"] = df["method"]
    table = method_table(df, quantities=("transfer", "avg")).unstack("scenario")
    assert table.loc["finetune", ("transfer", "toy-cil")] == ""
    numbers = headline_numbers([cil_run(0), cil_run(1)])
    assert "transfer" not in numbers and numbers["avg"] == pytest.approx(sum(STEPS) / 3)
    assert "transfer" in headline_numbers([make_run()])


def _unequal_cil_scenario() -> Scenario:
    """Two tasks with 10 and 6 test images, so the test-size weighting matters."""
    tasks = []
    for t, (names, n_test) in enumerate(((["cat", "dog"], 10), (["car", "bus"], 6))):
        labels = [i % 2 for i in range(16)]
        train = _factory(_uint8_images(16, 10 + t), labels, names)
        test = _factory(_uint8_images(n_test, 20 + t), labels[:n_test], names)
        tasks.append(Task(f"task{t}", names, TEMPLATE, [TEMPLATE], train, test))
    return Scenario(name="fake-cil", protocol="class_incremental", tasks=tasks)


def test_a_real_class_incremental_run_records_sizes_and_the_identity(tmp_path):
    """The tiny CLIP fine-tuned through two tasks: class_incremental_accuracy[t] equals
    Σ_{j<=t} n_j A[t][j] / Σ_{j<=t} n_j, and the summary is built from it."""
    tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT)
    bundle = ClipBundle(tiny_clip(), tokenizer, to_tensor, to_tensor, "tiny", None)
    settings = {"steps_per_task": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 0, "checkpoint_every": 0}
    settings.update(progress=False, device="cpu", eval_batch_size=16, precision="fp32")
    run_scenario(_unequal_cil_scenario(), "finetune", tmp_path, bundle=bundle, overrides=settings)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["protocol"] == "class_incremental" and data["task_test_sizes"] == [10, 6]
    A, steps, n = data["accuracy_matrix"], data["class_incremental_accuracy"], data["task_test_sizes"]
    assert steps[0] == pytest.approx(A[0][0], abs=1e-9)
    assert steps[1] == pytest.approx((n[0] * A[1][0] + n[1] * A[1][1]) / (n[0] + n[1]), abs=1e-9)
    assert data["summary"]["avg"] == pytest.approx(sum(steps) / 2) and data["summary"]["last"] == steps[1]
    assert data["summary"]["transfer"] is None
    assert data["summary"]["bwt"] == pytest.approx(A[1][0] - A[0][0])
