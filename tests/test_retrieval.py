"""Oracle tests for cliplab.evaluation.retrieval: torchmetrics, a naive argsort reference, hand cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_recall

from cliplab.evaluation.retrieval import positive_ranks, recall_at_k, retrieval_metrics

torch.set_num_threads(1)


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _oracle(similarity: torch.Tensor, relevant: torch.Tensor, k: int, fn) -> float:
    """Mean over queries of a torchmetrics per-query retrieval function, in percent.

    torchmetrics' retrieval_recall drops relevant items whose score is <= 0, so cosines are
    shifted by +2 first (a rank-preserving change).
    """
    scores = similarity + 2.0
    per_query = [fn(scores[q], relevant[q], top_k=k) for q in range(scores.shape[0])]
    return 100.0 * torch.stack(per_query).mean().item()


def _naive_ranks(similarity: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Full argsort per row; rank of the first relevant item (open_clip-style reference)."""
    order = similarity.argsort(dim=1, descending=True)
    hits = torch.gather(relevant, 1, order)
    return hits.float().argmax(dim=1) + 1


def test_recall_matches_torchmetrics_7x7():
    image, text = _features(7, 5, 0), _features(7, 5, 1)
    similarity = image @ text.T
    relevant = torch.eye(7, dtype=torch.bool)
    for k in (1, 2, 5):
        expected = _oracle(similarity, relevant, k, retrieval_recall)
        assert recall_at_k(similarity, relevant, k) == pytest.approx(expected)
        assert recall_at_k(similarity, torch.arange(7), k) == pytest.approx(expected)
    # the random case must not be trivially perfect, or the comparison above proves little
    assert recall_at_k(similarity, relevant, 1) < 100.0


def test_multi_caption_matches_torchmetrics():
    n_img, per_image = 6, 3
    shuffle = torch.randperm(18, generator=torch.Generator().manual_seed(3))
    owner = torch.arange(n_img).repeat_interleave(per_image)[shuffle]
    image, text = _features(n_img, 4, 4), _features(18, 4, 5)
    i2t_mask = torch.arange(n_img)[:, None] == owner[None, :]
    metrics = retrieval_metrics(image, text, owner)
    for k in (1, 5, 10):
        # image->text: a hit if ANY caption is in the top k (torchmetrics' hit rate)
        assert metrics[f"i2t_r{k}"] == pytest.approx(_oracle(image @ text.T, i2t_mask, k, retrieval_hit_rate))
        # text->image: one relevant image per caption, so recall == hit rate
        assert metrics[f"t2i_r{k}"] == pytest.approx(_oracle(text @ image.T, i2t_mask.T, k, retrieval_recall))
    assert 0.0 < metrics["i2t_r1"] < 100.0


def test_hand_computed_ranks_with_several_captions():
    # S[i, j] = <I_i, T_j>; captions 0, 2 belong to image 0 and captions 1, 3 to image 1.
    S = torch.tensor([[0.2, 0.9, 0.6, 0.1], [0.7, 0.5, 0.8, 0.4]])
    image, text, owner = torch.eye(2), S.T.contiguous(), torch.tensor([0, 1, 0, 1])
    m = retrieval_metrics(image, text, owner, ks=(1, 2, 5))
    # i2t: image 0's best caption (0.6) is beaten by 0.9 -> rank 2; image 1's best (0.5) by 0.7, 0.8 -> 3
    assert (m["i2t_mean_rank"], m["i2t_median_rank"]) == pytest.approx((2.5, 2.5))
    assert (m["i2t_r1"], m["i2t_r2"], m["i2t_r5"]) == pytest.approx((0.0, 50.0, 100.0))
    # t2i: caption ranks 2, 2, 2, 1
    assert (m["t2i_mean_rank"], m["t2i_median_rank"]) == pytest.approx((1.75, 2.0))
    assert (m["t2i_r1"], m["t2i_r2"]) == pytest.approx((25.0, 100.0))


def test_default_keys_and_one_to_one_hand_case():
    S = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.3, 0.4], [0.1, 0.8, 0.7]])
    m = retrieval_metrics(torch.eye(3), S.T.contiguous())
    assert list(m) == [
        "i2t_r1",
        "i2t_r5",
        "i2t_r10",
        "i2t_mean_rank",
        "i2t_median_rank",
        "t2i_r1",
        "t2i_r5",
        "t2i_r10",
        "t2i_mean_rank",
        "t2i_median_rank",
    ]
    assert m["i2t_r1"] == pytest.approx(100 / 3) and m["t2i_r1"] == pytest.approx(200 / 3)
    assert (m["i2t_mean_rank"], m["i2t_median_rank"]) == pytest.approx((2.0, 2.0))
    assert (m["t2i_mean_rank"], m["t2i_median_rank"]) == pytest.approx((4 / 3, 1.0))


@pytest.mark.parametrize("chunk_size", [1, 4, 37, 1000])
def test_chunked_equals_unchunked_and_naive(chunk_size):
    similarity = _features(37, 6, 7) @ _features(53, 6, 8).T
    relevant = torch.rand(37, 53, generator=torch.Generator().manual_seed(9)) < 0.1
    relevant[torch.arange(37), torch.arange(37)] = True  # every query has a positive
    ranks = positive_ranks(similarity, relevant, chunk_size=chunk_size)
    assert torch.equal(ranks, positive_ranks(similarity, relevant))
    assert torch.equal(ranks, _naive_ranks(similarity, relevant))
    for k in (1, 5, 10):
        assert recall_at_k(similarity, relevant, k, chunk_size) == recall_at_k(similarity, relevant, k)


def test_retrieval_metrics_chunked_equals_unchunked():
    owner = torch.arange(9).repeat_interleave(2)
    image, text = _features(9, 8, 10), _features(18, 8, 11)
    assert retrieval_metrics(image, text, owner, chunk_size=2) == retrieval_metrics(image, text, owner)


def test_identical_features_give_perfect_recall():
    x = _features(20, 16, 12)
    m = retrieval_metrics(x, x)
    assert m["i2t_r1"] == m["t2i_r1"] == 100.0
    assert m["i2t_mean_rank"] == m["t2i_median_rank"] == 1.0


def test_ties_count_in_the_query_favour():
    similarity = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]])
    assert positive_ranks(similarity, torch.tensor([1, 1])).tolist() == [1, 1]
    assert recall_at_k(similarity, torch.tensor([2, 0]), 1) == 0.0


def test_query_without_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="without any relevant"):
        positive_ranks(torch.rand(3, 4), torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="text_image_index is required"):
        retrieval_metrics(_features(3, 4, 0), _features(5, 4, 1))
