"""The Si-Blurry stream generator (`cliplab.scenarios.si_blurry`) and the online/ODCL metrics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from cliplab.evaluation.online_metrics import (
    anytime_auc,
    class_forgetting,
    odcl_summary,
    online_summary,
    seen_average,
)
from cliplab.scenarios.si_blurry import exposure_order, si_blurry_split

LABELS = [i % 16 for i in range(16 * 20)]  # 16 classes x 20 samples


def _class_tasks(split, labels):
    """task -> set of classes appearing in its stream."""
    return [{labels[i] for i in task} for task in split.tasks]


def test_same_seed_same_stream_other_seed_other_stream():
    a, b = si_blurry_split(LABELS, 4, 50, 10, seed=3), si_blurry_split(LABELS, 4, 50, 10, seed=3)
    assert a.tasks == b.tasks
    assert si_blurry_split(LABELS, 4, 50, 10, seed=4).tasks != a.tasks


def test_a_small_stream_equals_the_reference_samplers_output():
    # 8 classes x 4 samples, T=4, N=50, M=25, seed 3, stochastic: the streams below were produced by
    # moonjunyyy/Si-Blurry's utils/online_sampler.py (OnlineSampler, varing_NM=True) on the same labels.
    labels = [i % 8 for i in range(32)]
    split = si_blurry_split(labels, 4, 50, 25, seed=3)
    assert split.tasks == [
        [9, 15, 10, 2, 25, 17, 26, 18],
        [8, 0, 16, 24],
        [11, 14, 12, 28, 20, 4, 19, 30, 27, 6, 22, 3],
        [31, 29, 23, 13, 7, 5, 21, 1],
    ]
    assert split.disjoint_classes == [[2], [], [4, 3], [5]]
    assert split.blurry_classes == [[1], [0], [6], [7]]


def test_pools_partition_the_classes_and_disjoint_classes_stay_in_their_task():
    split = si_blurry_split(LABELS, 4, 50, 10, seed=0)
    disjoint = [c for cs in split.disjoint_classes for c in cs]
    blurry = [c for cs in split.blurry_classes for c in cs]
    assert len(disjoint) == 8 and len(blurry) == 8  # D = floor(16*50/100 / 4)*4, Bl = the rest
    assert sorted(disjoint + blurry) == list(range(16)) and not split.dropped_classes
    seen = _class_tasks(split, LABELS)
    for t, classes in enumerate(split.disjoint_classes):
        for c in classes:
            assert [c in s for s in seen] == [k == t for k in range(4)]
    assert sorted(split.stream) == list(range(len(LABELS)))  # every sample once


def test_m_percent_of_the_blurry_samples_move_and_task_sizes_follow_the_classes():
    split = si_blurry_split(LABELS, 4, 50, 10, seed=0)
    n_blurry = 8 * 20
    assert split.moved == n_blurry * 10 // 100 == 16
    # the amounts come from cut points in [0, 16): with enough blurry samples per task each task keeps its size
    own = [20 * (len(d) + len(b)) for d, b in zip(split.disjoint_classes, split.blurry_classes)]
    assert [len(t) for t in split.tasks] == own
    # blurry classes leak: some blurry class appears in a task other than its home
    home = {c: t for t, cs in enumerate(split.blurry_classes) for c in cs}
    leaked = {
        LABELS[i] for t, task in enumerate(split.tasks) for i in task if LABELS[i] in home and home[LABELS[i]] != t
    }
    assert leaked


def test_m_zero_keeps_every_class_in_its_home_task_and_n_100_is_fully_disjoint():
    split = si_blurry_split(LABELS, 4, 50, 0, seed=1)
    assert split.moved == 0
    home = {c: t for t, cs in enumerate(split.blurry_classes) for c in cs}
    home.update({c: t for t, cs in enumerate(split.disjoint_classes) for c in cs})
    assert all(home[LABELS[i]] == t for t, task in enumerate(split.tasks) for i in task)
    disjoint = si_blurry_split(LABELS, 4, 100, 10, seed=1)
    assert sum(map(len, disjoint.blurry_classes)) == 0 and disjoint.moved == 0
    assert len(set().union(*_class_tasks(disjoint, LABELS))) == 16


def test_classes_that_do_not_divide_into_tasks_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match=r"classes \[\d+\] never appear"):
        split = si_blurry_split(LABELS, 5, 50, 10, seed=0)  # D = 5, Bl = 10: one class is left out
    assert len(split.dropped_classes) == 1
    dropped = split.dropped_classes[0]
    assert all(LABELS[i] != dropped for i in split.stream)


def test_stochastic_chunks_may_be_empty_without_breaking_the_stream():
    empty = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(30):
            split = si_blurry_split(LABELS, 4, 50, 10, seed=seed)
            empty += sum(1 for d, b in zip(split.disjoint_classes, split.blurry_classes) if not d and not b)
            assert sum(map(len, split.tasks)) == len(LABELS)
    assert empty > 0  # some seeds give a task no home class at all


def test_non_stochastic_split_gives_equal_class_chunks():
    split = si_blurry_split(LABELS, 4, 50, 10, seed=2, stochastic=False)
    assert [len(c) for c in split.disjoint_classes] == [2, 2, 2, 2]
    assert [len(c) for c in split.blurry_classes] == [2, 2, 2, 2]
    assert split.moved == 4 * (40 * 10 // 100)


def test_exposure_order_is_the_order_of_first_appearance():
    assert exposure_order([5, 3, 5, 7, 3], [1, 0, 4, 3, 2]) == [3, 5, 7]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="percentages"):
        si_blurry_split(LABELS, 4, 150, 10)
    with pytest.raises(ValueError, match="n_tasks"):
        si_blurry_split(LABELS, 0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        si_blurry_split([0, 5], 1, n_classes=4)


# --- metrics --------------------------------------------------------------------------------------


def test_a_auc_is_the_mean_or_the_interval_weighted_area():
    acc, samples = [40.0, 60.0, 80.0], [100, 200, 400]
    assert anytime_auc(acc) == pytest.approx(60.0)
    # intervals 100, 100, 200: (40*100 + 60*100 + 80*200) / 400
    assert anytime_auc(acc, samples, "interval") == pytest.approx(65.0)
    assert anytime_auc([50.0, 70.0], [100, 200], "interval") == pytest.approx(60.0)  # equal intervals: the mean
    assert math.isnan(anytime_auc([]))
    with pytest.raises(ValueError, match="increase"):
        anytime_auc(acc, [100, 100, 200], "interval")
    with pytest.raises(ValueError, match="weighting"):
        anytime_auc(acc, weighting="trapezoid")


def test_f_last_leaves_out_classes_never_learned_before_the_last_task():
    # rows: end of task 1..3; classes a, b, c (c first exposed in the last task)
    per_class = [[80.0, 0.0, 0.0], [60.0, 90.0, 0.0], [50.0, 30.0, 70.0]]
    # a: max(80, 60) - 50 = 30; b: max(0, 90) - 30 = 60; c: excluded
    assert class_forgetting(per_class) == pytest.approx(45.0)
    assert math.isnan(class_forgetting([[10.0, 20.0]]))
    summary = online_summary([10.0, 20.0, 60.0], [30.0, 50.0, 40.0], per_class)
    assert summary == pytest.approx({"a_auc": 30.0, "a_avg": 40.0, "a_last": 40.0, "f_last": 45.0})


def test_odcl_metrics_on_a_hand_computed_4x4_matrix():
    R = np.array(
        [
            [90.0, 20.0, 30.0, 40.0],
            [80.0, 70.0, 35.0, 45.0],
            [70.0, 60.0, 85.0, 50.0],
            [60.0, 50.0, 75.0, 95.0],
        ]
    )
    # Transfer: column 1: 20; column 2: (30+35)/2 = 32.5; column 3: (40+45+50)/3 = 45 -> 97.5/3
    # Avg: column means 75, 50, 56.25, 57.5 -> 59.6875; Last: (60+50+75+95)/4 = 70
    # SeenAvg: (90+80+70+60)/4 = 75, (70+60+50)/3 = 60, (85+75)/2 = 80, 95 -> 77.5
    assert odcl_summary(R) == pytest.approx({"transfer": 32.5, "avg": 59.6875, "last": 70.0, "seen_avg": 77.5})
    assert seen_average(R) == pytest.approx(77.5)
    R[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"SeenAvg .* A\[3, 1\]"):
        seen_average(R)


# --- toy-si-blurry: the prompt its stream is scored with -----------------------------------------


def test_toy_stream_is_scored_with_the_training_prompt_unless_the_ensemble_is_asked_for():
    """SIT's code scores the stream with the one prompt it trains with; the ensemble is an option."""
    from cliplab.engine.runner import plan_run
    from cliplab.scenarios import get_scenario

    default = get_scenario("toy-si-blurry", probe_size=16, retrieval_size=8)
    task = default.tasks[0]
    name = task.classnames[0]
    assert task.templates == [task.train_template]
    assert [t(name) for t in task.templates] == [task.train_template(name)]
    ensemble = get_scenario("toy-si-blurry", probe_size=16, retrieval_size=8, eval_prompt="ensemble")
    prompts = {t(name) for t in ensemble.tasks[0].templates}
    assert len(prompts) > 1 and task.train_template(name) in prompts
    with pytest.raises(ValueError, match="eval_prompt must be one of"):
        get_scenario("toy-si-blurry", eval_prompt="best")
    # part of a run's identity, so runs scored the other way are never reused
    _, scored_as_trained = plan_run("toy-si-blurry", "finetune")
    _, scored_by_ensemble = plan_run("toy-si-blurry", "finetune", scenario_options={"eval_prompt": "ensemble"})
    assert scored_as_trained.extra["scenario_options"]["eval_prompt"] == "train"
    assert not scored_as_trained.same_numbers(scored_by_ensemble)
