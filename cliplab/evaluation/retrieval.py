"""Image<->text retrieval metrics (Recall@K, mean/median rank) on L2-normalised features.

Retrieval is the task metric the embedding geometry serves: a model can keep its modality gap,
cone and CKA and still lose retrieval if one modality rotates away from the other (Mod-X's
"spatial disorder", Ni et al. 2023). This module is the single implementation used by the
evaluation CLI and by `cliplab.alignment`'s cross-version retrieval.

Conventions (COCO style, several captions per image):

* `S = I Tᵀ` is the image x caption cosine matrix.
* `text_image_index[j]` is the image that caption j describes.
* A query's rank is the 1-based position of its *best-ranked* relevant item, computed without
  sorting as `1 + #{items scoring strictly higher}`. Ties therefore count in the query's favour
  (the usual float data has none).
* Hit@K (what CLIP papers call image->text Recall@K) = 100 · mean(rank <= K): an image is a hit
  when *any* of its captions is in the top K. For one relevant item per query it equals
  torchmetrics' `retrieval_recall`; with several it equals `retrieval_hit_rate`.

Work is chunked over query rows, so a 10k x 50k problem holds only `chunk_size x G` scores at a
time and never sorts. The reference for values: zero-shot OpenAI ViT-B/32 on COCO-5k gives
I->T R@1 ≈ 50-52 and T->I ≈ 30; always state the pool size N with a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

# Upper bound on the number of scores held at once (query chunk x gallery): 16M floats = 64 MiB.
_MAX_CHUNK_ELEMENTS = 1 << 24

__all__ = [
    "RETRIEVAL_KEYS",
    "positive_ranks",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_scores",
    "routed_retrieval_scores",
]

#: The recalls every retrieval probe reports (percent), in this order.
RETRIEVAL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def _auto_chunk(n_gallery: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    return max(1, _MAX_CHUNK_ELEMENTS // max(n_gallery, 1))


def _best_positive_rank(scores: Tensor, positive: Tensor) -> Tensor:
    """1-based rank of the highest-scoring positive in each row of `scores` (q x G)."""
    has_positive = positive.any(dim=1)
    if not bool(has_positive.all()):
        bad = torch.nonzero(~has_positive).flatten()[:5].tolist()
        raise ValueError(f"queries without any relevant item (first rows in chunk: {bad})")
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    return (scores > best).sum(dim=1) + 1


def _chunked_ranks(
    n_queries: int,
    n_gallery: int,
    scores_of: Callable[[slice], Tensor],
    positives_of: Callable[[slice], Tensor],
    chunk_size: int | None,
) -> Tensor:
    step = _auto_chunk(n_gallery, chunk_size)
    ranks = [
        _best_positive_rank(scores_of(rows), positives_of(rows))
        for rows in (slice(i, min(i + step, n_queries)) for i in range(0, n_queries, step))
    ]
    return torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long)


def _positives_from_relevant(relevant: Tensor, n_queries: int, n_gallery: int) -> Callable:
    """Turn a Q x G boolean mask or a length-Q index vector into a per-chunk mask builder."""
    if relevant.dim() == 2:
        if relevant.shape != (n_queries, n_gallery):
            raise ValueError(f"relevant mask {tuple(relevant.shape)} != similarity {(n_queries, n_gallery)}")
        mask = relevant.bool()
        return lambda rows: mask[rows]
    if relevant.dim() == 1 and not relevant.dtype.is_floating_point and relevant.dtype != torch.bool:
        if relevant.numel() != n_queries:
            raise ValueError(f"relevant index has {relevant.numel()} entries for {n_queries} queries")
        gallery = torch.arange(n_gallery, device=relevant.device)
        return lambda rows: relevant[rows, None] == gallery[None, :]
    raise ValueError("relevant must be a (Q, G) boolean mask or a (Q,) integer index tensor")


def positive_ranks(similarity: Tensor, relevant: Tensor, chunk_size: int | None = None) -> Tensor:
    """Per-query 1-based rank of the best-ranked relevant gallery item.

    Args:
        similarity: Q x G scores, higher = more similar (e.g. `I @ T.T` for image->text).
        relevant: either a Q x G boolean mask of relevant pairs, or a length-Q integer tensor
            holding the single relevant gallery index of each query.
        chunk_size: query rows processed at once (default: enough rows for ~16M scores).

    Returns:
        LongTensor (Q,) with values in [1, G]; rank = 1 + #{items scoring strictly higher than
        the best relevant one}. Raises ValueError if a query has no relevant item.
    """
    n_queries, n_gallery = similarity.shape
    positives_of = _positives_from_relevant(relevant.to(similarity.device), n_queries, n_gallery)
    return _chunked_ranks(n_queries, n_gallery, lambda rows: similarity[rows], positives_of, chunk_size)


def recall_at_k(similarity: Tensor, relevant: Tensor, k: int, chunk_size: int | None = None) -> float:
    """Hit@K in percent: share of queries with at least one relevant item among their top K.

    `100 · mean_q [rank_q <= k]` with `rank_q` from `positive_ranks` (same `relevant` forms).
    Range 0-100. With one relevant item per query this is Recall@K as in CLIP papers and
    `torchmetrics.functional.retrieval.retrieval_recall`; with several it is the hit rate.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranks = positive_ranks(similarity, relevant, chunk_size)
    return 100.0 * (ranks <= k).double().mean().item()


