"""DDAS, MoE-Adapters' auto-selector: autoencoders trained on two tasks send each task's held-out
batches to its own router, unknown inputs to the frozen model (threshold, reference slot), ties to
the lowest slot; selection is per batch of consecutive images (the authors') or per image.

The selector runs on the tiny CLIP of tests/test_methods.py (random weights: its frozen token map is
still a fixed feature extractor) with digits and ToyWorld novel shapes as the two tasks.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_methods import tiny_clip

from cliplab.data import get_dataset
from cliplab.evaluation.routing import image_routes, route_shares
from cliplab.methods import get_method
from cliplab.toyworld.tasks import downstream_task, normalise_uint8

torch.set_num_threads(1)
MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)


def _digits(split: str, n: int) -> torch.Tensor:
    return normalise_uint8(get_dataset("digits", split=split).images[:n], MEAN, STD)


def _shapes(split: str, n: int) -> torch.Tensor:
    return normalise_uint8(downstream_task("novel_shapes", split, n).images, MEAN, STD)


@pytest.fixture(scope="module")
def selector_model():
    """A tiny CLIP with MoE-Adapters (2 tasks, a reference slot) whose autoencoders know digits and shapes."""
    model = tiny_clip()
    method = get_method("moe_adapters", {"n_experts": 2, "bottleneck": 4, "ddas_eval_batch": 16})
    method.extend_model(model, {"n_tasks": 2, "n_routers": 2, "reference": True})
    selector = model.input_router
    assert selector.slot_routes.tolist() == [-1, 0, 1] and not selector.trained.any()
    for slot, images in ((1, _digits("train", 160)), (2, _shapes("train", 160))):
        losses = selector.train_slot(slot, model, list(images[:128]), steps=40, batch_size=32, seed=slot)
        assert losses[-1] < 0.7 * losses[0]  # the autoencoder learns its task
        selector.calibrate_slot(slot, model, [images[128:]])
    selector.set_threshold(None, margin=0.05)
    return model


def test_each_tasks_held_out_images_reach_its_own_router(selector_model):
    digits, shapes = _digits("test", 48), _shapes("test", 48)
    assert route_shares(image_routes(selector_model, digits, 16)) == {"0": 1.0}
    assert route_shares(image_routes(selector_model, shapes, 16)) == {"1": 1.0}
    # a stream mixing the two, in 16-image blocks: every batch of 16 takes its task's router
    mixed = torch.cat([digits[:16], shapes[:16], digits[16:32]])
    assert image_routes(selector_model, mixed, 16).tolist() == [0] * 16 + [1] * 16 + [0] * 16


def test_inputs_no_autoencoder_knows_go_to_the_frozen_model(selector_model):
    selector = selector_model.input_router
    noise = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 6 - 3
    errors = selector.errors(selector_model, noise).mean(0)
    assert float(errors.min()) > float(selector.threshold)  # above τ = 1.05 max_t τ_t
    assert route_shares(image_routes(selector_model, noise, 16)) == {"-1": 1.0}
    tau = float(selector.threshold)
    assert tau == pytest.approx(1.05 * float(selector.slot_thresholds[1:].max()))
    try:  # a threshold below every error: everything is unknown
        selector.set_threshold(0.0, 0.05)
        assert route_shares(image_routes(selector_model, _digits("test", 16), 16)) == {"-1": 1.0}
    finally:
        selector.threshold.fill_(tau)


def test_ties_go_to_the_lowest_slot_and_the_reference_slot_means_frozen(selector_model):
    selector = selector_model.input_router
    saved = {k: v.clone() for k, v in selector.state_dict().items()}
    try:
        selector.autoencoders[0].load_state_dict(selector.autoencoders[2].state_dict())  # reference == shapes
        selector.trained[0] = True
        assert route_shares(image_routes(selector_model, _shapes("test", 16), 16)) == {"-1": 1.0}
        selector.autoencoders[1].load_state_dict(selector.autoencoders[2].state_dict())  # digits == shapes too
        selector.trained[0] = False
        assert route_shares(image_routes(selector_model, _shapes("test", 16), 16)) == {"0": 1.0}
    finally:
        selector.load_state_dict(saved)


def test_selection_is_per_batch_by_default_and_per_image_as_an_option(selector_model):
    selector = selector_model.input_router
    # 12 digits then 4 shapes in one batch of 16: the batch-mean error names one router for all 16
    block = torch.cat([_digits("test", 12), _shapes("test", 4)])
    assert image_routes(selector_model, block, 16).tolist() == [0] * 16
    selector.granularity = "image"
    try:
        assert image_routes(selector_model, block, 16).tolist() == [0] * 12 + [1] * 4
    finally:
        selector.granularity = "batch"


def test_nothing_trained_means_every_input_takes_the_frozen_model():
    model = tiny_clip()
    method = get_method("moe_adapters", {"n_experts": 2, "bottleneck": 4})
    method.extend_model(model, {"n_tasks": 2, "n_routers": 2, "reference": False})
    assert model.input_router.slot_routes.tolist() == [0, 1]
    assert math.isinf(float(model.input_router.threshold))
    assert route_shares(image_routes(model, _digits("test", 8), 8)) == {"-1": 1.0}
