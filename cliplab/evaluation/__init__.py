"""Evaluation: how good a model is, and how a run's numbers are summarised.

- `embed`: the one image-encoding loop (`image_features`), text encoding, an on-disk embedding cache;
- `zeroshot`: prompt-ensembled zero-shot classifiers (cached per text-tower weights) and accuracy;
- `retrieval`: image↔text Recall@K (`RETRIEVAL_KEYS`) and ranks;
- `linear_probe`: logistic-regression probes on frozen features;
- `metrics`: continual-learning metrics of an accuracy matrix (Transfer / Avg / Last, BWT, TiC's
  ID / backward / forward, ...), summarised per protocol;
- `evaluator`: a model state inside a scenario — one row of the task matrix plus every probe;
- `reports`: one model evaluated once (`cliplab eval`).
"""

from cliplab.evaluation.embed import EmbeddingCache, encode_images, encode_texts, image_features, model_temperature
from cliplab.evaluation.metrics import (
    PROTOCOL_SUMMARY_KEYS,
    SUMMARY_KEYS,
    TIME_CONTINUAL_KEYS,
    backward_transfer,
    class_incremental_summary,
    continual_summary,
    mtil_per_task,
    protocol_summary,
    time_continual_summary,
    zero_shot_retention,
)
from cliplab.evaluation.retrieval import RETRIEVAL_KEYS, retrieval_metrics, retrieval_scores
from cliplab.evaluation.zeroshot import accuracy_from_logits, zero_shot_accuracy, zero_shot_classifier

__all__ = [
    "PROTOCOL_SUMMARY_KEYS",
    "RETRIEVAL_KEYS",
    "SUMMARY_KEYS",
    "TIME_CONTINUAL_KEYS",
    "EmbeddingCache",
    "accuracy_from_logits",
    "backward_transfer",
    "class_incremental_summary",
    "continual_summary",
    "encode_images",
    "encode_texts",
    "image_features",
    "model_temperature",
    "mtil_per_task",
    "protocol_summary",
    "retrieval_metrics",
    "retrieval_scores",
    "time_continual_summary",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_retention",
]
