"""The run explorer: pick a scenario, method, seed and task step; see that run's figures at that step.

For people who would rather look than read (a workshop, a teacher). Over every finished run of a
run folder laid out as the study's store, `<runs>/<scenario>/<label>/seed<k>/metrics.json`
(default: the study's `runs/study/runs`), it draws for one run after task *s* (0 = pretrained),
whatever its protocol (`cliplab.results.views.run_matrices` names each matrix for what it holds):

* the run's matrices up to row *s* (the rows not reached yet are left blank): the accuracy
  matrix; TIL and CIL for open domains; retrieval R@1 and zero-shot classification for the
  time-continual protocol; text→image and image→text R@1 per language; on an online stream the
  accuracy on each task's own classes beside the anytime-accuracy curve up to the end of task *s*;
* held-out zero-shot accuracy and retrieval across tasks, with *s* marked (and `zeroshot`, the
  untrained reference, when the folder has it);
* the stability–plasticity point of every method of the scenario at *s* (same seed): what the
  protocol calls learning (the mean of the matrix diagonal up to *s*; A_auc up to the end of task
  *s* on a stream) against held-out zero-shot accuracy at *s*, or a sentence where undefined;
* the image and caption embeddings of a fixed ToyWorld probe after task *s* next to the pretrained
  ones, in the frame fitted on the pretrained model (toy scenarios; the checkpoint is loaded with
  `cliplab.load_model`, so parameter-efficient checkpoints get their backbone and modules; cached
  in the run folder, as in notebook 03).

`Explorer.figures` computes the figures (tests call it); `Explorer.widget` lays them out with
ipywidgets; `explorer_app` is what `notebooks/explorer.py` (served by Voilà through
`cliplab explore`, or opened in JupyterLab) calls.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cliplab.engine.extended import load_model
from cliplab.evaluation.online_metrics import anytime_auc
from cliplab.plots import alignment as aplots
from cliplab.plots import continual as cplots
from cliplab.plots.explorer import plot_matrix_views
from cliplab.results import RunResult, load_run, load_runs
from cliplab.results.views import STEP_NOUNS, final_zero_shot, run_matrices
from cliplab.scenarios import scenario_spec
from cliplab.study.alignment import alignment_probe, embed_run, encode_probe
from cliplab.study.explorer_page import FIGURES, build_page
from cliplab.study.protocols import task_boundaries

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

    def step_noun(self, scenario: str, label: str, seed: int) -> str:
        """What one task of this run's protocol is called ("task", "domain", "time step", "language")."""
        return noun(self.result(scenario, label, seed))

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
            FIGURES[2]: self.stability_figure(scenario, seed, step, label),
        }
        if projection:
            out[FIGURES[3]] = self.projection_figure(scenario, label, seed, step)
        return out

    def matrix_heading(self, scenario: str, label: str, seed: int) -> str:
        """What the matrix pane of this run shows (the page's heading over it)."""
        protocol = self.result(scenario, label, seed).protocol
        return MATRIX_HEADINGS.get(protocol.removesuffix("_til").removesuffix("_cil"), "accuracy matrix")

    def matrix_figure(self, result: RunResult, label: str, step: int) -> Figure:
        """Every matrix the run records, rows after `step` blank; an online run's anytime accuracy
        up to the end of task `step` beside its matrix."""
        views = []
        for view in run_matrices(result):
            frame = view.frame.copy()
            frame.iloc[step:] = np.nan  # rows not reached yet
            views.append(view._replace(frame=frame))
        where = "pretrained" if step == 0 else f"after {noun(result)} {step} ({result.tasks[step - 1]})"
        title = f"{label}, seed {result.seed}: {where}"
        if result.protocol != "online":
            return plot_matrix_views(views, title)
        anytime, until, end = _anytime(result, step)
        return plot_matrix_views(views, title, anytime, task_boundaries(result), until, end)

    def curves_figure(self, scenario: str, label: str, seed: int, step: int) -> Figure | str:
        labels = [label] + (["zeroshot"] if label != "zeroshot" and (scenario, "zeroshot", seed) in self.runs else [])
        df = load_runs([self.runs[(scenario, lab, seed)] for lab in labels])
        df["label"] = df["method"]
        if label != df["method"].iloc[0]:  # an ablation variant: name it as in the folder
            df.loc[df["run"] == df["run"].iloc[0], "label"] = label
        if not df["kind"].isin(["zero_shot", "retrieval"]).any():
            return "this run has no held-out zero-shot or retrieval probes"
        title = f"{scenario}, seed {seed}: held-out probes"
        unit = noun(self.result(scenario, label, seed))
        fig = cplots.plot_probe_curves(df, by="label", title=title, step_axis=f"after {unit} (0 = pretrained)")
        for ax in fig.axes:
            if ax.get_visible() and ax.lines:
                ax.axvline(step, color="black", linewidth=1.2, alpha=0.5, linestyle="--")
        return fig

    def stability_points(self, scenario: str, seed: int, step: int) -> pd.DataFrame:
        """Per method of `scenario` (this seed): `plasticity`, what its protocol calls learning up
        to task `step` (`plasticity_at`), and held-out zero-shot accuracy after task `step` (mean
        over probes; `retention_before` = pretrained). Runs without zero-shot probes, or whose
        plasticity is undefined at `step`, are left out."""
        rows = []
        for label in self.labels(scenario):
            if (scenario, label, seed) not in self.runs:
                continue
            result = self.result(scenario, label, seed)
            if not result.zero_shot or not 1 <= step <= len(result.tasks):
                continue
            plasticity = plasticity_at(result, step)
            if math.isnan(plasticity):
                continue
            rows.append(
                {
                    "label": label,
                    "scenario": scenario,
                    "seed": seed,
                    "plasticity": plasticity,
                    "retention": final_zero_shot(result, step),
                    "retention_before": final_zero_shot(result, 0),
                }
            )
        return pd.DataFrame(rows, columns=["label", "scenario", "seed", "plasticity", "retention", "retention_before"])

    def stability_figure(self, scenario: str, seed: int, step: int, label: str | None = None) -> Figure | str:
        """Every method's point at `step`, or a sentence saying why there is none."""
        result = self.result(scenario, label or self.labels(scenario)[0], seed)
        unit = noun(result)
        if step == 0:
            return f"pretrained: no {unit} learned yet (move the step to 1 or later)"
        points = self.stability_points(scenario, seed, step)
        if points.empty:
            if not any(self.result(scenario, lab, seed).zero_shot for lab in self.labels(scenario)):
                return "no run of this scenario has held-out zero-shot probes, so stability is not measured"
            if result.protocol == "online":
                return (
                    f"no anytime evaluation before the end of task {step} (the stream is evaluated every "
                    "eval_period samples), so A_auc is undefined here: move the step on"
                )
            return f"what the protocol calls learning is not measured up to {unit} {step} (blank diagonal)"
        title = f"Stability (up) vs plasticity (right) after {unit} {step}, seed {seed}"
        return cplots.plot_stability_plasticity(
            points, by="label", title=title, x_label=plasticity_axis(result, step), y_label=retention_axis(result, step)
        )

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
            versions[f"{label} after {noun(result)} {step}"] = chain[step - 1]
        fig = aplots.plot_joint_projection(_projection(scenario, result.model, pretrained, size), versions)
        fig.suptitle(
            "ToyWorld probe: images (red) and English captions (blue)\naxes fitted on the pretrained model", y=1.08
        )
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


