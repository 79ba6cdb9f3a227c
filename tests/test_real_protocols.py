"""The published open-domain and online scenarios (odcl-order1/2, cifar100-si-blurry) end to end on
the fake datasets of `fakedata` in their real on-disk formats (one 8x8 image per class and split).

What costs time is cut as in `test_real_scenarios`: a subset of the MTIL datasets for ODCL (the
real class lists and template ensembles), a few steps, two evaluation images per set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from fakedata import patch_checksums, write_mtil_root

from cliplab.checkpoints import load_state_dict
from cliplab.data import MTIL_ORDER_2, load_metadata
from cliplab.engine.runner import build_config, run_scenario
from cliplab.scenarios import get_scenario
from cliplab.scenarios.published import CIL_TEMPLATE

torch.set_num_threads(1)

FAST = ["batch_size=4", "max_eval_images=2", "progress=false", "checkpoint_every=0", "keep_checkpoints=last"]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    return write_mtil_root(tmp_path_factory.mktemp("data"), per_class=1)


@pytest.fixture(autouse=True)
def fake_checksums(monkeypatch, fake_root):
    patch_checksums(monkeypatch, fake_root)


def test_odcl_orders_are_coleclips_and_keep_each_datasets_classes(fake_root):
    scenario = get_scenario("odcl-order2", root=fake_root)
    assert scenario.protocol == "open_domain_cil" and scenario.task_names == list(MTIL_ORDER_2)
    for task in scenario.tasks:
        assert task.classnames == list(load_metadata(task.name).classnames)
    til = get_scenario("odcl-order1", root=fake_root, setting="til", datasets=["eurosat", "cifar100"])
    assert til.protocol == "open_domain_til" and til.task_names == ["cifar100", "eurosat"]
    assert build_config(til, "coleclip", None, None).lr == 1e-3  # CoLeCLIP's own recipe
    assert build_config(til, "finetune", None, None).steps_per_task == 1000  # MTIL's budget for every method


def test_odcl_order1_runs_coleclip_with_a_shared_class_name(fake_root, tmp_path):
    """CIFAR-100 and EuroSAT share the name "forest" (the MTIL lists' 1,201 names are 1,176 distinct, as
    CoLeCLIP counts): one label of the CIL union, learned by both tasks in CoLeCLIP's vocabulary."""
    cifar, eurosat = load_metadata("cifar100").classnames, load_metadata("eurosat").classnames
    assert set(cifar) & set(eurosat) == {"forest"}
    options = {"root": str(fake_root), "datasets": ["cifar100", "eurosat"]}
    run_scenario(
        "odcl-order1", "coleclip", tmp_path, pretrained="random", seed=0,
        overrides=FAST + ["steps_per_task=2"], scenario_options=options,
    )  # fmt: skip
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["protocol"] == "open_domain_cil" and data["tasks"] == ["cifar100", "eurosat"]
    for setting in ("til", "cil"):
        summary = data["odcl"][setting]["summary"]
        assert set(summary) == {"transfer", "avg", "last", "seen_avg"} and all(
            math.isfinite(v) for v in summary.values()
        )
    assert data["summary"]["seen_avg"] == pytest.approx(data["odcl"]["cil"]["summary"]["seen_avg"])
    assert data["parameters"]["trainable"] < data["parameters"]["total"] / 10
    state = load_state_dict(tmp_path / "checkpoints" / "task_1.safetensors")
    names = list(dict.fromkeys([*cifar, *eurosat]))
    assert len(names) == 109 and state["class_scorer.owners"][names.index("forest")].tolist() == [True, True]
    assert state["class_scorer.owners"].sum() == 110  # 100 + 10 (task, class) pairs, one name twice


def test_cifar100_si_blurry_is_sits_stream(fake_root, tmp_path):
    scenario = get_scenario("cifar100-si-blurry", root=fake_root, stream_seed=1)
    assert scenario.protocol == "online" and scenario.task_names == [f"task_{t}" for t in range(1, 6)]
    assert scenario.stream.info["n_percent"] == 50 and scenario.stream.info["m_percent"] == 10
    assert sorted(scenario.stream.classnames) == sorted(load_metadata("cifar100").classnames)  # T = 5 keeps all 100
    assert scenario.tasks[0].train_template == CIL_TEMPLATE
    config = build_config(scenario, "sit", None, None)
    assert (config.batch_size, config.online_iter, config.eval_period, config.lr) == (64, 3, 1000, 5e-4)
    assert build_config(scenario, "er", None, None).method == {}  # ER's own 2,000-sample memory
    run_scenario(
        "cifar100-si-blurry", "sit", tmp_path, pretrained="random", seed=1,
        overrides=FAST + ["max_tasks=2", "eval_period=8"], scenario_options={"root": str(fake_root)},
    )  # fmt: skip
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["protocol"] == "online" and data["stream"]["seed"] == 1
    assert data["anytime"]["samples"] == sorted(data["anytime"]["samples"]) and data["anytime"]["accuracy"]
    assert data["summary"]["a_auc"] == pytest.approx(
        sum(data["anytime"]["accuracy"]) / len(data["anytime"]["accuracy"])
    )
