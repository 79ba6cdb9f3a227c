"""The real benchmarks (CIFAR-100 CIL 10/20/50, MTIL Order I/II) end to end on tiny fake datasets.

The datasets are written once per session by `fakedata.write_mtil_root` in their real on-disk formats
(CIFAR pickles, torchvision layouts) with the real class lists, one 8×8 image per class and split.
The registered scenarios run unmodified (real class lists, full MTIL template ensembles) with ToyCLIP;
only what costs time is cut: one step (or one epoch of ten images) per task, two evaluation images
per task, and, for the full sequences, image-tower training, so the zero-shot classifiers (the
dominant CPU cost: one text-encoder pass per class × template, ~8,700 prompts for MTIL) are built
once and cached (Order II reuses Order I's). The ZSCL run with every scenario option trains the
whole model on the first two CIFAR-100 tasks.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from fakedata import patch_checksums, write_cifar100, write_coco_karpathy, write_mtil_root, write_reference_data
from PIL import Image

import cliplab.evaluation.evaluator as evaluation
from cliplab.cli import main as cli_main
from cliplab.data import CIFAR100_CLASS_ORDER, MTIL_ORDER_1, MTIL_ORDER_2, DatasetNotFoundError, load_metadata
from cliplab.data.errors import CorruptImageWarning
from cliplab.engine.runner import build_config, run_scenario
from cliplab.evaluation import RETRIEVAL_KEYS, retrieval_scores
from cliplab.evaluation.embed import encode_texts, image_features
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.evaluation.metrics import SUMMARY_KEYS
from cliplab.models import load_model
from cliplab.results import load_run
from cliplab.scenarios import ClassSubset, get_scenario
from cliplab.scenarios.published import CIL_TEMPLATE

torch.set_num_threads(1)

MTIL_CLASSES = {
    "aircraft": 100,
    "caltech101": 101,
    "cifar100": 100,
    "dtd": 47,
    "eurosat": 10,
    "flowers102": 102,
    "food101": 101,
    "mnist": 10,
    "oxford_pet": 37,
    "stanford_cars": 196,
    "sun397": 397,
}
FAST = ["batch_size=4", "max_eval_images=2", "progress=false", "checkpoint_every=0", "keep_checkpoints=last"]
CONTRACT_KEYS = {
    "schema_version",
    "method",
    "scenario",
    "model",
    "seed",
    "tasks",
    "accuracy_matrix",
    "config",
    "summary",
    "zero_shot",
    "retrieval",
    "protocol",
    "pretrained",
    "zero_shot_row",
    "seconds",
}


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    """All 11 MTIL datasets + CIFAR-10 + COCO Karpathy, one image per class and split (~1 s to write)."""
    return write_mtil_root(tmp_path_factory.mktemp("data"), per_class=1)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    return write_reference_data(tmp_path_factory.mktemp("reference"))


@pytest.fixture(autouse=True)
def fake_checksums(monkeypatch, fake_root):
    """CIFAR and Flowers102 files are MD5-checked against the official release: expect the fakes' sums."""
    patch_checksums(monkeypatch, fake_root)


@pytest.fixture
def classifier_widths(monkeypatch) -> list[int]:
    """Number of classes of every zero-shot classification the evaluator makes, in order."""
    widths: list[int] = []
    original = evaluation.accuracy_from_logits

    def spy(logits, targets, topk):
        widths.append(logits.shape[1])
        return original(logits, targets, topk)

    monkeypatch.setattr(evaluation, "accuracy_from_logits", spy)
    return widths


def _metrics(folder: Path, trained: bool = True) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) >= CONTRACT_KEYS, sorted(CONTRACT_KEYS - set(metrics))
    assert set(metrics["summary"]) == set(SUMMARY_KEYS)
    assert all(v is None or math.isfinite(v) for v in metrics["summary"].values())
    assert (folder / "accuracy_matrix.csv").exists() and (folder / "loss_log.csv").exists() == trained
    load_run(folder)  # the results reader accepts it
    return metrics


