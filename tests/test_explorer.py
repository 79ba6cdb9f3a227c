"""The run explorer's figures over a real run folder holding a run of every protocol; the page itself
is driven in test_browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import cliplab
import cliplab.study as sh
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.results import RunFolder
from cliplab.results.views import run_matrices
from cliplab.study.alignment import alignment_probe, embed_run, encode_probe
from cliplab.study.explorer import FIGURES, Explorer, close_figures, plasticity_at

pytestmark = pytest.mark.skipif(not TOYCLIP_CHECKPOINT.exists(), reason="the shipped ToyCLIP checkpoint is missing")
SCENARIO = "toy-digits-cil"
TINY = {"steps_per_task": 2, "probe_size": 16, "retrieval_size": 16, "max_eval_images": 24}
# (scenario, method, settings beyond TINY, scenario options): one run of every protocol the study
# writes besides the task-by-task ones, and a parameter-efficient run whose checkpoints hold only
# its added modules
PROTOCOL_RUNS = [
    ("toy-odcl-cil", "finetune", {}, {}),
    ("toy-si-blurry", "finetune", {"online_iter": 1, "batch_size": 32, "eval_period": 200}, {}),
    ("toy-tic", "sequential", {}, {"pool_size": 48, "eval_size": 24}),
    ("toy-languages", "cll_clip", {}, {"train_size": 64, "test_size": 24}),
    ("toy-mtil", "moe_adapters", {"method.ddas_cache_features": False, "method.ddas_batch_size": 8}, {}),
]
# what each run's matrix pane must say it holds: its heading, then each matrix drawn (the run's own first)
MATRIX_NAMES = {
    "toy-odcl-cil": ("TIL and CIL", ["CIL", "TIL"]),
    "toy-si-blurry": ("anytime accuracy", ["each task's own classes"]),
    "toy-tic": ("retrieval R@1", ["retrieval R@1", "zero-shot classification"]),
    "toy-languages": ("text→image", ["text→image R@1", "image→text R@1"]),
    "toy-mtil": ("accuracy matrix", ["accuracy"]),
}


@pytest.fixture(scope="module")
def store(module_tmp_path):
    """zeroshot and finetune on the digits, then one run of each protocol, two tiny tasks each (~30 s)."""
    root = module_tmp_path
    settings = sh.study_settings(True, None, "cpu", TINY)
    quiet = {"smoke": True, "jobs": 1, "log": lambda _: None}
    sh.run_requests(sh.grid([SCENARIO], ["zeroshot", "finetune"], [0]), root, settings=settings, **quiet)
    for scenario, method, extra, options in PROTOCOL_RUNS:
        requests = sh.grid([scenario], [method], [0])
        sh.run_requests(requests, root, settings={**settings, **extra}, extra_options=options, **quiet)
    return root


def _metrics(store, label, scenario=SCENARIO):
    return json.loads((store / scenario / label / "seed0" / "metrics.json").read_text())


def _finite(rows) -> int:
    return int(np.isfinite(np.asarray(rows, dtype=float)).sum())


def test_the_explorer_lists_what_the_folder_holds(store):
    explorer = Explorer(store)
    assert explorer.scenarios() == sorted([SCENARIO] + [scenario for scenario, *_ in PROTOCOL_RUNS])
    assert explorer.labels(SCENARIO) == ["finetune", "zeroshot"]
    assert explorer.seeds(SCENARIO, "finetune") == [0]
    assert explorer.steps(SCENARIO, "finetune", 0) == ["pretrained", "after digits_01", "after digits_23"]
    assert explorer.step_noun("toy-languages", "cll_clip", 0) == "language"
    assert explorer.step_noun("toy-tic", "sequential", 0) == "time step"


def test_the_stability_point_at_a_step_is_computed_from_that_step(store):
    points = Explorer(store).stability_points(SCENARIO, 0, step=1).set_index("label")
    metrics = _metrics(store, "finetune")
    assert points.loc["finetune", "plasticity"] == pytest.approx(metrics["accuracy_matrix"][0][0])
    after_one = np.mean([curve[1] for curve in metrics["zero_shot"].values()])
    assert points.loc["finetune", "retention"] == pytest.approx(after_one)
    before = np.mean([curve[0] for curve in metrics["zero_shot"].values()])
    assert points.loc["zeroshot", "retention"] == pytest.approx(before)  # no training, no change
    two = Explorer(store).stability_points(SCENARIO, 0, step=2).set_index("label")
    diagonal = np.diag(np.asarray(metrics["accuracy_matrix"]))
    assert two.loc["finetune", "plasticity"] == pytest.approx(diagonal.mean())


def test_every_figure_at_every_step(store):
    explorer = Explorer(store)
    for step in (0, 1, 2):
        figures = explorer.figures(SCENARIO, "finetune", 0, step)
        assert list(figures) == list(FIGURES)
        matrix = figures[FIGURES[0]].axes[0].collections[0].get_array()
        assert np.ma.count(matrix) == 2 + 2 * step, "rows after the step are blank; the pretrained row is shown"
        projection = figures[FIGURES[3]]
        assert isinstance(projection, Figure) and len(projection.axes) == (1 if step == 0 else 2)
        assert isinstance(figures[FIGURES[2]], str if step == 0 else Figure)
        close_figures(figures)
    assert list((store / SCENARIO / "finetune" / "seed0" / "embeddings").iterdir()), "embeddings are cached"


@pytest.mark.parametrize("scenario,method", [(s, m) for s, m, *_ in PROTOCOL_RUNS])
def test_every_panel_of_every_protocol_at_every_step(store, scenario, method):
    """All four panels before training and after the last task; the two that change with the step
    (the matrices, the stability point) after the first task too (the curves only move a marker)."""
    explorer, metrics = Explorer(store), _metrics(store, method, scenario)
    result = explorer.result(scenario, method, 0)
    heading, names = MATRIX_NAMES[scenario]
    assert heading in explorer.matrix_heading(scenario, method, 0)
    for step in (0, 1, 2):
        if step == 1:
            figures = {
                FIGURES[0]: explorer.matrix_figure(result, method, step),
                FIGURES[2]: explorer.stability_figure(scenario, 0, step, method),
            }
        else:
            figures = explorer.figures(scenario, method, 0, step)
            assert list(figures) == list(FIGURES)
            curves, projection = figures[FIGURES[1]], figures[FIGURES[3]]
            assert isinstance(curves, Figure)
            assert any(f"after {explorer.step_noun(scenario, method, 0)}" in ax.get_xlabel() for ax in curves.axes)
            assert isinstance(projection, Figure) and len(projection.axes) == (1 if step == 0 else 2)
        heat_maps = [ax for ax in figures[FIGURES[0]].axes if ax.collections and ax.get_title()]
        titles = [ax.get_title().replace("\n", " ") for ax in heat_maps]
        assert len(titles) == len(names) and all(name in title for name, title in zip(names, titles)), titles
        for ax, view in zip(heat_maps, run_matrices(result)):
            shown = np.ma.count(ax.collections[0].get_array())
            before = [] if view.before is None else [view.before.tolist()]
            assert shown == _finite(before + view.frame.to_numpy()[:step].tolist()), (
                f"{scenario} {view.name}: the cells shown are the recorded finite ones up to step {step}"
            )
        stability = figures[FIGURES[2]]
        defined = step > 0 and not np.isnan(plasticity_at(result, step))
        assert isinstance(stability, Figure if defined else str)
        if defined:
            assert plasticity_at(result, step) == pytest.approx(_plasticity(metrics, step))
        elif step > 0:  # a stream evaluated first after this task ended: say so, draw nothing
            assert result.protocol == "online" and "A_auc is undefined" in stability
        close_figures(figures)


def _plasticity(metrics: dict, step: int) -> float:
    """By hand from metrics.json: A_auc so far on a stream, else the mean of the diagonal up to `step`."""
    if metrics["protocol"] == "online":
        end = sum(metrics["stream"]["task_sizes"][:step])
        anytime = metrics["anytime"]
        return float(np.mean([a for n, a in zip(anytime["samples"], anytime["accuracy"]) if n <= end]))
    diagonal = [metrics["accuracy_matrix"][i][i] for i in range(step)]
    return float(np.nanmean([np.nan if v is None else v for v in diagonal]))


def test_the_online_matrix_keeps_its_empty_cells_blank_and_shows_the_stream(store):
    metrics = _metrics(store, "finetune", "toy-si-blurry")
    assert any(v is None for row in metrics["accuracy_matrix"] for v in row), "a task exposed no class of its own"
    figure = Explorer(store).figures("toy-si-blurry", "finetune", 0, 2, projection=False)[FIGURES[0]]
    assert "blank: the task exposed no class of its own" in figure.axes[0].get_title().replace("\n", " ")
    stream = [ax for ax in figure.axes if ax.get_xlabel() == "stream samples seen"]
    assert len(stream) == 1 and stream[0].lines[0].get_xdata().tolist() == metrics["anytime"]["samples"]
    close_figures({"m": figure})


def test_a_time_step_without_labelled_images_stays_blank(store, tmp_path):
    """toy-tic's classification matrix holds null where a step has no labelled images: drawn blank."""
    metrics = _metrics(store, "sequential", "toy-tic")
    metrics["classification_matrix"][1][0] = None
    metrics["classification_zero_shot_row"][0] = None
    folder = tmp_path / "toy-tic" / "sequential" / "seed0"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    explorer = Explorer(tmp_path)
    figures = explorer.figures("toy-tic", "sequential", 0, 2, projection=False)
    retrieval, classification = [ax for ax in figures[FIGURES[0]].axes if ax.get_title()]
    assert np.ma.count(retrieval.collections[0].get_array()) == 6
    assert np.ma.count(classification.collections[0].get_array()) == 4, "two null cells are blank"
    assert "no labelled images" in classification.get_title().replace("\n", " ")
    assert isinstance(figures[FIGURES[2]], Figure)
    assert "no per-task checkpoints" in explorer.projection_figure("toy-tic", "sequential", 0, 2)
    close_figures(figures)


