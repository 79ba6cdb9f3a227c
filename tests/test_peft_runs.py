"""Parameter-efficient runs through the real engine on ToyCLIP: checkpoints that hold only the added
modules, `cliplab.load_model` round trips, resume inside a task, frozen experts, parameter counts,
routing records, and the class-incremental preset of MoE-Adapters.

Runs are tiny (a few steps, small probes, two tasks); what is asserted holds at any length.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cliplab
from cliplab import models, study
from cliplab.checkpoints import read_metadata
from cliplab.engine.reopen import reopen_run
from cliplab.engine.runner import build_config, run_scenario
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.evaluation.routing import FROZEN_ROUTE
from cliplab.methods import MoEAdapters
from cliplab.methods.moe_adapters import moe_layers
from cliplab.results import RunFolder, load_run
from cliplab.scenarios import get_scenario
from cliplab.study.store import RunRequest

torch.set_num_threads(1)

FAST = [
    "steps_per_task=3",
    "batch_size=8",
    "probe_size=24",
    "retrieval_size=16",
    "max_eval_images=24",
    "max_tasks=2",
    "checkpoint_every=0",
    "progress=false",
    "eval_batch_size=64",
]
MOE = ["method.n_experts=4", "method.ddas_steps=4", "method.ddas_reference_steps=4", "method.ddas_eval_batch=8"]
TOYCLIP_PARAMETERS = 9_871_873


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def moe_run(module_tmp_path) -> Path:
    out = module_tmp_path / "run"
    run_scenario("toy-mtil", "moe_adapters", out, overrides=FAST + MOE)
    return out


def _evaluator(scenario_name: str, overrides: list[str], method: str, n_tasks: int = 2) -> ScenarioEvaluator:
    config = build_config(get_scenario(scenario_name), method, overrides, None)
    scenario = get_scenario(scenario_name, probe_size=24, retrieval_size=16, probe_seed=0)
    scenario.tasks = scenario.tasks[:n_tasks]
    bundle = models.load_model("toyclip")
    return ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)


def test_moe_checkpoints_hold_only_the_added_modules_and_name_their_backbone(moe_run):
    path = RunFolder(moe_run).task_checkpoint(1)
    meta = read_metadata(path)
    assert meta["extension"]["method"] == "moe_adapters" and meta["extension"]["layout"]["n_routers"] == 2
    assert meta["base"]["model"] == "toyclip" and meta["base"]["weights"] and meta["partial"] == "true"
    keys = set(load_file(str(path)))
    assert keys and all(".branches.moe." in k or k.startswith(("input_router.", "route_state.")) for k in keys)
    assert path.stat().st_size < 0.5 * models.TOYCLIP_CHECKPOINT.stat().st_size * 2  # ToyCLIP ships in fp16
    with pytest.raises(ValueError, match=r"cliplab.load_model\(path\)"):
        models.load_model(str(path))


def test_load_model_rebuilds_the_extended_model_with_the_same_numbers(moe_run):
    """save → cliplab.load_model → the evaluator reproduces the run's last row, probes and routing."""
    metrics = _metrics(moe_run)
    bundle = cliplab.load_model(str(RunFolder(moe_run).task_checkpoint(1)))
    assert hasattr(bundle.model, "input_router") and len(moe_layers(bundle.model)) == 6 + 4
    evaluator = _evaluator("toy-mtil", FAST + MOE, "moe_adapters")
    again = evaluator.evaluate(bundle.model, after_task=1)
    assert again.accuracy == metrics["accuracy_matrix"][1]
    assert {k: v[2] for k, v in metrics["zero_shot"].items()} == again.zero_shot
    assert again.routing == metrics["routing"]["after_task"][2]
    assert {k: v[2] for k, v in metrics["retrieval"]["toyworld"].items()} == again.retrieval["toyworld"]


