"""cliplab: measure and fight catastrophic forgetting when CLIP is fine-tuned on new classes.

The names notebooks use are re-exported here; everything else lives in its module.
"""

from cliplab.models import ClipBundle, PretrainedWeightsUnavailable, load_model

__version__ = "0.1.0"
__all__ = ["ClipBundle", "PretrainedWeightsUnavailable", "load_model", "__version__"]
