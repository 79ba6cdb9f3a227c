"""The study notebooks run headlessly (papermill, SMOKE=True) and record sane headline numbers.

One module-scoped study run executes 01 → 02 → 03 into a temporary folder with a shared run
store (02 reuses 01's runs, 03 reuses 02's), the same way `cliplab study --smoke` does; the tests
then read the metrics.json each notebook wrote. Smoke runs train 2 tasks for 3 steps, so only
invariants are asserted (finite numbers, percentages in range, fine-tuning learning the new
classes, zero drift of the pretrained reference), not recorded values. Whether fine-tuning
forgets pretraining is not one of them: 3 steps move the 32-image held-out probe by an image
either way (CI measured 90.6 -> 91.7), so `test_default_forgetting.py` asserts it at the
scenarios' default settings, where the loss is tens of points.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

import cliplab.study as sh
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.study.notebooks import NOTEBOOKS, notebooks_dir, read_notebook, run_study
from cliplab.study.parameters import parse_params

STEMS = [name.split(".")[0] for name in NOTEBOOKS]
REQUIRED_PARAMETERS = {
    "MODEL",
    "PRETRAINED",
    "METHODS",
    "SEEDS",
    "STEPS_PER_TASK",
    "DEVICE",
    "OUT_DIR",
    "RUNS_DIR",
    "FIGURES_DIR",
    "SMOKE",
    "INTERACTIVE",
}
# Where each notebook's metrics.json keeps its per-method numbers (the rest is settings and paths).
RESULT_SECTIONS = {"03_alignment": ["final"], "06_open_domain_and_online": ["open_domain", "online"]}
needs_toyclip = pytest.mark.skipif(
    not TOYCLIP_CHECKPOINT.exists(),
    reason=f"the pretrained ToyCLIP checkpoint is missing at {TOYCLIP_CHECKPOINT} (regenerate: make toyclip)",
)


def _parameters_cell(name: str) -> str:
    cells = [c for c in read_notebook(notebooks_dir() / name).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name} must have exactly one cell tagged 'parameters'"
    return cells[0].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_holds_flat_literals_only(name):
    """Papermill can only override literals; every name the study injects must exist."""
    tree = ast.parse(_parameters_cell(name))
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"{name}: parameters must be plain `NAME = literal` lines, got {ast.unparse(node)!r}"
        )
        ast.literal_eval(node.value)
        names.add(node.targets[0].id)
    assert names >= REQUIRED_PARAMETERS, f"{name} lacks parameters {sorted(REQUIRED_PARAMETERS - names)}"
    assert {"SCENARIO", "SCENARIOS", "TIC_SCENARIO"} & names  # 05's own name: `--params SCENARIO=...` is for 01-03
    assert "PRETRAINED = None" in _parameters_cell(name), "the default must be the shipped pretrained ToyCLIP"


def test_cli_params_are_parsed_like_the_rest_of_the_cli():
    assert parse_params(["SEEDS=[0,1]", "MODEL=ViT-B-16", "PRETRAINED=none", "SMOKE=true", "STEPS_PER_TASK=30"]) == {
        "SEEDS": [0, 1],
        "MODEL": "ViT-B-16",
        "PRETRAINED": None,
        "SMOKE": True,
        "STEPS_PER_TASK": 30,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["SEEDS"])


def test_a_parameter_no_notebook_defines_is_an_error_not_ignored(tmp_path):
    with pytest.raises(ValueError, match="unknown notebook parameter.*SEED"):
        run_study(tmp_path, params={"SEED": [0]})


@pytest.fixture(scope="module")
def study(module_tmp_path) -> Path:
    """The smoke study, executed once (its kernels use one thread each, see `run_study`)."""
    if not TOYCLIP_CHECKPOINT.exists():
        pytest.skip(f"the pretrained ToyCLIP checkpoint is missing at {TOYCLIP_CHECKPOINT} (regenerate: make toyclip)")
    out = module_tmp_path
    run_study(out, params={"DEVICE": "cpu"}, figures=out / "figures", smoke=True)
    return out


def _metrics(study: Path, stem: str) -> dict:
    return json.loads((study / stem / "metrics.json").read_text())


def _numbers(tree, path="") -> list[tuple[str, object]]:
    """Every leaf of a JSON tree with its dotted path."""
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _numbers(value, f"{path}.{key}")]
    if isinstance(tree, list):
        return [leaf for i, value in enumerate(tree) for leaf in _numbers(value, f"{path}[{i}]")]
    return [(path, tree)]


@needs_toyclip
def test_every_notebook_executed_and_saved_figures(study):
    for stem in STEMS:
        assert (study / f"{stem}.ipynb").exists() and (study / stem / "metrics.json").exists()
    figures = {p.name for p in (study / "figures").glob("*.png")}
    for expected in (
        "01_accuracy_matrix_finetune.png",
        "01_task_curves_finetune.png",
        "01_zero_shot_retention.png",
        "01_ost_vs_mst.png",
        "02_stability_plasticity.png",
        "02_ablation_stability_plasticity.png",
        "03_geometry_across_tasks.png",
        "03_rotation_violins.png",
        "03_joint_projection.png",
        "03_cross_version_vr_lwf.png",
        "04_cost_vs_accuracy.png",
        "04_ddas_routing.png",
        "04_expert_usage.png",
        "06_anytime_accuracy.png",
        "06_stability_plasticity.png",
        "05_toy_tic_steps.png",
        "05_retrieval_matrices.png",
        "05_classification_matrices.png",
        "05_strategies_compute.png",
        "05_structure_drift.png",
        "07_language_matrices.png",
        "07_english_and_probes.png",
        "07_token_embeddings.png",
    ):
        assert expected in figures, f"{expected} not written; figures: {sorted(figures)}"


@needs_toyclip
@pytest.mark.parametrize("stem", STEMS)
def test_recorded_numbers_are_finite(study, stem):
    """JSON has no NaN; a None marks a metric undefined for the run (e.g. transfer of one task)."""
    leaves = [
        (path, v)
        for path, v in _numbers(_metrics(study, stem))
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    assert leaves and all(math.isfinite(v) for _, v in leaves)
    data = _metrics(study, stem)
    sections = RESULT_SECTIONS.get(stem, ["methods"])
    undefined = [path for key in sections for path, v in _numbers(data[key]) if v is None]
    allowed = ("transfer", "bwt", "forgetting")  # need more than one task
    assert all(path.split(".")[-1].startswith(allowed) for path in undefined), undefined


@needs_toyclip
def test_01_finetuning_learns_and_zeroshot_keeps_its_numbers(study):
    methods = _metrics(study, "01_forgetting")["methods"]
    finetune, zeroshot = methods["finetune"], methods["zeroshot"]
    assert zeroshot["zero_shot_after"] == pytest.approx(zeroshot["zero_shot_before"])
    assert zeroshot["zero_shot_before"] == pytest.approx(finetune["zero_shot_before"])
    assert finetune["plasticity"] > zeroshot["plasticity"], "fine-tuning should learn the new digits"
    assert _metrics(study, "01_forgetting")["one_session"]["finetune"]["final_accuracy"] > 0


@needs_toyclip
def test_02_records_every_method_scenario_and_ablation_variant(study):
    data = _metrics(study, "02_vr_lwf")
    for scenario in data["settings"]["scenarios"]:
        assert set(data["methods"][scenario]) == {"zeroshot", "finetune", "lwf", "vr_lwf", "icarl", "wise_ft", "zscl"}
        for numbers in data["methods"][scenario].values():
            assert 0 <= numbers["avg"] <= 100 and 0 <= numbers["zero_shot_after"] <= 100
    assert {"vr_lwf+vocab_source=captions", "vr_lwf+directions=i2t", "vr_lwf+vocab_size=100"} <= set(data["ablation"])


@needs_toyclip
def test_03_pretrained_reference_has_no_drift_and_finetuning_moves(study):
    final = _metrics(study, "03_alignment")["final"]
    assert final["pretrained"]["angle_img_mean"] == pytest.approx(0.0, abs=1e-3)
    assert final["pretrained"]["cka_img"] == pytest.approx(1.0, abs=1e-4)
    assert final["finetune"]["angle_img_mean"] > 0.0
    assert 0 < final["finetune"]["gap_l2m"] < 2


@needs_toyclip
def test_05_records_every_strategy_its_compute_and_the_structure_of_old_data(study):
    data = _metrics(study, "05_continual_pretraining")
    methods = data["methods"]
    assert set(methods) == {"sequential", "cumulative", "lwf", "modx"}  # the default strategies (~5 min in full)
    for numbers in methods.values():
        assert all(0 <= numbers[k] <= 100 for k in ("id", "backward", "forward", "classification_id"))
    assert methods["sequential"]["compute"] == pytest.approx(1.0)
    assert methods["cumulative"]["compute"] == pytest.approx(1.0), "the same samples per step"
    assert methods["modx"]["compute"] == pytest.approx(4 / 3), "a teacher forward per training pair"
    structure = data["structure"]
    assert set(structure) == {"sequential", "cumulative", "lwf", "modx"}
    assert all(v["unmatched_drift_from_start"] >= 0 and v["modx_drift_from_previous"] >= 0 for v in structure.values())


@needs_toyclip
def test_07_records_every_method_and_cll_clip_keeps_clips_own_rows(study):
    data = _metrics(study, "07_new_languages")
    methods = data["methods"]
    assert set(methods) == {"zeroshot", "finetune", "cll_clip", "cll_clip+teir=False"}
    for numbers in methods.values():
        assert 0 <= numbers["min_language"] <= numbers["mean_language"] <= 100
        assert 0 <= numbers["english_before"] <= 100 and 0 <= numbers["english_after"] <= 100
    zeroshot = methods["zeroshot"]
    assert zeroshot["english_after"] == zeroshot["english_before"] == methods["cll_clip"]["english_before"]
    # training only embedding rows of the language's own tokens moves English less than the whole tower
    assert abs(methods["cll_clip"]["english_delta"]) <= abs(methods["finetune"]["english_delta"])


@needs_toyclip
def test_finished_runs_are_reused_not_retrained(study):
    """Asking for the runs again with the notebooks' settings loads nothing and trains nothing."""
    requests = sh.grid(["toy-digits-cil", "toy-mtil"], ["finetune", "vr_lwf"], [0])
    messages = []
    sh.run_requests(
        requests,
        sh.runs_root(study / "runs", smoke=True),
        settings=sh.study_settings(True, None, "cpu"),
        smoke=True,
        log=messages.append,
    )
    assert len(messages) == len(requests) and all(m.startswith("reuse") for m in messages)


