"""CLL-CLIP's mechanisms with real numbers: TEIR's initialisation and per-row scale, the cross-modal
loss, the growing embedding, and (through the one training loop) which rows move and how."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cliplab.checkpoints import load_state_dict
from cliplab.engine.loop import task_steps
from cliplab.engine.objectives import clip_contrastive_loss
from cliplab.engine.runner import plan_run, run_scenario
from cliplab.methods.cll_clip import (
    CLLCLIP,
    epoch_ends,
    grow_embedding,
    multi_positive_infonce,
    recall_mean,
    teir_rows,
    teir_scale,
)
from cliplab.models import load_model
from cliplab.results.layout import RunFolder
from cliplab.scenarios import get_scenario
from cliplab.tokens import ExpandedTokenizer

torch.set_num_threads(1)


def tiny_clip(seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
        text_cfg={"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    )


def test_teir_rows_follow_the_scalar_mean_and_std_of_the_whole_matrix():
    matrix = torch.randn(500, 16) * 0.3 + 0.1
    matrix[:, 0] += 5.0  # one dimension far off: TEIR's statistics are scalars, not per dimension
    rows = teir_rows(matrix, 4000, torch.Generator().manual_seed(0))
    assert rows.mean().item() == pytest.approx(matrix.mean().item(), abs=0.03)
    assert rows.std().item() == pytest.approx(matrix.std().item(), rel=0.02)
    assert rows[:, 0].mean().item() == pytest.approx(rows[:, 1].mean().item(), abs=0.1)


def test_teir_scale_is_current_use_over_frequency_with_special_tokens_zero():
    frequencies = torch.tensor([2.0, 2.0, 1.0, 3.0, 2.0, 1.0])
    current = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    scale = teir_scale(frequencies, current, special_ids=[4, 5])
    assert scale.tolist() == [0.5, 0.0, 1.0, pytest.approx(1 / 3), 0.0, 0.0]


def test_cross_modal_loss_by_hand_with_two_captions_of_one_image():
    texts = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    images = F.normalize(torch.tensor([[1.0, 0.2], [1.0, 0.2], [0.1, 1.0]]), dim=1)
    groups = torch.tensor([7, 7, 9])  # captions 0 and 1 describe the same image
    tau = torch.tensor(0.5)
    logits = texts @ images.T / tau
    truth = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    by_hand = 0.5 * (-(truth * logits.log_softmax(1)).sum(1).mean() - (truth * logits.T.log_softmax(1)).sum(1).mean())
    assert multi_positive_infonce(texts, images, tau, groups).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # distinct groups: CLIP's InfoNCE with arange targets
    plain = multi_positive_infonce(texts, images, tau, torch.arange(3))
    arange = torch.arange(3)
    assert plain.item() == pytest.approx(
        0.5 * (F.cross_entropy(logits, arange) + F.cross_entropy(logits.T, arange)).item(), rel=1e-6
    )


def test_cross_modal_loss_equals_the_contrastive_objective_at_scale_one_over_tau():
    generator = torch.Generator().manual_seed(0)
    texts = F.normalize(torch.randn(12, 8, generator=generator), dim=1)
    images = F.normalize(torch.randn(12, 8, generator=generator), dim=1)
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 7])
    tau = torch.tensor(0.07)
    ours = multi_positive_infonce(texts, images, tau, groups)
    assert ours.item() == pytest.approx(clip_contrastive_loss(images, texts, 1 / tau, groups).item(), rel=1e-6)


def test_growing_keeps_old_rows_bit_for_bit_and_appends_the_new_ones():
    model = tiny_clip()
    old = model.token_embedding.weight.detach().clone()
    new = torch.randn(5, old.shape[1])
    grow_embedding(model, new)
    weight = model.token_embedding.weight
    assert weight.shape == (old.shape[0] + 5, old.shape[1])
    assert torch.equal(weight[: old.shape[0]], old) and torch.equal(weight[old.shape[0] :], new)


def test_recall_mean_by_hand_with_a_miss_in_each_direction():
    images = torch.eye(3)
    captions = torch.tensor([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.0, 0.19**0.5]])
    owner = torch.tensor([0, 1, 2, 2])
    # text->image: caption 0 ranks image 1 first, caption 3 image 0: R@1 = 2/4, R@2 = 4/4.
    # image->text: image 0's own caption (0.6) is beaten by caption 3 (0.9): R@1 = 2/3, R@2 = 3/3.
    assert math.isclose(recall_mean(images, captions, owner, ks=(1, 2)), (50 + 100 + 200 / 3 + 100) / 4, rel_tol=1e-6)
    assert math.isclose(recall_mean(images, captions, owner), (50 + 100 + 100 + 200 / 3 + 100 + 100) / 6, rel_tol=1e-6)


def test_recall_mean_agrees_with_the_evaluations_retrieval_metrics():
    """The method keeps its own small r_mean (methods import only methods.*); it must rank as the
    evaluation's retrieval does, with several captions per image and ties-free random features."""
    from cliplab.evaluation.retrieval import retrieval_metrics

    generator = torch.Generator().manual_seed(3)
    images = F.normalize(torch.randn(40, 16, generator=generator), dim=-1)
    owner = torch.arange(40).repeat_interleave(3)[torch.randperm(120, generator=generator)]
    captions = F.normalize(images[owner] + 0.5 * torch.randn(120, 16, generator=generator), dim=-1)
    metrics = retrieval_metrics(images, captions, owner)
    expected = sum(metrics[f"{d}_r{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)) / 6
    assert 20 < metrics["t2i_r1"] < 90  # neither trivial nor hopeless: the ranks matter
    assert math.isclose(recall_mean(images, captions, owner), expected, rel_tol=1e-6)  # float32 means


def test_epochs_end_where_a_pass_over_the_pool_does_and_at_the_last_step():
    assert epoch_ends(2000, 64, 94) == {32, 63, 94}  # toy-languages: 3 epochs of 31.25 steps
    assert epoch_ends(96, 16, 14) == {6, 12, 14}  # a partial last epoch ends with the task
    assert epoch_ends(96, 16, 4) == {4}


def test_options_resolve_teir_and_reject_unknown_values():
    assert (CLLCLIP().init, CLLCLIP().regularize) == ("teir", "grad_decay")
    plain = CLLCLIP({"teir": False})
    assert (plain.init, plain.regularize) == ("normal", "none")
    assert CLLCLIP({"regularize": "grad"}).regularize == "grad"
    with pytest.raises(ValueError, match="regularize must be"):
        CLLCLIP({"regularize": "l2"})
    with pytest.raises(ValueError, match="init must be"):
        CLLCLIP({"init": "zeros"})
    assert math.isclose(float(CLLCLIP().temperature.detach()), 0.07, rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# through the one loop, on toy-languages at tiny settings
# ---------------------------------------------------------------------------------------------

TINY = [
    "epochs_per_task=none",  # toy-languages counts epochs (3); tests count steps
    "steps_per_task=4",
    "batch_size=16",
    "warmup_steps=1",
    "checkpoint_every=0",
    "progress=false",
    "max_tasks=2",
    "probe_size=16",
    "retrieval_size=12",
]
TINY_DATA = {"train_size": 96, "test_size": 24}
BASE_ROWS = 49408


def _run(folder, method="cll_clip", extra=()):
    return run_scenario("toy-languages", method, folder, overrides=[*TINY, *extra], scenario_options=TINY_DATA)


def _embedding(folder, task: int) -> torch.Tensor:
    return load_state_dict(RunFolder(folder).task_checkpoint(task))["token_embedding.weight"]


@pytest.fixture(scope="module")
def teir_run(module_tmp_path):
    return module_tmp_path, _run(module_tmp_path)


@pytest.fixture(scope="module")
def language_tokens():
    scenario = get_scenario("toy-languages", **TINY_DATA)
    tokenizer = ExpandedTokenizer(open_clip.get_tokenizer("ToyCLIP"), [t.words for t in scenario.tasks])
    used = []
    for k, task in enumerate(scenario.tasks[:2]):
        tokenizer.active_rows = lambda k=k: tokenizer.vocab_size_after(k)
        used.append(tokenizer.token_ids(task.train_data(None).captions))
    return tokenizer, used


def test_teir_leaves_rows_of_absent_and_special_tokens_bit_identical(teir_run, language_tokens):
    folder, _ = teir_run
    tokenizer, used = language_tokens
    start = load_model("toyclip").model.token_embedding.weight.detach()
    after = [_embedding(folder, 0), _embedding(folder, 1)]
    assert after[0].shape[0] == tokenizer.vocab_size_after(0) and after[1].shape[0] == tokenizer.vocab_size_after(1)
    untouched = sorted(set(range(BASE_ROWS)) - used[0] - used[1])
    assert torch.equal(after[1][untouched], start[untouched])
    assert torch.equal(after[1][[49406, 49407]], start[[49406, 49407]])  # start/end tokens frozen by TEIR
    moved = (after[0][:BASE_ROWS] != start).any(1).nonzero().flatten().tolist()
    assert moved and set(moved) <= used[0]  # only the language's own tokens move


def test_without_teir_every_row_decays_and_the_end_token_is_trained(tmp_path, language_tokens):
    _, used = language_tokens
    folder = tmp_path / "plain"
    _run(folder, extra=["method.teir=false"])
    start = load_model("toyclip").model.token_embedding.weight.detach()
    after = _embedding(folder, 0)
    absent = sorted(set(range(BASE_ROWS)) - used[0] - {49406, 49407, 0})[:500]
    # AdamW's decoupled decay on rows that never get a gradient: x (1 - lr_t * wd) per step, with
    # lr_t = lr x min(1, (t + 1) / warmup) = lr under warm-up 1 and the constant schedule
    config = json.loads((folder / "metrics.json").read_text())["config"]
    assert config["lr_schedule"] == "constant" and config["warmup_steps"] == 1
    steps = task_steps(SimpleNamespace(**config), TINY_DATA["train_size"])
    assert steps == 4
    factor = (1 - config["lr"] * config["weight_decay"]) ** steps
    assert torch.allclose(after[absent], start[absent] * factor, rtol=1e-5, atol=0)
    assert not torch.equal(after[49407], start[49407])  # the pooled end token moves without TEIR


def test_token_frequencies_count_the_tasks_that_used_each_token(teir_run, language_tokens):
    folder, _ = teir_run
    tokenizer, used = language_tokens
    frequencies = load_file(str(RunFolder(folder).method_state(1)))["token_frequencies"]
    assert len(frequencies) == tokenizer.vocab_size_after(1)
    for token in (0, 1000, 49407):  # CLIP tokens no language used: 1 + the first expansion's +1
        assert token not in used[0] | used[1] and frequencies[token] == 2
    both_new = sorted((used[0] & used[1]) & set(tokenizer.new_ids(0)))
    assert both_new and (frequencies[both_new] == 1 + 2).all()  # avo's tokens bekri borrowed
    both_old = sorted((used[0] & used[1]) - set(tokenizer.new_ids(0)))
    assert both_old and (frequencies[both_old] == 2 + 2).all()
    only_second = sorted(set(tokenizer.new_ids(1)) & used[1])
    assert only_second and (frequencies[only_second] == 1 + 1).all()


def test_metrics_record_the_language_matrices_and_english(teir_run):
    folder, _ = teir_run
    data = json.loads((folder / "metrics.json").read_text())
    assert data["protocol"] == "language_continual" and data["tasks"] == ["avo", "bekri"]
    assert data["accuracy_matrix"] == data["retrieval_matrices"]["t2i_r1"] != data["retrieval_matrices"]["i2t_r1"]
    assert set(data["retrieval"]) == {"english", "toyworld"}
    english = data["retrieval"]["english"]
    assert {"i2t_r1", "t2i_r1", "i2t_r5", "t2i_r10"} <= set(english) and all(len(c) == 3 for c in english.values())
    assert data["zero_shot_row"] == data["retrieval_zero_shot_rows"]["t2i_r1"]
    assert {"bwt", "last", "i2t_bwt"} <= set(data["summary"])


def test_cll_clip_needs_a_language_scenario_and_finetune_trains_the_text_tower(tmp_path):
    with pytest.raises(ValueError, match="cll_clip.*contrastive.*toy-digits-cil"):
        plan_run("toy-digits-cil", "cll_clip")
    folder = tmp_path / "ft"
    _run(folder, "finetune", extra=["max_tasks=1"])
    start, after = load_model("toyclip").model.state_dict(), load_state_dict(RunFolder(folder).task_checkpoint(0))
    assert after["token_embedding.weight"].shape[0] == BASE_ROWS  # no new ids: BPE pieces
    assert not torch.equal(
        after["transformer.resblocks.0.attn.in_proj_weight"], start["transformer.resblocks.0.attn.in_proj_weight"]
    )
    assert torch.equal(after["visual.conv1.weight"], start["visual.conv1.weight"])


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path, teir_run, monkeypatch):
    """Stop in the middle of the second language after a mid-task checkpoint; rerun: same metrics."""
    from cliplab.methods import cll_clip as module

    folder = tmp_path / "interrupted"
    original = module.CLLCLIP.after_step

    def crash(self, ctx, step):
        original(self, ctx, step)
        if ctx.task_index == 1 and step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(module.CLLCLIP, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(folder, extra=["checkpoint_every=2"])
    monkeypatch.setattr(module.CLLCLIP, "after_step", original)
    resumed = _run(folder, extra=["checkpoint_every=2"])
    reference = _run(tmp_path / "straight", extra=["checkpoint_every=2"])
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    assert torch.equal(_embedding(folder, 1), _embedding(tmp_path / "straight", 1))


def test_without_new_ids_the_languages_bpe_pieces_are_trained_in_place(tmp_path):
    folder = tmp_path / "bpe"
    _run(folder, extra=["max_tasks=1", "method.expand_vocabulary=false"])
    start = load_model("toyclip").model.token_embedding.weight.detach()
    after = _embedding(folder, 0)
    assert after.shape == start.shape  # no new rows: the words stay CLIP's BPE pieces
    scenario = get_scenario("toy-languages", **TINY_DATA)
    pieces = {
        i for c in scenario.tasks[0].train_data(None).captions for i in open_clip.get_tokenizer("ToyCLIP").encode(c)
    }
    moved = set((after != start).any(1).nonzero().flatten().tolist())
    assert moved and moved <= pieces


EPOCHS = ["steps_per_task=22", "max_tasks=1", "lr=0.05"]  # 6 steps an epoch: ends at 6, 12, 18, 22


def test_the_task_ends_with_the_embeddings_of_the_best_validation_epoch(tmp_path, monkeypatch):
    """The authors keep the epoch with the best validation r_mean (a later one must be strictly better)."""
    from cliplab.methods import cll_clip as module

    seen = []  # (step, r_mean, embeddings) at each epoch end, as the method scored them
    original = module.CLLCLIP._validation_score

    def spy(self, ctx, validation):
        score = original(self, ctx, validation)
        seen.append((score, ctx.model.token_embedding.weight.detach().clone()))
        return score

    monkeypatch.setattr(module.CLLCLIP, "_validation_score", spy)
    _run(tmp_path / "best", extra=EPOCHS)
    assert len(seen) == 4
    scores = [score for score, _ in seen]
    best = scores.index(max(scores))  # the first of equal scores
    assert best < len(seen) - 1  # here the tiny pool reaches 100 % at step 18 and ties at 22: step 18 is kept
    assert torch.equal(_embedding(tmp_path / "best", 0), seen[best][1])
    assert not torch.equal(seen[best][1], seen[-1][1])
    monkeypatch.setattr(module.CLLCLIP, "_validation_score", original)
    _run(tmp_path / "last", extra=[*EPOCHS, "method.select_epoch=false"])
    assert torch.equal(_embedding(tmp_path / "last", 0), seen[-1][1])  # without selection: the last step


def test_a_run_interrupted_after_a_best_epoch_resumes_to_the_same_embeddings(tmp_path, monkeypatch):
    from cliplab.methods import cll_clip as module

    original = module.CLLCLIP.after_step

    def crash(self, ctx, step):
        original(self, ctx, step)
        if step == 9:  # after epoch 1's score and the mid-task checkpoint at step 8
            raise KeyboardInterrupt

    monkeypatch.setattr(module.CLLCLIP, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "interrupted", extra=[*EPOCHS, "checkpoint_every=8"])
    monkeypatch.setattr(module.CLLCLIP, "after_step", original)
    _run(tmp_path / "interrupted", extra=[*EPOCHS, "checkpoint_every=8"])
    _run(tmp_path / "straight", extra=EPOCHS)
    assert torch.equal(_embedding(tmp_path / "interrupted", 0), _embedding(tmp_path / "straight", 0))


def test_selection_without_validation_captions_names_the_fix():
    method = CLLCLIP()
    method.epoch_ends = {1}
    ctx = SimpleNamespace(task=SimpleNamespace(name="avo", validation=None))
    with pytest.raises(ValueError, match="select_epoch=false"):
        method.after_step(ctx, 1)
