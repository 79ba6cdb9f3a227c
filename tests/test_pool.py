"""Runs trained side by side: same numbers as one after another, errors surface, jobs are sane."""

from __future__ import annotations

import json

import pytest
import torch

import cliplab.study as sh
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.study.pool import cpu_cores, resolve_jobs, run_parallel

needs_toyclip = pytest.mark.skipif(not TOYCLIP_CHECKPOINT.exists(), reason="the shipped ToyCLIP checkpoint is missing")


def test_resolve_jobs_defaults_to_cores_on_cpu_one_on_gpu_and_rejects_zero():
    assert resolve_jobs(None, pending=100, device="cpu") == min(cpu_cores(), 4)
    assert resolve_jobs(None, pending=1, device="cpu") == 1
    assert resolve_jobs(None, pending=100, device="cuda") == 1
    assert resolve_jobs(3, pending=2, device="cpu") == 2  # never more workers than runs
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        resolve_jobs(0, pending=3, device="cpu")


def test_run_parallel_keeps_call_order_and_reports_each_result():
    seen = []
    results = run_parallel(pow, [(2, 10), (3, 3), (5, 2)], jobs=2, on_done=lambda args, r: seen.append((args, r)))
    assert results == [1024, 27, 25]
    assert sorted(seen) == sorted([((2, 10), 1024), ((3, 3), 27), ((5, 2), 25)])


def test_run_parallel_reraises_a_worker_error():
    with pytest.raises(ZeroDivisionError):
        run_parallel(divmod, [(1, 1), (1, 0)], jobs=2)


def test_a_request_twice_with_different_settings_is_refused(tmp_path):
    request = sh.RunRequest("toy-digits-cil", "finetune", 0)
    with pytest.raises(ValueError, match="requested twice with different settings"):
        sh.run_batches([([request], {"lr": 1e-4}), ([request], {"lr": 2e-4})], tmp_path)


def test_one_session_budget_matches_the_multi_session_scenario():
    assert sh.one_session_settings({"progress": False}, "toy-digits-cil")["steps_per_task"] == 5 * 60
    smoke = sh.one_session_settings({"steps_per_task": 3, "max_tasks": 2}, "toy-digits-cil")
    assert smoke["steps_per_task"] == 6 and "max_tasks" not in smoke


@needs_toyclip
def test_parallel_runs_give_the_numbers_of_sequential_runs(tmp_path):
    requests = sh.grid(["toy-digits-cil"], ["finetune", "vr_lwf"], [0])
    settings = sh.study_settings(True, None, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cpu_cores() // 2))  # what each of the 2 workers gets: same float sums
    try:
        for jobs, store in ((1, tmp_path / "serial"), (2, tmp_path / "parallel")):
            sh.run_requests(requests, store, settings=settings, smoke=True, jobs=jobs, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)

    def numbers(store, request):
        metrics = json.loads((request.folder(store) / "metrics.json").read_text())
        return metrics["accuracy_matrix"], metrics["zero_shot"], metrics["retrieval"]

    for request in requests:
        assert numbers(tmp_path / "serial", request) == numbers(tmp_path / "parallel", request)
    assert numbers(tmp_path / "serial", requests[0]) != numbers(tmp_path / "serial", requests[1])
