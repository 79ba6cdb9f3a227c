"""The real-data path of the time-continual protocol: dated caption files (CSV / Karpathy JSON) in the
formats `csv_captions` and the Karpathy loaders read, split into steps by a column."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cliplab.data.errors import CorruptFileError
from cliplab.data.streams import read_caption_table, resolve_steps, time_values
from cliplab.engine.runner import run_scenario
from cliplab.results import load_run
from cliplab.scenarios import get_scenario, scenario_spec
from tests.fakedata import write_image

torch.set_num_threads(1)

TINY = [
    "steps_per_task=2",
    "batch_size=4",
    "warmup_steps=1",
    "checkpoint_every=0",
    "progress=false",
    "eval_batch_size=16",
]
YEARS = {"2015": 6, "2014": 5, "2016": 4}  # images per year; written out of order on purpose
OBJECTS = ("dog", "cat")


def write_dated_csv(folder, with_split: bool, sep: str = ",") -> str:
    rows, n = [], 0
    for year, count in YEARS.items():
        for i in range(count):
            path = write_image(folder / "img" / f"{year}_{i}.png", n)
            label = OBJECTS[i % 2]
            split = "test" if i == 0 else "train"
            for k in range(2):  # two captions per image, as a Karpathy-like CSV
                caption = f"a {label} number {i} photographed in {year} view {k}"
                rows.append([f"img/{path.name}", caption, year, label] + ([split] if with_split else []))
            n += 1
    header = ["filepath", "caption", "year", "object"] + (["split"] if with_split else [])
    lines = [sep.join(header)] + [sep.join(map(str, r)) for r in rows]
    csv = folder / ("stream.tsv" if sep == "\t" else "stream.csv")
    csv.write_text("\n".join(lines) + "\n")
    return str(csv)


def write_dated_karpathy(folder) -> str:
    images = []
    for n, year in enumerate(["2020", "2020", "2020", "2021", "2021", "2021"]):
        write_image(folder / "imgs" / f"{n}.jpg", n, "JPEG")
        images.append(
            {
                "filepath": "imgs",
                "filename": f"{n}.jpg",
                "split": "test" if n in (0, 3) else "train",
                "year": int(year),
                "sentences": [{"raw": f"picture {n} from {year}"}, {"raw": f"another caption of {n}"}],
            }
        )
    path = folder / "dataset_dated.json"
    path.write_text(json.dumps({"images": images}))
    return str(path)


def test_steps_follow_the_time_column_in_order_and_can_be_merged(tmp_path):
    csv = write_dated_csv(tmp_path, with_split=True)
    assert scenario_spec("tic-captions", root=csv).task_names == ["2014", "2015", "2016"]
    merged = scenario_spec("tic-captions", root=csv, steps=[[2014, 2015], 2016])
    assert merged.task_names == ["2014-2015", "2016"] and merged.protocol == "time_continual"
    frame = read_caption_table(csv)
    assert time_values(frame) == ["2014", "2015", "2016"] and len(frame) == 2 * sum(YEARS.values())
    with pytest.raises(ValueError, match=r"lacks; it has \['2014', '2015', '2016'\]"):
        resolve_steps(time_values(frame), [2013])


def test_a_steps_pool_holds_its_training_rows_only_and_eval_images_are_never_trained(tmp_path):
    csv = write_dated_csv(tmp_path, with_split=True)
    scenario = get_scenario("tic-captions", root=csv, class_column="object")
    step = scenario.tasks[1]  # 2015: 6 images, the first one marked test
    pool = step.train_data(None)
    assert len(pool) == 2 * 5 and all("2015" in c for c in pool.captions)
    assert len(step.retrieval.captions) == 2 and all(c.startswith("a dog") for c in step.retrieval.captions)
    assert set(pool.captions).isdisjoint(step.retrieval.captions)
    assert step.classnames == ["cat", "dog"] and list(step.test_data(None).targets) == [1]


def test_without_a_split_column_a_seeded_fraction_of_images_is_held_out(tmp_path):
    csv = write_dated_csv(tmp_path, with_split=False, sep="\t")
    a = get_scenario("tic-captions", root=csv, eval_fraction=0.4, split_seed=3)
    b = get_scenario("tic-captions", root=csv, eval_fraction=0.4, split_seed=3)
    step = a.tasks[0]  # 2014: 5 images -> 2 held out, with both their captions
    assert len(step.retrieval.captions) == 4 and len(step.train_data(None)) == 6
    assert step.retrieval.captions == b.tasks[0].retrieval.captions
    assert set(step.train_data(None).captions).isdisjoint(step.retrieval.captions)


def test_a_karpathy_json_with_a_year_key_runs_end_to_end(tmp_path):
    root = write_dated_karpathy(tmp_path)
    folder = tmp_path / "run"
    run_scenario(
        "tic-captions", "cumulative", folder, pretrained="random", overrides=TINY, scenario_options={"root": root}
    )
    result = load_run(folder)
    assert result.tasks == ["2020", "2021"] and result.extra["protocol"] == "time_continual"
    A = np.array(result.accuracy_matrix)
    assert A.shape == (2, 2) and ((A >= 0) & (A <= 100)).all()
    assert {"id", "backward", "forward"} <= set(result.summary)
    assert np.isnan(np.array(result.extra["classification_matrix"], dtype=float)).all()
    assert "classification_id" not in result.summary, "no classes, no classification summary"


def test_a_csv_with_classes_records_the_classification_matrix(tmp_path):
    csv = write_dated_csv(tmp_path, with_split=True)
    folder = tmp_path / "run"
    options = {"root": csv, "class_column": "object", "steps": [[2014, 2015], 2016]}
    run_scenario("tic-captions", "sequential", folder, pretrained="random", overrides=TINY, scenario_options=options)
    result = load_run(folder)
    C = np.array(result.extra["classification_matrix"])
    assert C.shape == (2, 2) and np.isin(C, [0.0, 50.0, 100.0]).all(), "2 test images per merged step"
    assert {"classification_id", "classification_backward", "classification_forward"} <= set(result.summary)


def test_bad_files_and_options_say_what_to_fix(tmp_path):
    with pytest.raises(ValueError, match=r"pass the option\(s\) \['root'\]"):
        scenario_spec("tic-captions")
    bad = tmp_path / "bad.csv"
    bad.write_text("filepath,caption\nimg/a.png,a dog\n")
    with pytest.raises(CorruptFileError, match=r"lacks column\(s\) \['year'\].*time_column="):
        scenario_spec("tic-captions", root=str(bad))
    blank = tmp_path / "blank.csv"
    blank.write_text("filepath,caption,year\nimg/a.png,a dog,\n")
    with pytest.raises(CorruptFileError, match="without a caption or 'year' value"):
        read_caption_table(blank)
    odd = tmp_path / "odd.csv"
    odd.write_text("filepath,caption,year,split\nimg/a.png,a dog,2014,holdout\n")
    with pytest.raises(CorruptFileError, match=r"split value\(s\) \['holdout'\]"):
        read_caption_table(odd)
