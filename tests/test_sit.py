"""SIT on a tiny real CLIP: the batch-class loss, its options, the PET modules, a run on a stream."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_methods import ce_images, tiny_clip
from test_online import FAST, Recording, _bundle, tiny_online

from cliplab import load_model
from cliplab.checkpoints import load_state_dict
from cliplab.engine.config import TrainConfig
from cliplab.engine.extended import backbone_name, extend
from cliplab.engine.runner import run_scenario
from cliplab.evaluation.evaluator import ScenarioEvaluator
from cliplab.methods import get_method
from cliplab.methods.sit import sit_parameter_count, symmetric_image_text_loss

torch.set_num_threads(1)


def result_config(result) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in result.config.items() if k != "betas"})


def _extended(options=None):
    model = tiny_clip()
    method = get_method("sit", options or {})
    extend(model, method, tiny_online())
    return model.eval(), method


def test_batch_classes_are_the_unique_labels_in_first_appearance_order():
    method = get_method("sit")
    labels = torch.tensor([4, 1, 4, 0, 1])
    assert method.ce_classes(None, 0, labels).tolist() == [4, 1, 0]


def test_only_the_batchs_class_texts_are_encoded_and_labels_are_reindexed(tmp_path):
    class Seen(Recording):
        name = "sit"
        Options = get_method("sit").Options
        trains_backbone = False

        def __init__(self):
            super().__init__()
            self.sit = get_method("sit")
            self.batches: list[tuple[list[int], int]] = []

        def model_extension(self, scenario):
            return self.sit.model_extension(scenario)

        def extend_model(self, model, layout):
            self.sit.extend_model(model, layout)

        def trainable_parameters(self, ctx):
            return self.sit.trainable_parameters(ctx)

        def ce_classes(self, ctx, step, labels):
            chosen = self.sit.ce_classes(ctx, step, labels)
            self.batches.append((labels.tolist(), len(chosen)))
            return chosen

    method = Seen()
    run_scenario(tiny_online(), method, tmp_path, bundle=_bundle(), overrides={**FAST, "max_tasks": 1})
    for (labels, n_chosen), (_, _, index, n_texts) in zip(method.batches, method.seen):
        assert n_texts == n_chosen == len(set(labels)) and index == list(dict.fromkeys(labels))


def test_the_loss_and_its_options_on_hand_logits():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [1.0, 0.2, 0.9]])
    labels = torch.tensor([0, 1, 0])
    plain = symmetric_image_text_loss(logits, labels)
    assert plain["sit_i2t"].item() == pytest.approx(F.cross_entropy(logits, labels).item())
    quirk = symmetric_image_text_loss(logits, labels, double_softmax=True)
    assert quirk["sit_i2t"].item() == pytest.approx(F.cross_entropy(logits.softmax(1), labels).item())
    # the double softmax is bounded (at most log C + 1) and its gradient is much weaker
    assert quirk["sit_i2t"] < torch.log(torch.tensor(3.0)) + 1
    weak, strong = (logits.clone().requires_grad_(True) for _ in range(2))
    symmetric_image_text_loss(weak, labels, double_softmax=True)["sit_i2t"].backward()
    symmetric_image_text_loss(strong, labels)["sit_i2t"].backward()
    assert weak.grad.norm() < 0.5 * strong.grad.norm()
    both = symmetric_image_text_loss(logits, labels, directions="both")
    log_p = F.log_softmax(logits, dim=0)  # per text over images
    expected = (-(log_p[0, 0] + log_p[2, 0]) / 2 - log_p[1, 1]) / 2  # class 0: images 0, 2; class 1: image 1
    assert both["sit_t2i"].item() == pytest.approx(expected.item())


def test_lora_counts_init_and_adapter_identity():
    model, method = _extended()
    trained = sum(p.numel() for p in method.trainable_parameters(type("C", (), {"model": model})()))
    assert trained == sit_parameter_count(64, 2, 64, 2) == 2 * (4 * 64 + 192 * 4 + 4 * 64 + 64 * 4) * 2
    assert sit_parameter_count(192, 6, 128, 4) == 39936  # ToyCLIP, both towers (the notes' count)
    images, tokens = ce_images(n=3), torch.randint(1, 400, (3, 24))
    frozen = tiny_clip().eval()
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), frozen.encode_image(images), atol=1e-6)  # B = 0
        xavier, _ = _extended({"lora_init_b": "xavier"})
        assert not torch.allclose(xavier.encode_image(images), frozen.encode_image(images), atol=1e-3)
        adapter, method = _extended({"pet": "adapter", "bottleneck": 8})
        assert torch.allclose(adapter.encode_text(tokens), frozen.encode_text(tokens), atol=1e-6)
    blocks = list(adapter.visual.transformer.resblocks) + list(adapter.transformer.resblocks)
    assert all(sum(1 for n, _ in b.named_modules() if n == "sit_adapter") == 1 for b in blocks)  # one per block
    params = method.trainable_parameters(type("C", (), {"model": adapter})())
    assert sum(p.numel() for p in params) == 4 * (2 * 8 * 64 + 8 + 64)
    image_only, method = _extended({"towers": "image"})
    names = [n for n, _ in image_only.named_parameters() if "lora_" in n]
    assert names and all(n.startswith("visual.") for n in names)


def test_a_sit_run_trains_only_its_modules_and_its_checkpoint_reloads(tmp_path):
    model = tiny_clip()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = {k: v for k, v in FAST.items() if k != "lr"}
    run_scenario(tiny_online(), "sit", tmp_path / "tiny", bundle=_bundle(model), overrides=recipe)
    data = json.loads((tmp_path / "tiny" / "metrics.json").read_text())
    assert data["config"]["lr"] == 5e-4 and data["config"]["weight_decay"] == 1e-5  # SIT's recipe
    after = {backbone_name(k): v for k, v in model.state_dict().items()}
    assert [k for k in before if not torch.equal(before[k], after[k])] == []  # the backbone is frozen
    assert any(v.abs().sum() > 0 for k, v in model.state_dict().items() if "lora_in_B" in k)
    # on a backbone loadable by name, the checkpoint holds the LoRA tensors only and reloads exactly
    result = run_scenario(
        tiny_online(), "sit", tmp_path / "toy", pretrained="random", overrides={**FAST, "max_tasks": 1}
    )
    path = tmp_path / "toy" / "checkpoints" / "task_0.safetensors"
    assert all("lora_" in k for k in load_state_dict(path))
    reloaded = load_model(str(path))
    evaluation = ScenarioEvaluator(tiny_online(), reloaded.eval_transform, reloaded.tokenizer, result_config(result))
    assert evaluation.evaluate(reloaded.model, after_task=0).zero_shot == {}  # no probes in the tiny stream
    assert evaluation.protocol_row(reloaded.model, 0)[0][0] == pytest.approx(result.accuracy_matrix[0][0])


def test_options_are_checked():
    with pytest.raises(ValueError, match="pet must be one of"):
        get_method("sit", {"pet": "prefix"})
    with pytest.raises(ValueError, match="visible_classes"):
        get_method("sit", {"visible_classes": "exposed"})
