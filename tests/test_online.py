"""The online protocol end to end on a tiny stream: stream batches, exposure, anytime evaluation,
metrics.json, resumption, experience replay and Continual-CLIP (tiny CLIP, seconds per run)."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
from test_methods import TEMPLATE, changed, clone_state, tiny_clip, to_tensor

from cliplab.data import TensorImageDataset
from cliplab.engine.online import TaskStream
from cliplab.engine.runner import run_scenario
from cliplab.methods import FineTune, get_method
from cliplab.methods.er import reservoir_slot
from cliplab.models import ClipBundle
from cliplab.scenarios.base import Scenario, ScenarioSpec, TaskSpec
from cliplab.scenarios.online import online_tasks

torch.set_num_threads(1)

NAMES = ["cat", "dog", "car", "bus", "cup", "pen"]
PER_CLASS = 8
FAST = {
    "batch_size": 4,
    "online_iter": 2,
    "eval_period": 8,
    "lr": 1e-3,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "label_smoothing": 0.0,
    "checkpoint_every": 0,
    "progress": False,
    "device": "cpu",
    "precision": "fp32",
    "eval_batch_size": 32,
    "seed": 0,
}


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _factory(images, labels, transform=None):
    return TensorImageDataset(images, labels, NAMES, [TEMPLATE], transform=transform)


def tiny_online(seed: int = 0, n_tasks: int = 3, template: str = TEMPLATE) -> Scenario:
    train_labels = [i % len(NAMES) for i in range(len(NAMES) * PER_CLASS)]
    test_labels = [i % len(NAMES) for i in range(len(NAMES) * 2)]
    spec = ScenarioSpec("tiny-online", "online", [TaskSpec(f"task_{t + 1}", tuple(NAMES)) for t in range(n_tasks)])
    tasks, stream = online_tasks(
        spec,
        partial(_factory, _images(len(train_labels), 1), train_labels),
        train_labels,
        partial(_factory, _images(len(test_labels), 2), test_labels),
        test_labels,
        NAMES,
        template,
        [template],
        stream_seed=seed,
        n_percent=50,
        m_percent=25,
    )
    return Scenario.from_spec(spec, tasks, stream=stream)


def _bundle(model=None) -> ClipBundle:
    import open_clip

    return ClipBundle(
        model or tiny_clip(), open_clip.SimpleTokenizer(context_length=24), to_tensor, to_tensor, "tiny", None
    )


def _run(tmp_path, method="finetune", scenario=None, bundle=None, **settings):
    result = run_scenario(
        scenario or tiny_online(),
        method,
        tmp_path,
        bundle=bundle or _bundle(),
        overrides={**FAST, **settings},
    )
    return result, json.loads((tmp_path / "metrics.json").read_text())


class Recording(FineTune):
    """Fine-tuning that records, per step, the labels it trains on and the classes it encodes."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.seen: list[tuple[str, int, list[int], int]] = []

    def classification_loss(self, ctx, out, labels):
        assert ctx.model.training, "an anytime evaluation left the model in eval mode"
        self.seen.append((ctx.task.name, ctx.task_index, out.class_index.tolist(), len(out.class_texts)))
        return None


def test_task_stream_arithmetic():
    stream = TaskStream(task=1, start=10, size=10, batch_size=4, online_iter=2, first_seen=(0, 3, 12, 15))
    assert stream.steps == 6  # 3 stream batches (4, 4, 2) x 2
    assert stream.batch_positions(0) == stream.batch_positions(1) == [0, 1, 2, 3]
    assert stream.batch_positions(5) == [8, 9]
    assert [stream.new_batch(s) for s in range(6)] == [True, False, True, False, True, False]
    assert stream.seen_after(0) == 14 and stream.seen_after(5) == 20
    assert stream.exposed(0) == 3 and stream.exposed(2) == 4  # class 3 arrives at position 15 (batch 2)


def test_the_loop_trains_on_the_stream_in_order_each_batch_online_iter_times(tmp_path):
    scenario = tiny_online()
    method = Recording()
    _run(tmp_path, method, scenario)
    stream = scenario.stream
    steps = [s for s in method.seen]
    expected_steps = sum(math.ceil(size / 4) * 2 for size in stream.task_sizes)
    assert len(steps) == expected_steps
    # the classes encoded at each step are exactly the ones exposed once its batch arrived
    start, k = 0, 0
    for t, size in enumerate(stream.task_sizes):
        for b in range(math.ceil(size / 4)):
            seen = start + min((b + 1) * 4, size)
            exposed = sum(1 for p in stream.first_seen if p < seen)
            for _ in range(2):
                assert steps[k][1] == t and steps[k][2] == list(range(exposed)) and steps[k][3] == exposed
                k += 1
        start += size


