"""What a notebook shows besides figures and tables: widget controls (JupyterLab) and notices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SMOKE_NOTICE = (
    "SMOKE mode: one seed, two tasks, a few training steps. This checks that the notebook runs end to "
    "end; its numbers and figures are meaningless and will contradict the text (which describes the "
    "full study). Results go to {where}, apart from the full study's. Set SMOKE = False for real numbers."
)


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


def smoke_banner(smoke: bool, where: str = "../runs/study-smoke") -> None:
    """Under SMOKE, show a banner saying the numbers below are meaningless (HTML in a notebook,
    a plain line elsewhere); nothing otherwise."""
    if not smoke:
        return
    text = SMOKE_NOTICE.format(where=where)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    style = "background:#fff3cd;border:2px solid #d39e00;color:#533f03;padding:8px 12px;border-radius:4px"
    display(HTML(f'<div class="cliplab-smoke-banner" style="{style}"><b>⚠ {text}</b></div>'))


__all__ = ["SMOKE_NOTICE", "explore", "smoke_banner"]
