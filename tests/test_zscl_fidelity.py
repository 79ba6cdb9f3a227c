"""ZSCL's code, reproduced where cliplab claims to follow it (issue 14, items 2, 3, 4 and 6).

The weight ensemble's states, the CIFAR-100 class-incremental presets, iCaRL's two ZSCL codes and
Rebuffi et al.'s distillation, the distillation images' transform per protocol, and float32
distillation logits under bf16 autocast. Real method code on the tiny CLIP of test_methods.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_methods import (
    TASK_CLASSES,
    TEMPLATE,
    _factory,
    _uint8_images,
    ce_images,
    hook_step,
    make_config,
    make_ctx,
    make_scenario,
    perturb_,
    teacher_entropy_t2,
    tiny_clip,
    to_tensor,
)

from cliplab.engine.loop import task_steps
from cliplab.engine.runner import build_config
from cliplab.engine.student import frozen_copy
from cliplab.methods import distillation_losses, get_method, herding
from cliplab.methods.icarl import FrozenAugmentation
from cliplab.scenarios.base import Scenario, Task
from cliplab.scenarios.published import cifar100_cil_spec, mtil_spec

torch.set_num_threads(1)


def _ensemble_states(method, ctx) -> tuple[int, torch.Tensor]:
    """Run `after_step` over the task's steps (one weight set to the step number after each) and
    return the number of states the weight ensemble averaged and the weight it ends the task with."""
    method.begin_task(ctx)
    key = "visual.proj"
    for s in range(1, ctx.steps + 1):
        with torch.no_grad():
            ctx.model.state_dict()[key].fill_(float(s))
        method.after_step(ctx, s)
    count = method.ensemble.count
    method.end_task(ctx)
    return count, ctx.model.state_dict()[key]


# ---------------------------------------------------------------------------------------------
# item 2: the weight ensemble
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"avg_freq": 100}, {}])
def test_weight_ensemble_of_1000_steps_at_interval_100_averages_12_states(tokenizer, options):
    """ZSCL MTIL: start + iterations 0, 100, ..., 900 (our steps 1, 101, ..., 901) + the final weights
    (iteration 1,000 at lr 0) = 12 states, each 1/12 (the default interval is steps // 10 = 100)."""
    scenario = make_scenario()
    ctx = make_ctx(scenario, tokenizer, steps=1000)
    start = ctx.model.state_dict()["visual.proj"].clone()
    count, average = _ensemble_states(get_method("zscl", options), ctx)
    assert count == 12
    snapshots = [1, 101, 201, 301, 401, 501, 601, 701, 801, 901, 1000]
    torch.testing.assert_close(average, (start + sum(snapshots)) / 12)


def test_cifar_cil_preset_reproduces_zscl_cil_weight_ensemble(tokenizer):
    """ZSCL's CIL code: interval 10 whatever the task length, and the final weights only when the
    length is a multiple of 10. CIFAR-100 10 steps: 5,000 images at batch 64 = 79 steps: snapshots
    at ZSCL's iterations 0, 10, ..., 70 (steps 1, 11, ..., 71) + start = 9 states; steps 72-79 are
    lost."""
    config = build_config(cifar100_cil_spec(10), "zscl", None, None)
    assert config.method == {"weight": 5.0, "avg_freq": 10, "final_snapshot": "on_interval", "l2": 0.0}
    steps = task_steps(config, 5000)
    assert steps == 79
    scenario = make_scenario()
    ctx = make_ctx(scenario, tokenizer, steps=steps)
    start = ctx.model.state_dict()["visual.proj"].clone()
    method = get_method("zscl", config.method)
    count, average = _ensemble_states(method, ctx)
    assert count == 9
    torch.testing.assert_close(average, (start + sum(range(1, 72, 10))) / 9)
    # a 40-step task (TinyImageNet +5 classes): iterations 0..40 hold 5 snapshots, the last at lr 0
    ctx40 = make_ctx(scenario, tokenizer, steps=40)
    assert _ensemble_states(get_method("zscl", config.method), ctx40)[0] == 6


def test_zscl_cil_preset_has_no_l2_term(tokenizer):
    config = build_config(cifar100_cil_spec(10), "zscl", None, None)
    ctx = make_ctx(make_scenario(), tokenizer)
    method = get_method("zscl", config.method)
    method.begin_task(ctx)
    assert set(hook_step(method, ctx, 0, ce_images())[2]) == {"kd_i2t", "kd_t2i"}
    with pytest.raises(ValueError, match="final_snapshot"):
        get_method("zscl", {"final_snapshot": "sometimes"})
    with pytest.raises(ValueError, match="avg_freq"):
        get_method("zscl", {"avg_freq": 0})


# ---------------------------------------------------------------------------------------------
# item 3: presets per protocol
# ---------------------------------------------------------------------------------------------


def test_icarl_presets_follow_each_zscl_code(tokenizer):
    cil = build_config(cifar100_cil_spec(10), "icarl", None, None).method
    assert cil == {
        "weight": 5.0,
        "variant": "zscl",
        "teacher": "previous",
        "memory_size": 5000,
        "max_candidates": 10000,
    }
    mtil = build_config(mtil_spec(["dtd", "mnist"], "m"), "icarl", None, None).method
    assert mtil == {"memory_size": 10000, "max_candidates": 30000, "variant": "zscl"}
    cil_ctx = make_ctx(make_scenario(), tokenizer)  # class-incremental
    mtil_scenario = make_scenario()
    mtil_scenario.protocol = "task_incremental"
    mtil_ctx = make_ctx(mtil_scenario, tokenizer)
    assert get_method("icarl", cil).zscl_code(cil_ctx) == "cil"
    assert get_method("icarl", mtil).zscl_code(mtil_ctx) == "mtil"
    assert get_method("icarl", mtil).teacher_choice(mtil_ctx) == "initial"
    assert get_method("icarl", cil).teacher_choice(cil_ctx) == "previous"


def _offset(x):
    return to_tensor(x) + 1.0  # a "train transform" that is told apart from the eval one


def _random_crop(x):
    return to_tensor(x) + torch.rand(())  # random: a different image at every call


@pytest.mark.parametrize(
    "protocol,kd_transform,augment,expected",
    [
        ("class_incremental", "auto", True, "train"),  # ZSCL CIL: LwF / LwF-VR current-task loader
        ("task_incremental", "auto", True, "eval"),  # ZSCL MTIL: test_preprocess
        ("class_incremental", "auto", False, "eval"),  # a run without augmentation
        ("class_incremental", "eval", True, "eval"),
        ("task_incremental", "train", True, "train"),
    ],
)
def test_distillation_images_transform_per_protocol(tokenizer, protocol, kd_transform, augment, expected):
    scenario = make_scenario()
    scenario.protocol = protocol
    ctx = make_ctx(scenario, tokenizer, config=make_config(augment=augment))
    ctx.train_transform = _offset
    lwf = get_method("lwf", {"kd_transform": kd_transform})
    image = lwf.distill_images(ctx)[0][0]
    plain = to_tensor(scenario.tasks[0].train_data(None)[0][0])
    torch.testing.assert_close(image, plain + 1.0 if expected == "train" else plain)
    zscl = get_method("zscl")  # reference images: the eval transform in both ZSCL codes
    reference = zscl.distill_images(ctx)[0][0]
    torch.testing.assert_close(reference, to_tensor(scenario.reference.images(None)[0][0]))


# ---------------------------------------------------------------------------------------------
# item 4: iCaRL
# ---------------------------------------------------------------------------------------------


def _three_task_scenario(protocol: str) -> Scenario:
    tasks = []
    for t, names in enumerate([*TASK_CLASSES, ["sun", "moon"]]):
        labels = [i % 2 for i in range(16)]
        tasks.append(
            Task(
                f"task{t}",
                list(names),
                TEMPLATE,
                [TEMPLATE],
                _factory(_uint8_images(16, 10 + t), labels, names),
                _factory(_uint8_images(4, 20 + t), labels[:4], names),
            )
        )
    return Scenario(name="fake3", protocol=protocol, tasks=tasks)


def _features(model, data, items) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_image(torch.stack([data[int(i)][0] for i in items]), normalize=True)


def test_zscl_icarl_mtil_code_split_and_first_task(tokenizer):
    """MTIL code, K = 12, max 14 candidates: task 1 stores its first 12 images (no herding); then
    the newest task herds K − K//t of the first 14 images and older tasks keep their first K//t;
    with t = 3 that is 4 + 4 + 8 = 16 > K, as in ZSCL."""
    scenario = _three_task_scenario("task_incremental")
    method = get_method("icarl", {"variant": "zscl", "memory_size": 12, "max_candidates": 14})
    model = tiny_clip()
    initial = frozen_copy(model)
    sizes = []
    for t in range(3):
        if t:
            perturb_(model, seed=t)  # "training" on task t
        ctx = make_ctx(scenario, tokenizer, t, model=model, initial=initial)
        method.begin_task(ctx)
        assert len(method.memory) == sum(sizes)  # updated after training only
        if t == 0:
            assert not method.distilling() and method.teacher is initial  # P12: pretrained teacher
        method.end_task(ctx)
        sizes = torch.bincount(method.memory[:, 0]).tolist()
        new = method.memory[method.memory[:, 0] == t]
        if t == 0:
            assert new[:, 1].tolist() == list(range(12))
            first = new
        else:
            data = scenario.tasks[t].train_data(to_tensor)
            expected = herding(_features(model, data, range(14)), 12 - 12 // (t + 1))
            assert new[:, 1].tolist() == expected.tolist()
        assert sizes[-1] == (12 if t == 0 else 12 - 12 // (t + 1))
    assert sizes == [4, 4, 8] and len(method.memory) == 16
    assert method.memory[method.memory[:, 0] == 0][:, 1].tolist() == first[:4, 1].tolist()


def test_zscl_icarl_cil_code_herds_before_training_and_distils_on_the_current_task(tokenizer):
    """CIL code: the memory is updated at the start of each task with the model before training,
    task 1 herded too (K exemplars), and the memory distilled on during a task holds its exemplars;
    the teacher is the previous-task model; exemplars are train-transformed once."""
    scenario = _three_task_scenario("class_incremental")
    method = get_method("icarl", {"variant": "zscl", "memory_size": 6, "teacher": "previous"})
    model = tiny_clip()
    ctx = make_ctx(scenario, tokenizer, 0, model=model)
    ctx.train_transform = _random_crop
    method.begin_task(ctx)
    data = FrozenAugmentation(scenario.tasks[0].train_data(_random_crop), ctx.config.seed * 1000)
    expected = herding(_features(model, data, range(16)), 6)
    assert method.memory[:, 1].tolist() == expected.tolist() and (method.memory[:, 0] == 0).all()
    assert method.distilling() and method.teacher is ctx.start_model
    extra, _, terms = hook_step(method, ctx, 0, ce_images())
    assert set(terms) == {"kd_i2t", "kd_t2i"}
    frozen = [data[int(i)][0] for i in method.memory[:, 1]]
    assert all(any(torch.equal(x, f) for f in frozen) for x in extra.images)  # the stored exemplars
    memory0 = method.memory.clone()
    perturb_(model, seed=1)
    method.end_task(ctx)
    assert torch.equal(method.memory, memory0)  # nothing happens at the end of a task
    ctx1 = make_ctx(scenario, tokenizer, 1, model=model)
    method.begin_task(ctx1)
    assert torch.equal(method.memory[:3], memory0[:3]) and (method.memory[3:, 0] == 1).all()
    assert len(method.memory) == 6  # t = 2: 6 // 2 old + (6 − 3) new


def test_frozen_augmentation_is_fixed_per_item_and_leaves_the_rng_alone():
    make = _factory(_uint8_images(4, 1), [0, 1, 0, 1], ["a", "b"])
    plain = [make(to_tensor)[i][0] for i in range(4)]
    data = FrozenAugmentation(make(_random_crop), seed=3)
    state = torch.get_rng_state()
    first = [data[i][0] for i in range(4)]
    assert torch.equal(torch.get_rng_state(), state)  # the run's random stream is untouched
    assert all(torch.equal(data[i][0], first[i]) for i in range(4))  # augmented once, then fixed
    offsets = [float((f - p).mean()) for f, p in zip(first, plain)]
    assert len(set(offsets)) == 4 and all(0 < o < 1 for o in offsets)  # augmented, differently per item
    other = FrozenAugmentation(make(_random_crop), seed=4)
    assert not torch.equal(other[0][0], first[0])


def test_herding_stores_each_chosen_image_once():
    """ZSCL's loop reads the image at an index of a shrinking feature array from the full image
    tensor, storing about half its exemplars twice when all candidates are chosen; ours are the
    herded rows, each once."""
    feats = torch.nn.functional.normalize(torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    order = herding(feats, 200)
    assert sorted(order.tolist()) == list(range(200))
    chosen = herding(feats, 50)
    assert (feats[chosen].mean(0) - feats.mean(0)).norm() < 0.03  # a random 50 are about 0.11 away


def test_classical_icarl_distils_old_class_outputs_on_new_data_and_exemplars(tokenizer):
    """Rebuffi et al.: the previous model's outputs for the old classes, on the CE batch and the
    exemplars. At the start of task 2 (student = teacher) the term is T² × the teacher's entropy
    over the concatenated images, against the old classes' prompts."""
    scenario = make_scenario()
    method = get_method("icarl", {"memory_size": 8})
    model = tiny_clip()
    method.end_task(make_ctx(scenario, tokenizer, 0, model=model))
    perturb_(model, seed=2)
    ctx = make_ctx(scenario, tokenizer, 1, model=model)
    method.begin_task(ctx)
    assert method.teacher is ctx.start_model
    old_prompts = tokenizer([TEMPLATE.format(c) for c in TASK_CLASSES[0]])
    with torch.no_grad():
        torch.testing.assert_close(method.teacher_texts, ctx.start_model.encode_text(old_prompts, normalize=True))
    images = ce_images(n=4)
    extra, _, terms = hook_step(method, ctx, 0, images)
    assert set(terms) == {"kd_i2t", "rehearsal_ce"}
    both = torch.cat([images, extra.images])
    entropy = teacher_entropy_t2(method.teacher, both, method.teacher_texts, method.options.T, ("kd_i2t",))
    assert terms["kd_i2t"].item() == pytest.approx(entropy["kd_i2t"], abs=1e-5)
    exemplars_only = teacher_entropy_t2(
        method.teacher, extra.images, method.teacher_texts, method.options.T, ("kd_i2t",)
    )
    assert abs(exemplars_only["kd_i2t"] - entropy["kd_i2t"]) > 1e-4  # the CE batch counts


# ---------------------------------------------------------------------------------------------
# item 6: float32 distillation logits
# ---------------------------------------------------------------------------------------------


def test_distillation_logits_are_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    feats = [torch.nn.functional.normalize(torch.randn(16, 32, generator=g), dim=1) for _ in range(4)]
    scale = torch.tensor(100.0)
    exact = distillation_losses(*feats, scale, 2.0, "both")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = distillation_losses(*feats, scale, 2.0, "both")
        bf16 = scale * feats[0] @ feats[2].T  # what autocast does to a matmul of float32 inputs
    assert bf16.dtype == torch.bfloat16
    for key in exact:
        assert cast[key].dtype == torch.float32
        assert cast[key].item() == pytest.approx(exact[key].item(), rel=1e-6)
    naive = scale.float() * feats[0] @ feats[2].T
    assert (bf16.float() - naive).abs().max() > 1e-2  # bf16 logits at scale 100 are visibly off
    assert math.isfinite(exact["kd_i2t"].item())


@pytest.fixture(scope="module")
def tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer(context_length=24)


# ---------------------------------------------------------------------------------------------
# resuming a run whose memory is updated at the start of each task (ZSCL's CIL code)
# ---------------------------------------------------------------------------------------------


class _Interrupted(RuntimeError):
    pass


def _run_icarl_cil(folder, tokenizer, stop_at: tuple[int, int] | None = None) -> dict:
    """iCaRL (zscl variant, CIL code) through the runner on the tiny CIL scenario; `stop_at` =
    (task, step) raises after that step, as a kill right after its mid-task checkpoint would."""
    from cliplab.engine.runner import run_scenario
    from cliplab.methods.icarl import ICaRL
    from cliplab.models import ClipBundle

    class Stopping(ICaRL):
        def after_step(self, ctx, step):
            super().after_step(ctx, step)
            if (ctx.task_index, step) == stop_at:
                raise _Interrupted

    options = {"variant": "zscl", "memory_size": 6}
    settings = {"steps_per_task": 3, "batch_size": 8, "lr": 1e-3, "warmup_steps": 0, "checkpoint_every": 1}
    settings.update(progress=False, device="cpu", eval_batch_size=16, precision="fp32")
    settings.update({f"method.{k}": v for k, v in options.items()})
    bundle = ClipBundle(tiny_clip(), tokenizer, to_tensor, to_tensor, "tiny", None)
    method = Stopping(options) if stop_at else "icarl"
    result = run_scenario(make_scenario(), method, folder, bundle=bundle, overrides=settings)
    return {k: getattr(result, k) for k in ("accuracy_matrix", "zero_shot", "retrieval")}


def test_cil_code_icarl_resumed_mid_task_ends_with_the_same_numbers(tokenizer, tmp_path):
    """The memory is rebuilt in begin_task before the mid-task state is restored: same numbers."""
    reference = _run_icarl_cil(tmp_path / "reference", tokenizer)
    with pytest.raises(_Interrupted):
        _run_icarl_cil(tmp_path / "resumed", tokenizer, stop_at=(1, 2))
    assert (tmp_path / "resumed" / "checkpoints" / "mid_task.safetensors").exists()
    assert _run_icarl_cil(tmp_path / "resumed", tokenizer) == reference


def test_classification_logits_are_float32_under_bf16_autocast():
    """The loop's CE logits, like the distillation's, are not rounded to bf16 by autocast."""
    from cliplab.engine.objectives import classification_logits

    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    scale = torch.tensor(100.0)
    exact = scale * images @ texts.T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = classification_logits(images, texts, scale)
        rounded = scale * images @ texts.T
    assert ours.dtype == torch.float32 and torch.allclose(ours, exact, atol=1e-5)
    assert (rounded.float() - exact).abs().max() > 1e-3  # what autocast alone would have given
