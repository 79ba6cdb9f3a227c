"""cliplab: measure and fight catastrophic forgetting when CLIP keeps learning.

The top level exports only model loading; everything else is imported from its package (see
docs/design.md for the layers): `cliplab.scenarios`, `cliplab.methods`, `cliplab.engine`,
`cliplab.evaluation`, `cliplab.results`, `cliplab.alignment`, `cliplab.study`, `cliplab.plots`.
"""

from cliplab.models import ClipBundle, PretrainedWeightsUnavailable, load_model

__version__ = "0.1.0"
__all__ = ["ClipBundle", "PretrainedWeightsUnavailable", "__version__", "load_model"]
