"""CLL-CLIP's mechanisms with real numbers: TEIR's initialisation and per-row scale, the cross-modal
loss, the growing embedding, and (through the one training loop) which rows move and how."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliplab.methods.cll_clip import CLLCLIP, grow_embedding, multi_positive_infonce, teir_rows, teir_scale

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


def test_growing_keeps_old_rows_bit_for_bit_and_appends_the_new_ones():
    model = tiny_clip()
    old = model.token_embedding.weight.detach().clone()
    new = torch.randn(5, old.shape[1])
    grow_embedding(model, new)
    weight = model.token_embedding.weight
    assert weight.shape == (old.shape[0] + 5, old.shape[1])
    assert torch.equal(weight[: old.shape[0]], old) and torch.equal(weight[old.shape[0] :], new)


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