MATRIX_HEADINGS = {  # the matrix pane's heading per protocol (open_domain: both settings)
    "open_domain": "TIL and CIL accuracy matrices",
    "online": "accuracy matrix and anytime accuracy",
    "time_continual": "retrieval R@1 and zero-shot classification matrices",
    "language_continual": "text→image and image→text R@1 matrices",
}


def noun(result: RunResult) -> str:
    """What one task of the run's protocol is called: task, domain, time step, language."""
    return STEP_NOUNS.get(result.protocol, "task")


def _anytime(result: RunResult, step: int) -> tuple[pd.DataFrame, float, float]:
    """(anytime accuracies up to the end of task `step`, that stream position, the run's stream end)."""
    anytime = result.extra.get("anytime") or {"samples": [], "accuracy": []}
    frame = pd.DataFrame({"samples": anytime["samples"], "accuracy": anytime["accuracy"]}, dtype=float)
    sizes = result.extra.get("stream", {}).get("task_sizes", [])[: len(result.tasks)]
    if len(sizes) < len(result.tasks):  # a record without the stream's task sizes: the whole curve
        last = float(frame["samples"].max()) if len(frame) else 0.0
        return frame, last, last
    ends = np.cumsum(sizes).tolist()
    until = float(ends[step - 1]) if step > 0 else 0.0
    return frame[frame["samples"] <= until], until, float(ends[-1])


def plasticity_at(result: RunResult, step: int) -> float:
    """What the run's protocol calls learning, up to task `step` (percent; NaN when not measured).

    Online: A_auc of the anytime accuracies evaluated by the end of task `step` (as the study's
    A_auc, over the stream so far). Others: the mean of the (primary) matrix's diagonal over tasks
    1..`step`, ignoring cells the record leaves empty (an online task without classes of its own)."""
    if result.protocol == "online":
        accuracies = _anytime(result, step)[0]["accuracy"].dropna()
        return anytime_auc(accuracies.tolist()) if len(accuracies) else math.nan
    diagonal = np.diag(np.asarray(result.accuracy_matrix, dtype=float))[:step]
    measured = diagonal[~np.isnan(diagonal)]
    return float(measured.mean()) if measured.size else math.nan


def plasticity_axis(result: RunResult, step: int) -> str:
    """The x label of the stability–plasticity point: what `plasticity_at` holds for this protocol."""
    protocol, unit = result.protocol, noun(result)
    if protocol == "online":
        return f"anytime accuracy up to the end of task {step} (A_auc, %)"
    what = {
        "open_domain_til": "new-domain accuracy (TIL)",
        "open_domain_cil": "new-domain accuracy (CIL)",
        "time_continual": "new-step retrieval R@1",
        "language_continual": "new-language text→image R@1",
    }.get(protocol, "new-task accuracy")
    return f"{what}: mean of diagonal up to {unit} {step} (%)"


def retention_axis(result: RunResult, step: int) -> str:
    return f"held-out zero-shot after {noun(result)} {step} (%)"


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


__all__ = [
    "FIGURES",
    "PROBE_SIZE",
    "RUNS_ENV",
    "Explorer",
    "close_figures",
    "default_runs",
    "explorer_app",
    "noun",
    "plasticity_at",
]
