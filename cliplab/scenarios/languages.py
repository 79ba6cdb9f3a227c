"""`toy-languages`: continual language learning (CLL-CLIP) on ToyWorld captions in made-up languages.

ToyCLIP knows English. Each task is one new language (`cliplab.toyworld.languages`: nonce words,
its own word order, a few loanwords from English and earlier languages), learned from the same
pool of ToyWorld images captioned in that language, with the parallel English captions alongside
(CLL-CLIP's triplets: image, English caption, translation). The training objective is CLIP's
contrastive loss on image–caption pairs (`language_continual` protocol); CLL-CLIP replaces it by
its own pair of objectives.

Evaluation after every task, on one set of test images captioned in every language (as XM3600
has the same images in 36 languages): text→image and image→text R@1 in each language, learned or
not (A[i, j] = text→image R@1 in language j after task i; the upper triangle is zero-shot
transfer to a language not learned yet), English retrieval on the same images
(`retrieval["english"]`), and ToyWorld's held-out zero-shot and retrieval probes.

Training follows CLL-CLIP's recipe (`projects/cll_clip/train.py`, `scripts/run_cl.sh`): a fresh
AdamW per language (β = (0.9, 0.999), ε = 1e-6, weight decay 0.05), linear warm-up over 10% of
the task, then a constant rate, gradient clipping at 1.0, no augmentation (the authors use
precomputed image features). The learning rate and the number of steps are ToyCLIP's
(docs/cll_clip.md).
"""

from __future__ import annotations

from functools import partial

import torch

from cliplab.data import TensorCaptionPairs, TensorImageDataset
from cliplab.scenarios.base import LanguageTask, RetrievalSet, Scenario, ScenarioSpec, TaskSpec
from cliplab.scenarios.toy import toyworld_probes
from cliplab.toyworld.languages import LANGUAGE_NAMES, make_languages
from cliplab.toyworld.parallel import parallel_corpus

LANGUAGE_DEFAULTS = {
    "epochs_per_task": 3.0,  # [run_cl.sh: 3 epochs per language]: 94 steps of 64 over the 2,000-image pool
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_steps": 9,  # 10% of the task [run_cl.sh: warmupconstant, 10%]
    "lr_schedule": "constant",
    "weight_decay": 0.05,  # [train.py]
    "betas": (0.9, 0.999),
    "adam_eps": 1e-6,  # [train.py]
    "grad_clip_norm": 1.0,  # [Framework.fit max_grad_norm]
    "train_mode": "text",  # finetune trains the whole text tower; cll_clip only the token embeddings
    "augment": False,  # the authors train on precomputed image features
    "label_smoothing": 0.0,
    "seed": 0,
    "checkpoint_every": 50,
    "probe_size": 300,
    "retrieval_size": 150,
}
LANGUAGE_OPTIONS = (
    "language_seed",
    "train_size",
    "test_size",
    "eval_split",
    "probe_size",
    "retrieval_size",
    "probe_seed",
)


class ParallelCaptionPairs(TensorCaptionPairs):
    """Pairs (image, caption in the task's language) with the parallel English caption of each
    (`english[k]`), as CLL-CLIP's training lines (image, English caption, translation)."""

    def __init__(self, images, captions, english, transform=None, name: str = "parallel-pairs") -> None:
        super().__init__(images, captions, transform=transform, name=name)
        if len(english) != len(captions):
            raise ValueError(f"{name}: {len(captions)} captions but {len(english)} English captions")
        self.english = list(english)


def toy_languages_spec(n_languages: int = 4) -> ScenarioSpec:
    """One task per made-up language, in `LANGUAGE_NAMES` order."""
    if not 1 <= n_languages <= len(LANGUAGE_NAMES):
        raise ValueError(
            f"n_languages must be 1..{len(LANGUAGE_NAMES)} (the defined language profiles), got {n_languages}"
        )
    return ScenarioSpec(
        "toy-languages",
        "language_continual",
        [TaskSpec(name, ()) for name in LANGUAGE_NAMES[:n_languages]],
        defaults=dict(LANGUAGE_DEFAULTS),
        description=f"ToyCLIP learns {n_languages} made-up languages from captions of ToyWorld images, one per task.",
        build_options=LANGUAGE_OPTIONS,
    )


def _images(images, transform=None, name: str = "languages_test"):
    labels = torch.zeros(len(images), dtype=torch.long)
    return TensorImageDataset(images, labels, ["_"], ["{}"], transform=transform, name=name)


def build_toy_languages(
    spec: ScenarioSpec,
    language_seed: int = 0,
    train_size: int = 2000,
    test_size: int = 300,
    eval_split: str = "test",
    probe_size: int = 300,
    retrieval_size: int = 150,
    probe_seed: int = 0,
) -> Scenario:
    """The languages, the training pool (every language a translation of the same captions), the
    evaluation set (`eval_split`: "test"; "val" draws other images, for choosing settings) and a
    validation set of `test_size` images of the "val" split in every language (CLL-CLIP's
    best-epoch selection, the authors' COCO val split; with `eval_split="val"` it is the
    evaluation set itself, as when choosing settings)."""
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    languages = make_languages(len(spec.tasks), seed=language_seed)
    train = parallel_corpus(languages, train_size, "train", seed=language_seed)
    test = parallel_corpus(languages, test_size, eval_split, seed=language_seed)
    val = test if eval_split == "val" else parallel_corpus(languages, test_size, "val", seed=language_seed)
    index = torch.arange(test_size)
    images = partial(_images, test.images)  # one factory: the evaluator encodes the images once
    val_images = images if val is test else partial(_images, val.images, name="languages_val")
    tasks = []
    for language in languages:
        name = language.name
        tasks.append(
            LanguageTask(
                name=name,
                classnames=[],
                train_template="{}",
                templates=[],
                train_data=partial(ParallelCaptionPairs, train.images, train.captions[name], train.english, name=name),
                test_data=None,
                retrieval=RetrievalSet(name, images, test.captions[name], index),
                words=language.words(),
                validation=RetrievalSet(name, val_images, val.captions[name], index),
            )
        )
    probes, toyworld = toyworld_probes(probe_size, retrieval_size, probe_seed)
    english = RetrievalSet("english", images, test.english, index)
    options = {
        "language_seed": language_seed,
        "train_size": train_size,
        "test_size": test_size,
        "eval_split": eval_split,
    }
    return Scenario.from_spec(spec, tasks, probes=probes, retrieval=[english, *toyworld], options=options)


__all__ = ["LANGUAGE_DEFAULTS", "ParallelCaptionPairs", "build_toy_languages", "toy_languages_spec"]
