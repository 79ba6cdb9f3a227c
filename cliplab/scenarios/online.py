"""Online scenarios on a Si-Blurry stream (SIT's protocol): `toy-si-blurry`, `cifar100-si-blurry`.

The stream is split by `cliplab.scenarios.si_blurry` with the run's seed (`stream_seed`, set by the
runner), then *labelled in exposure order*: class 0 is the first class the stream shows, class 1
the next new one, ... . So the classes exposed after any number of samples are a prefix of the
label space, the label space at the end of task i is `Scenario.classes_up_to(i)`, and a task's
classes (`Task.classnames`) are the ones it exposes first (possibly none: Si-Blurry's stochastic
split can give a task no new class). A task's training data is its stream segment *in stream
order* (labels: exposure ranks over all classes, since blurry samples of earlier classes recur);
its test data are the test images of its new classes (labels local to the task, as in CIL).

The spec lists every class of the dataset for every task: which ones a segment shows depends on
the run seed and is known only when the scenario is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.utils.data import Dataset

from cliplab.data import TensorImageDataset, get_dataset, load_metadata, require_local_dataset
from cliplab.scenarios.base import ProbeSet, Scenario, ScenarioSpec, Task, TaskSpec
from cliplab.scenarios.peft_presets import toy_prompt_presets
from cliplab.scenarios.published import CIL_TEMPLATE, EXTRA_OPTIONS, _extras, require_root
from cliplab.scenarios.si_blurry import exposure_order, si_blurry_split
from cliplab.scenarios.toy import DIGIT_NAMES, PROBE_OPTIONS, TOY_DEFAULTS, toyworld_probes, toyworld_reference
from cliplab.toyworld.tasks import downstream_classnames, downstream_task

STREAM_OPTIONS = ("stream_seed", "n_percent", "m_percent", "stochastic")
EVAL_PROMPTS = ("train", "ensemble")  # toy-si-blurry's stream scoring: SIT's code's, or the domain ensemble
DEFAULT_EVAL_PROMPT = "train"  # the builder's default, also what the runner puts in a run's identity when none is given
ONLINE_DEFAULTS = {  # SIT's scripts (LifeLong-CLIP scripts/*_clip.sh) and its trainer
    "batch_size": 64,  # the stream batch
    "online_iter": 3,  # each stream batch is trained on 3 times
    "eval_period": 1000,  # anytime evaluation every 1,000 stream samples
    "lr_schedule": "constant",  # SIT's "default" scheduler: constant LR, no warm-up
    "warmup_steps": 0,
    "label_smoothing": 0.0,
    "weight_decay": 0.0,
}
ONLINE_METHODS = {
    # Online distillation sees only the stream: the current batch is the distillation batch.
    "lwf": {"kd_images": "ce_batch"},
    "vr_lwf": {"kd_images": "ce_batch"},
}


@dataclass(frozen=True)
class OnlineStream:
    """What the stream exposes when: `first_seen[r]` is the stream position where class r (exposure
    order) first appears; `task_sizes[i]` the length of task i's segment; `info` the split."""

    first_seen: tuple[int, ...]
    task_sizes: tuple[int, ...]
    classnames: tuple[str, ...]  # exposure order
    info: dict[str, Any] = field(default_factory=dict)
    test_data: Callable | None = None  # transform -> every test image of an exposed class, label = rank

    def task_start(self, task: int) -> int:
        return sum(self.task_sizes[:task])

    def exposed_after(self, samples: int) -> int:
        """Number of classes exposed once `samples` stream samples have been seen (a label prefix)."""
        return sum(1 for position in self.first_seen if position < samples)

    @property
    def n_samples(self) -> int:
        return sum(self.task_sizes)


