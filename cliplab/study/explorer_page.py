"""The explorer's page: ipywidgets controls and four figure panes (see `cliplab.study.explorer`).

The matrix pane's heading and the step slider's label follow the run's protocol (e.g. "retrieval
R@1 and zero-shot classification matrices", "after language").

Kept apart from the figures so that the figures can be computed and tested without a browser.
Every control change redraws the panes; the embedding projection is drawn last, because the first
time a run is shown its checkpoints are encoded (a few seconds; cached in the run folder).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

FIGURES = ("accuracy matrix", "zero-shot and retrieval", "stability–plasticity", "embedding projection")
INTRO = (
    "<b>cliplab run explorer</b> — pick a scenario, a method and a seed, then move the step from "
    "<i>pretrained</i> to the last task. Runs from <code>{root}</code>. What each figure means: "
    "notebooks 01–07 and docs/metrics.md."
)


def build_page(explorer) -> Any:
    """A VBox: intro, controls, and a 2 x 2 grid of figure panes that redraw on every change."""
    import ipywidgets as w
    from IPython.display import display

    scenarios = explorer.scenarios()
    scenario = w.Dropdown(options=scenarios, value=scenarios[0], description="scenario")
    method = w.Dropdown(description="method")
    seed = w.Dropdown(description="seed")
    step = w.IntSlider(
        min=0, max=1, value=1, description="after task", continuous_update=False, style={"description_width": "initial"}
    )
    where = w.HTML()
    panes = {name: w.Output(layout=w.Layout(min_height="320px")) for name in FIGURES}
    headings = {name: w.HTML(f"<h4>{name}</h4>") for name in FIGURES}
    status = w.HTML()

    def show(name: str, figure: Figure | str) -> None:
        with panes[name]:
            panes[name].clear_output(wait=True)
            if isinstance(figure, Figure):
                display(figure)
                plt.close(figure)
            else:
                display(w.HTML(f"<i>{figure}</i>"))

    def redraw(*_: Any) -> None:
        if method.value is None or seed.value is None:
            return
        names = explorer.steps(scenario.value, method.value, seed.value)
        where.value = f"<b>{names[step.value]}</b>"
        headings[FIGURES[0]].value = f"<h4>{explorer.matrix_heading(scenario.value, method.value, seed.value)}</h4>"
        status.value = "<i>drawing…</i>"
        args = (scenario.value, method.value, seed.value, step.value)
        figures = explorer.figures(*args, projection=False)
        for name, figure in figures.items():
            show(name, figure)
        status.value = "<i>encoding the probe with this run's checkpoints…</i>"
        try:
            show(FIGURES[3], explorer.projection_figure(*args))
        finally:
            status.value = ""

    def quietly(widget, handler, **values: Any) -> None:
        """Set `values` on `widget` without calling `handler` (the caller redraws once)."""
        widget.unobserve(handler, "value")
        try:
            for name, value in values.items():
                setattr(widget, name, value)
        finally:
            widget.observe(handler, "value")

    def on_scenario(*_: Any) -> None:
        labels = explorer.labels(scenario.value)
        quietly(method, on_method, options=labels, value=labels[0])
        on_method()

    def on_method(*_: Any) -> None:
        seeds = explorer.seeds(scenario.value, method.value)
        keep = seed.value if seed.value in seeds else seeds[0]
        quietly(seed, redraw, options=seeds, value=keep)
        tasks = len(explorer.steps(scenario.value, method.value, seed.value)) - 1
        unit = explorer.step_noun(scenario.value, method.value, seed.value)
        quietly(step, redraw, max=tasks, value=min(max(step.value, 1), tasks), description=f"after {unit}")
        redraw()

    scenario.observe(on_scenario, "value")
    method.observe(on_method, "value")
    seed.observe(redraw, "value")
    step.observe(redraw, "value")
    on_scenario()
    grid = w.GridBox(
        [w.VBox([headings[name], panes[name]]) for name in FIGURES],
        layout=w.Layout(grid_template_columns="repeat(2, minmax(0, 1fr))", grid_gap="8px"),
    )
    controls = w.HBox([scenario, method, seed, step, where])
    page = w.VBox([w.HTML(INTRO.format(root=explorer.root)), controls, status, grid])
    page.add_class("cliplab-explorer")
    return page


__all__ = ["FIGURES", "build_page"]