def test_online_metrics_json_has_the_anytime_curve_and_the_online_summary(tmp_path):
    scenario = tiny_online()
    _, data = _run(tmp_path, "finetune", scenario)
    assert data["protocol"] == "online"
    anytime = data["anytime"]
    samples, accuracy = anytime["samples"], anytime["accuracy"]
    # the reference's rule: after each stream batch, evaluate once if samples > next multiple of the period
    expected, done, start = [], 0, 0
    for size in scenario.stream.task_sizes:
        for b in range(math.ceil(size / 4)):
            seen = start + min((b + 1) * 4, size)
            if seen > 8 * (done + 1):
                expected.append(seen)
                done += 1
        start += size
    assert samples == expected and len(accuracy) == len(samples)
    summary = data["summary"]
    assert summary["a_auc"] == pytest.approx(sum(accuracy) / len(accuracy))
    assert summary["a_last"] == pytest.approx(data["exposed_accuracy"][-1])
    exposed = [a for a in data["exposed_accuracy"] if a is not None]
    assert summary["a_avg"] == pytest.approx(sum(exposed) / len(exposed))
    assert len(data["class_accuracy"]) == 3 and len(data["class_accuracy"][-1]) == len(NAMES)
    assert len(data["accuracy_matrix"]) == 3 and set(data["stream"]) >= {"disjoint_classes", "blurry_classes"}


def test_an_online_run_killed_mid_task_resumes_to_the_same_numbers(tmp_path):
    class Crash(FineTune):
        def after_step(self, ctx, step):
            if ctx.task_index == 1 and step == 3:
                raise KeyboardInterrupt("killed")

    settings = {"checkpoint_every": 2}
    _, whole = _run(tmp_path / "whole", "finetune", **settings)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "resumed", Crash(), **settings)
    progress = json.loads((tmp_path / "resumed" / "progress.json").read_text())
    assert progress["anytime"], "the anytime records made before the crash are kept"
    _, resumed = _run(tmp_path / "resumed", "finetune", **settings)
    for key in ("anytime", "accuracy_matrix", "summary", "exposed_accuracy", "zero_shot"):
        assert resumed[key] == whole[key], key


def test_reservoir_keeps_the_first_samples_then_replaces_with_probability_m_over_n():
    assert [reservoir_slot(n, 3, seed=0) for n in (1, 2, 3)] == [0, 1, 2]
    kept = sum(reservoir_slot(n, 10, seed=s) is not None for s in range(50) for n in range(11, 211))
    # expected sum_n 10/n for n = 11..210, times 50 seeds
    expected = 50 * sum(10 / n for n in range(11, 211))
    assert abs(kept - expected) < 0.1 * expected


def test_er_replays_its_memory_and_keeps_it_across_tasks(tmp_path):
    scenario = tiny_online()
    method = get_method("er", {"memory_size": 5, "memory_batch": 3})
    _, data = _run(tmp_path, method, scenario)
    assert len(method.memory) == 5 and method.seen == scenario.stream.n_samples
    # every memory entry points at a real sample of its task
    assert all(0 <= i < scenario.stream.task_sizes[t] for t, i in method.memory.tolist())
    log = (tmp_path / "loss_log.csv").read_text()
    assert "ce" in log and data["summary"]["a_auc"] >= 0


def test_er_outside_an_online_stream_is_an_error(tmp_path):
    from test_methods import make_scenario

    with pytest.raises(ValueError, match="replays an online stream.*icarl"):
        run_scenario(make_scenario(), "er", tmp_path, bundle=_bundle(), overrides={**FAST, "steps_per_task": 1})


@pytest.mark.parametrize("prompt", [None, "a bad photo of a {}."])
def test_continual_clip_trains_nothing_and_equals_zeroshot_with_the_same_prompt(tmp_path, prompt):
    scenario = tiny_online()
    model = tiny_clip()
    before = clone_state(model)
    options = {} if prompt is None else {"method.prompt": prompt}
    _, ours = _run(tmp_path / "cc", "continual_clip", scenario, _bundle(model), **options)
    assert not changed(model, before)
    keys = ("accuracy_matrix", "zero_shot", "retrieval", "anytime", "exposed_accuracy")
    # zero-shot CLIP whose evaluation prompt is the one Continual-CLIP uses gives the same numbers
    same_prompt = tiny_online(template=prompt or TEMPLATE)
    _, zeroshot = _run(tmp_path / "zs", "zeroshot", same_prompt, _bundle(tiny_clip()))
    assert all(ours[k] == zeroshot[k] for k in keys)
    assert len(ours["anytime"]["accuracy"]) > 0  # an untrained model is evaluated along the stream too
    if prompt is not None:
        _, default = _run(tmp_path / "zs-default", "zeroshot", scenario, _bundle(tiny_clip()))
        assert ours["anytime"] != default["anytime"]  # the prompt is really used
