"""Continual-learning metrics on hand-computed matrices (formulas in cliplab/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cliplab.evaluation.metrics import (
    average_forgetting,
    backward_transfer,
    class_incremental_summary,
    continual_summary,
    mtil_per_task,
    mtil_transfer,
    step_accuracies_from_matrix,
    zero_shot_retention,
)

# Rows = after task 1, 2, 3; columns = tasks 1, 2, 3.
A = [
    [50.0, 20.0, 30.0],
    [60.0, 80.0, 50.0],
    [45.0, 70.0, 90.0],
]


def test_summary_on_hand_computed_matrix():
    summary = continual_summary(A)
    # Transfer: task 2 -> A[1,2] = 20; task 3 -> (30 + 50) / 2 = 40; mean = 30.
    assert summary["transfer"] == pytest.approx(30.0)
    # Avg: column means 155/3, 170/3, 170/3 -> mean 495/9 = 55.
    assert summary["avg"] == pytest.approx(55.0)
    # Last: (45 + 70 + 90) / 3.
    assert summary["last"] == pytest.approx(205.0 / 3.0)
    # BWT: ((45 - 50) + (70 - 80)) / 2.
    assert summary["bwt"] == pytest.approx(-7.5)
    # Forgetting: task 1 max(50, 60) - 45 = 15; task 2 max(80) - 70 = 10; mean 12.5.
    assert summary["forgetting"] == pytest.approx(12.5)
    assert set(summary) >= {"transfer", "avg", "last", "bwt", "forgetting"}
    assert all(isinstance(value, float) for value in summary.values())


def test_accepts_numpy_and_lists_identically():
    assert continual_summary(np.array(A)) == continual_summary(A)


def test_per_task_breakdown():
    per_task = mtil_per_task(A)
    assert math.isnan(per_task["transfer"][0])
    assert per_task["transfer"][1:] == pytest.approx([20.0, 40.0])
    assert per_task["avg"] == pytest.approx([155 / 3, 170 / 3, 170 / 3])
    assert per_task["last"] == pytest.approx([45.0, 70.0, 90.0])


def test_constant_rows_zero_shot_baseline_matches_zscl():
    # ZSCL's zero-shot CLIP ViT-B/16 on MTIL Order I (reference §3.1): every row equals the
    # zero-shot vector, and Transfer excludes task 1 (Aircraft, 24.3).
    zero_shot = [24.3, 88.4, 68.2, 44.6, 54.9, 71.0, 88.5, 59.4, 89.0, 64.7, 65.2]
    summary = continual_summary([zero_shot] * len(zero_shot))
    assert summary["transfer"] == pytest.approx(693.9 / 10)  # 69.4 in ZSCL Table 3
    assert summary["avg"] == pytest.approx(718.2 / 11)  # 65.3
    assert summary["last"] == pytest.approx(718.2 / 11)  # 65.3
    assert round(summary["transfer"], 1) == 69.4 and round(summary["avg"], 1) == 65.3
    assert summary["bwt"] == pytest.approx(0.0)
    assert summary["forgetting"] == pytest.approx(0.0)


def test_transfer_excludes_first_task_even_if_it_is_extreme():
    low_first = [[0.0, 50.0, 70.0]] * 3
    high_first = [[100.0, 50.0, 70.0]] * 3
    assert mtil_transfer(low_first) == mtil_transfer(high_first) == pytest.approx(60.0)


def test_forgetting_ignores_accuracy_before_the_task_was_learned():
    # Task 2 zero-shot (row 1) is 85, learned 80, final 70: "since learned" variant gives 10, not 15.
    matrix = [[50.0, 85.0, 0.0], [50.0, 80.0, 0.0], [50.0, 70.0, 90.0]]
    assert average_forgetting(matrix) == pytest.approx((0.0 + 10.0) / 2)
    assert backward_transfer(matrix) == pytest.approx((0.0 - 10.0) / 2)


def test_negative_forgetting_is_not_clipped():
    matrix = [[40.0, 10.0], [55.0, 90.0]]
    assert average_forgetting(matrix) == pytest.approx(-15.0)
    assert backward_transfer(matrix) == pytest.approx(15.0)


def test_single_task_is_documented_nan():
    summary = continual_summary([[70.0]])
    assert summary["avg"] == summary["last"] == 70.0
    assert all(math.isnan(summary[key]) for key in ("transfer", "bwt", "forgetting"))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "square"),
        ([1.0, 2.0], "2-D"),
        ([[1.0, 2.0], [3.0]], "rectangular"),
        ([[50.0, 101.0], [3.0, 4.0]], r"\[0, 100\]"),
        ([[50.0, 1.0], [-0.5, 4.0]], r"A\[1, 0\]"),
        ([[50.0, float("inf")], [1.0, 4.0]], "percentages"),
        ([[50.0, float("nan")], [1.0, 4.0]], r"Transfer.*A\[0, 1\].*NaN"),
        ([[50.0, 3.0], [float("nan"), 4.0]], r"NaN"),
        (np.zeros((0, 0)), "empty"),
        ([["a", "b"], ["c", "d"]], "numbers"),
    ],
)
def test_invalid_matrices_raise_clear_errors(matrix, message):
    with pytest.raises(ValueError, match=message):
        continual_summary(matrix)


def test_lower_triangle_metrics_accept_missing_upper_triangle():
    nan = float("nan")
    matrix = [[50.0, nan], [40.0, 80.0]]
    assert backward_transfer(matrix) == pytest.approx(-10.0)
    assert average_forgetting(matrix) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="Transfer"):
        mtil_transfer(matrix)


def test_class_incremental_from_step_accuracies():
    result = class_incremental_summary([90.0, 80.0, 70.0])
    assert result["avg"] == pytest.approx(80.0)
    assert result["last"] == pytest.approx(70.0)


def test_class_incremental_from_matrix_weighted_by_class_counts():
    nan = float("nan")
    matrix = [[90.0, nan, nan], [80.0, 60.0, nan], [70.0, 50.0, 40.0]]
    counts = [2, 1, 1]
    # acc_1 = 90; acc_2 = (2*80 + 60) / 3; acc_3 = (2*70 + 50 + 40) / 4 = 57.5.
    steps = step_accuracies_from_matrix(matrix, counts)
    assert steps.tolist() == pytest.approx([90.0, 220.0 / 3.0, 57.5])
    result = class_incremental_summary(matrix, class_counts=counts)
    assert result["avg"] == pytest.approx((90.0 + 220.0 / 3.0 + 57.5) / 3.0)
    assert result["last"] == pytest.approx(57.5)


def test_class_incremental_argument_errors():
    with pytest.raises(ValueError, match="class_counts"):
        class_incremental_summary([[90.0]])
    with pytest.raises(ValueError, match="class_counts"):
        class_incremental_summary([[90.0, 1.0], [2.0, 3.0]], class_counts=[1])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        class_incremental_summary([0.9, 1.2, 120.0])


def test_zero_shot_retention():
    result = zero_shot_retention(60.0, [54.0, 45.0, 30.0])
    assert result["delta"] == pytest.approx([-6.0, -15.0, -30.0])
    assert result["retention"] == pytest.approx([90.0, 75.0, 50.0])
    assert result["final_delta"] == pytest.approx(-30.0)
    assert result["final_retention"] == pytest.approx(50.0)
    assert math.isnan(zero_shot_retention(0.0, [10.0])["final_retention"])
