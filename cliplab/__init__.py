"""cliplab: measure and fight catastrophic forgetting when CLIP keeps learning.

The top level exports only model loading; everything else is imported from its package (see
docs/design.md for the layers): `cliplab.scenarios`, `cliplab.methods`, `cliplab.engine`,
`cliplab.evaluation`, `cliplab.results`, `cliplab.alignment`, `cliplab.study`, `cliplab.plots`.
"""

from cliplab.models import ClipBundle, PretrainedWeightsUnavailable

__version__ = "0.1.0"
__all__ = ["ClipBundle", "PretrainedWeightsUnavailable", "__version__", "load_model"]


def load_model(name="toyclip", pretrained=None, device=None, cache_dir=None) -> ClipBundle:
    """Load a CLIP model with its tokenizer and train/eval transforms: ToyCLIP, an open_clip
    architecture (optionally with a pretrained tag or local weights file), or a checkpoint cliplab
    wrote, including a run's checkpoint of a method that added modules (adapters, LoRA, experts):
    the model comes back extended and ready for evaluation. See `cliplab.models.load_model` and
    `cliplab.engine.extended.load_model` (imported on first use, keeping `import cliplab` light).
    """
    from cliplab.engine.extended import load_model as load

    return load(name, pretrained=pretrained, device=device, cache_dir=cache_dir)
