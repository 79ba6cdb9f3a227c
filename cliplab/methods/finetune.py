"""Plain continual fine-tuning: the lower bound every method is measured against."""

from __future__ import annotations

from cliplab.methods.base import Method


class FineTune(Method):
    """Cross-entropy on the current task only (the loop's own term); nothing added."""

    name = "finetune"
    objectives = ("classification", "contrastive")  # under the contrastive objective: TiC's sequential
