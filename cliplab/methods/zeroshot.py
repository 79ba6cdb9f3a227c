"""The pretrained model, never trained: the reference row of every table."""

from __future__ import annotations

from cliplab.methods.base import Method


class ZeroShot(Method):
    """No training: the pretrained model evaluated after every 'task' (the reference row)."""

    name = "zeroshot"
    trains = False
    objectives = ("classification", "contrastive")
