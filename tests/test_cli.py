"""The command-line contracts other people's scripts rely on."""

from __future__ import annotations

import json
import subprocess
import sys

RETRIEVAL_KEYS = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"}


def _cliplab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cliplab.cli", *args], capture_output=True, text=True, timeout=600)


def test_eval_toyworld_json_has_the_contract_keys_for_any_probe_seed():
    for seed in ("3", "77"):
        done = _cliplab("eval", "--model", "toyclip", "--dataset", "toyworld", "--probe-seed", seed, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(report) == {"shape", "colour", "shape_colour", "retrieval"}
        assert set(report["retrieval"]) == RETRIEVAL_KEYS
        assert all(0.0 <= v <= 100.0 for v in [report["shape"], report["colour"], *report["retrieval"].values()])
        assert report["retrieval"]["i2t_r1"] <= report["retrieval"]["i2t_r5"] <= report["retrieval"]["i2t_r10"]


def test_eval_digits_prints_zero_shot_accuracy():
    done = _cliplab("eval", "--model", "toyclip", "--dataset", "digits", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dataset"] == "digits" and report["n"] > 300 and 0.0 <= report["top1"] <= report["top5"] <= 100.0


def test_bad_input_exits_2_with_the_problem_named():
    done = _cliplab("eval", "--model", "ViT-Z-99")
    assert done.returncode == 2 and "unknown model 'ViT-Z-99'" in done.stderr
    done = _cliplab("eval", "--dataset", "cifar100", "--root", "/nonexistent/data")
    assert done.returncode == 2 and "/nonexistent/data" in done.stderr
