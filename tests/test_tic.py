"""The time-continual protocol: the drifting ToyWorld, TiC's strategies, Mod-X's loss, the contrastive
objective and the time x time record, checked with real numbers on tiny settings."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplab.engine.objectives import LOGIT_SCALE_MAX, clip_contrastive_loss
from cliplab.engine.runner import plan_run, run_scenario
from cliplab.evaluation.metrics import time_continual_summary
from cliplab.methods import buffer_shares, kept_sizes, modx_loss
from cliplab.methods.tic import _kept_indices
from cliplab.models import load_model
from cliplab.results import load_run
from cliplab.scenarios import get_scenario
from cliplab.toyworld import drift
from cliplab.toyworld.vocabulary import ALL_SHAPES

torch.set_num_threads(1)

TINY = [
    "steps_per_task=2",
    "batch_size=8",
    "warmup_steps=1",
    "checkpoint_every=0",
    "progress=false",
    "max_tasks=3",
    "probe_size=16",  # the static ToyWorld probes (run settings, like every toy scenario's)
    "retrieval_size=12",
]
TINY_WORLD = {"pool_size": 24, "eval_size": 12}


def _run(tmp_path, method, extra=(), options=None, name=None):
    folder = tmp_path / (name or method)
    run_scenario("toy-tic", method, folder, overrides=[*TINY, *extra], scenario_options=options or TINY_WORLD)
    return folder


def _loss_rows(folder) -> list[dict]:
    with open(folder / "loss_log.csv") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# the drifting world
# ---------------------------------------------------------------------------------------------


def test_drift_is_deterministic_and_the_streams_are_disjoint():
    a_images, a_captions = drift.training_pool(3, 2, 50)
    b_images, b_captions = drift.training_pool(3, 2, 50)
    assert torch.equal(a_images, b_images) and a_captions == b_captions
    e_images, _ = drift.retrieval_set(3, 2, 50)
    c_images, _ = drift.classification_set(3, 2, 50)
    assert not torch.equal(a_images, e_images) and not torch.equal(e_images, c_images)
    other, _ = drift.training_pool(4, 2, 50)
    assert not torch.equal(a_images, other), "another world seed is another world"


def test_new_shapes_enter_one_per_step_and_old_ones_grow_rare():
    weights = np.stack([drift.shape_weights(t) for t in range(1, 6)])
    circle, crescent, arrow = (ALL_SHAPES.index(s) for s in ("circle", "crescent", "arrow"))
    assert weights[0, arrow] == 0 and weights[1, arrow] > weights[1, crescent] > weights[1, circle]
    assert np.all(np.diff(weights[:, circle]) < 0), "a pretraining shape grows rarer every step"
    assert weights[:, circle].min() > 0, "old shapes grow rare, never vanish"
    assert [len(drift.classnames(t)) for t in range(1, 6)] == [9, 10, 11, 12, 13]
    # measured on a pool, not only the prior: at t5 the newest shape is the most frequent one
    _, captions = drift.training_pool(0, 5, 2000)
    assert sum("letter t" in c for c in captions) / len(captions) > 0.25


def test_words_come_go_and_a_thing_is_renamed():
    early = " ".join(drift.training_pool(0, 1, 1500)[1])
    late = " ".join(drift.training_pool(0, 5, 1500)[1])
    assert "zorb" not in early and "zorb" in late, "coined words appear from step 3"
    assert "plus sign" in early and "plus sign" not in late, "synonyms go out of use"
    assert "crescent" in early and "crescent" not in late and "moon" in late, "the crescent is renamed"
    assert drift.classnames(3)[8] == "crescent" and drift.classnames(4)[8] == "moon"
    assert "#" not in early and "#" in late, "hashtag templates come in"


def test_styles_drift_darker_and_noisier():
    first, last = drift.training_pool(0, 1, 400)[0].float(), drift.training_pool(0, 5, 400)[0].float()
    assert last.mean() < first.mean() - 10, (first.mean(), last.mean())


def test_every_caption_fits_the_toyclip_context():
    tokenizer = load_model("toyclip", pretrained="random").tokenizer
    for t in range(1, 6):
        captions = drift.training_pool(0, t, 300)[1] + drift.retrieval_set(0, t, 100)[1]
        tokens = tokenizer(captions)
        assert ((tokens > 0).sum(1) < tokens.shape[1]).all(), f"a step-{t} caption is truncated"


# ---------------------------------------------------------------------------------------------
# losses and summaries, against hand-computed values
# ---------------------------------------------------------------------------------------------


def test_time_continual_summary_flat_and_row_averages_differ_on_a_hand_matrix():
    E = [[10, 20, 30], [40, 50, 60], [70, 80, 100]]
    flat = time_continual_summary(E)
    assert flat["id"] == pytest.approx((10 + 50 + 100) / 3)
    assert flat["backward"] == pytest.approx((40 + 70 + 80) / 3)
    assert flat["forward"] == pytest.approx((20 + 30 + 60) / 3)
    row = time_continual_summary(E, averaging="row")
    assert row["backward"] == pytest.approx((40 + (70 + 80) / 2) / 2)
    assert row["forward"] == pytest.approx(((20 + 30) / 2 + 60) / 2)
    assert time_continual_summary([[42.0]])["id"] == 42.0 and math.isnan(time_continual_summary([[42.0]])["forward"])
    with pytest.raises(ValueError, match="'flat' or 'row'"):
        time_continual_summary(E, averaging="mean")


def test_clip_loss_equals_the_hand_computed_symmetric_cross_entropy():
    I = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
    T = F.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=1)
    s = torch.tensor(10.0)
    S = s * I @ T.T
    i2t = -(torch.log_softmax(S, 1)[0, 0] + torch.log_softmax(S, 1)[1, 1]) / 2
    t2i = -(torch.log_softmax(S.T, 1)[0, 0] + torch.log_softmax(S.T, 1)[1, 1]) / 2
    assert clip_contrastive_loss(I, T, s).item() == pytest.approx(((i2t + t2i) / 2).item(), rel=1e-6)
    assert clip_contrastive_loss(I, T, s, groups=torch.tensor([0, 1])).item() == pytest.approx(
        clip_contrastive_loss(I, T, s).item()
    )


def test_identical_captions_as_negatives_have_the_multi_positive_gradient():
    """Why plain InfoNCE needs no special case for duplicate captions (toy pools have them)."""
    torch.manual_seed(0)
    images = F.normalize(torch.randn(4, 8), dim=1)
    base = F.normalize(torch.randn(3, 8), dim=1)
    grads = []
    for groups in (None, torch.tensor([0, 1, 1, 2])):
        texts = base[[0, 1, 1, 2]].clone().requires_grad_(True)
        clip_contrastive_loss(images, texts, torch.tensor(5.0), groups).backward()
        grads.append(texts.grad[1] + texts.grad[2])  # the shared caption's total gradient
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def _replace_rows_reference(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Mod-X's code, re-stated: rows the old model gets wrong are overwritten with the new model's
    rows (graph included), then F.kl_div(softmax(new).log(), softmax(old), reduction='sum')."""
    wrong = old.argmax(1) != torch.arange(len(old))
    old = torch.where(wrong[:, None], new, old)
    return F.kl_div(F.softmax(new, 1).log(), F.softmax(old, 1), reduction="sum")


