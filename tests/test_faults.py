"""Bad input and faults, as a hostile but fair user meets them: each gets one clear line, nothing
is half-written, and a damaged file is skipped (and counted) where skipping is safe.

The command line is called in-process (`cliplab.cli.main`): exit status 2 and one `error:` line on
stderr is the contract for a problem the user can fix.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from fakedata import write_cifar10, write_pickle
from PIL import Image
from safetensors.torch import save_file

from cliplab.checkpoints import CheckpointError, read_metadata, save_model
from cliplab.cli import main
from cliplab.data import get_dataset
from cliplab.data.errors import CorruptFileError, CorruptImageWarning
from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.loop import NonFiniteLossError
from cliplab.engine.runner import run_scenario
from cliplab.io import atomic_path, folder_lock, remove_stale_temporaries
from cliplab.models import TOYCLIP_CHECKPOINT
from cliplab.results import RunResult, save_run
from cliplab.results.layout import RunFolder

IO_MODULE = Path(__file__).resolve().parents[1] / "cliplab" / "io.py"
TINY = [
    "steps_per_task=2",
    "checkpoint_every=1",
    "batch_size=8",
    "probe_size=20",
    "retrieval_size=10",
    "max_eval_images=20",
    "max_tasks=1",
    "progress=false",
]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run_args(out: Path, *sets: str, method: str = "finetune") -> list[str]:
    args = ["run", "--scenario", "toy-digits-cil", "--method", method, "--seed", "0", "--out", str(out)]
    return [*args, "--pretrained", "random", *(f"--set={s}" for s in [*TINY, *sets])]


def _one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("steps_per_task=0", ["steps_per_task must be at least 1", "zeroshot"]),
        ("steps_per_task=-3", ["steps_per_task must be at least 1"]),
        ("steps_per_task=2.5", ["steps_per_task=2.5", "expected an integer", "float"]),
        ("batch_size=abc", ["batch_size='abc'", "expected an integer", "str"]),
        ("lr=abc", ["lr='abc'", "expected a number"]),
        ("method.T=abc", ["method.T='abc'", "expected a number"]),
        ("augment=maybe", ["augment='maybe'", "expected true or false"]),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_is_refused_before_anything_is_written(tmp_path, capsys, setting, needles):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, *_run_args(out, setting, method="lwf"))
    assert code == 2
    _one_error_line(err, *needles)
    assert not out.exists(), "nothing may be written for a command that is refused"


def test_numbers_are_converted_to_the_field_type_and_fractions_of_integers_are_refused():
    config = apply_overrides(TrainConfig(), ["steps_per_task=1e3", "lr=1", "betas=[0.8,0.9]"])
    assert config.steps_per_task == 1000 and isinstance(config.steps_per_task, int)
    assert config.lr == 1.0 and isinstance(config.lr, float) and config.betas == (0.8, 0.9)
    with pytest.raises(ValueError, match=r"steps_per_task=2\.5: expected an integer"):
        apply_overrides(TrainConfig(), {"steps_per_task": 2.5})  # the API is checked like the CLI
    with pytest.raises(ValueError, match=r"betas=\[0\.9\]: expected a list of 2 values"):
        apply_overrides(TrainConfig(), ["betas=[0.9]"])


def test_a_run_that_failed_before_its_first_checkpoint_restarts_with_new_settings(tmp_path, capsys):
    """NaN at step 1: the advice is to lower the learning rate, and the same folder accepts it."""
    out = tmp_path / "run"
    settings = [*TINY, "checkpoint_every=5", "warmup_steps=0"]
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate.*restarts in the same --out"):
        run_scenario("toy-digits-cil", "finetune", out, pretrained="random", seed=0, overrides=[*settings, "lr=1e30"])
    assert (out / "progress.json").exists() and not RunFolder(out).has_training_progress()
    with pytest.warns(UserWarning, match=r"restarting it with the new settings \(lr: 1e\+30 there, 0\.0001 here"):
        result = run_scenario(
            "toy-digits-cil", "finetune", out, pretrained="random", seed=0, overrides=[*settings, "lr=1e-4"]
        )
    assert len(result.accuracy_matrix) == 1
    assert RunFolder(out).identity().config["lr"] == 1e-4
    # a folder holding training progress is refused, naming what differs
    code, _, err = _cli(capsys, *_run_args(out, "checkpoint_every=5", "warmup_steps=0", "lr=2e-4"))
    assert code == 2
    _one_error_line(err, "already holds a different run", "lr: 0.0001 there, 0.0002 here")


def test_an_unknown_scenario_option_is_one_line_naming_the_known_ones(tmp_path, capsys):
    code, _, err = _cli(capsys, *_run_args(tmp_path / "run"), "--scenario-option", "bogus=1")
    assert code == 2
    _one_error_line(err, "has no option(s) ['bogus']", "probe_size")
    assert not (tmp_path / "run").exists()


# --- study parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "needles"),
    [
        ("SEEDS=abc", ["SEEDS='abc'", "expected a list of int", "[0, 1, 2]"]),
        ("METHODS=finetune", ["METHODS='finetune'", "expected a list of str", "METHODS=['finetune']"]),
        ("SMOKE=1", ["SMOKE=1", "expected True or False"]),
    ],
)
def test_study_parameters_are_checked_against_the_type_of_their_default(tmp_path, capsys, param, needles):
    code, _, err = _cli(capsys, "study", "--params", param, "--out", str(tmp_path / "study"))
    assert code == 2
    _one_error_line(err, *needles)
    assert not (tmp_path / "study").exists(), "no notebook may run"


# --- files: checkpoints --------------------------------------------------------------------------


def _other_architecture(path: Path) -> Path:
    torch.manual_seed(0)
    other = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
        text_cfg={"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    )
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    return other


def test_unusable_weight_files_are_one_line_naming_the_file_and_the_fix(tmp_path, capsys):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(TOYCLIP_CHECKPOINT.read_bytes()[:5000])
    other = tmp_path / "other.safetensors"
    _other_architecture(other)
    unknown = tmp_path / "unknown.safetensors"
    save_model(torch.nn.Linear(2, 2), unknown, architecture="ViT-Nope-99")
    cases = [
        (["--model", str(empty)], [str(empty), "empty"]),
        (["--model", "toyclip", "--pretrained", str(cut)], [str(cut), "truncated", "Copy it again"]),
        (["--model", "toyclip", "--pretrained", str(other)], [str(other), "another architecture", "--model ARCH"]),
        (["--model", str(unknown)], [str(unknown), "'ViT-Nope-99'", "open_clip does not know"]),
    ]
    for args, needles in cases:
        code, _, err = _cli(capsys, "eval", *args, "--dataset", "digits")
        assert code == 2, args
        _one_error_line(err, *needles)
        assert len(err.strip().splitlines()) == 1, err  # not a 155-line size-mismatch report


# --- files: data -----------------------------------------------------------------------------


def test_a_cifar_pickle_never_runs_code_even_without_checksums(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    write_cifar10(tmp_path)
    write_pickle(tmp_path / "cifar-10-batches-py" / "batches.meta", {"label_names": [Payload()] * 10})
    with (
        pytest.warns(UserWarning, match="checksums not verified"),
        pytest.raises(
            CorruptFileError, match=r"batches\.meta as a CIFAR pickle .*refusing to load global (posix|os)\.mkdir"
        ),
    ):
        get_dataset("cifar10", root=tmp_path, split="test", verify_checksums=False)
    assert not marker.exists(), "the pickle's payload ran"
    with pytest.warns(UserWarning):  # the honest files of the same folder still load
        write_cifar10(tmp_path)
        assert len(get_dataset("cifar10", root=tmp_path, split="test", verify_checksums=False)) == 3


def _jpeg(path: Path, seed: int, cut: bool = False) -> Path:
    """A 64x64 noise JPEG; `cut`: its last 30% missing (its header still parses and verifies)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * 0.7)] if cut else data)
    return path


