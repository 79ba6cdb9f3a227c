"""The run explorer: pick a scenario, method, seed and task step; see that run's figures at that step.

For people who would rather look than read (a workshop, a teacher). Over every finished run of a
run folder laid out as the study's store, `<runs>/<scenario>/<label>/seed<k>/metrics.json`
(default: the study's `runs/study/runs`), it draws for one run after task *s* (0 = pretrained):

* the accuracy matrix up to row *s* (the rows not reached yet are left blank);
* held-out zero-shot accuracy and retrieval across tasks, with *s* marked (and `zeroshot`, the
  untrained reference, when the folder has it);
* the stability–plasticity point of every method of the scenario at *s* (same seed): new-task
  accuracy (mean of the diagonal up to *s*) against held-out zero-shot accuracy at *s*;
* the image and caption embeddings of a fixed probe after task *s* next to the pretrained ones,
  in the frame fitted on the pretrained model (toy scenarios; cached in the run folder, as in
  notebook 03).

`Explorer.figures` computes the figures (tests call it); `Explorer.widget` lays them out with
ipywidgets; `explorer_app` is what `notebooks/explorer.py` (served by Voilà through
`cliplab explore`, or opened in JupyterLab) calls.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cliplab.models import load_model
from cliplab.plots import alignment as aplots
from cliplab.plots import continual as cplots
from cliplab.results import RunResult, load_run, load_runs
from cliplab.results.views import accuracy_matrix_frame, final_zero_shot
from cliplab.scenarios import scenario_spec
from cliplab.study.alignment import alignment_probe, embed_run, encode_probe
from cliplab.study.explorer_page import FIGURES, build_page

RUNS_ENV = "CLIPLAB_RUNS"  # the run folder `cliplab explore` hands to the explorer notebook
PROBE_SIZE = 300  # image-caption pairs of the projection probe: notebook 03's, so its cache is shared
# (fewer for runs made with a smaller probe, e.g. SMOKE's 32: notebook 03 uses that size for them too)


def default_runs() -> Path:
    """`$CLIPLAB_RUNS`, else the study's run store `runs/study/runs` of this source checkout."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    return Path(__file__).resolve().parents[2] / "runs" / "study" / "runs"