def test_modx_row_mask_equals_the_authors_row_replacement_in_value_and_gradient():
    torch.manual_seed(1)
    old_i, old_t = (F.normalize(torch.randn(6, 16), dim=1) for _ in range(2))
    old_t[:3] = F.normalize(old_i[:3] + 0.1 * torch.randn(3, 16), dim=1)  # 3 rows right, the rest mostly wrong
    leaves = [torch.randn(6, 16, requires_grad=True) for _ in range(2)]
    images, texts = (F.normalize(x, dim=1) for x in leaves)
    ours = modx_loss(images, texts, old_i, old_t)
    ours.backward()
    ours_grads = [x.grad.clone() for x in leaves]
    for x in leaves:
        x.grad = None
    images, texts = (F.normalize(x, dim=1) for x in leaves)
    ref = 0.5 * (
        _replace_rows_reference(images @ texts.T, old_i @ old_t.T)
        + _replace_rows_reference(texts @ images.T, old_t @ old_i.T)
    )
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5) and ours.item() > 0
    for a, x in zip(ours_grads, leaves):
        assert torch.allclose(a, x.grad, atol=1e-6)


def test_modx_direction_reduction_and_wrong_rows():
    torch.manual_seed(2)
    old = F.normalize(torch.randn(5, 8), dim=1)
    assert modx_loss(old, old, old, old).item() == pytest.approx(0.0, abs=1e-7), "no loss when nothing moved"
    new_i, new_t = (F.normalize(torch.randn(5, 8), dim=1) for _ in range(2))
    P, P_old = new_i @ new_t.T, old @ old.T  # old images = old texts: every old row is right
    p, q = F.softmax(P_old, 1), F.softmax(P, 1)
    kl_old_new = (p * (p.log() - q.log())).sum()
    Q = new_t @ new_i.T
    kl_t2i = (p * (p.log() - F.softmax(Q, 1).log())).sum()
    assert modx_loss(new_i, new_t, old, old).item() == pytest.approx(0.5 * (kl_old_new + kl_t2i).item(), rel=1e-5)
    assert modx_loss(new_i, new_t, old, old, "mean").item() == pytest.approx(
        modx_loss(new_i, new_t, old, old).item() / 5, rel=1e-6
    )
    shuffled = old[[1, 2, 3, 4, 0]]  # old texts of the wrong pairs: every old row is wrong
    assert modx_loss(new_i, new_t, old, shuffled).item() == 0.0