def _folder_with_a_cut_jpeg(root: Path) -> Path:
    for label, name in enumerate(("cat", "dog")):
        for n in range(2):
            _jpeg(root / "test" / name / f"{n}.jpg", 10 * label + n)
    return _jpeg(root / "test" / "cat" / "2.jpg", 99, cut=True)


@pytest.mark.parametrize("verify", ["header", "none"])
def test_eval_skips_and_counts_a_truncated_jpeg_wherever_it_fails(tmp_path, capsys, verify):
    """header: caught when the dataset is opened (no end-of-image marker); none: when it is decoded."""
    cut = _folder_with_a_cut_jpeg(tmp_path / "folder")
    with pytest.warns(CorruptImageWarning, match=str(cut)):
        code, out, err = _cli(
            capsys, "eval", "--dataset", "imagefolder", "--root", str(tmp_path / "folder"), "--verify", verify, "--json"
        )
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["n"] == 4 and report["skipped"] == 1


def test_an_image_that_fails_when_loaded_is_replaced_by_one_of_its_class_in_training(tmp_path):
    cut = _folder_with_a_cut_jpeg(tmp_path / "folder")
    data = get_dataset("imagefolder", root=tmp_path / "folder", split="test", verify="none")
    index = data.paths.index(str(cut))
    with pytest.warns(CorruptImageWarning, match="failed to decode when loaded"):
        _, label = data[index]
    assert label == data.targets[index] and data.corrupt == [str(cut)]
    batch = data.__getitems__(list(range(len(data))))  # what a DataLoader fetches: the cut image left out
    assert len(batch) == len(data) - 1 and data.corrupt == [str(cut)]
    with pytest.raises(CorruptFileError, match=r"2\.jpg"):
        get_dataset("imagefolder", root=tmp_path / "folder", split="test", verify="none", on_corrupt="error")[index]