class StreamView(Dataset):
    """Items `indices` of `dataset` in that order, labels mapped through `label_of` (a dict)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], labels: Sequence[int], label_of: dict[int, int]):
        self.dataset, self.indices = dataset, list(indices)
        self.targets = [label_of[int(labels[i])] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        image, _ = self.dataset[self.indices[k]]
        return image, self.targets[k]


class ClassTemplate(str):
    """Template number `index` of each class's own list, for classes from several domains.

    A str (so caches key on it) that, when called, formats class `c` with template
    `index % len(templates[c])` of its domain; an ensemble of `lcm` of the list lengths weighs every
    domain template of a class equally.
    """

    def __new__(cls, index: int, by_class: dict[str, Sequence[Any]], tag: str):
        self = super().__new__(cls, f"<{tag} template {index}>")
        self.index, self.by_class, self.tag = index, by_class, tag
        return self

    def __reduce__(self):
        return (ClassTemplate, (self.index, self.by_class, self.tag))

    def __call__(self, classname: str) -> str:
        pool = self.by_class[classname]
        template = pool[self.index % len(pool)]
        return template(classname) if callable(template) else template.format(classname)

    def format(self, classname: str) -> str:  # open_clip formats str templates instead of calling them
        return self(classname)


def class_templates(by_class: dict[str, Sequence[Any]], tag: str) -> list[ClassTemplate]:
    """The evaluation ensemble of mixed-domain classes (see `ClassTemplate`)."""
    size = math.lcm(*(len(v) for v in by_class.values()))
    return [ClassTemplate(i, by_class, tag) for i in range(size)]


def _segment(data_factory, start: int, end: int):
    def factory(transform=None):
        return torch.utils.data.Subset(data_factory(transform), range(start, end))

    return factory


def online_tasks(
    spec: ScenarioSpec,
    train: Callable[[Any], Dataset],
    train_labels: Sequence[int],
    test: Callable[[Any], Dataset],
    test_labels: Sequence[int],
    names: Sequence[str],
    train_template: Any,
    templates: Sequence[Any],
    stream_seed: int = 0,
    n_percent: int = 50,
    m_percent: int = 10,
    stochastic: bool = True,
) -> tuple[list[Task], OnlineStream]:
    """Split `train` into a Si-Blurry stream of `len(spec.tasks)` tasks and label it in exposure order."""
    split = si_blurry_split(train_labels, len(spec.tasks), n_percent, m_percent, stream_seed, stochastic, len(names))
    order = exposure_order(train_labels, split.stream)
    rank = {c: r for r, c in enumerate(order)}
    stream = split.stream
    first_seen: dict[int, int] = {}
    for position, i in enumerate(stream):
        first_seen.setdefault(rank[int(train_labels[i])], position)
    ranked_names = [names[c] for c in order]

    def stream_data(transform=None):
        return StreamView(train(transform), stream, train_labels, rank)

    test_index = [i for i, y in enumerate(test_labels) if int(y) in rank]

    def test_all(transform=None):
        return StreamView(test(transform), test_index, test_labels, rank)

    tasks, offset, start = [], 0, 0
    for t, size in enumerate(len(segment) for segment in split.tasks):
        end = start + size
        new = sorted(r for r, pos in first_seen.items() if start <= pos < end)
        local = {order[r]: r - offset for r in new}
        chosen = [i for i, y in enumerate(test_labels) if int(y) in local]
        tasks.append(
            Task(
                spec.tasks[t].name,
                [ranked_names[r] for r in new],
                train_template,
                list(templates),
                _segment(stream_data, start, end),
                partial(_test_view, test, chosen, test_labels, local),
            )
        )
        offset, start = offset + len(new), end
    info = {
        "n_tasks": len(spec.tasks),
        "n_percent": n_percent,
        "m_percent": m_percent,
        "stochastic": stochastic,
        "seed": stream_seed,
        "disjoint_classes": [[names[c] for c in cs] for cs in split.disjoint_classes],
        "blurry_classes": [[names[c] for c in cs] for cs in split.blurry_classes],
        "dropped_classes": [names[c] for c in split.dropped_classes],
        "moved_samples": split.moved,
        "task_sizes": [len(s) for s in split.tasks],
    }
    record = OnlineStream(
        tuple(first_seen[r] for r in range(len(order))),
        tuple(len(s) for s in split.tasks),
        tuple(ranked_names),
        info,
        test_all,
    )
    return tasks, record


def _test_view(test, chosen, labels, local, transform=None):
    return StreamView(test(transform), chosen, labels, local)


def _online_spec(
    name: str, classnames: Sequence[str], n_tasks: int, defaults: dict, description: str, build_options, presets=None
):
    if n_tasks < 1:
        raise ValueError(f"{name}: n_tasks must be >= 1, got {n_tasks}")
    return ScenarioSpec(
        name,
        "online",
        [TaskSpec(f"task_{t + 1}", tuple(classnames)) for t in range(n_tasks)],
        defaults=defaults,
        method_defaults={k: dict(v) for k, v in {**ONLINE_METHODS, **(presets or {})}.items()},
        description=description,
        needs_root=name != "toy-si-blurry",
        build_options=tuple(build_options),
    )


# --- toy-si-blurry ------------------------------------------------------------------------------

TOY_ONLINE_DEFAULTS = {
    **TOY_DEFAULTS,
    **ONLINE_DEFAULTS,
    "batch_size": 16,  # ~130 stream batches over the ~2,000 training images (SIT: 64 over 50,000)
    "eval_period": 100,  # ~20 anytime evaluations (SIT: 1,000 samples)
    "lr": 3e-4,  # full fine-tuning baselines; SIT and ER bring their own (method defaults)
    "checkpoint_every": 48,
}
TOY_STREAM_DOMAINS = ("digits", "novel_shapes")
# ToyCLIP's widths (192 / 128) are a quarter of ViT-B/16's, so SIT's adapter keeps the authors' width
# ratio with a bottleneck of 16 (768/64 = 192/16), and its LoRA / adapter use the learning rate calibrated
# for parameter-efficient modules on ToyCLIP (`peft_presets.TOY_PEFT_LR`, chosen on a training loss).
# ER keeps Si-Blurry's CIFAR-100 budget per class: 2,000 samples / 100 classes = 20 per class.
TOY_ONLINE_METHODS = {**toy_prompt_presets(), "er": {"memory_size": 320}}


def toy_si_blurry_classnames() -> list[str]:
    return DIGIT_NAMES + downstream_classnames("novel_shapes")


def toy_si_blurry_spec(n_tasks: int = 4) -> ScenarioSpec:
    """Digits and the 6 novel ToyWorld shapes (16 classes) in a Si-Blurry stream (T=4, N=50, M=10)."""
    return _online_spec(
        "toy-si-blurry",
        toy_si_blurry_classnames(),
        n_tasks,
        dict(TOY_ONLINE_DEFAULTS),
        "digits + novel shapes as one online Si-Blurry stream (N=50, M=10, stochastic), anytime evaluation",
        (*PROBE_OPTIONS, *STREAM_OPTIONS, "eval_prompt"),
        TOY_ONLINE_METHODS,
    )


def _tensor_factory(images, labels, names, templates, name, transform=None):
    return TensorImageDataset(images, labels, names, templates, transform=transform, name=name)


def _toy_images(split: str) -> tuple[torch.Tensor, list[int], dict[str, Sequence[Any]]]:
    digits = get_dataset("digits", split=split)
    shapes = downstream_task("novel_shapes", split, 600 if split == "train" else 300)
    images = torch.cat([digits.images, shapes.images])
    labels = list(digits.targets) + [len(DIGIT_NAMES) + int(y) for y in shapes.labels]
    templates = {n: list(digits.templates) for n in digits.classnames}
    templates.update({n: list(shapes.templates) for n in shapes.classnames})
    return images, labels, templates


def build_toy_si_blurry(
    spec: ScenarioSpec,
    probe_size: int = 600,
    retrieval_size: int = 300,
    probe_seed: int = 0,
    stream_seed: int = 0,
    n_percent: int = 50,
    m_percent: int = 10,
    stochastic: bool = True,
    eval_prompt: str = DEFAULT_EVAL_PROMPT,
) -> Scenario:
    """The stream, scored with each class's training prompt (`eval_prompt="train"`) or its domain's ensemble."""
    if eval_prompt not in EVAL_PROMPTS:
        raise ValueError(f"eval_prompt must be one of {EVAL_PROMPTS}, got {eval_prompt!r}")
    names = toy_si_blurry_classnames()
    train_images, train_labels, by_class = _toy_images("train")
    test_images, test_labels, _ = _toy_images("test")
    train_by_class = {n: [t[0]] for n, t in by_class.items()}  # each domain's training template
    train_template = ClassTemplate(0, train_by_class, "train")
    stream_templates = [train_template] if eval_prompt == "train" else class_templates(by_class, "toy-si-blurry")
    train = partial(_tensor_factory, train_images, train_labels, names, ["{}"], "toy-si-blurry")
    test = partial(_tensor_factory, test_images, test_labels, names, ["{}"], "toy-si-blurry")
    tasks, stream = online_tasks(
        spec,
        train,
        train_labels,
        test,
        test_labels,
        names,
        train_template,
        stream_templates,
        stream_seed,
        n_percent,
        m_percent,
        stochastic,
    )
    probes, retrieval = toyworld_probes(probe_size, retrieval_size, probe_seed)
    for domain in ("textures", "nonce_shapes"):  # held-out datasets, as SIT's five zero-shot sets
        data = downstream_task(domain, "test", 300)
        factory = partial(_tensor_factory, data.images, data.labels, data.classnames, data.templates, domain)
        probes.append(ProbeSet(domain, factory, data.classnames, data.templates))
    return Scenario.from_spec(
        spec,
        tasks,
        probes=probes,
        retrieval=retrieval,
        reference=toyworld_reference(),
        options=dict(
            probe_size=probe_size, retrieval_size=retrieval_size, probe_seed=probe_seed, eval_prompt=eval_prompt
        ),
        stream=stream,
    )


# --- cifar100-si-blurry ---------------------------------------------------------------------------

CIFAR_ONLINE_DEFAULTS = {**ONLINE_DEFAULTS, "lr": 1e-5, "seed": 1}  # SIT's seeds are 1-5


def cifar100_si_blurry_spec(n_tasks: int = 5) -> ScenarioSpec:
    """CIFAR-100 as SIT's Si-Blurry stream (T=5, N=50, M=10, stochastic), prompt "a bad photo of a {}."."""
    names = load_metadata("cifar100").classnames
    return _online_spec(
        "cifar100-si-blurry",
        names,
        n_tasks,
        dict(CIFAR_ONLINE_DEFAULTS),
        "CIFAR-100 as one online Si-Blurry stream (N=50, M=10, stochastic), anytime evaluation every 1,000 samples",
        EXTRA_OPTIONS + STREAM_OPTIONS,
    )


