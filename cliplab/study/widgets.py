"""Interactive controls for the notebooks (JupyterLab); no-ops when run headless."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def explore(function: Callable[..., Any], enabled: bool = True, **controls: Any):
    """Attach ipywidgets controls to `function` (JupyterLab); a no-op headless or without ipywidgets.

    `controls` are `ipywidgets.interact` abbreviations: a list gives a dropdown, a (min, max)
    tuple of ints a slider. Returns the widget or None.
    """
    if not enabled:
        return None
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets.interact(function, **controls)


__all__ = ["explore"]
