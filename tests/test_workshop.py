"""What a workshop participant reads: human labels, one colour per method, readable point labels,
SMOKE results kept apart and marked, tables without empty std columns (issue 19)."""

from __future__ import annotations

import itertools
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

import cliplab.study as sh
from cliplab.plots import alignment as aplots
from cliplab.plots import continual as cplots
from cliplab.plots import languages as lplots
from cliplab.plots import peft as peftplots
from cliplab.plots import protocols as protoplots
from cliplab.plots import tic as tplots
from cliplab.plots.labels import METRIC_LABELS, dataset_label, metric_title, probe_label, readable_columns
from cliplab.plots.style import method_palette
from cliplab.study.notebooks import NOTEBOOKS, notebooks_dir, read_notebook

matplotlib.use("Agg")

# every metric notebook 03 draws or tabulates
NOTEBOOK_03_METRICS = (
    "gap_l2m",
    "unif_joint",
    "cka_img_txt",
    "i2t_r1",
    "t2i_r1",
    "angle_img_mean",
    "angle_txt_mean",
    "angle_mismatch",
    "unmatched_similarity_drift",
    "modx_drift",
    "newI_oldT_i2t_r1",
    "cka_img",
    "cka_txt",
    "sam_img",
    "sam_txt",
)


def test_alignment_panels_carry_human_names_not_code_names():
    table = pd.DataFrame(
        [("finetune", 0, t, m, float(t)) for t in range(3) for m in NOTEBOOK_03_METRICS],
        columns=["method", "seed", "task", "metric", "value"],
    )
    fig = aplots.plot_metrics_across_tasks(table, metrics=NOTEBOOK_03_METRICS)
    shown = [text for ax in fig.axes for text in (ax.get_title(), ax.get_ylabel(), ax.get_xlabel())]
    leaked = [code for code in NOTEBOOK_03_METRICS if any(code in text for text in shown)]
    assert not leaked, f"code names on axes: {leaked}"
    assert fig.axes[0].get_title() == "Modality gap" and "°" in fig.axes[5].get_ylabel()
    assert metric_title("no_such_metric") == "no_such_metric"  # unknown names pass through
    final = pd.DataFrame([[0.5, 12.0]], columns=["gap_l2m", "angle_img_mean"], index=["finetune"])
    assert list(readable_columns(final).columns) == ["Modality gap", "Image rotation"]
    assert set(NOTEBOOK_03_METRICS) <= set(METRIC_LABELS)


def test_probe_curve_panels_name_the_probes():
    rows = [
        ("r", "finetune", "toy", 0, kind, probe, step, metric, 50.0)
        for step in range(3)
        for kind, probe, metric in (("zero_shot", "toyworld_shape_colour", None), ("retrieval", "toyworld", "i2t_r1"))
    ]
    df = pd.DataFrame(rows, columns=["run", "label", "scenario", "seed", "kind", "probe", "step", "metric", "value"])
    titles = [ax.get_title() for ax in cplots.plot_probe_curves(df, by="label").axes if ax.get_visible()]
    assert titles == [
        "zero-shot · ToyWorld shape+colour, unseen pairs",
        "retrieval · ToyWorld captions, image→text R@1",
    ]
    assert probe_label("my_probe") == "my_probe"


