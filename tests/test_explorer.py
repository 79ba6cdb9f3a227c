"""The run explorer's figures over a real (smoke) run folder; the page itself is driven in test_browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import cliplab.study as sh
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.study.explorer import FIGURES, Explorer, close_figures

pytestmark = pytest.mark.skipif(not TOYCLIP_CHECKPOINT.exists(), reason="the shipped ToyCLIP checkpoint is missing")
SCENARIO = "toy-digits-cil"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """zeroshot and finetune, two smoke tasks each (seconds)."""
    root = tmp_path_factory.mktemp("explorer")
    requests = sh.grid([SCENARIO], ["zeroshot", "finetune"], [0])
    sh.run_requests(
        requests, root, settings=sh.study_settings(True, None, "cpu"), smoke=True, jobs=1, log=lambda _: None
    )
    return root


def _metrics(store, label):
    return json.loads((store / SCENARIO / label / "seed0" / "metrics.json").read_text())


def test_the_explorer_lists_what_the_folder_holds(store):
    explorer = Explorer(store)
    assert explorer.scenarios() == [SCENARIO]
    assert explorer.labels(SCENARIO) == ["finetune", "zeroshot"]
    assert explorer.seeds(SCENARIO, "finetune") == [0]
    assert explorer.steps(SCENARIO, "finetune", 0) == ["pretrained", "after digits_01", "after digits_23"]


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


def test_bad_folders_and_steps_say_what_to_do(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="make study"):
        Explorer(tmp_path)
    with pytest.raises(ValueError, match="step must be 0..2"):
        Explorer(store).figures(SCENARIO, "finetune", 0, 3)
    with pytest.raises(KeyError, match="no run"):
        Explorer(store).result(SCENARIO, "lwf", 0)
