"""`cliplab study`: run the study's notebooks headlessly with papermill (see notebooks/)."""

from __future__ import annotations

import json


def add_study_command(sub) -> None:
    p = sub.add_parser("study", help="run the study notebooks on the embedded default (or other parameters)")
    p.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE", help="papermill parameters for every notebook")
    p.add_argument("--out", default="runs/study", help="executed notebooks and metrics")
    p.set_defaults(func=_cmd_study)


def _cmd_study(args) -> int:
    from cliplab.evaluate import toyworld_report
    from cliplab.models import load_model

    report = {"toyclip": toyworld_report(load_model("toyclip")), "random": toyworld_report(load_model("toyclip", pretrained="random"))}
    print(json.dumps(report, indent=2))
    return 0