def _cifar(folder, split: str):
    def factory(transform=None):
        return get_dataset("cifar100", root=folder, split=split, transform=transform)

    return factory


def build_cifar100_si_blurry(
    spec: ScenarioSpec,
    root=None,
    stream_seed: int = 1,
    n_percent: int = 50,
    m_percent: int = 10,
    stochastic: bool = True,
    **extras,
) -> Scenario:
    folder = require_root(root, spec.name)
    for split in ("train", "test"):
        require_local_dataset("cifar100", folder, split)
    train, test = _cifar(folder, "train"), _cifar(folder, "test")
    names = list(spec.tasks[0].classnames)
    tasks, stream = online_tasks(
        spec,
        train,
        train(None).targets,
        test,
        test(None).targets,
        names,
        CIL_TEMPLATE,
        [CIL_TEMPLATE],
        stream_seed,
        n_percent,
        m_percent,
        stochastic,
    )
    return _extras(Scenario.from_spec(spec, tasks, stream=stream), folder, **extras)


__all__ = [
    "CIFAR_ONLINE_DEFAULTS",
    "DEFAULT_EVAL_PROMPT",
    "EVAL_PROMPTS",
    "ONLINE_DEFAULTS",
    "ONLINE_METHODS",
    "STREAM_OPTIONS",
    "TOY_ONLINE_DEFAULTS",
    "TOY_ONLINE_METHODS",
    "ClassTemplate",
    "OnlineStream",
    "StreamView",
    "build_cifar100_si_blurry",
    "build_toy_si_blurry",
    "cifar100_si_blurry_spec",
    "class_templates",
    "online_tasks",
    "toy_si_blurry_classnames",
    "toy_si_blurry_spec",
]
