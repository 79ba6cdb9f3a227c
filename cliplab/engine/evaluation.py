"""Evaluation of a model state within a scenario: one row of the accuracy matrix plus the probes.

Row semantics, A[i, j] after training task i:
- task-incremental / one-session: task j's test images classified among task j's classes;
- class-incremental: task j's test images classified among the classes of tasks 1..max(i, j)
  (the classes seen so far; for a future task, those plus its own, which gives its zero-shot
  transfer). The usual CIL accuracy after task i — all seen test images, all seen classes — is
  the test-size-weighted mean of A[i, 1..i], stored beside the matrix.
Prompts are the ensembled evaluation templates (MTIL); image features of each test set are
computed once per evaluation and shared across classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Subset

from cliplab.embed import encode_texts
from cliplab.engine.scenario import Scenario
from cliplab.retrieval import retrieval_metrics
from cliplab.zeroshot import accuracy_from_logits, image_features, zero_shot_classifier

RETRIEVAL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


@dataclass
class Evaluation:
    """Everything measured at one point of a run (accuracies in percent)."""

    accuracy: list[float]
    zero_shot: dict[str, float]
    retrieval: dict[str, dict[str, float]]
    seen_accuracy: float | None = None  # CIL: all seen classes (None before training)
    extra: dict[str, float] = field(default_factory=dict)


class ScenarioEvaluator:
    """Builds the scenario's test sets once (with the model's eval transform) and evaluates states."""

    def __init__(self, scenario: Scenario, eval_transform, tokenizer, config) -> None:
        self.scenario, self.tokenizer, self.config = scenario, tokenizer, config
        self.tests = [self._capped(task.test_data(eval_transform)) for task in scenario.tasks]
        built: dict[int, object] = {}
        for probe in scenario.probes:  # probes sharing a factory share one dataset (encoded once)
            built.setdefault(id(probe.data), probe.data(eval_transform))
        self.probes = [(p, built[id(p.data)]) for p in scenario.probes]
        self.retrieval = [(r, r.data(eval_transform)) for r in scenario.retrieval]

    def _capped(self, dataset):
        cap = self.config.max_eval_images
        if cap is None or len(dataset) <= cap:
            return dataset
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:cap].sort().values
        return Subset(dataset, keep.tolist())

    def _features(self, model, dataset) -> tuple[Tensor, Tensor]:
        return image_features(model, dataset, self.config.eval_batch_size)

    def _classifier(self, model, names: list[str], templates) -> Tensor:
        return zero_shot_classifier(model, self.tokenizer, names, templates).cpu()

    def accuracy_row(self, model, after_task: int) -> tuple[list[float], float | None]:
        """A[after_task, :] and, for CIL, the accuracy over all seen classes."""
        feats = [self._features(model, data) for data in self.tests]
        if self.scenario.protocol != "class_incremental":
            row = []
            for task, (x, y) in zip(self.scenario.tasks, feats):
                row.append(accuracy_from_logits(x @ self._classifier(model, task.classnames, task.templates), y, (1,))["top1"])
            return row, None
        row, hits, total = [], 0.0, 0
        templates = self.scenario.tasks[0].templates
        for j, (x, y) in enumerate(feats):
            names, offsets = self.scenario.classes_up_to(max(after_task, j))
            acc = accuracy_from_logits(x @ self._classifier(model, names, templates), y + offsets[j], (1,))["top1"]
            row.append(acc)
            if j <= after_task:
                hits, total = hits + acc * len(y), total + len(y)
        return row, (hits / total if total else None)

    def probe_accuracies(self, model) -> dict[str, float]:
        out, features = {}, {}
        for probe, data in self.probes:
            if id(data) not in features:
                features[id(data)] = self._features(model, data)
            x, y = features[id(data)]
            y = probe.labels if probe.labels is not None else y
            out[probe.name] = accuracy_from_logits(x @ self._classifier(model, probe.classnames, probe.templates), y, (1,))["top1"]
        return out

    def probe_retrieval(self, model) -> dict[str, dict[str, float]]:
        out = {}
        for probe, data in self.retrieval:
            images, _ = self._features(model, data)
            texts = encode_texts(model, self.tokenizer, probe.captions, batch_size=self.config.eval_batch_size)
            metrics = retrieval_metrics(images, texts, probe.text_image_index)
            out[probe.name] = {k: metrics[k] for k in RETRIEVAL_KEYS}
        return out

    @torch.no_grad()
    def evaluate(self, model, after_task: int) -> Evaluation:
        """Everything at one point; `after_task` = -1 before training."""
        row, seen = self.accuracy_row(model, max(after_task, 0) if after_task >= 0 else -1)
        return Evaluation(row, self.probe_accuracies(model), self.probe_retrieval(model), seen)