def _rank_summary(prefix: str, ranks: Tensor, ks: Sequence[int]) -> dict[str, float]:
    out = {f"{prefix}_r{k}": 100.0 * (ranks <= k).double().mean().item() for k in ks}
    as_float = ranks.double()
    out[f"{prefix}_mean_rank"] = as_float.mean().item()
    out[f"{prefix}_median_rank"] = as_float.quantile(0.5).item()  # midpoint for even counts
    return out


def retrieval_metrics(
    image_features: Tensor,
    text_features: Tensor,
    text_image_index: Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Image->text and text->image retrieval on L2-normalised features.

    Args:
        image_features: N_img x d, L2-normalised.
        text_features: N_txt x d, L2-normalised.
        text_image_index: LongTensor (N_txt,), image index of each caption. Default
            `arange(N)` (one caption per image, N_img == N_txt).
        ks: cut-offs K for Recall@K.
        chunk_size: query rows scored at once (the full N_img x N_txt matrix is never formed).

    Returns:
        `i2t_r{k}`, `t2i_r{k}` for each k (percent, 0-100; image->text counts a hit when any
        of the image's captions is in the top k), and `i2t_mean_rank`, `i2t_median_rank`,
        `t2i_mean_rank`, `t2i_median_rank` (1-based; image->text uses the best-ranked caption;
        median is the midpoint for an even count). Chance R@1 is 100·c/N_txt (i2t, c captions
        per image) and 100/N_img (t2i).
    """
    n_img, n_txt = image_features.shape[0], text_features.shape[0]
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError("image and text features must have the same dimension")
    if text_image_index is None:
        if n_img != n_txt:
            raise ValueError("text_image_index is required when N_img != N_txt")
        text_image_index = torch.arange(n_txt)
    owner = text_image_index.to(image_features.device).long()
    if owner.shape != (n_txt,):
        raise ValueError(f"text_image_index must have shape ({n_txt},), got {tuple(owner.shape)}")
    image_ids = torch.arange(n_img, device=image_features.device)
    i2t = _chunked_ranks(
        n_img,
        n_txt,
        lambda rows: image_features[rows] @ text_features.T,
        lambda rows: image_ids[rows, None] == owner[None, :],
        chunk_size,
    )
    t2i = _chunked_ranks(
        n_txt,
        n_img,
        lambda rows: text_features[rows] @ image_features.T,
        lambda rows: owner[rows, None] == image_ids[None, :],
        chunk_size,
    )
    return {**_rank_summary("i2t", i2t, ks), **_rank_summary("t2i", t2i, ks)}


def retrieval_scores(
    image_features: Tensor, text_features: Tensor, text_image_index: Tensor | None = None
) -> dict[str, float]:
    """The `RETRIEVAL_KEYS` recalls of `retrieval_metrics` (what every probe reports)."""
    metrics = retrieval_metrics(image_features, text_features, text_image_index)
    return {k: metrics[k] for k in RETRIEVAL_KEYS}


def routed_retrieval_scores(
    image_features: Tensor,
    routes: Tensor,
    text_features: dict[int, Tensor],
    text_image_index: Tensor,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """`retrieval_scores` for a model that routes each image (`cliplab.evaluation.routing`).

    Image i takes route `routes[i]` in both towers, so its similarity to caption j is
    `image_features[i] · text_features[routes[i]][j]`: one score matrix, its rows drawn from each
    route's caption embeddings, ranked as in `retrieval_metrics` (chunked, never formed whole).
    """
    n_img = image_features.shape[0]
    n_txt = next(iter(text_features.values())).shape[0]
    owner = text_image_index.long()
    image_ids = torch.arange(n_img)
    by_route = {int(r): torch.nonzero(routes == r).flatten() for r in routes.unique().tolist()}

    def rows_of(rows: slice) -> Tensor:  # image rows x every caption
        images, mine = image_features[rows], routes[rows]
        out = images.new_empty(len(images), n_txt)
        for route in mine.unique().tolist():
            pick = mine == route
            out[pick] = images[pick] @ text_features[int(route)].T
        return out

    def columns_of(rows: slice) -> Tensor:  # caption rows x every image
        out = image_features.new_empty(n_img, len(range(*rows.indices(n_txt))))
        for route, index in by_route.items():
            out[index] = image_features[index] @ text_features[route][rows].T
        return out.T

    i2t = _chunked_ranks(n_img, n_txt, rows_of, lambda rows: image_ids[rows, None] == owner[None, :], chunk_size)
    t2i = _chunked_ranks(n_txt, n_img, columns_of, lambda rows: owner[rows, None] == image_ids[None, :], chunk_size)
    metrics = {**_rank_summary("i2t", i2t, (1, 5, 10)), **_rank_summary("t2i", t2i, (1, 5, 10))}
    return {k: metrics[k] for k in RETRIEVAL_KEYS}