def test_caption_files_with_problems_are_one_line_from_cliplab_eval(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    _jpeg(tmp_path / "img" / "a.jpg", 1)
    _jpeg(tmp_path / "img" / "b.jpg", 2)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("filepath,caption\nimg/a.jpg,un café au lait\n".encode("latin-1"))
    columns = tmp_path / "columns.csv"
    columns.write_text("path,text\nimg/a.jpg,a cat\n")
    karpathy = tmp_path / "karpathy"
    karpathy.mkdir()
    (karpathy / "dataset_coco.json").write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "test"}]}))
    cases = [
        (["csv_captions", latin], [str(latin), "not UTF-8", "iconv"]),
        (["csv_captions", columns], [str(columns), "'filepath'", "['path', 'text']"]),
        (["coco_karpathy", karpathy], ["dataset_coco.json", "images[0] lacks 'sentences'"]),
    ]
    for (name, root), needles in cases:
        code, _, err = _cli(capsys, "eval", "--dataset", name, "--root", str(root))
        assert code == 2, name
        _one_error_line(err, *needles)


def test_empty_captions_and_images_left_without_one_are_skipped_and_counted(tmp_path, capsys):
    for name in "abc":
        _jpeg(tmp_path / "img" / f"{name}.jpg", ord(name))
    csv = tmp_path / "captions.csv"
    csv.write_text('filepath,caption\nimg/a.jpg,a cat\nimg/a.jpg,""\nimg/b.jpg,"  "\nimg/c.jpg,a dog\n')
    with pytest.warns(
        UserWarning, match=r"skipped 2 empty caption\(s\) and 1 image\(s\) left without a caption .*b\.jpg"
    ):
        code, out, err = _cli(capsys, "eval", "--dataset", "csv_captions", "--root", str(csv), "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n"] == 2