def test_rotation_violins_use_each_methods_colour():
    rng = np.random.default_rng(0)
    angles = pd.DataFrame(
        [
            {"task": t, "modality": m, "angle": a, "method": method}
            for method in ("finetune", "vr_lwf", "zscl")
            for t in (1, 2)
            for m in ("image", "text")
            for a in rng.uniform(0, 40, 20)
        ]
    )
    fig = aplots.plot_rotation_violins(angles, hue="method")
    legend = fig.axes[0].get_legend()
    colours = {t.get_text(): to_rgb(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    palette = method_palette(["finetune", "vr_lwf", "zscl"])
    for method in palette:
        assert colours[method] == pytest.approx(to_rgb(palette[method]), abs=0.02), method


def test_stability_plasticity_labels_do_not_overlap():
    # the README's close pairs: zeroshot and zscl, lwf and icarl, vr_lwf and one of its variants
    points = {
        "zeroshot": (26, 90.6),
        "zscl": (28.5, 90.6),
        "lwf": (52.5, 91.6),
        "icarl": (55, 91.6),
        "vr_lwf": (47, 90.6),
        "vr_lwf+vocab_size=100": (44, 90.6),
        "finetune": (71, 87.5),
        "wise_ft": (69, 90.6),
    }
    frame = pd.DataFrame(
        [
            {"label": k, "scenario": "s", "seed": 0, "plasticity": x, "retention": y, "retention_before": 90.6}
            for k, (x, y) in points.items()
        ]
    )
    fig = cplots.plot_stability_plasticity(frame, by="label")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text() in points]
    assert sorted(t.get_text() for t in texts) == sorted(points)
    boxes = [t.get_window_extent(renderer) for t in texts]
    overlapping = [
        (a.get_text(), b.get_text()) for (a, x), (b, y) in itertools.combinations(zip(texts, boxes), 2) if x.overlaps(y)
    ]
    assert not overlapping, overlapping


def test_smoke_results_land_apart_from_the_full_study():
    assert sh.output_dirs("01_forgetting", None, None, smoke=False) == (
        "../runs/study/01_forgetting",
        "../runs/study/figures",
    )
    assert sh.output_dirs("01_forgetting", None, None, smoke=True) == (
        "../runs/study-smoke/01_forgetting",
        "../runs/study-smoke/figures",
    )
    assert sh.output_dirs("02_vr_lwf", "out/02", "figs", smoke=True) == ("out/02", "figs")  # given: kept


def test_setup_keeps_smoke_apart_and_names_what_the_parameters_cell_lacks(capsys):
    params = {"SMOKE": True, "SEEDS": [3, 4], "RUNS_DIR": "../runs/study/runs", "STEPS_PER_TASK": 7, "JOBS": 1}
    out_dir, figures_dir, seeds, runs_dir, settings, run_options = sh.setup("02_vr_lwf", params)
    assert (out_dir, figures_dir) == ("../runs/study-smoke/02_vr_lwf", "../runs/study-smoke/figures")
    assert seeds == [3] and str(runs_dir) == "../runs/study/runs-smoke" and "meaningless" in capsys.readouterr().out
    assert settings["steps_per_task"] == 7 and run_options["jobs"] == 1 and run_options["model"] == "toyclip"
    full = sh.setup("02_vr_lwf", {**params, "SMOKE": False}, scenario_options={"probes": ["cifar10"]})
    assert (
        full.seeds == [3, 4]
        and str(full.runs_dir) == "../runs/study/runs"
        and full.out_dir == "../runs/study/02_vr_lwf"
    )
    assert full.run_options["extra_options"] == {"probes": ["cifar10"]} and "meaningless" not in capsys.readouterr().out
    with pytest.raises(NameError, match="must define SEEDS"):
        sh.setup("02_vr_lwf", {"SMOKE": False, "RUNS_DIR": "r"})
    with pytest.raises(TypeError, match="unknown changes \\['seed'\\]"):
        sh.setup("02_vr_lwf", params, seed=1)


def test_smoke_banner_says_the_numbers_are_meaningless(capsys):
    sh.smoke_banner(False)
    assert capsys.readouterr().out == ""
    sh.smoke_banner(True, "../runs/study-smoke/01_forgetting")
    out = capsys.readouterr().out
    assert "SMOKE" in out and "meaningless" in out and "../runs/study-smoke/01_forgetting" in out


def test_one_seed_tables_have_no_std_column():
    frame = pd.DataFrame(
        [
            ("finetune", "held-out zero-shot", regime, seed, value)
            for regime, value in (("one session", 70.0), ("multi session", 50.0))
            for seed in (0, 1)
        ],
        columns=["method", "metric", "regime", "seed", "value"],
    )
    one = sh.mean_std_table(frame[frame["seed"] == 0], by=["method", "metric", "regime"])
    assert set(one.columns.get_level_values(0)) == {"mean"} and not one.isna().any().any()
    two = sh.mean_std_table(frame.assign(value=frame["value"] + frame["seed"] * 2), by=["method", "metric", "regime"])
    assert set(two.columns.get_level_values(0)) == {"mean", "std"}
    assert two[("mean", "one session")].iloc[0] == pytest.approx(71.0)
    assert two[("std", "one session")].iloc[0] == pytest.approx(np.std([70.0, 72.0], ddof=1), abs=0.05)


def test_cliplab_study_echoes_the_run_stores_lines_and_nothing_else(capsys):
    from cliplab.study.notebooks import RunLog

    log = RunLog("[study] 01: ")
    log.write("settings table\ntraining 3 runs, 2 at a time: roughly 90 s (an estimate")
    assert capsys.readouterr().out == ""  # a line is echoed once it is complete
    log.write(" ...).\nran    runs/x/seed0  (12 s)\nreuse  runs/y/seed0\ninterrupted: 1 of 3 runs finished\n")
    assert capsys.readouterr().out.splitlines() == [
        "[study] 01: training 3 runs, 2 at a time: roughly 90 s (an estimate ...).",
        "[study] 01: ran    runs/x/seed0  (12 s)",
        "[study] 01: interrupted: 1 of 3 runs finished",
    ]


# --- every notebook: the workshop conventions, checked on the text so a new notebook cannot skip them ---


def _github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_has_a_glossary_a_workshop_line_and_keeps_smoke_apart(name):
    cells = read_notebook(notebooks_dir() / name).cells
    stem = name.split(".")[0]
    at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    intro = "\n".join(c.source for c in cells[:at] if c.cell_type == "markdown")
    assert "words used here**" in intro.lower(), f"{name}: no glossary ('**Words used here**') before the parameters"
    assert "](../docs/" in intro, f"{name}: the glossary must link the docs that define its words"
    parameters = cells[at].source
    assert parameters.startswith("# Workshop:"), f"{name}: the parameters cell must open with a '# Workshop:' line"
    for line in ("OUT_DIR = None", "FIGURES_DIR = None"):
        assert line in parameters, f"{name}: `{line}` (SMOKE must write apart from the full study)"
    setup = cells[at + 1].source
    call = re.search(r"study\.setup\(\s*\"([^\"]+)\",\s*globals\(\)", setup)  # output folders, banner, run store
    assert call and call.group(1) == stem, f"{name}: the setup cell must call study.setup({stem!r}, globals(), ...)"
    record = [
        c.source for c in cells if c.cell_type == "code" and re.search(r"write_json_atomic\(.*metrics\.json", c.source)
    ]
    assert record and all("study.smoke_banner(SMOKE, OUT_DIR)" in c for c in record), (
        f"{name}: the cell that records metrics.json must show the SMOKE banner again"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_links_only_docs_that_exist(name):
    text = "\n".join(c.source for c in read_notebook(notebooks_dir() / name).cells if c.cell_type == "markdown")
    links = re.findall(r"\]\(\.\./(docs/[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert links, f"{name} links no docs page"
    root = notebooks_dir().parent
    for page, anchor in links:
        assert (root / page).is_file(), f"{name} links {page}, which does not exist"
        if anchor:
            headings = [_github_anchor(h) for h in re.findall(r"^#+ (.+)$", (root / page).read_text(), re.M)]
            assert anchor in headings, f"{name} links {page}#{anchor}, a heading that does not exist"


# --- notebooks 04-07: their figures show human names, not the code names of metrics.json ---


def _shown_text(fig) -> list[str]:
    texts = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return texts


def test_new_metric_codes_have_human_names():
    codes = ["a_auc", "seen_avg", "id", "backward", "min_language_ratio", "trainable", "modx_drift_from_previous"]
    table = pd.DataFrame([range(len(codes))], columns=codes)
    assert list(readable_columns(table).columns) == [metric_title(c) for c in codes]
    assert readable_columns(table).columns[0] == "A_auc: area under the anytime-accuracy curve"
    assert not set(codes) & set(readable_columns(table).columns)
    assert dataset_label("retrieval/toyworld") == "ToyWorld captions, retrieval"
    assert dataset_label("toyworld_shape_colour") == "ToyWorld shape+colour, unseen pairs"
    assert dataset_label("router 1: novel_shapes") == "router 1: novel shapes"


def test_time_continual_figures_name_their_metrics():
    matrix = pd.DataFrame([[90.0, 50.0], [85.0, 92.0]], index=["after t1", "after t2"], columns=["t1", "t2"])
    fig = tplots.plot_time_matrices({"sequential": (matrix, None)}, "i2t_r1")
    assert fig._suptitle.get_text() == "Time x time matrices: Retrieval image→text"
    assert fig.axes[-1].get_ylabel() == "R@1 (%)"  # the colour bar
    assert tplots.plot_time_matrices({"s": (matrix, None)}, "any label (%)").axes[-1].get_ylabel() == "any label (%)"
    codes = ["unmatched_drift_from_start", "modx_drift_from_previous", "probe_r1"]
    structure = pd.DataFrame(
        [("modx", 0, step, m, float(step)) for step in range(3) for m in codes],
        columns=["label", "seed", "step", "metric", "value"],
    )
    shown = _shown_text(tplots.plot_structure_drift(structure, codes))
    assert not [c for c in codes if any(c in t for t in shown)], shown
    assert "Mod-X drift from the previous step" in shown


def test_protocol_figures_name_sets_routes_and_axes():
    routing = pd.DataFrame(
        [[0.0, 100.0], [100.0, 0.0]],
        index=["novel_shapes", "retrieval/toyworld"],
        columns=["frozen CLIP", "router 0: novel_shapes"],
    )
    shown = _shown_text(peftplots.plot_routing_matrix(routing))
    assert "ToyWorld captions, retrieval" in shown and "router 0: novel shapes" in shown
    assert not [t for t in shown if "_" in t or "/" in t], shown
    points = pd.DataFrame(
        [
            {"label": label, "scenario": "toy-si-blurry", "seed": 0, "plasticity": x, "retention": 90.6}
            | {"retention_before": 90.6, "online": True}
            for label, x in (("continual_clip", 14.3), ("sit", 14.3), ("er", 35.7))
        ]
    )
    fig = protoplots.plot_stability_panels(points)
    assert "a_auc" not in fig.axes[0].get_xlabel() and "anytime-accuracy" in fig.axes[0].get_xlabel()
    names = sorted(t.get_text() for t in fig.axes[0].texts)
    assert names == ["continual_clip = sit", "er"]  # one label for methods at the same point
    matrix = pd.DataFrame([[40.0, 10.0], [30.0, 50.0]], index=["after avo", "after bekri"], columns=["avo", "bekri"])
    fig = lplots.plot_language_matrices({"cll_clip": (matrix, None)}, "i2t_r1")
    assert fig.axes[-1].get_ylabel() == "image→text R@1 (%)"