def test_moe_freezes_experts_and_old_routers_bit_for_bit(moe_run):
    first = load_file(str(RunFolder(moe_run).task_checkpoint(0)))
    second = load_file(str(RunFolder(moe_run).task_checkpoint(1)))
    frozen_keys = [k for k in first if k.endswith(".frozen")]
    assert len(frozen_keys) == 10  # 6 image + 4 text blocks
    for key in frozen_keys:
        prefix = key[: -len("frozen")]
        mask = first[key]
        assert int(mask.sum()) == 2  # the authors' top-2 per block and tower after task 0
        assert int(second[key].sum()) in (2, 3, 4) and bool(second[key][mask].all())  # a union, +<= 2
        for e in torch.nonzero(mask).flatten().tolist():
            for part in ("down.weight", "down.bias", "up.weight", "up.bias"):
                assert torch.equal(first[f"{prefix}experts.{e}.{part}"], second[f"{prefix}experts.{e}.{part}"])
        assert torch.equal(first[f"{prefix}gate.0"], second[f"{prefix}gate.0"])  # router 0 untouched by task 1
        assert not torch.equal(first[f"{prefix}gate.1"], second[f"{prefix}gate.1"])  # router 1 trained
        assert second[f"{prefix}usage"][1].sum() > 0 and torch.equal(
            first[f"{prefix}usage"][0], second[f"{prefix}usage"][0]
        )


def test_metrics_report_parameters_memory_and_routing(moe_run):
    metrics = _metrics(moe_run)
    experts = 4 * (6 * (2 * 16 * 192 + 16 + 192) + 4 * (2 * 16 * 128 + 16 + 128))  # bottleneck 16, every expert
    routers = 2 * (6 * 2 * 192 * 4 + 4 * 2 * 128 * 4)  # two routers trained (one per task)
    autoencoders = 3 * (2 * 3264 * 100 + 100 + 3264)  # reference + 2 tasks; 17 tokens x 192 features
    assert metrics["parameters"]["trainable"] == experts + routers + autoencoders
    assert metrics["trained_by_part"]["input_router"] == autoencoders
    routers_all = routers  # n_routers = 2 tasks
    assert metrics["parameters"]["total"] == TOYCLIP_PARAMETERS + experts + routers_all + autoencoders
    assert metrics["parameters"]["pretrained"] == TOYCLIP_PARAMETERS  # counted before the experts were added
    cost = study.efficiency_frame({RunRequest("toy-mtil", "moe_adapters", 0): load_run(moe_run)}).iloc[0]
    assert cost["trainable_selector"] == autoencoders and cost["trainable_in_clip"] == experts + routers
    assert cost["trainable_in_clip_pct"] == pytest.approx(100 * (experts + routers) / TOYCLIP_PARAMETERS)
    assert metrics["peak_memory"]["training_mib"] > 0 and metrics["peak_memory"]["device"] == "cpu"
    routing = metrics["routing"]
    assert len(routing["after_task"]) == 3 and routing["after_task"][0]["digits"] == {"-1": 1.0}
    assert len(routing["task_to_own_router"]) == 2 and set(routing["probes_to_frozen"]) >= {"toyworld_shape_colour"}
    for shares in routing["after_task"]:
        assert all(sum(v.values()) == pytest.approx(1.0) for v in shares.values())


def test_task_identity_row_separates_the_experts_from_the_selectors_decision(moe_run, tmp_path):
    """With the task given, every test image takes its task's router; forced onto the frozen route,
    the final model scores exactly as the untouched ToyCLIP does."""
    metrics = _metrics(moe_run)
    frame = study.task_identity_frame(str(moe_run))
    assert list(frame.index) == ["digits", "novel_shapes", "Last"]
    assert list(frame[study.peft.ROUTED_LABEL])[:2] == metrics["accuracy_matrix"][-1]
    shares = metrics["routing"]["after_task"][-1]
    own = [100.0 * shares[task].get(str(j), 0.0) for j, task in enumerate(["digits", "novel_shapes"])]
    assert list(frame[study.peft.OWN_SHARE_LABEL])[:2] == pytest.approx(own)
    assert frame.loc["Last"].tolist() == pytest.approx(frame.iloc[:2].mean().tolist())
    reopened = reopen_run(moe_run)
    frozen = reopened.evaluator.task_identity_row(reopened.bundle.model, route_of=lambda j: FROZEN_ROUTE)
    pretrained, _ = _evaluator("toy-mtil", FAST + MOE, "moe_adapters").accuracy_row(
        models.load_model("toyclip").model, 1
    )
    assert frozen == pretrained
    with pytest.raises(ValueError, match="has no input router"):
        reopened.evaluator.task_identity_row(models.load_model("toyclip").model)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        reopen_run(tmp_path)


