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


def test_online_and_open_domain_tables_show_their_protocols_metrics(tmp_path):
    """A Si-Blurry run's table has SIT's A_auc / A_avg / A_last / F_last, an open-domain one SeenAvg
    (the summaries the runner records), not empty task-incremental columns."""
    nan = float("nan")  # the runner's online summary: the matrix metrics where defined, plus SIT's
    online = {"transfer": nan, "avg": nan, "last": nan, "bwt": nan, "forgetting": nan}
    online |= {"a_auc": 32.8, "a_avg": 31.8, "a_last": 43.4, "f_last": 30.4}
    save_run(
        make_run("sit", 0, scenario="si", summary=online, extra={"protocol": "online"}),
        tmp_path / "si" / "sit" / "seed0",
    )
    odcl = {"transfer": 42.4, "avg": 39.2, "last": 31.1, "bwt": -40.4, "forgetting": 40.4, "seen_avg": 45.7}
    save_run(
        make_run("coleclip", 0, scenario="od", summary=odcl, extra={"protocol": "open_domain_cil"}),
        tmp_path / "od" / "coleclip" / "seed0",
    )
    sit = results_table(tmp_path, scenario="si").loc[("si", "sit")]
    assert (sit["A_auc"], sit["A_avg"], sit["A_last"], sit["F_last"]) == ("32.8", "31.8", "43.4", "30.4")
    assert "Transfer" not in sit.index
    coleclip = results_table(tmp_path, scenario="od").loc[("od", "coleclip")]
    assert coleclip["SeenAvg"] == "45.7" and coleclip["Last"] == "31.1"
