"""The continual-learning methods on a tiny real open_clip CLIP: what makes each method that method.

Every test runs the real method code (hooks, losses, memory, ensembles) on a 2-layer ViT / 2-layer
text transformer with random images; the end-to-end tests go through `cliplab.engine.loop.train_task`.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cliplab.data import TensorImageDataset
from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.loop import bind_services, train_task
from cliplab.engine.runner import run_scenario
from cliplab.engine.student import ClipStudent, frozen_copy, student_forward
from cliplab.methods import (
    METHODS,
    TaskContext,
    WeightEnsemble,
    distillation_losses,
    get_method,
    herding,
    interpolate_,
    random_bpe_vocabulary,
    soft_cross_entropy,
)
from cliplab.methods.vr_lwf import word_list_vocabulary
from cliplab.methods.zscl import l2_to
from cliplab.models import ClipBundle
from cliplab.scenarios.base import ReferenceData, Scenario, Task

torch.set_num_threads(1)

CONTEXT = 24
CPU = torch.device("cpu")
TEMPLATE = "a photo of a {}."
TASK_CLASSES = [["cat", "dog"], ["car", "bus"]]
N_TRAIN = 16  # images per task, 8 per class


# ---------------------------------------------------------------------------------------------
# fixtures: a tiny CLIP, a 2-task scenario with reference data, task contexts
# ---------------------------------------------------------------------------------------------


def tiny_clip(seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        text_cfg={"context_length": CONTEXT, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    )


def to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)


def _uint8_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _factory(images, labels, classnames):
    def make(transform=None):
        return TensorImageDataset(images, labels, classnames, [TEMPLATE], transform=transform)

    return make


def make_scenario() -> Scenario:
    tasks = []
    for t, names in enumerate(TASK_CLASSES):
        labels = [i % len(names) for i in range(N_TRAIN)]
        train = _factory(_uint8_images(N_TRAIN, 10 + t), labels, names)
        test = _factory(_uint8_images(8, 20 + t), labels[:8], names)
        tasks.append(Task(f"task{t}", list(names), TEMPLATE, [TEMPLATE], train, test))
    reference = ReferenceData(
        _factory(_uint8_images(12, 99), [0] * 12, ["thing"]),
        [f"a {c} {s} on the grass" for c in ("red", "blue", "green") for s in ("ball", "box")],
    )
    return Scenario(name="fake", protocol="class_incremental", tasks=tasks, reference=reference)


def make_config(**kw) -> TrainConfig:
    base = dict(
        steps_per_task=3,
        batch_size=8,
        lr=1e-3,
        warmup_steps=0,
        checkpoint_every=0,
        progress=False,
        precision="fp32",
        eval_batch_size=16,
        seed=0,
        label_smoothing=0.0,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.SimpleTokenizer(context_length=CONTEXT)


@pytest.fixture(scope="module")
def scenario():
    return make_scenario()


def make_ctx(scenario, tokenizer, task_index=0, model=None, initial=None, config=None, steps=3) -> TaskContext:
    """What `runner._run_task` builds: frozen, independent copies of the model as teachers."""
    model = model if model is not None else tiny_clip()
    task = scenario.tasks[task_index]
    return bind_services(
        TaskContext(
            model=model,
            tokenizer=tokenizer,
            train_transform=to_tensor,
            eval_transform=to_tensor,
            scenario=scenario,
            task=task,
            task_index=task_index,
            config=config or make_config(),
            device=CPU,
            initial_model=initial if initial is not None else frozen_copy(model),
            start_model=frozen_copy(model),
            train_data=task.train_data(to_tensor),
            steps=steps,
            seed=1000 + task_index,
            class_tokens=tokenizer([TEMPLATE.format(c) for c in task.classnames]),
        )
    )


def hook_step(method, ctx, step: int, ce_images: torch.Tensor):
    """One step of the loop's hook protocol without the optimiser: extra inputs, one forward, losses."""
    extra = method.extra_inputs(ctx, step)
    out = student_forward(ClipStudent(ctx.model), ce_images, ctx.class_tokens, extra.images, extra.tokens)
    return extra, out, method.losses(ctx, out)