def test_full_fine_tuning_reports_every_parameter_trained(tmp_path):
    out = tmp_path / "ft"
    run_scenario("toy-digits-cil", "finetune", out, overrides=[*FAST, "max_tasks=1", "steps_per_task=1"])
    metrics = _metrics(out)
    assert metrics["parameters"] == {
        "total": TOYCLIP_PARAMETERS,
        "trainable": TOYCLIP_PARAMETERS - 1,
        "pretrained": TOYCLIP_PARAMETERS,
    }  # logit scale frozen
    assert "routing" not in metrics


def test_resume_inside_a_task_ends_with_the_same_numbers(moe_run, tmp_path, monkeypatch):
    """Killed at step 2 of task 1 (a mid-task state at step 1 holds only the added modules), resumed."""
    out = tmp_path / "resumed"
    overrides = [o for o in FAST if not o.startswith("checkpoint_every")] + ["checkpoint_every=1"] + MOE
    original = MoEAdapters.after_step

    def crash(self, ctx, step):
        original(self, ctx, step)
        if ctx.task_index == 1 and step == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(MoEAdapters, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        run_scenario("toy-mtil", "moe_adapters", out, overrides=overrides)
    mid = load_file(str(RunFolder(out).mid_task))
    assert mid and all(
        not k.startswith("model/") or ".branches.moe." in k or "input_router" in k or "route_state" in k for k in mid
    )
    monkeypatch.setattr(MoEAdapters, "after_step", original)
    run_scenario("toy-mtil", "moe_adapters", out, overrides=overrides)
    done, reference = _metrics(out), _metrics(moe_run)
    for key in ("accuracy_matrix", "zero_shot", "retrieval", "routing", "parameters"):
        assert done[key] == reference[key], key


@pytest.mark.parametrize("method", ["adapter", "lora"])
def test_baselines_round_trip_through_load_model(tmp_path, method):
    out = tmp_path / method
    overrides = [*FAST, "max_tasks=1"]
    run_scenario("toy-digits-cil", method, out, overrides=overrides)
    metrics = _metrics(out)
    path = RunFolder(out).task_checkpoint(0)
    keys = set(load_file(str(path)))
    marker = "lora_" if method == "lora" else ".branches.adapter."
    assert keys and all(marker in k for k in keys)
    expected = {"adapter": 6 * (2 * 16 * 192 + 16 + 192) + 4 * (2 * 16 * 128 + 16 + 128)}
    expected["lora"] = 8 * 16 * (6 * 192 + 4 * 128)  # rank 8; per block r*(d+3d) + r*2d + r*5d + r*5d
    assert metrics["parameters"]["trainable"] == expected[method]
    bundle = cliplab.load_model(str(path))
    evaluator = _evaluator("toy-digits-cil", overrides, method, n_tasks=1)
    again = evaluator.evaluate(bundle.model, after_task=0)
    assert again.accuracy == metrics["accuracy_matrix"][0]
    assert {k: v[1] for k, v in metrics["zero_shot"].items()} == again.zero_shot


def test_class_incremental_preset_is_the_authors_cil_code(tmp_path):
    """2 experts, one shared router, no freezing, no DDAS; noisy gating at test time, yet reproducible."""
    config = build_config(get_scenario("toy-digits-cil"), "moe_adapters", None, None)
    assert config.method == {
        "n_experts": 2,
        "router": "shared",
        "freeze_top": 0,
        "ddas": False,
        "noise_at_eval": True,
        "bottleneck": 16,
    }
    out = tmp_path / "cil"
    run_scenario("toy-digits-cil", "moe_adapters", out, overrides=FAST)
    bundle = cliplab.load_model(str(RunFolder(out).task_checkpoint(1)))
    assert not hasattr(bundle.model, "input_router") and int(bundle.model.route_state.default) == 0
    for _, _, layer in moe_layers(bundle.model):
        assert layer.n_experts == 2 and len(layer.gate) == 1 and not layer.frozen.any()
        assert layer.usage[0].sum() > 0
    evaluator = _evaluator("toy-digits-cil", FAST, "moe_adapters")
    first, second = evaluator.evaluate(bundle.model, 1), evaluator.evaluate(bundle.model, 1)
    assert first.accuracy == second.accuracy == _metrics(out)["accuracy_matrix"][1]
