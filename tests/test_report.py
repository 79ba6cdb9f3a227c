"""`cliplab table`: README's mean ± std table, grouped by the run folder's label."""

from __future__ import annotations

from test_results import make_run

from cliplab.cli import main
from cliplab.results import save_run
from cliplab.study.tables import results_table


def _store(root):
    # lwf seeds 0/1 and an ablation variant of lwf (same method, same seed 0: another row).
    save_run(make_run("lwf", 0, last_zero_shot=50.0), root / "mtil" / "lwf" / "seed0")
    save_run(
        make_run("lwf", 1, last_zero_shot=40.0, accuracy_matrix=[[40.0, 30.0], [30.0, 80.0]]),
        root / "mtil" / "lwf" / "seed1",
    )
    save_run(make_run("lwf", 0, last_zero_shot=58.0), root / "mtil" / "lwf+T=4" / "seed0")


def test_rows_are_labels_with_mean_std_and_seed_count(tmp_path):
    _store(tmp_path)
    columns = {
        "Last": "last",
        "Δ zs": "zero_shot_delta/imagenet",
        "Δ i2t": "retrieval_delta/coco/i2t_r1",
        "absent": "zero_shot_delta/toyworld_shape",
    }
    table = results_table(tmp_path, columns=columns, labels=["lwf+T=4", "lwf"])
    assert list(table.index.get_level_values("label")) == ["lwf+T=4", "lwf"]
    lwf = table.loc[("mtil", "lwf")]
    # last: (20 + 60) / 2 = 40 and (30 + 80) / 2 = 55 -> 47.5 ± 10.6; zero-shot 60 -> 50 / 40: -15 ± 7.1
    assert lwf["Last"] == "47.5 ± 10.6" and lwf["Δ zs"] == "-15.0 ± 7.1" and lwf["seeds"] == 2
    assert lwf["Δ i2t"] == "-5.0 ± 0.0" and lwf["absent"] == ""
    assert table.loc[("mtil", "lwf+T=4"), "Δ zs"] == "-2.0" and table.loc[("mtil", "lwf+T=4"), "seeds"] == 1


def test_cli_prints_markdown_and_names_an_empty_folder(tmp_path, capsys):
    _store(tmp_path / "runs")
    assert main(["table", str(tmp_path / "runs"), "--markdown", "--labels", "lwf"]) == 0
    out = capsys.readouterr().out
    assert "**mtil**" in out and "| `lwf` | " in out and "lwf+T=4" not in out
    assert main(["table", str(tmp_path / "none")]) == 2
    assert "no such results folder" in capsys.readouterr().err