class Explorer:
    """The finished runs of one run folder, and the figures of one run at one task step."""

    def __init__(self, runs: str | os.PathLike | None = None) -> None:
        self.root = Path(runs) if runs is not None else default_runs()
        found = sorted(self.root.glob("*/*/seed*/metrics.json"))
        if not found:
            raise FileNotFoundError(
                f"no finished runs under {self.root} (expected <scenario>/<method>/seed<k>/metrics.json): "
                "run `make study` first, or give another folder, e.g. `cliplab explore runs/study-smoke/runs-smoke`"
            )
        self.runs: dict[tuple[str, str, int], Path] = {}
        for path in found:
            scenario, label, seed = path.parent.relative_to(self.root).parts
            if seed[4:].isdigit():
                self.runs[(scenario, label, int(seed[4:]))] = path.parent

    # --- what there is ----------------------------------------------------------------------

    def scenarios(self) -> list[str]:
        return sorted({s for s, _, _ in self.runs})

    def labels(self, scenario: str) -> list[str]:
        """Methods (and ablation variants) of a scenario, `finetune` first when present."""
        labels = sorted({label for s, label, _ in self.runs if s == scenario})
        return sorted(labels, key=lambda label: label != "finetune")

    def seeds(self, scenario: str, label: str) -> list[int]:
        return sorted(k for s, lab, k in self.runs if (s, lab) == (scenario, label))

    def result(self, scenario: str, label: str, seed: int) -> RunResult:
        key = (scenario, label, int(seed))
        if key not in self.runs:
            raise KeyError(f"no run {scenario}/{label}/seed{seed} under {self.root}")
        return _load(self.runs[key])

    def steps(self, scenario: str, label: str, seed: int) -> list[str]:
        """Names of the task steps: "pretrained", then "after <task>" for each task."""
        return ["pretrained"] + [f"after {t}" for t in self.result(scenario, label, seed).tasks]

    # --- the figures ------------------------------------------------------------------------

    def figures(
        self, scenario: str, label: str, seed: int, step: int, projection: bool = True
    ) -> dict[str, Figure | str]:
        """The four figures of one run after task `step` (0 = pretrained); a string where a
        figure cannot be drawn (it says why)."""
        result = self.result(scenario, label, seed)
        if not 0 <= step <= len(result.tasks):
            raise ValueError(f"step must be 0..{len(result.tasks)} for {scenario}/{label}, got {step}")
        out: dict[str, Figure | str] = {
            FIGURES[0]: self.matrix_figure(result, label, step),
            FIGURES[1]: self.curves_figure(scenario, label, seed, step),
            FIGURES[2]: self.stability_figure(scenario, seed, step),
        }
        if projection:
            out[FIGURES[3]] = self.projection_figure(scenario, label, seed, step)
        return out

    def matrix_figure(self, result: RunResult, label: str, step: int) -> Figure:
        matrix, before = accuracy_matrix_frame([result])
        matrix.iloc[step:] = np.nan  # rows not reached yet
        where = "pretrained" if step == 0 else f"after task {step}"
        return cplots.plot_accuracy_matrix(matrix, before, title=f"{label}, seed {result.seed}: {where}")

    def curves_figure(self, scenario: str, label: str, seed: int, step: int) -> Figure | str:
        labels = [label] + (["zeroshot"] if label != "zeroshot" and (scenario, "zeroshot", seed) in self.runs else [])
        df = load_runs([self.runs[(scenario, lab, seed)] for lab in labels])
        df["label"] = df["method"]
        if label != df["method"].iloc[0]:  # an ablation variant: name it as in the folder
            df.loc[df["run"] == df["run"].iloc[0], "label"] = label
        if not df["kind"].isin(["zero_shot", "retrieval"]).any():
            return "this run has no held-out zero-shot or retrieval probes"
        fig = cplots.plot_probe_curves(df, by="label", title=f"{scenario}, seed {seed}: held-out probes")
        for ax in fig.axes:
            if ax.get_visible() and ax.lines:
                ax.axvline(step, color="black", linewidth=1.2, alpha=0.5, linestyle="--")
        return fig

    def stability_points(self, scenario: str, seed: int, step: int) -> pd.DataFrame:
        """Per method of `scenario` (this seed): new-task accuracy, the mean of the accuracy-matrix
        diagonal over tasks 1..`step`, and held-out zero-shot accuracy after task `step` (mean over
        probes; `retention_before` = pretrained). Runs without zero-shot probes are left out."""
        rows = []
        for label in self.labels(scenario):
            if (scenario, label, seed) not in self.runs:
                continue
            result = self.result(scenario, label, seed)
            if not result.zero_shot or not 1 <= step <= len(result.tasks):
                continue
            diagonal = np.diag(np.asarray(result.accuracy_matrix, dtype=float))[:step]
            rows.append(
                {
                    "label": label,
                    "scenario": scenario,
                    "seed": seed,
                    "plasticity": float(np.nanmean(diagonal)),
                    "retention": final_zero_shot(result, step),
                    "retention_before": final_zero_shot(result, 0),
                }
            )
        return pd.DataFrame(rows, columns=["label", "scenario", "seed", "plasticity", "retention", "retention_before"])

    def stability_figure(self, scenario: str, seed: int, step: int) -> Figure | str:
        if step == 0:
            return "pretrained: no task learned yet (move the step to 1 or later)"
        points = self.stability_points(scenario, seed, step)
        if points.empty:
            return "no run of this scenario has held-out zero-shot probes"
        title = f"Stability (up) vs plasticity (right) after task {step}, seed {seed}"
        return cplots.plot_stability_plasticity(points, by="label", title=title)

    def projection_figure(self, scenario: str, label: str, seed: int, step: int) -> Figure | str:
        if scenario_spec(scenario).needs_root:
            return "the embedding projection is drawn for the built-in (toy) scenarios; notebook 03 draws it for others"
        result = self.result(scenario, label, seed)
        size = min(PROBE_SIZE, int(result.config.get("probe_size") or PROBE_SIZE))
        pretrained = result.extra.get("pretrained")
        reference, chain = self._embeddings(scenario, label, seed, result.model, pretrained, size)
        if chain is None:
            return f"{label} kept no per-task checkpoints, so there is nothing to embed"
        versions = {"pretrained": reference}
        if step > 0:
            versions[f"{label} after task {step}"] = chain[step - 1]
        fig = aplots.plot_joint_projection(_projection(scenario, result.model, pretrained, size), versions)
        fig.suptitle("Images (red) and captions (blue) in the pretrained frame", y=1.02)
        return fig

    def _embeddings(self, scenario: str, label: str, seed: int, model: str, pretrained: str | None, size: int):
        _, tokenizer, probe, reference = _probe(scenario, model, pretrained, size)
        try:
            chain = embed_run(self.runs[(scenario, label, seed)], probe, tokenizer, "cpu", scenario)
        except FileNotFoundError:
            chain = None
        return reference, chain

    # --- the page ---------------------------------------------------------------------------

    def widget(self):
        """Dropdowns for scenario, method and seed, a slider for the task step, and the figures,
        redrawn on every change (ipywidgets; JupyterLab or Voilà)."""
        return build_page(self)


@lru_cache(maxsize=256)
def _load(folder: Path) -> RunResult:
    return load_run(folder)


@lru_cache(maxsize=4)
def _probe(scenario: str, model: str, pretrained: str | None, size: int):
    """(bundle, tokenizer, probe, pretrained embeddings) of the projection probe, built once."""
    bundle = load_model(model, pretrained=pretrained, device="cpu")
    probe = alignment_probe(scenario, bundle.eval_transform, size)
    return bundle, bundle.tokenizer, probe, encode_probe(bundle.model, bundle.tokenizer, probe)


@lru_cache(maxsize=4)
def _projection(scenario: str, model: str, pretrained: str | None, size: int):
    return aplots.fit_projection(*_probe(scenario, model, pretrained, size)[3], method="pca")


def explorer_app(runs: str | os.PathLike | None = None):
    """The explorer's page for `runs` (default `default_runs()`), or a message saying what is missing."""
    from IPython.display import Markdown

    try:
        return Explorer(runs).widget()
    except FileNotFoundError as error:
        return Markdown(f"**No runs to explore.** {error}")


def close_figures(figures: dict[str, Figure | str]) -> None:
    for figure in figures.values():
        if isinstance(figure, Figure):
            plt.close(figure)


__all__ = ["FIGURES", "PROBE_SIZE", "RUNS_ENV", "Explorer", "close_figures", "default_runs", "explorer_app"]
