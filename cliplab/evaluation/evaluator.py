"""Evaluation of a model state within a scenario: one row of the accuracy matrix plus the probes.

Row semantics, A[i, j] after training task i:
- task-incremental / one-session: task j's test images classified among task j's classes;
- class-incremental: task j's test images classified among the classes of tasks 1..max(i, j)
  (the classes seen so far; for a future task, those plus its own, which gives its zero-shot
  transfer). The usual CIL accuracy after task i — all seen test images, all seen classes — is
  the test-size-weighted mean of A[i, 1..i] (`seen_accuracy`), stored beside the matrix with
  the test sizes (`test_sizes`) that weight it.
- open-domain and online protocols: see `cliplab.evaluation.protocols` (both ODCL rows, resp. the
  online row, the accuracy on every exposed class and per-class accuracies, in `Evaluation.extra`).
- time-continual (TiC-CLIP): A[i, j] is image–caption retrieval R@1 on step j's held-out pairs,
  the mean of image→text and text→image; the image→text and text→image rows and step j's
  zero-shot classification (None where the step has no labelled images) are kept in
  `Evaluation.rows`.
- language-continual (CLL-CLIP): A[i, j] is text→image R@1 with the test captions in language j
  (the same images for every language); the image→text and text→image rows are in `rows`.
Prompts are the ensembled evaluation templates (MTIL); image features of each evaluation set (one
per factory: languages share theirs) are computed once per evaluation and shared.

What does not depend on the model is prepared once per evaluator, not once per evaluation (the
numbers are unchanged; only repeated work goes): the transformed image batches of each evaluation
set while they fit in `ScenarioEvaluator.cache_bytes` (the eval transform is deterministic, so these
are the very tensors the DataLoader would produce again), and the tokens of every prompt and
caption batch. Retrieval caption embeddings are reused while the text tower is unchanged (same
fingerprint as the zero-shot classifier cache, `cliplab.evaluation.zeroshot.text_tower_fingerprint`).

A model that chooses a route per input (`cliplab.evaluation.routing`, e.g. MoE-Adapters' DDAS) is
evaluated through that choice everywhere: each image of a test set, probe or retrieval set is
encoded on its route and scored against the classifier or caption embeddings of that route; the
share of each set taking each route is recorded in `Evaluation.routing`.

A model may also score images against class names its own way: a `class_scorer` attribute
(CoLeCLIP: each class against the image feature of the task that learned it; Continual-CLIP with
its own prompt) with `logits(model, features, names, templates, classifier)` and optionally
`image_features(model, batches, batch_size)`. Every classification accuracy (task rows, probes, the
protocol rows) goes through it; retrieval always uses the model's `encode_image` / `encode_text`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from cliplab.evaluation.embed import encode_texts, image_features
from cliplab.evaluation.protocols import online_row, open_domain_rows
from cliplab.evaluation.retrieval import retrieval_scores, routed_retrieval_scores
from cliplab.evaluation.routing import (
    forced_route,
    image_routes,
    on_route,
    route_shares,
    route_tag,
    routed_image_features,
    routed_logits,
)
from cliplab.evaluation.zeroshot import accuracy_from_logits, text_tower_fingerprint, zero_shot_classifier
from cliplab.scenarios import RETRIEVAL_PROTOCOLS, Scenario


@dataclass
class Evaluation:
    """Everything measured at one point of a run (accuracies in percent)."""

    accuracy: list[float]
    zero_shot: dict[str, float]
    retrieval: dict[str, dict[str, float]]
    seen_accuracy: float | None = None  # CIL: all seen classes (None before training)
    extra: dict[str, Any] = field(default_factory=dict)  # protocol extras (ODCL rows, online per-class accuracy)
    routing: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> {route: share} (routed models)
    test_sizes: list[int] | None = None  # CIL: test images evaluated per task (the n_j weighting seen_accuracy)
    rows: dict[str, list[float | None]] = field(default_factory=dict)  # other per-task rows (retrieval protocols)


class _MemoTokenizer:
    """`tokenizer` with its output kept per batch of texts (a tokenizer is a pure function of its
    input and of its `state`, if it has one: an expanded vocabulary's usable ids); least recently
    used batches are dropped beyond `max_bytes`."""

    def __init__(self, tokenizer: Callable, max_bytes: int = 64 * 2**20) -> None:
        self.tokenizer, self.max_bytes, self.bytes = tokenizer, max_bytes, 0
        self.memo: OrderedDict[tuple, Tensor] = OrderedDict()

    def __call__(self, texts, *args, **kwargs):
        if args or kwargs or isinstance(texts, str):
            return self.tokenizer(texts, *args, **kwargs)
        texts = tuple(texts)
        key = (getattr(self.tokenizer, "state", None), texts)
        if key in self.memo:
            self.memo.move_to_end(key)
            return self.memo[key].clone()
        tokens = self.tokenizer(list(texts))
        if torch.is_tensor(tokens):
            self.memo[key] = tokens.clone()
            self.bytes += tokens.numel() * tokens.element_size()
            while self.bytes > self.max_bytes and self.memo:
                dropped = self.memo.popitem(last=False)[1]
                self.bytes -= dropped.numel() * dropped.element_size()
        return tokens

    def __getattr__(self, name: str):
        if name == "tokenizer":  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


class ScenarioEvaluator:
    """Builds the scenario's test sets once (with the model's eval transform) and evaluates states."""

    cache_bytes = 512 * 2**20  # transformed evaluation images kept in memory, at most

    def __init__(self, scenario: Scenario, eval_transform, tokenizer, config) -> None:
        self.scenario, self.tokenizer, self.config = scenario, tokenizer, config
        self.eval_transform = eval_transform
        self._stream_test = None  # online protocol: every exposed class's test images (built on first use)
        self.tests = [
            None if task.test_data is None else self._capped(task.test_data(eval_transform)) for task in scenario.tasks
        ]
        built: dict[int, object] = {}  # sets sharing a factory share one dataset (encoded once per evaluation)

        def dataset(factory):
            return built.setdefault(id(factory), factory(eval_transform))

        self.step_retrieval = []
        if scenario.protocol in RETRIEVAL_PROTOCOLS:
            missing = [t.name for t in scenario.tasks if getattr(t, "retrieval", None) is None]
            if missing:
                raise ValueError(
                    f"{scenario.protocol} scenario {scenario.name!r}: tasks {missing} have no retrieval set"
                )
            self.step_retrieval = [(t.retrieval, dataset(t.retrieval.data)) for t in scenario.tasks]
        self.probes = [(p, dataset(p.data)) for p in scenario.probes]
        self.retrieval = [(r, dataset(r.data)) for r in scenario.retrieval]
        self._evaluation_features: dict[tuple, tuple] | None = None  # inside one evaluate() call
        self._tokenize = _MemoTokenizer(tokenizer)
        self._image_batches: dict[int, list] = {}  # id(dataset) -> its collated (images, labels) batches
        self._streamed: set[int] = set()  # datasets too large to keep
        self._cached_bytes = 0
        self._caption_embeddings: dict[tuple, tuple[tuple, Tensor]] = {}  # (retrieval set, route) -> (key, texts)
        self._routing: dict[str, dict[str, float]] = {}  # what the last evaluation's inputs were routed to
        self._test_sizes: list[int] | None = None  # CIL: test images of each task in the last accuracy row

    def _capped(self, dataset):
        cap = self.config.max_eval_images
        if cap is None or len(dataset) <= cap:
            return dataset
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:cap].sort().values
        return Subset(dataset, keep.tolist())

    def _batches(self, dataset):
        """The batches `image_features` would load from `dataset`, collated once and kept if they fit
        in `cache_bytes` (estimated from the first image); else `dataset` itself, loaded every time."""
        key = id(dataset)
        if key in self._image_batches:
            return self._image_batches[key]
        if key in self._streamed or len(dataset) == 0:
            return dataset
        first = dataset[0]
        first = first[0] if isinstance(first, (list, tuple)) else first
        size = len(dataset) * first.numel() * first.element_size() if torch.is_tensor(first) else None
        if size is None or self._cached_bytes + size > self.cache_bytes:
            self._streamed.add(key)
            return dataset
        batches = list(DataLoader(dataset, batch_size=self.config.eval_batch_size, shuffle=False, num_workers=0))
        self._image_batches[key] = batches
        self._cached_bytes += size
        return batches

    def _features(self, model, dataset, name: str, scored: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        """Image features, labels and, for a routed model, each image's route (None otherwise); within
        one `evaluate` computed once per dataset. A routed set's route shares are recorded as `name`."""
        memo, key = self._evaluation_features, (id(dataset), scored)
        feats = memo.get(key) if memo is not None else None
        if feats is None:
            feats = self._encode(model, dataset, scored)
            if memo is not None:
                memo[key] = feats
        if feats[2] is not None:
            self._routing[name] = route_shares(feats[2]) or {}
        return feats

    def _encode(self, model, dataset, scored: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        batches, size = self._batches(dataset), self.config.eval_batch_size
        scorer = getattr(model, "class_scorer", None) if scored else None
        if scorer is not None and hasattr(scorer, "image_features"):
            return (*scorer.image_features(model, batches, size), None)
        routes = image_routes(model, batches, size)
        if routes is None:
            return (*image_features(model, batches, size), None)
        return (*routed_image_features(model, batches, routes, size), routes)

    def _classifier(self, model, names: list[str], templates, route: int | None = None) -> Tensor:
        with on_route(model, route):
            return zero_shot_classifier(model, self._tokenize, names, templates).cpu()

    def _logits(self, model, x: Tensor, routes: Tensor | None, names: list[str], templates) -> Tensor:
        scorer = getattr(model, "class_scorer", None)
        if scorer is not None:
            return scorer.logits(model, x, list(names), templates, lambda n, t: self._classifier(model, list(n), t))
        return routed_logits(x, routes, lambda route: self._classifier(model, names, templates, route))

    # What the protocol rows (`cliplab.evaluation.protocols`) use: features (with routes) of a test
    # set, logits of features against some classes, and the evaluation-size cap.
    def features(self, model, dataset, name: str = "") -> tuple[Tensor, Tensor, Tensor | None]:
        return self._features(model, dataset, name)

    def logits(self, model, x: Tensor, routes: Tensor | None, names: list[str], templates) -> Tensor:
        return self._logits(model, x, routes, list(names), templates)

    def capped(self, dataset):
        return self._capped(dataset)

    def _caption_features(self, model, index: tuple, captions, route: int | None = None) -> Tensor:
        with on_route(model, route):
            param = next(model.parameters())
            key = (text_tower_fingerprint(model), str(param.device), str(param.dtype), route_tag(model), len(captions))
            cached = self._caption_embeddings.get((index, route))
            if cached is not None and cached[0] == key:
                return cached[1]
            texts = encode_texts(model, self._tokenize, captions, batch_size=self.config.eval_batch_size)
        self._caption_embeddings[(index, route)] = (key, texts)
        return texts

    def accuracy_row(self, model, after_task: int) -> tuple[list[float], float | None]:
        """A[after_task, :] and, for CIL, the accuracy over all seen classes."""
        if self.scenario.protocol in RETRIEVAL_PROTOCOLS:
            raise ValueError(f"a {self.scenario.protocol} scenario's rows come from time_rows()")
        feats = [self._features(model, data, task.name) for task, data in zip(self.scenario.tasks, self.tests)]
        if self.scenario.protocol != "class_incremental":
            row = []
            for task, (x, y, routes) in zip(self.scenario.tasks, feats):
                logits = self._logits(model, x, routes, task.classnames, task.templates)
                row.append(accuracy_from_logits(logits, y, (1,))["top1"])
            return row, None
        self._test_sizes = [len(y) for _, y, _ in feats]
        row, hits, total = [], 0.0, 0
        templates = self.scenario.tasks[0].templates
        for j, (x, y, routes) in enumerate(feats):
            names, offsets = self.scenario.classes_up_to(max(after_task, j))
            acc = accuracy_from_logits(self._logits(model, x, routes, names, templates), y + offsets[j], (1,))["top1"]
            row.append(acc)
            if j <= after_task:  # sum_j n_j A[i, j] / sum_j n_j over the tasks seen so far
                hits, total = hits + acc * len(y), total + len(y)
        return row, (hits / total if total else None)

    @torch.no_grad()
    def task_identity_row(self, model, route_of: Callable[[int], int] = int) -> list[float]:
        """A task-incremental accuracy row with task j's test images forced onto route `route_of(j)`
        (default: route j, the router of task j) instead of the model's input router's choice: an
        oracle that knows the task, which tells what the routes learned from where inputs were sent."""
        if self.scenario.protocol != "task_incremental":
            raise ValueError(
                f"a task-identity row needs a task-incremental scenario (one router per task); "
                f"{self.scenario.name} is {self.scenario.protocol}"
            )
        row = []
        for j, (task, data) in enumerate(zip(self.scenario.tasks, self.tests)):
            with forced_route(model, route_of(j)):
                x, y, routes = self._encode(model, data, scored=True)
                logits = self._logits(model, x, routes, task.classnames, task.templates)
            row.append(accuracy_from_logits(logits, y, (1,))["top1"])
        return row

    def time_rows(self, model) -> tuple[list[float], dict[str, list[float | None]]]:
        """Retrieval R@1 (mean of both directions) on every step's held-out pairs, and the other rows:
        `i2t_r1`, `t2i_r1` and `classification` (zero-shot top-1 on the step's labelled images; None
        for a step without them)."""
        rows: dict[str, list[float | None]] = {"i2t_r1": [], "t2i_r1": [], "classification": []}
        for j, ((probe, data), task, test) in enumerate(zip(self.step_retrieval, self.scenario.tasks, self.tests)):
            scores = self._retrieval(model, ("step", j), probe, data, f"step/{task.name}")
            rows["i2t_r1"].append(scores["i2t_r1"])
            rows["t2i_r1"].append(scores["t2i_r1"])
            if test is None:
                rows["classification"].append(None)  # JSON-safe "not measured" (progress.json has no NaN)
                continue
            x, y, routes = self._features(model, test, task.name)
            logits = self._logits(model, x, routes, task.classnames, task.templates)
            rows["classification"].append(accuracy_from_logits(logits, y, (1,))["top1"])
        mean = [(a + b) / 2 for a, b in zip(rows["i2t_r1"], rows["t2i_r1"])]
        return mean, rows

    def probe_accuracies(self, model) -> dict[str, float]:
        out = {}
        for probe, data in self.probes:  # probes sharing images share their features (and routes)
            x, y, routes = self._features(model, data, probe.name)
            y = probe.labels if probe.labels is not None else y
            logits = self._logits(model, x, routes, probe.classnames, probe.templates)
            out[probe.name] = accuracy_from_logits(logits, y, (1,))["top1"]
        return out

    def _retrieval(self, model, key: tuple, probe, data, name: str) -> dict[str, float]:
        """Recalls of one image–caption set (each image against the captions encoded on its route)."""
        images, _, routes = self._features(model, data, name, scored=False)
        captions, index = probe.captions, probe.text_image_index
        if getattr(data, "captions_follow_images", False):  # read after the images: the captions of an image
            # that failed to decode (screened when the set was opened, or when loaded) are left out
            captions, index = list(data.captions), torch.as_tensor(data.text_image_index)
        if routes is None:
            return retrieval_scores(images, self._caption_features(model, key, captions), index)
        by_route = {r: self._caption_features(model, key, captions, r) for r in routes.unique().tolist()}
        return routed_retrieval_scores(images, routes, by_route, index)

    def probe_retrieval(self, model) -> dict[str, dict[str, float]]:
        return {
            probe.name: self._retrieval(model, ("probe", index), probe, data, f"retrieval/{probe.name}")
            for index, (probe, data) in enumerate(self.retrieval)
        }

    def protocol_row(self, model, after_task: int) -> tuple[list[float], float | None, dict[str, Any]]:
        """The accuracy row, the seen-class accuracy and the protocol's extras (see the module doc)."""
        protocol = self.scenario.protocol
        if protocol.startswith("open_domain"):
            til, cil = open_domain_rows(self, model, after_task)
            return (cil if protocol == "open_domain_cil" else til), None, {"til": til, "cil": cil}
        if protocol == "online":
            return online_row(self, model, after_task)
        row, seen = self.accuracy_row(model, after_task)
        return row, seen, {}

    @torch.no_grad()
    def evaluate(self, model, after_task: int) -> Evaluation:
        """Everything at one point; `after_task` = -1 before training."""
        self._routing, self._test_sizes = {}, None
        self._evaluation_features = {}  # image features are computed once per evaluation and dataset
        try:
            rows: dict[str, list[float | None]] = {}
            if self.scenario.protocol in RETRIEVAL_PROTOCOLS:
                row, rows = self.time_rows(model)
                if self.scenario.protocol == "language_continual":  # A[i, j]: text→image R@1 in language j
                    row, rows = rows["t2i_r1"], {k: rows[k] for k in ("i2t_r1", "t2i_r1")}
                seen, extra = None, {}
            else:
                row, seen, extra = self.protocol_row(model, max(after_task, 0) if after_task >= 0 else -1)
            probes, retrieval = self.probe_accuracies(model), self.probe_retrieval(model)
        finally:
            self._evaluation_features = None
        return Evaluation(
            row, probes, retrieval, seen, extra, routing=dict(self._routing), test_sizes=self._test_sizes, rows=rows
        )