def ce_images(seed: int = 5, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def teacher_entropy_t2(teacher, images, texts, T, directions=("kd_i2t", "kd_t2i")) -> dict[str, float]:
    """T² · mean row entropy of the teacher's softened distributions (computed independently)."""
    with torch.no_grad():
        logits = teacher.logit_scale.exp() * teacher.encode_image(images, normalize=True) @ texts.T
    out = {}
    for key, z in (("kd_i2t", logits), ("kd_t2i", logits.T)):
        p = F.softmax(z / T, dim=1)
        out[key] = float(-(p * p.log()).sum(1).mean() * T * T)
    return {k: out[k] for k in directions}


def clone_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(model, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]


def perturb_(model, seed: int, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ---------------------------------------------------------------------------------------------
# the distillation loss
# ---------------------------------------------------------------------------------------------


def test_soft_cross_entropy_at_equality_is_teacher_entropy_times_t2():
    """Equal student/teacher logits: value = T²·H(teacher) exactly, i.e. KL = value − T²·H = 0 (P5)."""
    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 3
    for T in (1.0, 2.0, 3.5):
        p = F.softmax(z / T, dim=1)
        entropy = -(p * p.log()).sum(1).mean()
        assert soft_cross_entropy(z, z, T).item() == pytest.approx(T * T * entropy.item(), rel=1e-6)
    # and a different student gives a strictly larger value (Gibbs' inequality)
    assert soft_cross_entropy(z.flip(1), z, 2.0) > soft_cross_entropy(z, z, 2.0) + 1e-3


def test_soft_cross_entropy_gradient_vanishes_when_student_equals_teacher():
    """Its gradient is KL's: zero at student == teacher, nonzero elsewhere."""
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 2
    student = z.clone().requires_grad_(True)
    soft_cross_entropy(student, z, 2.0).backward()
    assert student.grad.abs().max().item() < 1e-6
    other = (z + torch.randn(4, 6)).requires_grad_(True)
    soft_cross_entropy(other, z, 2.0).backward()
    assert other.grad.abs().max().item() > 1e-3


def test_soft_cross_entropy_hand_computed_2x2_with_t2_scaling():
    """T=2 on a 2×2 case computed by hand: 4 · mean(ln 2, ln(1+e) − ½)."""
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    # row 0: teacher p=(e, 1)/(e+1), student log-softmax = (−ln2, −ln2) → CE = ln 2
    # row 1: teacher p=(½, ½), student log-softmax of (0, 1) = (−ln(1+e), 1 − ln(1+e)) → CE = ln(1+e) − ½
    expected = 4.0 * 0.5 * (math.log(2.0) + math.log(1.0 + math.e) - 0.5)
    assert soft_cross_entropy(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)
    # T² scaling: doubling T and both logits leaves the distributions unchanged and multiplies by 4
    assert soft_cross_entropy(2 * student, 2 * teacher, 2.0).item() == pytest.approx(
        4.0 * soft_cross_entropy(student, teacher, 1.0).item(), rel=1e-6
    )


def test_distillation_losses_t2i_is_the_transposed_i2t_problem():
    """3 images × 5 texts: i2t is a softmax over texts per image, t2i over images per text, scaled by s."""
    g = torch.Generator().manual_seed(2)
    si, ti = F.normalize(torch.randn(3, 8, generator=g), dim=1), F.normalize(torch.randn(3, 8, generator=g), dim=1)
    st, tt = F.normalize(torch.randn(5, 8, generator=g), dim=1), F.normalize(torch.randn(5, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    out = distillation_losses(si, ti, st, tt, scale, 2.0, "both")
    zs, zt = 10.0 * si @ st.T, 10.0 * ti @ tt.T
    assert out["kd_i2t"].item() == pytest.approx(soft_cross_entropy(zs, zt, 2.0).item(), rel=1e-6)
    assert out["kd_t2i"].item() == pytest.approx(soft_cross_entropy(zs.T, zt.T, 2.0).item(), rel=1e-6)
    assert abs(out["kd_i2t"].item() - out["kd_t2i"].item()) > 1e-3  # the two directions are different problems
    assert set(distillation_losses(si, ti, st, tt, scale, 2.0, "i2t")) == {"kd_i2t"}
    assert set(distillation_losses(si, ti, st, tt, scale, 2.0, "t2i")) == {"kd_t2i"}


# ---------------------------------------------------------------------------------------------
# LwF and VR-LwF through the hooks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,options", [("lwf", {}), ("vr_lwf", {"vocab_size": 50})])
def test_distillation_kl_is_zero_before_training_and_positive_after_a_ce_step(scenario, tokenizer, name, options):
    """Student == teacher at task start: KD = T²·H(teacher) (KL 0); one CE step elsewhere makes KL > 0."""
    ctx = make_ctx(scenario, tokenizer)
    method = get_method(name, options)
    method.begin_task(ctx)
    expected_texts = len(ctx.class_tokens) if name == "lwf" else 50
    assert method.teacher_texts.shape == (expected_texts, 32)
    extra, _, terms = hook_step(method, ctx, 0, ce_images())
    entropy = teacher_entropy_t2(method.teacher, extra.images, method.teacher_texts, method.options.T)
    assert set(terms) == {"kd_i2t", "kd_t2i"}
    for key in terms:
        assert terms[key].item() - entropy[key] == pytest.approx(0.0, abs=1e-5), key

    # one AdamW step of cross-entropy on unrelated images and labels
    optimizer = torch.optim.AdamW(ctx.model.parameters(), lr=1e-2)
    feats = ctx.model.encode_image(ce_images(seed=9, n=6), normalize=True)
    texts = ctx.model.encode_text(ctx.class_tokens, normalize=True)
    F.cross_entropy(10 * feats @ texts.T, torch.tensor([0, 1, 0, 1, 1, 0])).backward()
    optimizer.step()

    extra, _, terms = hook_step(method, ctx, 1, ce_images())
    entropy = teacher_entropy_t2(method.teacher, extra.images, method.teacher_texts, method.options.T)
    for key in terms:
        assert terms[key].item() - entropy[key] > 1e-3, key


@pytest.mark.parametrize("name,options", [("lwf", {}), ("vr_lwf", {"vocab_size": 50})])
def test_teacher_is_unchanged_by_training_and_shares_no_storage(scenario, tokenizer, tmp_path, name, options):
    """P1: after several real training steps the teacher's tensors are bit-identical and no
    storage is shared with the student (the ZSCL CIL aliasing bug cannot happen)."""
    ctx = make_ctx(scenario, tokenizer, steps=3)
    method = get_method(name, options)
    teacher_before = clone_state(ctx.start_model)
    student_before = clone_state(ctx.model)
    train_task(method, ctx, tmp_path)
    assert method.teacher is ctx.start_model
    assert changed(ctx.model, student_before), "training moved the student"
    assert not changed(method.teacher, teacher_before), "the teacher must not move"
    student_ptrs = {t.data_ptr() for t in ctx.model.state_dict().values()}
    teacher_ptrs = {t.data_ptr() for t in method.teacher.state_dict().values()}
    assert not student_ptrs & teacher_ptrs
    assert not any(p.requires_grad for p in method.teacher.parameters()) and not method.teacher.training


@pytest.mark.parametrize("side,text_moves", [("teacher", False), ("student", True)])
def test_student_text_side_decides_whether_kd_reaches_the_text_tower(scenario, tokenizer, side, text_moves):
    """ZSCL's choice (P2): student logits against the teacher's text embeddings → KD gradients only in
    the image tower; `student_text_side=student` also trains the text tower through KD."""
    ctx = make_ctx(scenario, tokenizer)
    perturb_(ctx.model, seed=3)  # student ≠ teacher, or every KD gradient is 0
    method = get_method("vr_lwf", {"vocab_size": 20, "student_text_side": side})
    method.begin_task(ctx)
    _, _, terms = hook_step(method, ctx, 0, ce_images())
    sum(terms.values()).backward()
    grads = {n: (p.grad.abs().sum().item() if p.grad is not None else 0.0) for n, p in ctx.model.named_parameters()}
    assert sum(v for n, v in grads.items() if n.startswith("visual.")) > 0
    text_grad = sum(v for n, v in grads.items() if not n.startswith("visual.") and n != "logit_scale")
    assert (text_grad > 0) == text_moves


def test_kd_weights_per_direction_scale_each_term(scenario, tokenizer):
    """`weight_i2t` / `weight_t2i` override `weight` for their direction only."""
    ctx = make_ctx(scenario, tokenizer)
    perturb_(ctx.model, seed=4)
    plain, weighted = get_method("lwf"), get_method("lwf", {"weight": 3.0, "weight_t2i": 0.5})
    values = []
    for method in (plain, weighted):
        method.begin_task(ctx)
        with torch.no_grad():
            values.append(hook_step(method, ctx, 0, ce_images())[2])
    assert values[1]["kd_i2t"].item() == pytest.approx(3.0 * values[0]["kd_i2t"].item(), rel=1e-5)
    assert values[1]["kd_t2i"].item() == pytest.approx(0.5 * values[0]["kd_t2i"].item(), rel=1e-5)


def test_kd_batch_size_comes_from_the_method_option_else_the_ce_batch(scenario, tokenizer):
    """The distillation batch: method option `kd_batch_size` (its one home), else the CE batch size."""
    sizes = []
    for options in ({}, {"kd_batch_size": 5}):
        method = get_method("lwf", options)
        ctx = make_ctx(scenario, tokenizer, config=make_config())
        method.begin_task(ctx)
        sizes.append(len(method.extra_inputs(ctx, 0).images))
    assert sizes == [8, 5]
    with pytest.raises(ValueError, match="unknown setting 'kd_batch_size'"):
        apply_overrides(TrainConfig(), {"kd_batch_size": 3})


def test_memory_kd_images_without_a_memory_is_an_error(scenario, tokenizer):
    """`kd_images=memory` only makes sense for iCaRL; elsewhere it must not silently disable KD."""
    with pytest.raises(ValueError, match="memory"):
        get_method("lwf", {"kd_images": "memory"}).begin_task(make_ctx(scenario, tokenizer))


# ---------------------------------------------------------------------------------------------
# VR-LwF's replayed vocabulary
# ---------------------------------------------------------------------------------------------


def test_random_bpe_vocabulary_rows_are_sot_ids_eot_padding(tokenizer):
    """Rows [SOT, L ids, EOT, 0…] of the context length; SOT/EOT never drawn (P3), so the EOT
    position is the unique argmax that CLIP pools at."""
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    k, length = 20_000, 10  # 200,000 draws: an unexcluded special id would appear with prob. ≈ 1 − e^−8
    rows = random_bpe_vocabulary(tokenizer, k, length, CONTEXT, torch.Generator().manual_seed(0))
    assert rows.shape == (k, CONTEXT) and rows.dtype == torch.long
    assert (rows[:, 0] == sot).all() and (rows[:, length + 1] == eot).all() and (rows[:, length + 2 :] == 0).all()
    ids = rows[:, 1 : length + 1]
    assert not torch.isin(ids, torch.tensor([sot, eot])).any()
    assert ids.min() >= 0 and ids.max() < len(tokenizer.encoder)
    assert len(ids.unique()) > 40_000  # drawn over (nearly) the whole BPE vocabulary
    assert (rows.argmax(dim=1) == length + 1).all()


def test_random_bpe_vocabulary_is_deterministic_per_seed_and_checks_the_length(tokenizer):
    a = random_bpe_vocabulary(tokenizer, 30, 5, CONTEXT, torch.Generator().manual_seed(7))
    b = random_bpe_vocabulary(tokenizer, 30, 5, CONTEXT, torch.Generator().manual_seed(7))
    c = random_bpe_vocabulary(tokenizer, 30, 5, CONTEXT, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="context length"):
        random_bpe_vocabulary(tokenizer, 3, CONTEXT - 1, CONTEXT, torch.Generator())


class _CountingEncodeText:
    """Wraps a teacher's encode_text to count calls and record the tokens it saw."""

    def __init__(self, model):
        self.inner, self.calls = model.encode_text, []
        model.encode_text = self

    def __call__(self, tokens, *args, **kwargs):
        self.calls.append(tokens.clone())
        return self.inner(tokens, *args, **kwargs)


def test_vocabulary_fixed_per_task_is_encoded_by_the_teacher_once(scenario, tokenizer):
    """resample=task: the same K pseudo-sentences every step; teacher text embeddings cached (P4)."""
    ctx = make_ctx(scenario, tokenizer)
    counter = _CountingEncodeText(ctx.start_model)
    method = get_method("vr_lwf", {"vocab_size": 16, "sentence_length": 6})
    method.begin_task(ctx)
    seen = []
    with torch.no_grad():
        for step in range(3):
            hook_step(method, ctx, step, ce_images())
            seen.append(method.tokens.clone())
    assert len(counter.calls) == 1
    assert all(torch.equal(s, seen[0]) for s in seen)
    assert seen[0].shape == (16, CONTEXT) and (seen[0][:, 7] == tokenizer.eot_token_id).all()


def test_vocabulary_resampled_per_step_changes_and_is_reencoded(scenario, tokenizer):
    """resample=step: new pseudo-sentences (and teacher embeddings of them) at every step."""
    ctx = make_ctx(scenario, tokenizer)
    counter = _CountingEncodeText(ctx.start_model)
    method = get_method("vr_lwf", {"vocab_size": 16, "resample": "step"})
    method.begin_task(ctx)
    with torch.no_grad():
        for step in range(3):
            hook_step(method, ctx, step, ce_images())
    assert len(counter.calls) == 3
    assert not torch.equal(counter.calls[0], counter.calls[1]) and not torch.equal(counter.calls[1], counter.calls[2])


def test_word_list_vocabulary_is_made_of_whole_words(tokenizer):
    """vocab_source=word_list: L real (alphabetic, ≥3-letter) words of the BPE vocabulary per sentence."""
    words = {w[:-4] for w in tokenizer.encoder if w.endswith("</w>")}
    rows = word_list_vocabulary(tokenizer, 25, 4, torch.Generator().manual_seed(0))
    assert rows.shape == (25, CONTEXT)
    for row in rows.tolist():
        end = row.index(tokenizer.eot_token_id)
        sentence = tokenizer.decode(row[1:end]).split()
        assert len(sentence) == 4, sentence
        assert all(w in words and w.isalpha() and len(w) >= 3 for w in sentence), sentence


def test_vr_lwf_word_list_and_captions_sources_through_the_method(scenario, tokenizer):
    """The method's distillation texts follow `vocab_source` (captions: the scenario's reference captions)."""
    ctx = make_ctx(scenario, tokenizer)
    method = get_method("vr_lwf", {"vocab_source": "captions", "vocab_size": 10})
    method.begin_task(ctx)
    allowed = tokenizer(scenario.reference.captions)
    assert all(any(torch.equal(row, a) for a in allowed) for row in method.tokens)
    method = get_method("vr_lwf", {"vocab_source": "word_list", "vocab_size": 10, "sentence_length": 3})
    method.begin_task(ctx)
    assert method.tokens.shape == (10, CONTEXT)


def test_vr_lwf_options_are_validated():
    """Bad values and unknown option names are ValueErrors naming the culprit."""
    with pytest.raises(ValueError, match="'nope'"):
        get_method("vr_lwf", {"nope": 1})
    with pytest.raises(ValueError, match="directions"):
        get_method("vr_lwf", {"directions": "sideways"})
    with pytest.raises(ValueError, match="vocab_source"):
        get_method("vr_lwf", {"vocab_source": "dictionary"})
    with pytest.raises(ValueError, match="resample"):
        get_method("vr_lwf", {"resample": "epoch"})
    with pytest.raises(ValueError, match="temperature"):
        get_method("vr_lwf", {"T": 0})
    with pytest.raises(ValueError, match="vocab_size"):
        get_method("vr_lwf", {"vocab_size": 0})
    assert get_method("vr_lwf").describe()["vocab_size"] == 1000  # ZSCL's K


def test_unknown_method_name_lists_the_methods():
    with pytest.raises(ValueError, match="unknown method 'nope'.*lwf.*vr_lwf.*icarl.*wise_ft.*zscl"):
        get_method("nope")


# ---------------------------------------------------------------------------------------------
# WiSE-FT
# ---------------------------------------------------------------------------------------------


def test_interpolate_endpoints_are_exact_and_the_middle_is_convex():
    """α=1 keeps the fine-tuned weights, α=0 gives the reference exactly, α=0.8 the convex combination."""
    finetuned, reference = tiny_clip(0), tiny_clip(1)
    ft_state, ref_state = clone_state(finetuned), clone_state(reference)
    name = "visual.conv1.weight"
    assert not torch.equal(ft_state[name], ref_state[name])

    model = tiny_clip(0)
    interpolate_(model, reference, 1.0)
    assert not changed(model, ft_state)

    model = tiny_clip(0)
    interpolate_(model, reference, 0.0)
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())

    model = tiny_clip(0)
    interpolate_(model, reference, 0.8)
    for key in (name, "text_projection", "ln_final.bias"):
        torch.testing.assert_close(model.state_dict()[key], 0.8 * ft_state[key] + 0.2 * ref_state[key])
    assert not changed(reference, ref_state)


@pytest.mark.parametrize("reference", ["start", "zeroshot"])
def test_wise_ft_end_task_interpolates_with_the_chosen_reference(scenario, tokenizer, reference):
    """reference=start → start-of-task model (ZSCL's baseline, P11); reference=zeroshot → initial model."""
    initial = frozen_copy(tiny_clip(0))
    model = tiny_clip(0)
    perturb_(model, seed=1)  # a later task: the start-of-task model differs from the initial one
    ctx = make_ctx(scenario, tokenizer, model=model, initial=initial)
    start_state = clone_state(ctx.start_model)
    perturb_(model, seed=2)  # "fine-tuning"
    tuned = clone_state(model)
    get_method("wise_ft", {"reference": reference}).end_task(ctx)
    ref_state = start_state if reference == "start" else clone_state(initial)
    for key in ("visual.conv1.weight", "token_embedding.weight"):
        torch.testing.assert_close(model.state_dict()[key], 0.8 * tuned[key] + 0.2 * ref_state[key])


# ---------------------------------------------------------------------------------------------
# iCaRL
# ---------------------------------------------------------------------------------------------


def test_herding_first_pick_is_nearest_to_the_mean():
    features = torch.tensor([[3.0, 0.0], [-1.0, 1.0], [0.2, 0.1], [-2.0, -1.0]])  # mean (0.05, 0.025)
    assert herding(features, 1).tolist() == [2]


def test_herding_prefers_a_pair_averaging_to_the_mean_over_two_near_points_on_one_side():
    """1-D mean 0: points 0.10 and 0.11 are the two nearest, but {0.10, −0.21} averages closer."""
    features = torch.tensor([[0.11, 0.0], [-0.21, 0.0], [0.10, 0.0]])
    assert herding(features, 2).tolist() == [2, 1]
    assert herding(features, 5).tolist() == [2, 1, 0]  # m > n: every row, in priority order


@pytest.mark.parametrize("variant", ["classical", "zscl"])
def test_icarl_memory_is_split_over_classes_or_tasks(scenario, tokenizer, variant):
    """Classical: memory_size // n_seen exemplars per class, old sets shrunk to a herding prefix;
    ZSCL variant (MTIL code, updated after each task): the first K images of task 1, then
    K − K//2 for the new task and K//2 for the old. Rows are (task, item, global label)."""
    method = get_method("icarl", {"variant": variant, "memory_size": 12, "zscl_code": "mtil"})
    model = tiny_clip()
    ctx0 = make_ctx(scenario, tokenizer, 0, model=model)
    method.end_task(ctx0)
    memory0 = method.memory.clone()
    perturb_(model, seed=5)
    ctx1 = make_ctx(scenario, tokenizer, 1, model=model, initial=ctx0.initial_model)
    method.end_task(ctx1)
    memory1 = method.memory

    for memory in (memory0, memory1):  # every exemplar's label is its image's label (+ task offset)
        for task, item, label in memory.tolist():
            assert scenario.tasks[task].train_data(None).targets[item] + 2 * task == label
        assert len(memory[:, :2].unique(dim=0)) == len(memory)  # no exemplar twice

    if variant == "classical":
        assert torch.bincount(memory0[:, 2]).tolist() == [6, 6]
        assert torch.bincount(memory1[:, 2]).tolist() == [3, 3, 3, 3]
        for c in (0, 1):  # old classes keep the first 3 of their herding order
            assert torch.equal(memory1[memory1[:, 2] == c], memory0[memory0[:, 2] == c][:3])
    else:
        assert memory0[:, :2].tolist() == [[0, i] for i in range(12)]  # first K in dataset order
        assert torch.bincount(memory1[:, 0]).tolist() == [6, 6]
        assert torch.equal(memory1[memory1[:, 0] == 0], memory0[:6])
        assert set(memory1[memory1[:, 0] == 1, 2].tolist()) <= {2, 3}


def test_icarl_memory_is_the_herding_choice_of_the_trained_model(scenario, tokenizer):
    """ZSCL variant, MTIL code, task 2: its K − K//2 exemplars are the herding choice over the
    task's normalised image features (the first candidates in dataset order), in order."""
    method = get_method("icarl", {"variant": "zscl", "memory_size": 10, "zscl_code": "mtil"})
    method.end_task(make_ctx(scenario, tokenizer, 0))
    ctx = make_ctx(scenario, tokenizer, 1)
    method.end_task(ctx)
    data = scenario.tasks[1].train_data(to_tensor)
    with torch.no_grad():
        feats = ctx.model.encode_image(torch.stack([data[i][0] for i in range(len(data))]), normalize=True)
    new = method.memory[method.memory[:, 0] == 1]
    assert new[:, 1].tolist() == herding(feats, 5).tolist()


def test_icarl_state_tensors_round_trip_through_safetensors(scenario, tokenizer, tmp_path):
    method = get_method("icarl", {"memory_size": 6})
    method.end_task(make_ctx(scenario, tokenizer))
    assert len(method.memory) == 6
    save_file({k: v.contiguous() for k, v in method.state_tensors().items()}, str(tmp_path / "m.safetensors"))
    restored = get_method("icarl", {"memory_size": 6})
    restored.load_state_tensors(load_file(str(tmp_path / "m.safetensors")))
    assert torch.equal(restored.memory, method.memory) and restored.memory.dtype == torch.long


def test_icarl_teacher_defaults_per_variant_and_options_are_validated(scenario, tokenizer):
    """ZSCL's MTIL iCaRL distils the pretrained model (P12), its CIL iCaRL and classical iCaRL the
    previous one; an explicit teacher is kept; KD images are always the memory."""
    ctx = make_ctx(scenario, tokenizer)  # a class-incremental scenario

    def teacher(options):
        return get_method("icarl", options).teacher_choice(ctx)

    assert teacher({"variant": "zscl", "zscl_code": "mtil"}) == "initial"
    assert teacher({"variant": "zscl"}) == "previous"  # auto: the scenario is class-incremental
    assert teacher({}) == "previous"
    assert teacher({"variant": "zscl", "zscl_code": "mtil", "teacher": "previous"}) == "previous"
    assert teacher({"teacher": "initial"}) == "initial"
    assert get_method("icarl").options.directions == "i2t"  # Rebuffi: each image's old-class outputs
    assert get_method("icarl", {"variant": "zscl"}).options.directions == "both"
    with pytest.raises(ValueError, match="zscl_code"):
        get_method("icarl", {"zscl_code": "tinyimagenet"})
    with pytest.raises(ValueError, match="variant"):
        get_method("icarl", {"variant": "modern"})
    with pytest.raises(ValueError, match="teacher"):
        get_method("icarl", {"teacher": "oracle"})
    with pytest.raises(ValueError, match="kd_images"):
        get_method("icarl", {"kd_images": "current"})


# ---------------------------------------------------------------------------------------------
# ZSCL
# ---------------------------------------------------------------------------------------------


def test_weight_ensemble_is_the_uniform_mean_of_start_and_snapshots():
    start, a, b = tiny_clip(0), tiny_clip(1), tiny_clip(2)
    ensemble = WeightEnsemble(start)
    ensemble.add(a)
    ensemble.add(b)
    assert ensemble.count == 3
    states = [s.state_dict() for s in (start, a, b)]
    for key in ("visual.conv1.weight", "text_projection", "positional_embedding"):
        torch.testing.assert_close(ensemble.average[key], sum(s[key] for s in states) / 3)


@pytest.mark.parametrize(
    "steps,avg_freq,final,snapshots",
    [
        (7, 3, "always", [1, 4, 7]),  # ZSCL iterations 0, 3, 6; step 7 = iteration 6 holds the final weights
        (6, 3, "on_interval", [1, 4, 6]),  # iteration 6 = ZSCL's extra zero-lr step: the final weights
        (8, 3, "on_interval", [1, 4, 7]),  # ZSCL CIL: the update after iteration 6 is lost
        (8, 3, "always", [1, 4, 7, 8]),
        (5, 1, "always", [1, 2, 3, 4, 5, 5]),  # I = 1: ZSCL's iterations 4 and 5 both hold the final weights
        (4, 10, "always", [1, 4]),
        (4, 10, "on_interval", [1]),
    ],
)
def test_zscl_snapshots_after_steps_0_i_2i_and_ends_with_the_average(
    scenario, tokenizer, steps, avg_freq, final, snapshots
):
    """after_step(s) with s = steps done snapshots when (s−1) % I == 0, and the final weights once
    more when steps % I == 0 (or, with final_snapshot=always, when no snapshot took them);
    end_task loads the mean of the start weights and exactly those snapshots."""
    ctx = make_ctx(scenario, tokenizer, steps=steps)
    method = get_method("zscl", {"avg_freq": avg_freq, "final_snapshot": final})
    method.begin_task(ctx)
    key = "visual.proj"
    start_value = ctx.model.state_dict()[key].clone()
    for s in range(1, steps + 1):
        with torch.no_grad():
            ctx.model.state_dict()[key].fill_(float(s))  # the "optimiser step" s
        method.after_step(ctx, s)
    assert method.ensemble.count == 1 + len(snapshots)
    expected = (start_value + sum(float(s) for s in snapshots)) / (1 + len(snapshots))
    method.end_task(ctx)
    torch.testing.assert_close(ctx.model.state_dict()[key], expected)


def test_zscl_state_tensors_restore_the_ensemble(scenario, tokenizer):
    """A mid-task resume restores the running average and its count."""
    ctx = make_ctx(scenario, tokenizer)
    method = get_method("zscl")
    method.begin_task(ctx)
    perturb_(ctx.model, seed=1)
    method.after_step(ctx, 1)
    saved = {k: v.clone() for k, v in method.state_tensors().items()}
    other = get_method("zscl")
    other.begin_task(ctx)
    other.load_state_tensors(saved)
    assert other.ensemble.count == 2
    assert all(torch.equal(other.ensemble.average[k], v) for k, v in method.ensemble.average.items())


def test_l2_to_is_the_sum_of_squared_differences_of_trainable_parameters():
    model, anchor = tiny_clip(0), tiny_clip(0)
    assert l2_to(model, anchor).item() == 0.0
    delta = torch.randn(model.visual.conv1.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        model.visual.conv1.weight.add_(delta)
    assert l2_to(model, anchor).item() == pytest.approx((delta**2).sum().item(), rel=1e-4)
    model.visual.conv1.weight.requires_grad_(False)  # frozen parameters are not regularised
    assert l2_to(model, anchor).item() == 0.0


def test_zscl_distils_the_initial_model_on_reference_images_and_captions(scenario, tokenizer):
    """ZSCL: teacher = pretrained model (not the start-of-task one), texts = reference captions,
    KD images = reference images; LwF in the same context uses the start-of-task model."""
    initial = frozen_copy(tiny_clip(0))
    model = tiny_clip(0)
    perturb_(model, seed=1)
    ctx = make_ctx(scenario, tokenizer, task_index=1, model=model, initial=initial)
    zscl, lwf = get_method("zscl"), get_method("lwf")
    zscl.begin_task(ctx)
    lwf.begin_task(ctx)
    assert zscl.teacher is ctx.initial_model and lwf.teacher is ctx.start_model
    with torch.no_grad():
        expected = initial.encode_text(tokenizer(scenario.reference.captions), normalize=True)
    torch.testing.assert_close(zscl.teacher_texts, expected)
    reference_images = torch.stack([to_tensor(img) for img, _ in scenario.reference.images(None)])
    kd_images = zscl.extra_inputs(ctx, 0).images
    assert all(any(torch.equal(x, r) for r in reference_images) for x in kd_images)
    _, _, terms = hook_step(zscl, ctx, 1, ce_images())
    assert set(terms) == {"kd_i2t", "kd_t2i", "l2"} and terms["l2"].item() == 0.0  # student == start


# ---------------------------------------------------------------------------------------------
# end to end through the real loop
# ---------------------------------------------------------------------------------------------

EXPECTED_TERMS = {
    "finetune": {"ce"},
    "lwf": {"ce", "kd_i2t", "kd_t2i"},
    "vr_lwf": {"ce", "kd_i2t", "kd_t2i"},
    "wise_ft": {"ce"},
    "zscl": {"ce", "kd_i2t", "kd_t2i", "l2"},
}
E2E_OPTIONS = {"vr_lwf": {"vocab_size": 32}, "zscl": {"avg_freq": 1}, "icarl": {"memory_size": 8}}


def _loss_log(run_dir) -> list[dict]:
    with open(run_dir / "loss_log.csv") as handle:
        return list(csv.DictReader(handle))


def _train(method, scenario, tokenizer, run_dir, task_index=0, model=None, initial=None, **config):
    ctx = make_ctx(scenario, tokenizer, task_index, model=model, initial=initial, config=make_config(**config), steps=2)
    before = clone_state(ctx.model)
    train_task(method, ctx, run_dir)
    return ctx, before


@pytest.mark.parametrize("name", sorted(EXPECTED_TERMS))
def test_method_trains_end_to_end_through_the_loop(scenario, tokenizer, tmp_path, name):
    """2 real steps: every expected loss term logged and finite, the weights moved."""
    method = get_method(name, E2E_OPTIONS.get(name))
    ctx, before = _train(method, scenario, tokenizer, tmp_path)
    rows = [r for r in _loss_log(tmp_path) if r["term"] != "total"]
    assert {r["term"] for r in rows} == EXPECTED_TERMS[name]
    assert len(rows) == 2 * len(EXPECTED_TERMS[name])
    assert all(math.isfinite(float(r["value"])) for r in rows)
    assert changed(ctx.model, before)


@pytest.mark.parametrize(
    "variant,side,code",
    [("classical", "teacher", "auto"), ("zscl", "teacher", "mtil"), ("classical", "student", "auto")],
)
def test_icarl_end_to_end_over_two_tasks(scenario, tokenizer, tmp_path, variant, side, code):
    """Task 0 builds the memory; task 1 distils on exemplars (and, classically, rehearses them with
    cross-entropy among all seen classes)."""
    options = {**E2E_OPTIONS["icarl"], "variant": variant, "student_text_side": side, "zscl_code": code}
    method = get_method("icarl", options)
    ctx0, _ = _train(method, scenario, tokenizer, tmp_path / "t0")
    assert len(method.memory) == 8
    assert {r["term"] for r in _loss_log(tmp_path / "t0")} == {"ce", "total"}  # no memory yet
    ctx1, before = _train(method, scenario, tokenizer, tmp_path / "t1", 1, model=ctx0.model, initial=ctx0.initial_model)
    rows = [r for r in _loss_log(tmp_path / "t1") if r["term"] != "total"]
    # classical: image→text over the old classes (Rebuffi) and rehearsal; zscl: both directions
    expected = {"ce", "kd_i2t", "rehearsal_ce"} if variant == "classical" else {"ce", "kd_i2t", "kd_t2i"}
    assert {r["term"] for r in rows} == expected
    assert all(math.isfinite(float(r["value"])) for r in rows)
    assert changed(ctx1.model, before)
    assert sorted(set(method.memory[:, 0].tolist())) == [0, 1]


def test_each_accumulation_micro_batch_is_distilled_against_its_own_teacher_images(scenario, tokenizer):
    """The loop sends consecutive halves of the KD batch through two forwards (grad_accum=2): at
    student == teacher both halves must give KL = 0, i.e. the teacher saw the same half."""
    ctx = make_ctx(scenario, tokenizer, config=make_config(grad_accum=2))
    method = get_method("lwf")
    method.begin_task(ctx)
    extra = method.extra_inputs(ctx, 0)
    images = ce_images(n=8)
    with torch.no_grad():
        for micro in range(2):
            kd = extra.images[micro * 4 : (micro + 1) * 4]
            out = student_forward(
                ClipStudent(ctx.model), images[micro * 4 : (micro + 1) * 4], ctx.class_tokens, kd, None
            )
            terms = method.losses(ctx, out)
            entropy = teacher_entropy_t2(method.teacher, kd, method.teacher_texts, method.options.T)
            for key in terms:
                assert terms[key].item() - entropy[key] == pytest.approx(0.0, abs=1e-5), (micro, key)


@pytest.mark.parametrize("name", ["lwf", "icarl"])
def test_distillation_with_gradient_accumulation(scenario, tokenizer, tmp_path, name):
    """grad_accum=2 splits the step's KD batch like the CE batch; the terms stay defined and finite."""
    method = get_method(name, E2E_OPTIONS.get(name))
    model, initial = None, None
    if name == "icarl":  # a memory first
        ctx0, _ = _train(method, scenario, tokenizer, tmp_path / "t0")
        model, initial = ctx0.model, ctx0.initial_model
    ctx, before = _train(
        method,
        scenario,
        tokenizer,
        tmp_path / "run",
        1 if name == "icarl" else 0,
        model=model,
        initial=initial,
        grad_accum=2,
    )
    rows = [r for r in _loss_log(tmp_path / "run") if r["term"] != "total"]
    assert {"kd_i2t"} | ({"rehearsal_ce"} if name == "icarl" else {"kd_t2i"}) <= {r["term"] for r in rows}
    assert all(math.isfinite(float(r["value"])) for r in rows)
    assert changed(ctx.model, before)


def test_wise_ft_end_to_end_lands_between_start_and_fine_tuned(scenario, tokenizer, tmp_path):
    """Through the loop, WiSE-FT's final weights are 0.8·(fine-tuned) + 0.2·(start): compare with the
    same 2 steps of plain fine-tuning."""
    ft_ctx, start = _train(get_method("finetune"), scenario, tokenizer, tmp_path / "ft")
    wise_ctx, _ = _train(get_method("wise_ft"), scenario, tokenizer, tmp_path / "wise")
    for key in ("visual.conv1.weight", "token_embedding.weight"):
        torch.testing.assert_close(
            wise_ctx.model.state_dict()[key], 0.8 * ft_ctx.model.state_dict()[key] + 0.2 * start[key]
        )


def test_zeroshot_never_trains(scenario, tokenizer, tmp_path):
    """`zeroshot` is the untrained reference row: the runner skips the loop for it, weights unchanged."""
    method = get_method("zeroshot")
    assert method.trains is False and set(METHODS) >= {
        "zeroshot",
        "finetune",
        "lwf",
        "vr_lwf",
        "icarl",
        "wise_ft",
        "zscl",
    }
    model = tiny_clip()
    before = clone_state(model)
    bundle = ClipBundle(model, tokenizer, to_tensor, to_tensor, "tiny", None)
    single = Scenario(
        name="fake1", protocol="class_incremental", tasks=scenario.tasks[:1], reference=scenario.reference
    )
    run_scenario(
        single,
        "zeroshot",
        tmp_path,
        bundle=bundle,
        overrides={
            "steps_per_task": 2,
            "batch_size": 8,
            "checkpoint_every": 0,
            "progress": False,
            "device": "cpu",
            "eval_batch_size": 16,
        },
    )
    assert not changed(model, before)
