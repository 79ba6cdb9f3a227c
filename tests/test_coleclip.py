"""CoLeCLIP on a tiny real CLIP: the prompt mask, the vocabulary, stage 2, inference, and runs."""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from test_methods import CONTEXT, ce_images, make_config, make_ctx, make_scenario, tiny_clip
from test_online import _bundle
from test_open_domain import FAST, tiny_odcl

from cliplab import load_model
from cliplab.engine.extended import extend
from cliplab.engine.runner import run_scenario
from cliplab.evaluation.zeroshot import zero_shot_accuracy
from cliplab.methods import get_method
from cliplab.methods.coleclip_modules import ClassVocabulary, owner_logits, prompt_attention_mask

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.SimpleTokenizer(context_length=CONTEXT)


@pytest.fixture(scope="module")
def scenario():
    return make_scenario()


def _extended(scenario, options=None, seed=0):
    model = tiny_clip(seed)
    method = get_method("coleclip", options or {})
    extend(model, method, scenario)
    return model.eval(), method


def test_the_mask_lets_prompts_see_earlier_prompts_only_and_nobody_else_see_prompts():
    mask = prompt_attention_mask(n_tasks=2, per_task=1, n_tokens=4)  # p0, p1, cls, patch
    blocked = torch.isinf(mask)
    assert blocked.tolist() == [
        [False, True, False, False],  # p0 sees itself, not p1
        [False, False, False, False],  # p1 sees p0 and itself
        [True, True, False, False],  # cls sees no prompt
        [True, True, False, False],
    ]


def test_cls_view_is_the_frozen_image_feature_and_old_views_ignore_later_prompts(scenario):
    model, _ = _extended(scenario)
    frozen = tiny_clip(0).eval()
    images = ce_images(n=3)
    with torch.no_grad():
        views = model.visual.views(images, 2)
        assert views.shape == (3, 3, 32)
        assert torch.allclose(views[:, -1], frozen.visual(images), atol=1e-5)  # CLS untouched by prompts
        model.visual.task_prompts[1].add_(torch.randn(1, 64, generator=torch.Generator().manual_seed(0)))
        moved = model.visual.views(images, 2)
    assert torch.allclose(moved[:, 0], views[:, 0], atol=1e-6)  # v_0 ignores prompt 1
    assert not torch.allclose(moved[:, 1], views[:, 1], atol=1e-3)  # v_1 depends on it
    assert torch.allclose(model.encode_image(images), frozen.encode_image(images))  # default path: open_clip's


def test_text_lora_counts_and_is_the_frozen_tower_until_trained(scenario):
    model, method = _extended(scenario)
    lora = [p for n, p in model.named_parameters() if ".lora_" in n]
    assert sum(p.numel() for p in lora) == 2 * (2 * (5 * 64 + 64 * 5) + 2)  # 2 text blocks of width 64
    assert sum(p.numel() for p in model.visual.task_prompts) == 2 * 64  # 1 token per task
    tokens = torch.randint(1, 400, (3, 24))
    frozen = tiny_clip(0).eval().encode_text(tokens)
    for attn in method._text_lora(model):
        attn.lora_active = True
    assert torch.allclose(model.encode_text(tokens), frozen, atol=1e-6)  # B = 0
    with torch.no_grad():
        for attn in method._text_lora(model):
            attn.lora_B_v.normal_()
    assert not torch.allclose(model.encode_text(tokens), frozen, atol=1e-3)


