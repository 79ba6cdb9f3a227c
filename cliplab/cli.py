"""The `cliplab` command line — the one module that defines it: pretrain-toy, eval, run, study, table,
lab, explore.

Each sub-command is a thin shell around a package function, so anything the CLI does can be done
from a notebook with the same result. Every sub-command's machinery is imported when it runs, so
`cliplab --help` is fast; a sub-command whose import fails fails loudly with the import error.

Bad input and faults the user can fix (an unknown name, a wrong type, a missing or damaged file, a
folder in use or not writable, a NaN loss) end as one line `cliplab <command>: error: ...` and exit
status 2; warnings (skipped images, a restarted run) are one line `cliplab: warning: ...` each.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

# --- pretrain-toy -----------------------------------------------------------------------------


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain-toy", help="pretrain ToyCLIP on ToyWorld (regenerates the shipped checkpoint)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the shipped recipe)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--out", default=None, help="checkpoint path (default: the packaged cliplab/assets/toyclip.safetensors)"
    )
    p.add_argument("--work-dir", default="runs/pretrain-toy", help="resumable training state and log")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    from dataclasses import replace

    from cliplab.models import TOYCLIP_CHECKPOINT
    from cliplab.pretrain import PretrainConfig, pretrain_toyclip

    overrides = {
        k: v
        for k, v in {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}.items()
        if v is not None
    }
    config = replace(PretrainConfig(), **overrides)
    out = Path(args.out) if args.out else TOYCLIP_CHECKPOINT
    pretrain_toyclip(config, out_path=out, work_dir=args.work_dir)
    print(f"wrote {out}")
    return 0


# --- eval -------------------------------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: zero-shot accuracy and retrieval")
    p.add_argument("--model", default="toyclip", help="'toyclip', an open_clip architecture, or a checkpoint path")
    p.add_argument(
        "--pretrained",
        default=None,
        help="pretrained tag or local weights file ('random' for ToyCLIP without pretraining)",
    )
    p.add_argument("--dataset", default="toyworld", help="'toyworld', 'digits', or a local dataset name (see README)")
    p.add_argument("--root", default=None, help="folder holding a local dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--probe-seed", type=int, default=0, help="ToyWorld probe seed (never used in pretraining)")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--verify",
        choices=("header", "full", "none"),
        default="header",
        help="how image files are checked before use: header (fast; catches non-images, damaged PNGs and cut "
        "JPEGs), full (decodes every image), none. Files that fail to decode later are skipped and counted too",
    )
    p.add_argument(
        "--on-corrupt",
        choices=("skip", "error"),
        default="skip",
        help="unreadable images: skip them (counted in the report) or stop with an error naming the file",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from cliplab.engine.extended import load_model
    from cliplab.evaluation.reports import evaluate_dataset, toyworld_report
    from cliplab.io import require_writable, write_json_atomic

    if args.out:  # a folder that cannot be written fails now, not after the evaluation
        require_writable(Path(args.out).parent, f"the report {Path(args.out).name}")
    bundle = load_model(args.model, pretrained=args.pretrained, device=args.device)
    if args.dataset == "toyworld":
        report = toyworld_report(bundle, probe_seed=args.probe_seed)
    else:
        report = evaluate_dataset(
            bundle, args.dataset, root=args.root, split=args.split, verify=args.verify, on_corrupt=args.on_corrupt
        )
    if args.out:
        write_json_atomic(args.out, report)
    print(json.dumps(report) if args.json else _report_table(report))
    return 0


def _report_table(report: dict) -> str:
    import pandas as pd

    flat = {}
    for key, value in report.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return pd.Series(flat, name="value").to_frame().to_string(float_format=lambda v: f"{v:.2f}")


# --- run --------------------------------------------------------------------------------------


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a continual-learning method through a scenario")
    p.add_argument(
        "--scenario",
        required=True,
        help="e.g. toy-digits-cil, toy-mtil, cifar100-cil-10, mtil-order1, toy-odcl-cil, odcl-order1, toy-si-blurry, "
        "cifar100-si-blurry, toy-tic, tic-captions, toy-languages",
    )
    p.add_argument(
        "--method",
        required=True,
        help="zeroshot, finetune, lwf, vr_lwf, icarl, wise_ft, zscl; parameter-efficient: adapter, lora, "
        "moe_adapters, coleclip, sit, continual_clip; online: also er; time-continual: sequential, cumulative, "
        "restart, oracle, lwf, modx; language-continual: finetune, lwf, cll_clip",
    )
    p.add_argument("--seed", type=int, default=None, help="default: the scenario's")
    p.add_argument("--out", required=True, help="run folder (re-running on it resumes)")
    p.add_argument("--model", default="toyclip")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--root", default=None, help="folder of local datasets (published scenarios)")
    p.add_argument(
        "--scenario-option",
        dest="scenario_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario option, e.g. probes=['cifar10'], reference_images=DIR, reference_captions=CSV, datasets=[...]",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training setting (e.g. lr=1e-4) or a method option (method.T=2)",
    )
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from cliplab.engine.config import parse_value, split_assignment
    from cliplab.engine.runner import run_scenario
    from cliplab.results import load_run

    options = {"root": args.root} if args.root else {}
    for item in args.scenario_options:
        key, value = split_assignment(item, "--scenario-option")
        options[key] = parse_value(value)
    result = run_scenario(
        args.scenario,
        args.method,
        args.out,
        model=args.model,
        pretrained=args.pretrained,
        seed=args.seed,
        overrides=args.overrides,
        scenario_options=options,
    )
    if result is not None:
        summary = {k: round(v, 2) if v == v else None for k, v in load_run(args.out).summary.items()}
        print(
            json.dumps(
                {
                    "out": args.out,
                    "summary": summary,
                    "zero_shot_final": {k: round(v[-1], 2) for k, v in result.zero_shot.items()},
                }
            )
        )
    return 0


# --- study ------------------------------------------------------------------------------------


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="run the study notebooks headlessly (papermill) on the embedded default")
    p.add_argument(
        "--params",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="notebook parameters for every notebook, e.g. SEEDS=[0,1] STEPS_PER_TASK=30 DEVICE=cuda",
    )
    p.add_argument(
        "--out",
        default=None,
        help="executed notebooks, metrics and runs (default runs/study, runs/study-smoke with --smoke)",
    )
    p.add_argument("--figures", default=None, help="PNG figures (default figures/, <out>/figures with --smoke)")
    p.add_argument("--root", default=None, help="folder of local datasets for real scenarios (sets DATA_ROOT)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (SMOKE=True): checks the pipeline in minutes")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' cell output to the terminal")
    p.add_argument(
        "--lanes",
        type=int,
        default=None,
        help="groups of notebooks run side by side (01-04 share runs; 05-07 do not): default 2 on a CPU machine "
        "with 8+ cores (one lane's 4 workers leave cores idle), else 1 (on 2 cores two lanes were slower)",
    )
    p.set_defaults(func=_cmd_study)


def _cmd_study(args) -> int:
    from papermill.exceptions import PapermillExecutionError

    from cliplab.study.notebooks import LaneFailed, failure_message, run_study
    from cliplab.study.parameters import parse_params

    if args.log_output:  # papermill logs the cells' output through `logging`
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out or ("runs/study-smoke" if args.smoke else "runs/study"))
    figures = Path(args.figures or (out / "figures" if args.smoke else "figures"))
    params = parse_params(args.params)
    if args.root:
        params.setdefault("DATA_ROOT", str(Path(args.root).resolve()))
    try:
        executed = run_study(
            out, params, figures=figures, smoke=args.smoke, log_output=args.log_output, lanes=args.lanes
        )
    except KeyboardInterrupt:
        import logging

        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # nbclient's abandoned cell task, not news
        raise
    except PapermillExecutionError as error:
        print(f"cliplab study: {failure_message(error, out)}", file=sys.stderr)
        return 1
    except LaneFailed:
        return 1
    print(f"executed {len(executed)} notebooks into {out}; figures in {figures}")
    return 0


# --- table ------------------------------------------------------------------------------------


def _add_table(sub) -> None:
    p = sub.add_parser("table", help="mean ± std table over seeds of a folder of runs (README's results table)")
    p.add_argument("runs", help="folder searched recursively for metrics.json (e.g. runs/study/runs)")
    p.add_argument("--scenario", default=None, help="only this scenario (default: every scenario, one table each)")
    p.add_argument("--labels", nargs="*", default=None, help="rows to show, in this order (default: all)")
    p.add_argument("--markdown", action="store_true", help="GitHub Markdown instead of plain text")
    p.set_defaults(func=_cmd_table)


def _cmd_table(args) -> int:
    from cliplab.study.tables import render_tables

    print(render_tables(args.runs, scenario=args.scenario, labels=args.labels, markdown=args.markdown))
    return 0


# --- lab and explore --------------------------------------------------------------------------


def _add_lab(sub) -> None:
    p = sub.add_parser(
        "lab",
        help="JupyterLab on working copies of the notebooks (lab/): double-click opens them as notebooks",
        description="Copies notebooks/*.py into lab/ (once; your edits are kept), paired with hidden "
        "*.outputs.ipynb files that keep outputs, and starts JupyterLab there. The tracked notebooks "
        "are never written. Arguments after -- go to jupyter lab (e.g. -- --port=8899 --no-browser).",
    )
    p.add_argument("--dir", default=None, help="working folder (default: lab/ beside notebooks/)")
    p.add_argument("--refresh", action="store_true", help="replace the copies by the tracked notebooks")
    p.add_argument("--prepare-only", action="store_true", help="make the copies, do not start JupyterLab")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="arguments for jupyter lab, after --")
    p.set_defaults(func=_cmd_lab)


def _cmd_lab(args) -> int:
    import os

    from cliplab.study.lab import lab_command, prepare_workspace

    copies = prepare_workspace(args.dir, refresh=args.refresh)
    print(f"working copies: {', '.join(str(c) for c in copies)}")
    if args.prepare_only:
        return 0
    command = lab_command(args.dir, [a for a in args.jupyter_args if a != "--"])
    os.execv(command[0], command)  # JupyterLab takes over this process (Ctrl-C stops it as usual)
    return 0


def _add_explore(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="the run explorer as a web page (Voilà): pick a run and a task step, see its figures",
        description="Serves notebooks/explorer.py with Voilà (no code shown). Arguments after -- go to "
        "voila (e.g. -- --port=8867 --no-browser).",
    )
    p.add_argument("runs", nargs="?", default=None, help="run folder (default: the study's, runs/study/runs)")
    p.add_argument("voila_args", nargs=argparse.REMAINDER, help="arguments for voila, after --")
    p.set_defaults(func=_cmd_explore)


def _cmd_explore(args) -> int:
    import os

    from cliplab.study.lab import explore_command, explore_environment, explorer_notebook

    env = explore_environment(args.runs)
    command = explore_command(explorer_notebook(), [a for a in args.voila_args if a != "--"])
    os.execve(command[0], command, env)
    return 0


# --- entry point ------------------------------------------------------------------------------

COMMANDS = (_add_pretrain, _add_eval, _add_run, _add_study, _add_table, _add_lab, _add_explore)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cliplab", description="Measure and fight catastrophic forgetting in CLIP.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"cliplab: warning: {message}\n"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe a problem the user can fix; anything else keeps its traceback (a bug)."""
    from cliplab.io import FolderInUseError

    # OSError: missing, damaged (CorruptFileError) or unwritable files; FloatingPointError: a NaN loss
    return (ValueError, OSError, KeyError, FloatingPointError, FolderInUseError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    shown, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return int(args.func(args) or 0)
    except _user_errors() as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"cliplab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cliplab {args.command}: interrupted. {RESUME_HINTS.get(args.command, '')}".rstrip(), file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown


# What Ctrl-C leaves behind, per command: every run folder is written atomically and resumes.
RESUME_HINTS = {
    "run": "Run the same command again to resume: finished tasks and the last mid-task checkpoint are kept.",
    "study": "Run the same command again to go on: finished runs are reused, unfinished ones resume.",
    "pretrain-toy": "Run the same command again to resume from the last checkpoint in --work-dir.",
}


if __name__ == "__main__":
    raise SystemExit(main())
