"""What a workshop participant reads: human labels, one colour per method, readable point labels,
SMOKE results kept apart and marked, tables without empty std columns (issue 19)."""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

import cliplab.study as sh
from cliplab.plots import alignment as aplots
from cliplab.plots import continual as cplots
from cliplab.plots.labels import METRIC_LABELS, metric_title, probe_label, readable_columns
from cliplab.plots.style import method_palette

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