def _check_matrix(metrics: dict, n_tasks: int) -> None:
    matrix = metrics["accuracy_matrix"]
    assert len(matrix) == n_tasks and all(len(row) == n_tasks for row in matrix)
    assert len(metrics["zero_shot_row"]) == n_tasks
    for value in [v for row in matrix for v in row] + metrics["zero_shot_row"]:
        assert value is not None and math.isfinite(value) and 0.0 <= value <= 100.0


def _loss_rows(folder: Path) -> list[dict]:
    with open(folder / "loss_log.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["term"] == "total"]


# ----------------------------------------------------------------------------- scenario objects


@pytest.mark.parametrize("name, increment", [("cifar100-cil-10", 10), ("cifar100-cil-20", 5), ("cifar100-cil-50", 2)])
def test_cifar_cil_tasks_follow_zscl_class_order(fake_root, name, increment):
    scenario = get_scenario(name, root=fake_root)
    names = list(load_metadata("cifar100").classnames)
    assert scenario.protocol == "class_incremental" and len(scenario.tasks) == 100 // increment
    assert scenario.task_names[:2] == [
        f"classes_00-{increment - 1:02d}",
        f"classes_{increment:02d}-{2 * increment - 1:02d}",
    ]
    for k, task in enumerate(scenario.tasks):
        ids = CIFAR100_CLASS_ORDER[k * increment : (k + 1) * increment]
        assert task.classnames == [names[c] for c in ids]
        assert task.train_template == CIL_TEMPLATE and task.templates == [CIL_TEMPLATE]
    for task in (scenario.tasks[0], scenario.tasks[-1]):  # the data behind the names: one image per class
        k = scenario.tasks.index(task)
        for factory in (task.train_data, task.test_data):
            data = factory(None)
            assert isinstance(data, ClassSubset) and sorted(data.targets) == list(range(increment))
            original = [data.dataset.targets[i] for i in data.index]
            assert original == [CIFAR100_CLASS_ORDER[k * increment + t] for t in data.targets]
    seen, offsets = scenario.classes_up_to(1)
    assert seen == [names[c] for c in CIFAR100_CLASS_ORDER[: 2 * increment]] and offsets == [0, increment]


@pytest.mark.parametrize("name, order", [("mtil-order1", MTIL_ORDER_1), ("mtil-order2", MTIL_ORDER_2)])
def test_mtil_tasks_are_the_eleven_datasets_with_their_own_classes(fake_root, name, order):
    scenario = get_scenario(name, root=fake_root)
    assert scenario.protocol == "task_incremental" and scenario.task_names == order
    for task in scenario.tasks:
        meta = load_metadata(task.name)
        assert task.classnames == list(meta.classnames) and task.n_classes == MTIL_CLASSES[task.name]
        assert task.train_template == meta.templates[0] and task.templates == list(meta.templates)
        for data in (task.train_data(None), task.test_data(None)):  # local labels of the dataset's own classes
            assert len(data) > 0 and set(data.targets) <= set(range(task.n_classes))
    subset = get_scenario(name, root=fake_root, datasets=["mnist", "eurosat"])
    assert subset.task_names == [d for d in order if d in ("mnist", "eurosat")]


def test_zscl_defaults_are_recorded(fake_root):
    mtil = build_config(get_scenario("mtil-order1", root=fake_root), "icarl", None, None)
    assert (mtil.lr, mtil.steps_per_task, mtil.batch_size, mtil.warmup_steps) == (1e-5, 1000, 64, 100)
    assert mtil.epochs_per_task is None and mtil.label_smoothing == 0.2 and mtil.seed == 42
    assert mtil.lr_per_task == {"aircraft": 5e-5, "mnist": 5e-5}
    assert [mtil.lr_for(t) for t in ("aircraft", "mnist", "sun397")] == [5e-5, 5e-5, 1e-5]
    assert mtil.method == {"memory_size": 10000, "max_candidates": 30000, "variant": "zscl"}
    cil = build_config(get_scenario("cifar100-cil-10", root=fake_root), "zscl", None, None)
    assert (cil.lr, cil.batch_size, cil.epochs_per_task, cil.warmup_steps) == (7.1e-6, 64, 1.0, 30)
    assert cil.method == {"weight": 5.0, "avg_freq": 10, "final_snapshot": "on_interval", "l2": 0.0}
    assert build_config(get_scenario("cifar100-cil-50", root=fake_root), "lwf", ["lr=1e-3"], None).lr == 1e-3


# ----------------------------------------------------------------------------- missing data


def test_missing_dataset_error_names_the_path(fake_root, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        get_scenario("cifar100-cil-20", root=empty)
    assert str(empty / "cifar-100-python") in str(info.value)
    partial = tmp_path / "partial"  # every dataset but SUN397 (the last of Order I, in the middle of Order II)
    partial.mkdir()
    for entry in fake_root.iterdir():
        if entry.name != "SUN397":
            (partial / entry.name).symlink_to(entry)
    for name in ("mtil-order1", "mtil-order2"):
        with pytest.raises(DatasetNotFoundError) as info:
            get_scenario(name, root=partial)
        assert str(partial / "SUN397") in str(info.value) and "ClassName.txt" in str(info.value)
    with pytest.raises(ValueError, match="pass root="):
        get_scenario("mtil-order1")
    code = cli_main(
        [
            "run",
            "--scenario",
            "cifar100-cil-10",
            "--method",
            "finetune",
            "--root",
            str(empty),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2 and str(empty / "cifar-100-python") in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.json").exists()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_cifar100_cil_10_all_tasks_through_the_cli(fake_root, tmp_path, capsys, classifier_widths):
    out = tmp_path / "run"
    sets = FAST + ["batch_size=5", "train_mode=image"]
    code = cli_main(
        [
            "run",
            "--scenario",
            "cifar100-cil-10",
            "--method",
            "finetune",
            "--root",
            str(fake_root),
            "--out",
            str(out),
            *[f"--set={s}" for s in sets],
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == str(out) and set(printed["summary"]) == set(SUMMARY_KEYS)
    metrics = _metrics(out)
    assert (metrics["scenario"], metrics["method"], metrics["model"], metrics["seed"]) == (
        "cifar100-cil-10",
        "finetune",
        "toyclip",
        42,
    )
    assert metrics["protocol"] == "class_incremental"
    assert metrics["tasks"] == [f"classes_{10 * k:02d}-{10 * k + 9:02d}" for k in range(10)]
    _check_matrix(metrics, 10)
    seen = metrics["class_incremental_accuracy"]
    assert len(seen) == 10 and all(0.0 <= v <= 100.0 for v in seen)
    assert metrics["task_test_sizes"] == [2] * 10  # max_eval_images=2 of the 10 (one per class) evaluated
    matrix = metrics["accuracy_matrix"]
    assert seen == pytest.approx([sum(matrix[t][: t + 1]) / (t + 1) for t in range(10)], abs=1e-9)
    summary = metrics["summary"]  # the class-incremental formulas, not MTIL's
    assert summary["avg"] == pytest.approx(sum(seen) / 10) and summary["last"] == seen[-1]
    assert summary["transfer"] is None
    config = metrics["config"]
    assert (config["lr"], config["epochs_per_task"], config["warmup_steps"], config["label_smoothing"]) == (
        7.1e-6,
        1.0,
        30,
        0.2,
    )
    assert config["batch_size"] == 5 and config["method"] == {}
    # One epoch of each task's 10 training images at batch 5 = 2 steps, tasks in order.
    steps = [(r["task"], int(r["step"])) for r in _loss_rows(out)]
    assert steps == [(t, s) for t in metrics["tasks"] for s in (1, 2)]
    # CIL: after task i, task j is classified among the classes of tasks 0..max(i, j).
    expected = [10 * (max(i, j) + 1) for i in range(-1, 10) for j in range(10)]
    assert classifier_widths == expected
    assert (out / "checkpoints" / "task_9.safetensors").exists()
    assert not (out / "checkpoints" / "task_8.safetensors").exists()  # keep_checkpoints=last


@pytest.fixture(scope="module")
def mtil_order1_run(fake_root, module_tmp_path):
    """MTIL Order I, all 11 tasks, one finetune step each; returns (run folder, classifier widths)."""
    out = module_tmp_path
    widths: list[int] = []
    original = evaluation.accuracy_from_logits
    with pytest.MonkeyPatch.context() as patch:
        patch_checksums(patch, fake_root)
        patch.setattr(
            evaluation,
            "accuracy_from_logits",
            lambda logits, y, topk: widths.append(logits.shape[1]) or original(logits, y, topk),
        )
        run_scenario(
            "mtil-order1",
            "finetune",
            out,
            scenario_options={"root": fake_root},
            overrides=FAST + ["steps_per_task=1", "train_mode=image"],
        )
    return out, widths


@pytest.mark.slow
def test_mtil_order1_all_tasks_task_incremental(mtil_order1_run):
    out, widths = mtil_order1_run
    metrics = _metrics(out)
    assert (metrics["scenario"], metrics["protocol"]) == ("mtil-order1", "task_incremental")
    assert metrics["tasks"] == MTIL_ORDER_1
    _check_matrix(metrics, 11)
    assert metrics["zero_shot"] == {} and metrics["retrieval"] == {}
    assert "class_incremental_accuracy" not in metrics
    # Every evaluation (before training + after each task) classifies each dataset among its own classes.
    assert widths == [MTIL_CLASSES[d] for d in MTIL_ORDER_1] * 12
    config = metrics["config"]
    assert (config["lr"], config["warmup_steps"], config["label_smoothing"], config["seed"]) == (1e-5, 100, 0.2, 42)
    assert config["lr_per_task"] == {"aircraft": 5e-5, "mnist": 5e-5}
    assert (config["steps_per_task"], config["batch_size"], config["epochs_per_task"]) == (1, 4, None)
    rows = _loss_rows(out)
    assert [(r["task"], int(r["step"])) for r in rows] == [(d, 1) for d in MTIL_ORDER_1]
    lr = {r["task"]: float(r["lr"]) for r in rows}  # after the first of 100 warm-up steps
    assert lr["aircraft"] == pytest.approx(5 * lr["sun397"]) and lr["mnist"] == pytest.approx(lr["aircraft"])
    assert len({round(lr[d] / 1e-5, 9) for d in MTIL_ORDER_1 if d not in ("aircraft", "mnist")}) == 1


@pytest.mark.slow
def test_mtil_order2_all_tasks_zero_shot_matches_order1_per_dataset(
    fake_root, tmp_path, mtil_order1_run, classifier_widths
):
    out = tmp_path / "run"
    result = run_scenario("mtil-order2", "zeroshot", out, scenario_options={"root": fake_root}, overrides=FAST)
    metrics = _metrics(out, trained=False)  # zero-shot: nothing trained, no loss log
    assert metrics["tasks"] == MTIL_ORDER_2 == result.tasks and metrics["protocol"] == "task_incremental"
    _check_matrix(metrics, 11)
    assert classifier_widths == [MTIL_CLASSES[d] for d in MTIL_ORDER_2] * 12
    # Zero-shot never changes the model: every row is the before-training row.
    assert all(row == metrics["zero_shot_row"] for row in metrics["accuracy_matrix"])
    # Task-incremental: a dataset's accuracy does not depend on which datasets come before it.
    order1 = _metrics(mtil_order1_run[0])
    before1 = dict(zip(order1["tasks"], order1["zero_shot_row"]))
    assert dict(zip(metrics["tasks"], metrics["zero_shot_row"])) == before1
    assert metrics["config"]["lr_per_task"] == {"aircraft": 5e-5, "mnist": 5e-5}


def test_zscl_with_probes_retrieval_and_reference_data(fake_root, reference, tmp_path, classifier_widths):
    images, captions = reference
    options = {
        "root": str(fake_root),
        "probes": ["cifar10"],
        "retrieval": "coco_karpathy",
        "reference_images": str(images),
        "reference_captions": str(captions),
    }
    scenario = get_scenario("cifar100-cil-10", **options)
    assert scenario.reference is not None and len(scenario.reference.captions) == 4
    assert len(scenario.reference.images(None)) == 6
    assert [p.name for p in scenario.probes] == ["cifar10"] and scenario.probes[0].classnames[3] == "cat"
    # Two test images with 2 and 3 captions: unequal caption lists, as in COCO (5 to 7 per image).
    assert scenario.retrieval[0].captions[0] == "a dog runs"
    assert scenario.retrieval[0].text_image_index.tolist() == [0, 0, 1, 1, 1]
    out = tmp_path / "run"
    run_scenario(
        "cifar100-cil-10", "zscl", out, scenario_options=options, overrides=FAST + ["batch_size=10", "max_tasks=2"]
    )
    metrics = _metrics(out)
    assert metrics["tasks"] == ["classes_00-09", "classes_10-19"]
    _check_matrix(metrics, 2)
    assert metrics["config"]["method"] == {  # ZSCL's CIL settings
        "weight": 5.0,
        "avg_freq": 10,
        "final_snapshot": "on_interval",
        "l2": 0.0,
    }
    assert metrics["config"]["train_mode"] == "whole" and metrics["config"]["lr"] == 7.1e-6
    assert list(metrics["zero_shot"]) == ["cifar10"] and len(metrics["zero_shot"]["cifar10"]) == 3
    assert list(metrics["retrieval"]) == ["coco_karpathy"]
    assert set(metrics["retrieval"]["coco_karpathy"]) == set(RETRIEVAL_KEYS)
    curves = list(metrics["zero_shot"].values()) + list(metrics["retrieval"]["coco_karpathy"].values())
    assert all(len(c) == 3 and all(0.0 <= v <= 100.0 for v in c) for c in curves)
    # Per evaluation: the 2 task columns among the seen classes, then the 10-class CIFAR-10 probe.
    assert classifier_widths == [10, 20, 10, 10, 20, 10, 20, 20, 10]
    with open(out / "loss_log.csv", newline="") as handle:
        terms = {row["term"] for row in csv.DictReader(handle)}
    assert {"ce", "kd_i2t", "kd_t2i", "total"} <= terms and "l2" not in terms  # no L2 in ZSCL's CIL configs


def test_a_retrieval_image_failing_after_screening_is_left_out_with_its_captions(tmp_path, monkeypatch):
    """COCO's test split here: a.jpg (2 captions) and c.jpg (3). c.jpg is damaged after the scenario
    was built (screening passed): the evaluation warns, leaves c.jpg and its 3 captions out, and scores
    a.jpg against its own 2 captions, as a probe holding only a.jpg would."""
    root = tmp_path / "data"
    write_cifar100(root)
    write_coco_karpathy(root)
    patch_checksums(monkeypatch, root)
    scenario = get_scenario("cifar100-cil-10", root=str(root), retrieval="coco_karpathy")
    probe = scenario.retrieval[0]
    assert probe.text_image_index.tolist() == [0, 0, 1, 1, 1]
    bundle = load_model("toyclip")
    config = build_config(scenario, "zeroshot", None, 0)
    both = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config).probe_retrieval(bundle.model)
    evaluator = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)  # opened, screened
    (root / "val2014" / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg any more")
    with pytest.warns(CorruptImageWarning, match="c.jpg"):
        scores = evaluator.probe_retrieval(bundle.model)["coco_karpathy"]
    image = bundle.eval_transform(Image.open(root / "val2014" / "a.jpg").convert("RGB"))[None]
    alone = retrieval_scores(
        image_features(bundle.model, image)[0],
        encode_texts(bundle.model, bundle.tokenizer, probe.captions[:2]),
        torch.tensor([0, 0]),
    )
    assert scores == pytest.approx(alone) and scores != both["coco_karpathy"]
    # Damaged before the evaluator opens the set: screened out there, with the same result.
    with pytest.warns(CorruptImageWarning, match="c.jpg"):
        reopened = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)
    assert reopened.probe_retrieval(bundle.model)["coco_karpathy"] == pytest.approx(alone)
    assert scores["t2i_r1"] == scores["i2t_r1"] == 100.0  # one image left, with only its own captions
