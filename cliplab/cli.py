"""The `cliplab` command line: pretrain-toy, eval, run, study and table.

Each sub-command is a thin shell around a package function, so anything the CLI does can be done
from a notebook with the same result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain-toy", help="pretrain ToyCLIP on ToyWorld (regenerates the shipped checkpoint)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the shipped recipe)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="checkpoint path (default: the packaged cliplab/assets/toyclip.safetensors)")
    p.add_argument("--work-dir", default="runs/pretrain-toy", help="resumable training state and log")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    from dataclasses import replace

    from cliplab.models import TOYCLIP_CHECKPOINT
    from cliplab.pretrain import PretrainConfig, pretrain_toyclip

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}.items() if v is not None}
    config = replace(PretrainConfig(), **overrides)
    out = Path(args.out) if args.out else TOYCLIP_CHECKPOINT
    pretrain_toyclip(config, out_path=out, work_dir=args.work_dir)
    print(f"wrote {out}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: zero-shot accuracy and retrieval")
    p.add_argument("--model", default="toyclip", help="'toyclip', an open_clip architecture, or a checkpoint path")
    p.add_argument("--pretrained", default=None, help="pretrained tag or local weights file ('random' for ToyCLIP without pretraining)")
    p.add_argument("--dataset", default="toyworld", help="'toyworld', 'digits', or a local dataset name (see README)")
    p.add_argument("--root", default=None, help="folder holding a local dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--probe-seed", type=int, default=0, help="ToyWorld probe seed (never used in pretraining)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from cliplab.evaluate import evaluate_dataset, toyworld_report
    from cliplab.io import write_json_atomic
    from cliplab.models import load_model

    bundle = load_model(args.model, pretrained=args.pretrained, device=args.device)
    if args.dataset == "toyworld":
        report = toyworld_report(bundle, probe_seed=args.probe_seed)
    else:
        report = evaluate_dataset(bundle, args.dataset, root=args.root, split=args.split)
    if args.out:
        write_json_atomic(args.out, report)
    print(json.dumps(report) if args.json else _table(report))
    return 0


def _table(report: dict) -> str:
    import pandas as pd

    flat = {}
    for key, value in report.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return pd.Series(flat, name="value").to_frame().to_string(float_format=lambda v: f"{v:.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cliplab", description="Measure and fight catastrophic forgetting in CLIP.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(sub)
    _add_eval(sub)
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands():
    """Sub-commands that live next to their machinery (training engine, study runner)."""
    commands = []
    try:
        from cliplab.engine.cli import add_run_command

        commands.append(add_run_command)
    except ImportError:
        pass
    try:
        from cliplab.study import add_study_command

        commands.append(add_study_command)
    except ImportError:
        pass
    from cliplab.report import add_table_command

    commands.append(add_table_command)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"cliplab {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