# ---------------------------------------------------------------------------------------------
# TiC's buffers and budgets
# ---------------------------------------------------------------------------------------------


def test_exp_and_equal_buffers_have_tics_shares_and_only_shrink():
    assert buffer_shares("exp", 1000, 2) == [500, 500]
    assert buffer_shares("exp", 1000, 3) == [250, 250, 500]
    assert buffer_shares("equal", 900, 3) == [300, 300, 300]
    sizes = [1000] * 5
    assert kept_sizes("exp", sizes, 3) == [250, 250, 500]
    assert kept_sizes("equal", sizes, 4) == [250, 250, 250, 250]
    for step in range(1, 4):  # nested: a pool's kept count never grows again
        assert all(a >= b for a, b in zip(kept_sizes("exp", sizes, step), kept_sizes("exp", sizes, step + 1)))
    big, small = _kept_indices(100, 40, 0, 2), _kept_indices(100, 20, 0, 2)
    assert set(small) <= set(big), "data once dropped never returns"


def test_every_strategy_sees_the_same_samples_per_step_and_the_oracle_t_times_more(tmp_path):
    for method, factor in (("sequential", [1, 1, 1]), ("oracle", [1, 2, 3])):
        rows = _loss_rows(_run(tmp_path, method))
        steps = [sum(r["term"] == "total" and r["task"] == f"t{t}" for r in rows) for t in (1, 2, 3)]
        assert steps == [2 * f for f in factor], (method, steps)
        first_lr = [float(next(r["lr"] for r in rows if r["task"] == f"t{t}")) for t in (1, 2, 3)]
        assert all(lr == pytest.approx(first_lr[0]) for lr in first_lr), "the schedule restarts every step"


def test_cumulative_draws_from_old_pools_and_sequential_never_does():
    from cliplab.methods import Cumulative, Sequential
    from cliplab.methods.base import TaskContext

    scenario = get_scenario("toy-tic", **TINY_WORLD)
    config = plan_run("toy-tic", "cumulative", overrides=TINY)[0]
    pools = [t.train_data(None) for t in scenario.tasks]
    ctx = TaskContext(
        None, None, None, None, scenario, scenario.tasks[2], 2, config, torch.device("cpu"), None, None, pools[2], 2, 0
    )
    assert Sequential().train_dataset(ctx) is pools[2]
    everything = Cumulative().train_dataset(ctx)
    assert len(everything) == sum(len(p) for p in pools[:3])
    captions = {everything[i][1] for i in range(len(everything))}
    assert set(pools[0].captions) <= captions
    exp = Cumulative({"buffer": "exp"}).train_dataset(ctx)
    assert len(exp) == len(pools[2]) + sum(kept_sizes("exp", [len(p) for p in pools], 2))


# ---------------------------------------------------------------------------------------------
# end to end: the record, resume, strategies' defining behaviour
# ---------------------------------------------------------------------------------------------


def test_metrics_json_holds_the_time_continual_record(tmp_path):
    folder = _run(tmp_path, "modx")
    data = json.loads((folder / "metrics.json").read_text())
    assert data["protocol"] == "time_continual" and data["tasks"] == ["t1", "t2", "t3"]
    summary, A = data["summary"], np.array(data["accuracy_matrix"])
    assert summary["id"] == pytest.approx(np.diag(A).mean())
    assert summary["backward"] == pytest.approx(np.mean([A[1, 0], A[2, 0], A[2, 1]]))
    assert summary["forward"] == pytest.approx(np.mean([A[0, 1], A[0, 2], A[1, 2]]))
    i2t, t2i = (np.array(data["retrieval_matrices"][k]) for k in ("i2t_r1", "t2i_r1"))
    assert np.allclose(A, (i2t + t2i) / 2)
    C = np.array(data["classification_matrix"])
    assert C.shape == (3, 3) and summary["classification_id"] == pytest.approx(np.diag(C).mean())
    assert {"toyworld_shape", "toyworld_shape_colour"} <= set(data["zero_shot"]), (
        "static probes of the pretrained world"
    )
    terms = {r["term"] for r in _loss_rows(folder)}
    assert {"clip", "modx"} <= terms and "ce" not in terms


