"""One model, evaluated once: ToyWorld's headline numbers and zero-shot / retrieval on a dataset.

`cliplab eval` prints these. (A model state inside a scenario is evaluated by `evaluator`.)

Everything goes through the model's own eval transform, so ToyCLIP on ToyWorld and ViT-B-16 on a
local dataset are evaluated by the same code path.
"""

from __future__ import annotations

import torch

from cliplab.data import TensorImageDataset, get_dataset
from cliplab.evaluation.embed import encode_texts, image_features
from cliplab.evaluation.retrieval import retrieval_metrics, retrieval_scores
from cliplab.evaluation.zeroshot import accuracy_from_logits, zero_shot_accuracy, zero_shot_classifier
from cliplab.models import ClipBundle
from cliplab.toyworld.tasks import RetrievalProbe, retrieval_probe, zero_shot_tasks


def _image_size(bundle: ClipBundle) -> int:
    size = bundle.model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def toyworld_zero_shot(
    bundle: ClipBundle, probe_seed: int = 0, n: int = 1000, split: str = "heldout"
) -> dict[str, float]:
    """Top-1 zero-shot accuracy (percent) on ToyWorld's shape, colour and shape_colour tasks."""
    tasks = zero_shot_tasks(seed=probe_seed, n=n, split=split)
    results = {}
    for name, task in tasks.items():
        data = TensorImageDataset(
            task.images, task.labels, task.classnames, task.templates, transform=bundle.eval_transform, name=name
        )
        results[name] = zero_shot_accuracy(
            bundle.model, bundle.tokenizer, data, task.classnames, task.templates, topk=(1,)
        )["top1"]
    return results


def toyworld_retrieval(bundle: ClipBundle, probe: RetrievalProbe) -> dict[str, float]:
    """Image↔text recall (percent, `RETRIEVAL_KEYS`) of the model on a ToyWorld retrieval probe."""
    n = len(probe.images)
    data = TensorImageDataset(
        probe.images, torch.zeros(n, dtype=torch.long), ["_"], ["{}"], transform=bundle.eval_transform
    )
    image_feats, _ = image_features(bundle.model, data)
    text_feats = encode_texts(bundle.model, bundle.tokenizer, probe.captions)
    return retrieval_scores(image_feats, text_feats, probe.text_image_index)


def toyworld_report(bundle: ClipBundle, probe_seed: int = 0, n_zero_shot: int = 1000, n_retrieval: int = 500) -> dict:
    """The foundation's headline numbers: held-out zero-shot accuracies and retrieval recalls."""
    report: dict = {k: round(v, 2) for k, v in toyworld_zero_shot(bundle, probe_seed, n_zero_shot).items()}
    probe = retrieval_probe(seed=probe_seed, n_images=n_retrieval)
    report["retrieval"] = {k: round(v, 2) for k, v in toyworld_retrieval(bundle, probe).items()}
    return report


def evaluate_dataset(
    bundle: ClipBundle,
    name: str,
    root: str | None = None,
    split: str = "test",
    verify: str = "header",
    on_corrupt: str = "skip",
) -> dict:
    """Zero-shot top-1/top-5 on a classification dataset, or retrieval on a caption dataset.

    `verify` and `on_corrupt` go to the dataset (`cliplab.data.integrity`); `n` counts the images
    evaluated and `skipped` the unreadable ones left out (at screening or when decoding failed)."""
    data = get_dataset(
        name, root=root, split=split, transform=bundle.eval_transform, on_corrupt=on_corrupt, verify=verify
    )
    if hasattr(data, "classnames"):
        feats, labels = image_features(bundle.model, data)
        classifier = zero_shot_classifier(bundle.model, bundle.tokenizer, data.classnames, data.templates)
        scores = accuracy_from_logits(feats @ classifier.cpu(), labels)
        n = len(labels)
    else:
        collate = lambda b: torch.stack([x for x, _ in b])
        images = torch.utils.data.DataLoader(data, batch_size=128, collate_fn=collate)
        image_feats, _ = image_features(bundle.model, images)
        text_feats = encode_texts(
            bundle.model, bundle.tokenizer, list(data.captions)
        )  # after the images: see CaptionDataset
        scores = retrieval_metrics(image_feats, text_feats, torch.as_tensor(data.text_image_index))
        n = len(image_feats)
    skipped = len(getattr(data, "corrupt", ()))
    return {"dataset": name, "split": split, "n": n, "skipped": skipped, **{k: round(v, 2) for k, v in scores.items()}}
