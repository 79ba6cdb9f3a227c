"""Scenario types: an ordered list of tasks plus the probes that measure forgetting of pretraining.

A `ScenarioSpec` says what a scenario *is* without building any data: its protocol, task names and
class names, the training defaults of its protocol and its per-method presets. Planning runs
(resolving a run's configuration, ordering runs by cost, checking a run store) needs only the spec.
A `Scenario` is the built thing: the spec's facts plus data factories for every task, probe,
retrieval set and reference set.

Protocols:
- `class_incremental` (CIL): cross-entropy over the current task's classes only; a task's test
  images are classified among the classes of every task seen so far (ZSCL's CIL, P13).
- `task_incremental` (MTIL): each task (domain) is classified among its own classes.
- `one_session` (Ding et al.'s OST): a single task holding every class of interest. The
  multi-session regime (MST) is the class-incremental split of the same classes.
- `open_domain_til` / `open_domain_cil` (CoLeCLIP's open-domain continual learning): domains in
  sequence, every domain evaluated after every task; a seen domain is classified among its own
  classes (TIL) or among the name-deduplicated union of every seen domain's classes (CIL); an
  unseen domain among its own classes in both. Both rows are recorded; the name says which one is
  the run's accuracy matrix (`cliplab.evaluation.open_domain`).
- `online` (Si-Blurry, SIT): one pass over a stream with blurry task boundaries (`Scenario.stream`);
  the classes are labelled in the order the stream exposes them, a task's classes are the ones it
  exposes first, and the model is also evaluated every `eval_period` samples (`cliplab.engine.online`).
- `time_continual` (TiC-CLIP): each task is a time step of an image–caption stream, trained with
  CLIP's contrastive loss; a step's evaluation is image–caption retrieval on its held-out pairs
  (the accuracy matrix holds mean R@1) and, where the step has labelled images, zero-shot
  classification (`TimeStep`).
- `language_continual` (CLL-CLIP): each task is a new language, learned from captions of images
  with their parallel English captions, trained with CLIP's contrastive loss; a task's evaluation
  is retrieval on one image set captioned in every language (the accuracy matrix holds
  text→image R@1), English retrieval is a probe (`LanguageTask`).

Every scenario also carries zero-shot probes and a retrieval probe, evaluated before training
and after every task, so forgetting of the pretrained capabilities is always measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

PROTOCOLS = (
    "class_incremental",
    "task_incremental",
    "one_session",
    "open_domain_til",
    "open_domain_cil",
    "online",
    "time_continual",
    "language_continual",
)
# The training objective each protocol prescribes (the loop's `engine.objectives` implements both).
OBJECTIVES = {
    "class_incremental": "classification",
    "task_incremental": "classification",
    "one_session": "classification",
    "open_domain_til": "classification",
    "open_domain_cil": "classification",
    "online": "classification",
    "time_continual": "contrastive",
    "language_continual": "contrastive",
}
# Protocols whose tasks are evaluated by retrieval on their own held-out image–caption sets.
RETRIEVAL_PROTOCOLS = ("time_continual", "language_continual")

DatasetFactory = Callable[[Callable | None], Dataset]  # transform -> dataset of (image, local label)


@dataclass
class Task:
    """One step of a scenario: its classes, prompts and data."""

    name: str
    classnames: list[str]
    train_template: Any  # str with "{}" or a callable; the single training prompt [MTIL]
    templates: list[Any]  # evaluation ensemble
    train_data: DatasetFactory
    test_data: DatasetFactory

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def train_prompts(self) -> list[str]:
        """One training prompt per class: the single training template filled with its name."""
        template = self.train_template
        return [template(c) if callable(template) else template.format(c) for c in self.classnames]


@dataclass
class TimeStep(Task):
    """One step of a time-continual stream (`time_continual`).

    `train_data(transform)` is the step's finite pool of `(image, caption)` pairs (new data only:
    replay of earlier steps is a method's choice); `retrieval` its held-out image–caption pairs;
    `test_data`, when not None, labelled images of the step classified zero-shot among
    `classnames` with `templates` (TiC's DataCompNet: a fixed class list, the step's images).
    """

    retrieval: RetrievalSet | None = None


@dataclass
class LanguageTask(TimeStep):
    """One language of a language-continual scenario (`language_continual`).

    `train_data(transform)` holds `(image, caption)` pairs in the language with the parallel
    English captions as its `english` attribute; `retrieval` the test images captioned in the
    language (every language's set has the same images); `words` the language's vocabulary, to
    which an expanded tokenizer gives new token ids (`cliplab.tokens`); `validation` other images
    captioned in the language, on which CLL-CLIP keeps its best epoch (never the test images)."""

    words: list[str] = field(default_factory=list)
    validation: RetrievalSet | None = None


@dataclass
class ProbeSet:
    """Labelled images never trained on, classified zero-shot to measure retention.

    Probes that share `data` (the same factory object) are encoded once per evaluation; `labels`
    then gives each probe its own targets for those images (None: the dataset's labels).
    """

    name: str
    data: DatasetFactory
    classnames: list[str]
    templates: list[Any]
    labels: torch.Tensor | None = None


@dataclass
class RetrievalSet:
    """Images with captions (caption j describes image text_image_index[j])."""

    name: str
    data: DatasetFactory  # transform -> dataset of (image, anything)
    captions: list[str]
    text_image_index: torch.Tensor


@dataclass
class ReferenceData:
    """ZSCL-style reference images and texts (broad data, unrelated to the tasks)."""

    images: DatasetFactory
    captions: list[str]


@dataclass(frozen=True)
class TaskSpec:
    """What a task is, without its data."""

    name: str
    classnames: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classnames)


@dataclass
class ScenarioSpec:
    """A scenario's facts, cheap to make: no image is rendered and no file is opened."""

    name: str
    protocol: str
    tasks: list[TaskSpec]
    defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides of the protocol
    method_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method option presets
    description: str = ""
    needs_root: bool = False  # reads local datasets (`root=`)
    build_options: tuple[str, ...] = ()  # options `get_scenario` passes on to the builder
    source: dict[str, Any] = field(default_factory=dict)  # what a spec read its tasks from (e.g. a caption file)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; use one of {PROTOCOLS}")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


@dataclass
class Scenario:
    """A built continual-learning benchmark: tasks with data, probes, and its protocol defaults."""

    name: str
    protocol: str
    tasks: list[Task]
    probes: list[ProbeSet] = field(default_factory=list)
    retrieval: list[RetrievalSet] = field(default_factory=list)
    reference: ReferenceData | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides of the protocol
    method_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method options
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # how it was built (e.g. probe sizes)
    stream: Any = None  # online protocol: the stream's exposure record (`cliplab.scenarios.online.OnlineStream`)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; use one of {PROTOCOLS}")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @classmethod
    def from_spec(cls, spec: ScenarioSpec, tasks: list[Task], **parts: Any) -> Scenario:
        """The built scenario of `spec` (probes, retrieval, reference and options in `parts`)."""
        if [t.name for t in tasks] != spec.task_names:
            raise ValueError(
                f"{spec.name}: built tasks {[t.name for t in tasks]} differ from the spec's {spec.task_names}"
            )
        return cls(
            spec.name,
            spec.protocol,
            tasks,
            defaults=dict(spec.defaults),
            method_defaults={k: dict(v) for k, v in spec.method_defaults.items()},
            description=spec.description,
            **parts,
        )

    def spec(self) -> ScenarioSpec:
        """The spec of this scenario (for scenarios built by hand as well as registered ones)."""
        return ScenarioSpec(
            self.name,
            self.protocol,
            [TaskSpec(t.name, tuple(t.classnames)) for t in self.tasks],
            dict(self.defaults),
            dict(self.method_defaults),
            self.description,
        )

    def classes_up_to(self, index: int) -> tuple[list[str], list[int]]:
        """Class names of tasks 0..index and the offset of every task's first class."""
        names, offsets = [], []
        for task in self.tasks[: index + 1]:
            offsets.append(len(names))
            names.extend(task.classnames)
        return names, offsets


class ClassSubset(Dataset):
    """The items of `dataset` whose label is in `class_ids`, relabelled 0..k-1 in that order."""

    def __init__(self, dataset: Dataset, class_ids: list[int], max_items: int | None = None, seed: int = 0) -> None:
        targets = torch.as_tensor(list(_targets(dataset)))
        mapping = {c: i for i, c in enumerate(class_ids)}
        index = torch.nonzero(torch.isin(targets, torch.tensor(class_ids))).flatten()
        if max_items is not None and len(index) > max_items:
            keep = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))[:max_items]
            index = index[keep.sort().values]
        self.dataset, self.index = dataset, index.tolist()
        self.targets = [mapping[int(targets[i])] for i in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        image, _ = self.dataset[self.index[i]]
        return image, self.targets[i]


def _targets(dataset: Dataset):
    for attr in ("targets", "labels", "_labels", "_samples_labels"):
        if hasattr(dataset, attr):
            return getattr(dataset, attr)
    raise ValueError(f"{type(dataset).__name__} exposes no .targets; wrap it so class subsets can be built")