def test_the_logit_scale_is_learned_and_clamped(tmp_path):
    folder = _run(tmp_path, "sequential", extra=["lr=0.5", "max_tasks=1", "warmup_steps=0"])
    from cliplab.checkpoints import load_state_dict

    scale = load_state_dict(folder / "checkpoints" / "task_0.safetensors")["logit_scale"].float()
    assert 0.0 <= scale.item() <= LOGIT_SCALE_MAX + 1e-6
    assert scale.item() != pytest.approx(load_model("toyclip").model.logit_scale.item(), abs=1e-4)


def test_restart_starts_every_step_from_the_time0_model(tmp_path):
    """Step 2 of restart trains from the pretrained model on steps 1-2: its weights do not depend on step 1's training."""
    from cliplab.checkpoints import load_state_dict

    a = _run(tmp_path, "restart", extra=["max_tasks=2"], name="a")
    b = _run(tmp_path, "restart", extra=["max_tasks=2", "lr_per_task={'t1': 0.0}"], name="b")
    weights = [[load_state_dict(f / "checkpoints" / f"task_{i}.safetensors") for i in (0, 1)] for f in (a, b)]
    assert any(not torch.equal(weights[0][0][k], weights[1][0][k]) for k in weights[0][0]), "step 1 differs"
    assert all(torch.equal(weights[0][1][k], weights[1][1][k]) for k in weights[0][1]), "step 2 does not"


def test_a_run_interrupted_mid_step_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    sets = ["steps_per_task=4", "checkpoint_every=2", "max_tasks=2"]
    reference = load_run(_run(tmp_path, "cumulative", extra=sets, name="reference"))
    from cliplab.methods.tic import Cumulative

    def crash(self, ctx, step):
        if ctx.task_index == 1 and step == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Cumulative, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "cumulative", extra=sets, name="resumed")
    monkeypatch.undo()
    resumed = load_run(_run(tmp_path, "cumulative", extra=sets, name="resumed"))
    assert (
        resumed.accuracy_matrix == reference.accuracy_matrix
        and resumed.extra["classification_matrix"] == (reference.extra["classification_matrix"])
    )


def test_methods_and_protocols_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="method 'vr_lwf' is defined for classification.*cumulative"):
        plan_run("toy-tic", "vr_lwf")
    with pytest.raises(ValueError, match="method 'modx' is defined for contrastive"):
        plan_run("toy-digits-cil", "modx")
    with pytest.raises(ValueError, match="buffer must be one of"):
        plan_run("toy-tic", "cumulative", overrides=["method.buffer=fifo"])


@pytest.mark.slow
def test_contrastive_training_on_two_gloo_ranks_agrees_with_one_process(tmp_path):
    """torchrun with 2 CPU ranks: each rank holds half of every batch and the features are gathered, so
    the contrastive loss still sees the whole batch. Tolerances as the classification twin in test_engine."""
    import os
    import subprocess
    import sys

    from cliplab.checkpoints import load_state_dict

    sets = [f"--set={s}" for s in [*TINY, "max_tasks=1", "steps_per_task=4", "augment=false"]]
    options = [f"--scenario-option={k}={v}" for k, v in TINY_WORLD.items()]
    args = ["run", "--scenario", "toy-tic", "--method", "sequential", "--seed", "5", *sets, *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    single = subprocess.run(
        [sys.executable, "-m", "cliplab.cli", *args, "--out", str(tmp_path / "single")], env=env, capture_output=True
    )
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "cliplab.cli",
        ]
        + [*args, "--out", str(tmp_path / "ddp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    a, b = (load_state_dict(tmp_path / n / "checkpoints" / "task_0.safetensors") for n in ("single", "ddp"))
    start = load_model("toyclip").model.state_dict()
    flat = lambda d: torch.cat([d[k].float().flatten() for k in sorted(d)])
    moved, gap = (flat(a) - flat(start)).abs(), (flat(a) - flat(b)).abs()
    assert moved.max() > 1e-4, "training changed the weights"
    assert gap.mean() < 0.02 * moved.mean(), f"mean gap {gap.mean():.2e} vs mean update {moved.mean():.2e}"