@needs_toyclip
def test_04_compares_parameter_efficient_methods_with_their_cost_and_routing(study):
    data = _metrics(study, "04_parameter_efficient")
    for scenario in data["settings"]["scenarios"]:
        methods = data["methods"][scenario]
        assert {"finetune", "vr_lwf", "zscl", "adapter", "lora", "moe_adapters"} <= set(methods)
        cost = data["cost"][scenario]
        assert cost["finetune"]["trainable"] > 50 * cost["adapter"]["trainable"] > 0  # adapters train ~0.6 %
        assert cost["zeroshot"]["trainable"] == 0 and cost["lora"]["trainable_pct"] < 5
        # parameter-efficient methods start from modules that change nothing: the pretrained zero-shot
        assert methods["moe_adapters"]["zero_shot_before"] == pytest.approx(methods["finetune"]["zero_shot_before"])
    routing = data["routing"]["toy-mtil"]
    assert routing["after_task"][0]["digits"] == {"-1": 1.0}  # before training everything takes the frozen model
    assert len(routing["task_to_own_router"]) == 2  # smoke: two tasks
    given = data["task_identity"]["toy-mtil"]  # each task's images forced onto its own router
    assert list(given) == ["digits", "novel_shapes", "Last"]
    last = data["methods"]["toy-mtil"]["moe_adapters"]["last"]
    assert given["Last"]["as routed"] == pytest.approx(last, abs=0.05)  # the run's own Last, re-derived
    assert all(0.0 <= row["on its own router"] <= 100.0 for row in given.values())


@needs_toyclip
def test_06_open_domain_table_and_online_stream(study):
    data = _metrics(study, "06_open_domain_and_online")
    odcl, online = data["open_domain"], data["online"]
    assert {"zeroshot", "continual_clip", "finetune", "coleclip"} <= set(odcl)
    # Continual-CLIP trains nothing: it is the pretrained model, number for number
    assert odcl["continual_clip"] == odcl["zeroshot"]
    # CoLeCLIP's unseen domains are zero-shot CLIP's, and nothing held out moves
    assert odcl["coleclip"]["til_transfer"] == odcl["zeroshot"]["til_transfer"]
    assert odcl["coleclip"]["zero_shot_delta"] == 0.0
    assert {"continual_clip", "finetune", "er", "sit", "sit+pet=adapter"} <= set(online)
    assert all(0.0 <= v["a_auc"] <= 100.0 for v in online.values())
    assert online["continual_clip"]["zero_shot_delta"] == 0.0
