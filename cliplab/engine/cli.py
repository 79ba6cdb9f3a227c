"""`cliplab run`: one method through one scenario, writing the results layout."""

from __future__ import annotations

import json


def add_run_command(sub) -> None:
    p = sub.add_parser("run", help="run a continual-learning method through a scenario")
    p.add_argument("--scenario", required=True, help="e.g. toy-digits-cil, toy-mtil, cifar100-cil-10, mtil-order1")
    p.add_argument("--method", required=True, help="zeroshot, finetune, lwf, vr_lwf, icarl, wise_ft, zscl")
    p.add_argument("--seed", type=int, default=None, help="default: the scenario's")
    p.add_argument("--out", required=True, help="run folder (re-running on it resumes)")
    p.add_argument("--model", default="toyclip")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--root", default=None, help="folder of local datasets (real scenarios)")
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
    from cliplab.engine.config import _parse_value, _split
    from cliplab.engine.runner import run_scenario

    options = {"root": args.root} if args.root else {}
    for item in args.scenario_options:
        key, value = _split(item)
        options[key] = _parse_value(value)
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
        from cliplab.results import load_run

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
