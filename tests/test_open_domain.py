"""Open-domain continual learning (CoLeCLIP's protocol): label spaces, rows, metrics.json, specs."""

from __future__ import annotations

import json

import pytest
import torch
from test_methods import to_tensor
from test_online import _bundle

from cliplab.data import TensorImageDataset
from cliplab.engine.config import TrainConfig
from cliplab.engine.runner import run_scenario
from cliplab.evaluation.embed import image_features
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.evaluation.online_metrics import odcl_summary
from cliplab.evaluation.protocols import seen_union
from cliplab.evaluation.zeroshot import zero_shot_classifier
from cliplab.scenarios import scenario_spec
from cliplab.scenarios.base import Scenario, Task

torch.set_num_threads(1)

DOMAINS = {"pets": ["cat", "dog"], "roads": ["car", "dog", "bus"], "desk": ["cup", "pen"]}  # "dog" twice
TEMPLATES = {"pets": ["a photo of a {}.", "a pet {}."], "roads": ["a {} on the road."], "desk": ["a {} on a desk."]}
FAST = {
    "steps_per_task": 2,
    "batch_size": 4,
    "lr": 1e-3,
    "warmup_steps": 0,
    "checkpoint_every": 0,
    "progress": False,
    "device": "cpu",
    "precision": "fp32",
    "eval_batch_size": 32,
    "seed": 0,
}


def _data(names, templates, seed, n):
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    labels = [i % len(names) for i in range(n)]

    def factory(transform=None):
        return TensorImageDataset(images, labels, names, templates, transform=transform)

    return factory


def tiny_odcl(setting: str = "cil") -> Scenario:
    tasks = [
        Task(
            d,
            names,
            TEMPLATES[d][0],
            TEMPLATES[d],
            _data(names, TEMPLATES[d], k, 8),
            _data(names, TEMPLATES[d], 10 + k, 6),
        )
        for k, (d, names) in enumerate(DOMAINS.items())
    ]
    return Scenario(name="tiny-odcl", protocol=f"open_domain_{setting}", tasks=tasks)


def test_the_seen_union_is_deduplicated_by_name_in_first_occurrence_order():
    tasks = tiny_odcl().tasks
    assert seen_union(tasks, 0) == (["cat", "dog"], [0, 0])
    assert seen_union(tasks, 1) == (["cat", "dog", "car", "bus"], [0, 0, 1, 1])  # "dog" is one label, owned by pets
    assert seen_union(tasks, 2)[0] == ["cat", "dog", "car", "bus", "cup", "pen"]


def test_rows_classify_seen_domains_in_the_union_and_unseen_ones_among_their_own_classes():
    scenario = tiny_odcl()
    bundle = _bundle()
    model = bundle.model.eval()
    config = TrainConfig(eval_batch_size=32, device="cpu")
    evaluator = ScenarioEvaluator(scenario, to_tensor, bundle.tokenizer, config)
    evaluation = evaluator.evaluate(model, after_task=1)

    def accuracy(task, names, owners, targets_of):
        x, y = image_features(model, task.test_data(to_tensor))
        columns = [
            zero_shot_classifier(model, bundle.tokenizer, [n], scenario.tasks[o].templates)
            for n, o in zip(names, owners)
        ]
        predicted = (x @ torch.cat(columns, dim=1)).argmax(1)
        return 100.0 * (predicted == torch.tensor([targets_of[int(v)] for v in y])).double().mean().item()

    union, owners = ["cat", "dog", "car", "bus"], [0, 0, 1, 1]
    roads = scenario.tasks[1]
    # roads' "dog" (local label 1) is union label 1, classified with the pets templates that own it
    cil_roads = accuracy(roads, union, owners, {0: 2, 1: 1, 2: 3})
    til_roads = accuracy(roads, roads.classnames, [1, 1, 1], {0: 0, 1: 1, 2: 2})
    desk = scenario.tasks[2]
    own_desk = accuracy(desk, desk.classnames, [2, 2], {0: 0, 1: 1})
    assert evaluation.extra["cil"][1] == pytest.approx(cil_roads)
    assert evaluation.extra["til"][1] == pytest.approx(til_roads)
    assert evaluation.extra["cil"][2] == evaluation.extra["til"][2] == pytest.approx(own_desk)
    assert evaluation.accuracy == evaluation.extra["cil"]


def test_metrics_json_holds_both_odcl_matrices_and_the_seen_average(tmp_path):
    run_scenario(tiny_odcl("til"), "finetune", tmp_path, bundle=_bundle(), overrides=FAST)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["protocol"] == "open_domain_til"
    odcl = data["odcl"]
    assert odcl["setting"] == "til" and data["accuracy_matrix"] == odcl["til"]["accuracy_matrix"]
    for key in ("til", "cil"):
        assert odcl[key]["summary"] == pytest.approx(odcl_summary(odcl[key]["accuracy_matrix"]))
    til, cil = odcl["til"]["accuracy_matrix"], odcl["cil"]["accuracy_matrix"]
    assert all(til[i][j] == cil[i][j] for i in range(3) for j in range(i + 1, 3))  # unseen: the same classifier
    assert odcl["til"]["summary"]["transfer"] == odcl["cil"]["summary"]["transfer"]
    assert data["summary"]["seen_avg"] == pytest.approx(odcl["til"]["summary"]["seen_avg"])


def test_odcl_specs_orders_and_settings():
    a, b = scenario_spec("toy-odcl-cil"), scenario_spec("toy-odcl-til", order="B")
    assert a.task_names == ["digits", "novel_shapes", "textures", "nonce_shapes"]
    assert b.task_names == list(reversed(a.task_names)) and b.protocol == "open_domain_til"
    assert a.defaults["steps_per_task"] == scenario_spec("toy-mtil").defaults["steps_per_task"]
    order1 = scenario_spec("odcl-order1", setting="til", datasets=["mnist", "dtd"])
    assert order1.protocol == "open_domain_til" and order1.task_names == ["dtd", "mnist"]
    assert (
        scenario_spec("odcl-order2").task_names[0] == "stanford_cars" and len(scenario_spec("odcl-order2").tasks) == 11
    )
    with pytest.raises(ValueError, match="setting must be one of"):
        scenario_spec("odcl-order1", setting="dil")
    with pytest.raises(ValueError, match="order must be one of"):
        scenario_spec("toy-odcl-cil", order="C")
