"""The parameter-efficient methods on the published scenarios, run on the fake datasets of
tests/fakedata.py in their real on-disk formats (see tests/test_real_scenarios.py): the authors'
presets are applied, the runs finish, DDAS routes the MTIL datasets and reports it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from fakedata import patch_checksums, write_mtil_root

import cliplab
from cliplab.engine.runner import build_config, run_scenario
from cliplab.results import RunFolder, load_run
from cliplab.scenarios import get_scenario

torch.set_num_threads(1)

FAST = ["batch_size=4", "max_eval_images=2", "progress=false", "checkpoint_every=0", "keep_checkpoints=last"]
MTIL_SUBSET = {"datasets": ["mnist", "eurosat"]}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_mtil_root(tmp_path_factory.mktemp("data"), per_class=1)


@pytest.fixture(autouse=True)
def fake_checksums(monkeypatch, fake_root):
    patch_checksums(monkeypatch, fake_root)


def test_presets_are_the_authors_scripts(fake_root):
    mtil = build_config(get_scenario("mtil-order1", root=fake_root), "moe_adapters", None, None)
    assert (mtil.lr, mtil.steps_per_task, mtil.batch_size, mtil.warmup_steps, mtil.label_smoothing) == (
        1e-3,
        1000,
        64,
        100,
        0.2,
    )
    rates = {d: mtil.lr_for(d) for d in ("aircraft", "caltech101", "cifar100", "dtd", "eurosat", "mnist", "sun397")}
    assert rates == {
        "aircraft": 5e-3,
        "caltech101": 1e-3,
        "cifar100": 5e-3,
        "dtd": 1e-3,
        "eurosat": 1e-4,
        "mnist": 1e-4,
        "sun397": 1e-3,
    }
    assert mtil.method == {"n_experts": 22}
    for name, batch in (("cifar100-cil-10", 128), ("cifar100-cil-20", 128), ("cifar100-cil-50", 64)):
        cil = build_config(get_scenario(name, root=fake_root), "moe_adapters", None, None)
        assert (cil.lr, cil.batch_size, cil.label_smoothing, cil.warmup_steps, cil.epochs_per_task) == (
            1e-3,
            batch,
            0.0,
            30,
            1.0,
        )
        assert cil.method["n_experts"] == 2 and cil.method["router"] == "shared" and not cil.method["ddas"]
    zscl = build_config(get_scenario("cifar100-cil-10", root=fake_root), "zscl", None, None)
    assert zscl.lr == 7.1e-6 and zscl.label_smoothing == 0.2  # other methods keep ZSCL's protocol


def test_moe_adapters_on_mtil_routes_every_dataset_with_ddas(fake_root, tmp_path):
    out = tmp_path / "mtil"
    options = {"root": str(fake_root), **MTIL_SUBSET}
    moe = ["steps_per_task=1", "method.n_experts=4", "method.ddas_steps=2", "method.ddas_eval_batch=2"]
    run_scenario("mtil-order1", "moe_adapters", out, scenario_options=options, overrides=FAST + moe)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["eurosat", "mnist"] and len(metrics["accuracy_matrix"]) == 2
    assert all(math.isfinite(v) for row in metrics["accuracy_matrix"] for v in row)
    assert metrics["config"]["lr_per_task"]["mnist"] == 1e-4
    routing = metrics["routing"]
    assert routing["after_task"][0] == {"eurosat": {"-1": 1.0}, "mnist": {"-1": 1.0}}  # nothing trained yet
    last = routing["after_task"][-1]
    assert set(last) == {"eurosat", "mnist"} and all(sum(v.values()) == pytest.approx(1.0) for v in last.values())
    assert set(metrics["trained_by_part"]) == {"visual", "transformer", "input_router"}
    bundle = cliplab.load_model(str(RunFolder(out).task_checkpoint(1)))  # no reference data: task slots only
    assert bundle.model.input_router.slot_routes.tolist() == [0, 1] and bundle.model.input_router.trained.all()
    load_run(out)


@pytest.mark.parametrize("method", ["moe_adapters", "adapter", "lora"])
def test_parameter_efficient_methods_on_cifar100_cil(fake_root, tmp_path, method):
    out = tmp_path / method
    run_scenario(
        "cifar100-cil-10", method, out, scenario_options={"root": str(fake_root)}, overrides=FAST + ["max_tasks=2"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["classes_00-09", "classes_10-19"]
    assert len(metrics["class_incremental_accuracy"]) == 2 and metrics["config"]["lr"] == 1e-3
    assert 0 < metrics["parameters"]["trainable"] < 0.2 * metrics["parameters"]["total"]
    assert "routing" not in metrics  # CIL: one shared router, no auto-selector
    with open(out / "loss_log.csv") as handle:
        assert sum(1 for row in handle if ",ce," in row) == 2 * 3  # 10 images at batch 4: 3 steps per task


@pytest.mark.parametrize("method", ["moe_adapters", "adapter", "lora"])
def test_every_scenario_has_a_preset_for_the_parameter_efficient_methods(method):
    """Every task-by-task classification scenario trains them at the adapters' rates (the online
    Si-Blurry streams are SIT's and ER's protocol, the contrastive ones TiC's and CLL-CLIP's: these
    methods have no published recipe there)."""
    from cliplab.engine.runner import plan_run
    from cliplab.scenarios import OBJECTIVES, scenario_names, scenario_requires, scenario_spec

    for name in scenario_names():
        if scenario_requires(name):  # read from the user's files (tic-captions): nothing to plan here
            continue
        protocol = scenario_spec(name).protocol
        if protocol == "online" or OBJECTIVES[protocol] != "classification":
            continue
        assert method in scenario_spec(name).method_defaults, name
        config, identity = plan_run(name, method, seed=1)
        assert identity.method == method and config.lr >= 1e-4  # the adapters' rates, not full fine-tuning's
