"""Model loading: the shipped ToyCLIP meets its targets; every loader path and error is real."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cliplab.checkpoints import save_model
from cliplab.evaluation.reports import toyworld_zero_shot
from cliplab.models import TOYCLIP, PretrainedWeightsUnavailable, load_model

# A probe seed used nowhere else (all probe seeds are outside the pretraining stream by design).
PROBE_SEED = 4242


@pytest.fixture(scope="module")
def toyclip():
    return load_model("toyclip")


def test_shipped_toyclip_meets_the_zero_shot_targets_on_held_out_combinations(toyclip):
    acc = toyworld_zero_shot(toyclip, probe_seed=PROBE_SEED, n=1000)
    assert acc["shape"] >= 85.0, acc
    assert acc["colour"] >= 95.0, acc
    assert acc["shape_colour"] >= 75.0, acc


def test_random_toyclip_is_near_chance():
    acc = toyworld_zero_shot(load_model("toyclip", pretrained="random"), probe_seed=PROBE_SEED, n=400)
    assert acc["shape"] < 35.0 and acc["colour"] < 35.0 and acc["shape_colour"] < 10.0, acc


def test_bundle_unpacks_and_transforms_a_pil_image(toyclip):
    model, tokenizer, train_tf, eval_tf = toyclip[:4]
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    assert eval_tf(image).shape == (3, 32, 32) and train_tf(image).shape == (3, 32, 32)
    assert tokenizer(["a red star"]).shape == (1, 24)
    assert not model.training


def test_cliplab_safetensors_file_loads_by_path_alone(tmp_path, toyclip):
    path = save_model(toyclip.model, tmp_path / "copy.safetensors", TOYCLIP)
    loaded = load_model(str(path))
    for name, tensor in toyclip.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_open_clip_format_checkpoint_loads_with_its_architecture(tmp_path, toyclip):
    path = tmp_path / "open_clip_state.pt"
    torch.save(toyclip.model.state_dict(), path)
    loaded = load_model(TOYCLIP, pretrained=str(path))
    assert torch.equal(loaded.model.visual.conv1.weight, toyclip.model.visual.conv1.weight)


def test_missing_checkpoint_file_names_the_path():
    with pytest.raises(PretrainedWeightsUnavailable, match="nowhere/weights.safetensors"):
        load_model("toyclip", pretrained="/nowhere/weights.safetensors")


def test_offline_pretrained_tag_gives_a_how_to_message(tmp_path, monkeypatch):
    """As on a machine with HF_HUB_OFFLINE=1 (huggingface_hub reads the variable when imported, so
    the test sets what it read); without it the hub's retries take ~45 s to fail here."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        load_model("RN50", pretrained="openai", cache_dir=str(tmp_path))
    message = str(error.value)
    assert "'openai'" in message and "pretrained='/path/to" in message and "HF_HUB_OFFLINE=1" in message


def test_unknown_tag_and_unknown_model_are_named():
    with pytest.raises(ValueError, match="no pretrained tag 'nonsense'"):
        load_model("RN50", pretrained="nonsense")
    with pytest.raises(ValueError, match="unknown model 'ViT-Z-99'.*toyclip"):
        load_model("ViT-Z-99")


def test_default_pretraining_recipe_is_the_one_the_shipped_checkpoint_records():
    """`make toyclip` (cliplab pretrain-toy, no options) must regenerate the shipped weights' run."""
    from dataclasses import asdict

    from cliplab.checkpoints import read_metadata
    from cliplab.models import TOYCLIP_CHECKPOINT
    from cliplab.pretrain import PretrainConfig

    recorded = read_metadata(TOYCLIP_CHECKPOINT)["extra"]["recipe"]
    assert asdict(PretrainConfig()) == recorded