def test_vocabulary_momentum_and_regulariser_on_hand_tensors(scenario, tokenizer):
    model, method = _extended(scenario, {"stage_step": None})
    ctx = make_ctx(scenario, tokenizer, model=model, config=make_config())
    method.begin_task(ctx)
    vocab = model.class_scorer
    rows = vocab.rows(["cat", "dog"])
    u = F.normalize(vocab.vocab[rows].clone(), dim=-1)
    start = u.clone()
    texts = F.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    views = F.normalize(torch.randn(4, 2, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    out = type("Out", (), {"ce_images": views, "class_texts": texts, "class_index": None})()
    labels = torch.tensor([0, 1, 1, 0])
    terms = method.classification_loss(ctx, out, labels)
    e = F.normalize((u + texts) / 2, dim=-1)
    assert torch.allclose(vocab.vocab[rows], F.normalize(0.1 * e + 0.9 * u, dim=-1), atol=1e-6)
    assert terms["vocab_reg"].item() == pytest.approx((e - start).norm(dim=-1).mean().item(), abs=1e-6)
    s = model.logit_scale.exp()
    expected = (F.cross_entropy(s * views[:, -1] @ e.T, labels) + F.cross_entropy(s * views[:, 0] @ e.T, labels)) / 2
    assert terms["ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    # a second step starts from the updated entry: the update compounds per iteration
    method.classification_loss(ctx, out, labels)
    u2 = F.normalize(0.1 * e + 0.9 * u, dim=-1)
    e2 = F.normalize((u2 + texts) / 2, dim=-1)
    assert torch.allclose(vocab.vocab[rows], F.normalize(0.1 * e2 + 0.9 * u2, dim=-1), atol=1e-6)


def test_stage_two_selects_negatives_by_energy_margin_and_sums_ce_over_the_batch():
    """A hand batch of 4 against one earlier task with 2 classes the current task does not have."""
    method = get_method("coleclip", {"percentage": 0.5})
    g = torch.Generator().manual_seed(3)
    views = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)  # v_0, v_1, c
    classifier = F.normalize(torch.randn(2, 8, generator=g), dim=-1)  # current task (k = 1)
    method.previous_vocab = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    method.previous_owners = torch.tensor([[True, False], [True, False]])
    method.current_owners = torch.tensor([[False, True], [False, True]])
    labels = torch.tensor([0, 1, 0, 1])
    s = torch.tensor(10.0)
    loss = method._negative_selection(views, classifier, labels, s, k=1)
    # independent computation, sample by sample
    extended = torch.cat([classifier, method.previous_vocab])
    vis = torch.cat([s * views[:, 1] @ classifier.T, s * views[:, 0] @ method.previous_vocab.T], dim=1)
    cls = s * views[:, 2] @ extended.T
    e_cur = torch.logsumexp(vis[:, :2], 1) / s
    margin = e_cur - torch.logsumexp(vis[:, 2:], 1) / s
    gamma = max(float(torch.quantile(margin, 0.5)), 0.0)
    total = 0.0
    for i in range(4):
        right = vis[i, labels[i]] >= vis[i].max()
        if right:
            total += (
                F.cross_entropy(vis[i, :2][None], labels[i : i + 1])
                + F.cross_entropy(cls[i, :2][None], labels[i : i + 1])
            ) / 2
        else:
            keep = torch.ones(4, dtype=torch.bool)
            if margin[i] <= gamma:
                keep[2:] = False
            v = vis[i].masked_fill(~keep, float("-inf"))
            c = cls[i].masked_fill(~keep, float("-inf"))
            total += (F.cross_entropy(v[None], labels[i : i + 1]) + F.cross_entropy(c[None], labels[i : i + 1])) / 2
    assert loss.item() == pytest.approx(float(total) / 4, rel=1e-5)


def test_inference_takes_the_max_over_owner_tasks_and_zero_shot_for_the_rest():
    vocab = ClassVocabulary(["cat", "dog", "car"], n_tasks=2, dim=4)
    vocab.vocab[:] = torch.eye(4)[:3]
    vocab.owners[0, 0] = True  # cat: task 0
    vocab.owners[1, 0] = vocab.owners[1, 1] = True  # dog: tasks 0 and 1
    vocab.tasks_learned.fill_(2)
    views = torch.tensor([[[0.9, 0.1, 0.0, 0.0], [0.0, 0.7, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])  # v0, v1, c
    frozen = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).T  # classifier of car, bus
    logits = vocab.logits(None, views, ["cat", "dog", "car", "bus"], ["{}"], lambda names, t: frozen[:, : len(names)])
    # cat: v0·e_cat = 0.9; dog: max(v0·e_dog, v1·e_dog) = 0.7; car was never learned (no owner): c·w = 0.3
    assert logits.tolist()[0][:3] == pytest.approx([0.9, 0.7, 0.3])
    assert logits[0, 3].item() == pytest.approx(0.4)
    assert owner_logits(views[:, :2], torch.eye(4)[:1], torch.tensor([[False, False]])).item() == -math.inf


def test_a_run_keeps_old_prompts_bit_identical_and_unseen_domains_at_zero_shot(tmp_path):
    scenario = tiny_odcl("cil")
    bundle = _bundle()
    run_scenario(scenario, "coleclip", tmp_path / "co", bundle=bundle, overrides={**FAST, "steps_per_task": 3})
    co = json.loads((tmp_path / "co" / "metrics.json").read_text())
    run_scenario(scenario, "zeroshot", tmp_path / "zs", bundle=_bundle(), overrides=FAST)
    zs = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    til_co, til_zs = co["odcl"]["til"]["accuracy_matrix"], zs["odcl"]["til"]["accuracy_matrix"]
    # before a domain is learned CoLeCLIP is zero-shot CLIP on it (no class of desk is learned earlier)
    assert [row[2] for row in til_co[:2]] == [row[2] for row in til_zs[:2]]
    assert co["zero_shot_row"] == zs["zero_shot_row"]
    from cliplab.checkpoints import load_state_dict

    after = [load_state_dict(tmp_path / "co" / "checkpoints" / f"task_{i}.safetensors") for i in range(3)]
    key = "visual.task_prompts.0"
    assert torch.equal(after[0][key], after[2][key]) and not torch.equal(
        after[1]["visual.task_prompts.1"], after[0]["visual.task_prompts.1"]
    )
    assert {"class_scorer.vocab", "class_scorer.owners"} <= set(after[0])
    assert not any(after[2][k].abs().sum() for k in after[2] if "lora_B" in k)  # the text LoRA is discarded


def test_a_shared_name_keeps_its_vocabulary_entry_and_is_not_a_stage_two_negative(tokenizer):
    scenario = tiny_odcl()
    model, method = _extended(scenario)
    ctx = make_ctx(scenario, tokenizer, task_index=0, model=model)
    ctx.task = scenario.tasks[0]
    method.begin_task(ctx)
    vocab = model.class_scorer
    with torch.no_grad():
        vocab.vocab[vocab.rows(["dog"])] = torch.ones(1, 32)  # what task 0 learned for "dog"
    method.end_task(ctx)
    ctx.task, ctx.task_index = scenario.tasks[1], 1
    method.begin_task(ctx)
    assert torch.allclose(vocab.vocab[vocab.rows(["dog"])], torch.ones(1, 32))  # kept, not reset to zero-shot
    assert len(method.previous_vocab) == 1  # "cat" only: "dog" is a current class
    assert method.current_owners[1].tolist() == [True, True, False]  # dog: max over tasks 0 and 1


def test_coleclip_refuses_the_online_protocol():
    from test_online import tiny_online

    with pytest.raises(ValueError, match="online protocol.*sit"):
        get_method("coleclip").model_extension(tiny_online())


def test_options_are_checked():
    with pytest.raises(ValueError, match="text_pet"):
        get_method("coleclip", {"text_pet": "prefix"})
    with pytest.raises(ValueError, match="stage_step"):
        get_method("coleclip", {"stage_step": 2.0})


def test_a_coleclip_checkpoint_reloads_with_its_vocabulary_and_scores_like_the_run(tmp_path):
    scenario = tiny_odcl("til")
    run_scenario(scenario, "coleclip", tmp_path, pretrained="random", overrides={**FAST, "steps_per_task": 2})
    data = json.loads((tmp_path / "metrics.json").read_text())
    bundle = load_model(str(tmp_path / "checkpoints" / "task_2.safetensors"))
    assert int(bundle.model.class_scorer.tasks_learned) == 3
    for j, task in enumerate(scenario.tasks):
        accuracy = zero_shot_accuracy(
            bundle.model, bundle.tokenizer, task.test_data(bundle.eval_transform), task.classnames, task.templates, (1,)
        )["top1"]
        assert accuracy == pytest.approx(data["odcl"]["til"]["accuracy_matrix"][-1][j])


def test_coleclip_runs_on_a_class_incremental_scenario(scenario, tmp_path):
    result = run_scenario(scenario, "coleclip", tmp_path, bundle=_bundle(), overrides={**FAST, "steps_per_task": 2})
    cil = result.extra["class_incremental_accuracy"]
    assert len(cil) == 2 and all(0.0 <= a <= 100.0 for a in cil)
    # before any task nothing is learned: the class-incremental row is the frozen model's
    zeroshot = run_scenario(scenario, "zeroshot", tmp_path / "zs", bundle=_bundle(), overrides=FAST)
    assert result.extra["zero_shot_row"] == zeroshot.extra["zero_shot_row"]