def test_the_projection_loads_each_checkpoint_with_cliplab_load_model(store):
    """MoE-Adapters' checkpoints hold only the added modules, CLL-CLIP's token embedding grows with
    every language: each task's embeddings are those of `cliplab.load_model(checkpoint)`."""
    for scenario, method in (("toy-mtil", "moe_adapters"), ("toy-languages", "cll_clip")):
        folder = store / scenario / method / "seed0"
        bundle = cliplab.load_model("toyclip")
        probe = alignment_probe(scenario, bundle.eval_transform, 16)
        chain = embed_run(folder, probe, bundle.tokenizer, "cpu", "check")
        for path, (images, texts) in zip(RunFolder(folder).task_checkpoints(), chain):
            model = cliplab.load_model(str(path)).model
            expected = encode_probe(model, bundle.tokenizer, probe)
            torch.testing.assert_close(images, expected[0])
            torch.testing.assert_close(texts, expected[1])
    first, last = (
        cliplab.load_model(str(p)).model for p in RunFolder(store / "toy-languages/cll_clip/seed0").task_checkpoints()
    )
    assert last.token_embedding.weight.shape[0] > first.token_embedding.weight.shape[0], "a language added rows"


def test_bad_folders_and_steps_say_what_to_do(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="make study"):
        Explorer(tmp_path)
    with pytest.raises(ValueError, match="step must be 0..2"):
        Explorer(store).figures(SCENARIO, "finetune", 0, 3)
    with pytest.raises(KeyError, match="no run"):
        Explorer(store).result(SCENARIO, "lwf", 0)