def test_an_output_that_cannot_be_written_is_refused_before_evaluating(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    code, _, err = _cli(capsys, "eval", "--dataset", "digits", "--out", str(blocker / "report.json"))
    assert code == 2
    _one_error_line(err, f"cannot write the report report.json into {blocker}")
    code, _, err = _cli(capsys, *_run_args(blocker / "run"))
    assert code == 2
    _one_error_line(err, f"cannot write cliplab run into {blocker / 'run'}")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_output_folder_is_refused_before_evaluating(tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = _cli(capsys, "eval", "--dataset", "digits", "--out", str(folder / "report.json"))
        assert code == 2
        _one_error_line(err, str(folder))
    finally:
        folder.chmod(0o755)


# --- run folders: records, locks, temporaries -----------------------------------------------------


def test_a_damaged_progress_record_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "progress.json").write_text('{"spec": {"scenario": "toy-di')
    code, _, err = _cli(capsys, *_run_args(out))
    assert code == 2
    _one_error_line(err, str(out / "progress.json"), "is damaged", "Delete the run folder")


def test_one_damaged_metrics_file_is_skipped_by_the_table_with_a_warning(tmp_path, capsys):
    good = RunResult("finetune", "toy-digits-cil", "toyclip", 0, ["a", "b"], [[90.0, 10.0], [50.0, 80.0]])
    save_run(good, tmp_path / "runs" / "toy-digits-cil" / "finetune" / "seed0")
    bad = tmp_path / "runs" / "toy-digits-cil" / "lwf" / "seed0" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"method": "lwf", "accura')
    with pytest.warns(UserWarning, match=rf"skipping {bad}: it cannot be read"):
        code, out, err = _cli(capsys, "table", str(tmp_path / "runs"))
    assert code == 0, err
    assert "finetune" in out and "lwf" not in out
    bad.parent.parent.parent.joinpath("finetune", "seed0", "metrics.json").write_text("[")
    with pytest.warns(UserWarning):
        code, _, err = _cli(capsys, "table", str(tmp_path / "runs"))
    assert code == 2
    _one_error_line(err, "none of the 2 metrics.json files can be read")


def test_a_second_run_on_a_folder_in_use_stops_at_once_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    with folder_lock(out, ".lock", purpose="cliplab run"):
        code, _, err = _cli(capsys, *_run_args(out))
    assert code == 2
    _one_error_line(err, f"{out} is in use by another cliplab run", f"pid {os.getpid()}")
    assert sorted(p.name for p in out.iterdir()) == [], "the first run's folder is left alone"


def test_a_lock_and_temporaries_left_by_a_killed_process_are_taken_over_and_removed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import importlib.util, os, signal\n"  # cliplab/io.py alone: the package would import torch
            f"spec = importlib.util.spec_from_file_location('io_', {str(IO_MODULE)!r})\n"
            "io_ = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(io_)\n"
            "atomic_path, folder_lock = io_.atomic_path, io_.folder_lock\n"
            f"with folder_lock({str(folder)!r}, '.lock', 'cliplab run'):\n"
            f"    with atomic_path({str(folder / 'checkpoints' / 'task_0.safetensors')!r}) as tmp:\n"
            "        tmp.write_bytes(b'half a checkpoint')\n"
            "        print('ready', flush=True)\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    assert child.wait(timeout=60) == -signal.SIGKILL
    leftovers = list((folder / "checkpoints").glob(".*.tmp"))
    assert len(leftovers) == 1 and f".{child.pid}-" in leftovers[0].name
    with atomic_path(folder / "other.json") as live:  # a live writer's temporary is kept
        live.write_text("{}")
        assert remove_stale_temporaries(folder) == leftovers and live.exists()
    taken_over = rf"taking over the lock of a process that no longer runs \(pid {child.pid}"
    with pytest.warns(UserWarning, match=taken_over), RunFolder(folder).lock():
        assert (folder / ".lock").exists()
    assert not (folder / ".lock").exists()


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with folder_lock(tmp_path, ".lock") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()
    with folder_lock(tmp_path, ".lock"):  # free again
        pass


def test_a_checkpoint_removed_while_it_is_opened_is_file_not_found(tmp_path, monkeypatch):
    """A file removed between the exists() check and the open (the engine test polls a mid-task file
    that the run deletes): safetensors then raises RuntimeError("unable to open file"); the reader
    must say FileNotFoundError, and keep naming a file that is there but unreadable a CheckpointError."""
    import cliplab.checkpoints as checkpoints

    def vanished(path, framework):
        raise RuntimeError(f"unable to open file <{path}> in read-only mode: No such file or directory (2)")

    monkeypatch.setattr(checkpoints, "safe_open", vanished)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_metadata(tmp_path / "mid_task.safetensors")
    present = tmp_path / "present.safetensors"
    present.write_bytes(b"")
    with pytest.raises(CheckpointError, match="Delete it"):
        read_metadata(present, hint="Delete it and run again.")
