"""The cheap text-tower fingerprint and the evaluator's caches: reused while nothing changed,
invalidated by every way the runner changes weights, and never changing a number."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pytest
import torch

from cliplab.engine.runner import build_config
from cliplab.evaluation import zeroshot
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.evaluation.zeroshot import clear_classifier_cache, text_tower_fingerprint, zero_shot_classifier
from cliplab.models import load_model
from cliplab.scenarios import get_scenario

_CONTENT_HASH = zeroshot._content_hash  # unpatched, for the expected values

CLASSES, TEMPLATES = ["circle", "square", "triangle"], ["a {}.", "a photo of a {}."]


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return load_model("toyclip", pretrained="random")


@pytest.fixture
def model(bundle):
    clear_classifier_cache()
    yield copy.deepcopy(bundle.model)
    clear_classifier_cache()


@pytest.fixture
def hashes(monkeypatch):
    """Counts the full content hashes (the expensive part of a fingerprint)."""
    calls = []
    original = zeroshot._content_hash
    monkeypatch.setattr(zeroshot, "_content_hash", lambda tensors: calls.append(1) or original(tensors))
    return calls


def full_hash(model) -> str:
    return _CONTENT_HASH(zeroshot._text_tensors(model))


def text_step(model, optimizer_cls=torch.optim.AdamW, **kwargs) -> None:
    """One optimizer step on a loss of the text tower."""
    optimizer = optimizer_cls([p for p in model.parameters() if p.requires_grad], lr=1e-2, **kwargs)
    tokens = torch.randint(1, 1000, (2, model.context_length))
    model.encode_text(tokens).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_fingerprint_is_reused_while_nothing_changed(bundle, model, hashes):
    first = text_tower_fingerprint(model)
    for _ in range(5):
        assert text_tower_fingerprint(model) == first
    zero_shot_classifier(model, bundle.tokenizer, CLASSES, TEMPLATES)
    zero_shot_classifier(model, bundle.tokenizer, CLASSES, TEMPLATES)
    assert len(hashes) == 1
    assert first == full_hash(model)


@pytest.mark.parametrize(
    "options",
    [{}, {"foreach": False}, {"foreach": True}, {"fused": True}],
    ids=["default", "single-tensor", "foreach", "fused"],
)
def test_fingerprint_is_recomputed_after_an_optimizer_step(model, hashes, options):
    before = text_tower_fingerprint(model)
    text_step(model, **options)  # a fused step does not bump version counters: the step hook covers it
    after = text_tower_fingerprint(model)
    assert len(hashes) == 2
    assert after != before and after == full_hash(model)


def test_fingerprint_is_recomputed_after_load_state_dict(model, bundle, hashes):
    other = load_model("toyclip", pretrained="random").model  # different random weights
    before = text_tower_fingerprint(model)
    model.load_state_dict(other.state_dict())
    after = text_tower_fingerprint(model)
    assert len(hashes) == 2 and after != before and after == full_hash(other)
    model.load_state_dict(bundle.model.state_dict())  # back to the first weights: the first fingerprint
    assert text_tower_fingerprint(model) == before and len(hashes) == 3


def test_fingerprint_sees_in_place_writes_through_the_state_dict_and_replaced_parameters(model, hashes):
    before = text_tower_fingerprint(model)
    with torch.no_grad():  # as WiSE-FT's interpolate_ and ZSCL's weight ensemble write
        model.state_dict()["text_projection"].mul_(0.5)
    changed = text_tower_fingerprint(model)
    assert changed != before and changed == full_hash(model)
    model.text_projection = torch.nn.Parameter(model.text_projection.detach().clone() * 2)
    replaced = text_tower_fingerprint(model)
    assert replaced != changed and replaced == full_hash(model)
    assert len(hashes) == 3


def test_image_only_training_keeps_the_cached_classifier(bundle, model):
    tokenizer = bundle.tokenizer
    first = zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES)
    model.requires_grad_(False)
    model.visual.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.visual.parameters(), lr=1e-2)
    model.encode_image(torch.randn(2, 3, 32, 32)).square().sum().backward()
    optimizer.step()
    assert zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES) is first


def test_a_cached_classifier_equals_a_fresh_build_after_each_change(bundle, model):
    tokenizer = bundle.tokenizer
    for _ in range(2):
        cached = zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES)
        assert torch.equal(cached, zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES, use_cache=False))
        text_step(model)


def test_clear_classifier_cache_forgets_the_memoised_fingerprint(model, hashes):
    text_tower_fingerprint(model)
    with torch.no_grad():
        model.text_projection.data.mul_(2.0)  # bypasses the version counter: documented, needs a clear
    clear_classifier_cache()
    assert text_tower_fingerprint(model) == full_hash(model) and len(hashes) == 2


# ---------------------------------------------------------------------------------------------
# the evaluator: cached image batches, tokens and caption embeddings give the same numbers
# ---------------------------------------------------------------------------------------------


def make_evaluator(bundle, cache_bytes: int | None = None) -> ScenarioEvaluator:
    scenario = get_scenario("toy-digits-cil", probe_size=40, retrieval_size=20)
    config = build_config(scenario, "finetune", {"max_eval_images": 24, "eval_batch_size": 16}, 0)
    evaluator = ScenarioEvaluator(scenario, bundle.eval_transform, bundle.tokenizer, config)
    if cache_bytes is not None:
        evaluator.cache_bytes = cache_bytes
    return evaluator


def test_evaluator_caches_change_no_number(bundle, model):
    cached = make_evaluator(bundle)
    results = []
    for step in range(3):
        first = cached.evaluate(model, after_task=step)
        again = cached.evaluate(model, after_task=step)  # every cache warm; caption embeddings reused
        clear_classifier_cache()
        fresh = make_evaluator(bundle, cache_bytes=0).evaluate(model, after_task=step)  # nothing kept
        assert asdict(first) == asdict(again) == asdict(fresh)
        results.append(asdict(first))
        text_step(model)
    assert results[0] != results[1] != results[2]  # the steps changed the model, and the evaluations saw it
    assert len(cached._image_batches) == len(cached.tests) + 2  # tests, one shared probe set, retrieval


def test_evaluator_streams_sets_that_do_not_fit(bundle, model):
    evaluator = make_evaluator(bundle, cache_bytes=1)
    evaluator.evaluate(model, after_task=0)
    assert not evaluator._image_batches and len(evaluator._streamed) == len(evaluator.tests) + 2
