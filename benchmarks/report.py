#!/usr/bin/env python
"""Render the result tables of benchmarks/README.md from the JSON files in benchmarks/results/.

    python benchmarks/report.py            # print the markdown
    python benchmarks/report.py --write    # replace the generated part of benchmarks/README.md

The generated part lies between the `<!-- report:begin -->` and `<!-- report:end -->` markers, so
every number in the README comes from a result file and can be regenerated after a new run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, table

README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def load_text(load: list[float] | None) -> str:
    return "-" if not load else " / ".join(f"{x:.2f}" for x in load)


def machines(results: dict[str, dict | None]) -> str:
    rows = []
    for file, r in results.items():
        if r is None:
            continue
        m = r["machine"]
        rows.append(
            [
                file,
                m["cpu"],
                m["cpu_count"],
                m["torch_threads"],
                m["torch"],
                m.get("measured_at_utc", "-"),
                load_text(m.get("load_average_at_start")),
                load_text(r.get("load_average_at_end")),
                f(r.get("wall_seconds"), 0),
            ]
        )
    return table(
        rows,
        [
            "result file",
            "CPU",
            "cores",
            "torch threads",
            "torch",
            "measured (UTC)",
            "load avg 1/5/15 min, start",
            "end",
            "script wall s",
        ],
    )


def train_step(r: dict) -> str:
    s = r["settings"]
    cuda = s["device"].startswith("cuda")
    peak_key, peak_label = ("cuda_peak_mb", "peak MiB (CUDA)") if cuda else ("peak_rss_mb", "peak RSS MiB")
    base_peak = r["methods"]["finetune"].get(peak_key)
    rows = []
    for name, m in r["methods"].items():
        peak = m.get(peak_key)
        rows.append(
            [
                name,
                f(m["ms_per_step"]),
                f"{f(m['ms_per_step_q1'])}-{f(m['ms_per_step_q3'])}",
                f(m["ratio_to_finetune"], 2),
                f(m.get("cpu_ratio_to_finetune"), 2),
                f(m["images_per_s"], 0),
                f(m.get("gflop_per_step")),
                f(peak, 0),
                f(peak / base_peak if peak and base_peak else None, 2),
            ]
            + ([f(100 * m["fraction_of_bf16_peak"]) if m.get("fraction_of_bf16_peak") else "-"] if cuda else [])
        )
    head = (
        f"{s['model']} ({s['pretrained'] or 'random'} weights), {s['device']}, {r['precision']}, batch "
        f"{s['batch_size']}, {r['image_size']} px, {s['steps']} timed steps x {s['repeats']} rounds "
        f"(reference style: {s['reference_steps']} x {s['reference_repeats']}), K = {s['vocab_size']} "
        f"pseudo-texts, {s['n_captions']:,} ZSCL reference captions.\n\n"
    )
    return head + table(
        rows,
        [
            "variant",
            "ms/step",
            "q1-q3",
            "x finetune",
            "x finetune (CPU time)",
            "img/s",
            "GFLOP/step",
            peak_label,
            "peak x finetune",
        ]
        + (["% bf16 peak"] if cuda else []),
    )


def peft_step(r: dict) -> str:
    """The training-step table of the parameter-efficient methods, plus what `end_task` costs them
    (MoE-Adapters with DDAS trains the task's autoencoder there: 300 steps)."""
    rows = [[name, f(m.get("end_task_ms"), 0)] for name, m in r["methods"].items()]
    return train_step(r) + "\n\n" + table(rows, ["variant", "end_task ms (once per task)"])


def reference_style(r: dict) -> str:
    rows = []
    for ours, ref in (("vr_lwf", "vr_lwf_reference"), ("zscl", "zscl_reference")):
        if ours in r["methods"] and ref in r["methods"]:
            a, b = r["methods"][ours], r["methods"][ref]
            rows.append(
                [
                    ours,
                    f(a["ms_per_step"]),
                    f(b["ms_per_step"]),
                    f(b["ratio_to_finetune"] / a["ratio_to_finetune"], 2),
                    f(b["hooks_ms_per_step"].get("extra_inputs")),
                    f(b.get("gflop_per_step")),
                    f(a.get("gflop_per_step")),
                ]
            )
    return table(
        rows,
        [
            "method",
            "ours ms/step",
            "reference style ms/step",
            "speed-up (paired ratios)",
            "reference: teacher-text ms/step",
            "reference GFLOP/step",
            "ours GFLOP/step",
        ],
    )


def eval_share(r: dict) -> str:
    t, c = r["throughput"], r["classifier"]
    out = [
        table(
            [
                ["zero_shot_accuracy (PIL + eval transform + image tower)", f(t["zero_shot_accuracy_images_per_s"], 0)],
                ["image tower alone (pre-transformed tensors)", f(t["image_tower_only_images_per_s"], 0)],
            ],
            ["path", "images/s"],
        )
        + f"\n\n{t['n_images']} ToyWorld probe images, {t['classes']} classes, batch {t['batch_size']}, {r['model']} ({r['weights']} weights)."
    ]
    rows = [
        [k, v["prompts"], f(v["uncached_ms"]), f(v["cached_ms"], 2), f(v["speedup"], 1) + "x"]
        for k, v in c["probes"].items()
    ]
    out.append(
        table(rows, ["probe", "prompts", "classifier build ms (no cache)", "ms (cache hit)", "speed-up"])
        + f"\n\nText-tower fingerprint (paid by every cache lookup): {f(c['text_tower_fingerprint_ms'], 2)} ms"
        + (
            f" when unchanged, {f(c['text_tower_fingerprint_full_ms'], 1)} ms for a full hash."
            if "text_tower_fingerprint_full_ms" in c
            else "."
        )
    )
    if "share" in r:
        s = r["share"]
        out.append(
            table(
                [
                    [
                        s["scenario"],
                        s["method"],
                        s["seed"],
                        f(s["seconds"]["train"]),
                        f(s["seconds"]["evaluate"]),
                        f"{100 * s['evaluate_share']:.1f}%",
                        "holds" if s["holds"] else "misses",
                    ]
                ],
                ["scenario", "method", "seed", "train s", "evaluate s", "evaluate share", "<= 20%"],
            )
            + f"\n\n{s['classifier_lookups']} classifier-cache lookups, {s['fingerprint_seconds']} s fingerprinting in all."
        )
    if "evaluation_breakdown" in r:
        e = r["evaluation_breakdown"]
        keys = {"accuracy_row": "tests", "zero_shot_probes": "zero_shot_probes", "retrieval_probe": "retrieval_probe"}
        rows = [
            [
                k,
                f(v, 2),
                e["images_encoded"][keys[k]],
                f(e.get("gflop", {}).get(k)),
                f(e.get("gflop_per_s", {}).get(k), 0),
            ]
            for k, v in e["seconds"].items()
        ]
        ceiling = e.get("matmul_ceiling_gflop_per_s")
        out.append(
            table(
                rows,
                [
                    "part of one evaluation (last task, text tower just changed)",
                    "seconds",
                    "images encoded",
                    "GFLOP",
                    "GFLOP/s",
                ],
            )
            + f"\n\n{e['zero_shot_probes']} zero-shot probes over {e['distinct_probe_image_sets']} image set(s), "
            f"{e['captions_encoded']} retrieval captions, {e['classifier_lookups']} classifier lookups per evaluation."
            + (
                f" GFLOP: matrix products counted by `FlopCounterMode`; one large fp32 matrix product shaped like "
                f"the image tower's MLP reaches {f(ceiling, 0)} GFLOP/s on the same threads."
                if ceiling
                else ""
            )
        )
    return "\n\n".join(out)


def eval_levers(r: dict) -> str:
    base = r["levers"]["fp32 eager (cliplab)"]["images_per_s"]
    rows = [
        [
            k,
            f(v["images_per_s"], 0),
            f(v["images_per_s"] / base, 2) + "x",
            f"{v['max_abs_diff']:.1e}",
            f"{v['min_cosine']:.6f}",
            f(v.get("first_call_s")),
        ]
        for k, v in r["levers"].items()
    ]
    return (
        table(
            rows,
            [
                "image tower",
                "images/s",
                "vs fp32 eager",
                "max abs diff of embeddings",
                "min cosine",
                "first call s (compiles)",
            ],
        )
        + f"\n\n{r['images']} ToyWorld probe images, batch {r['batch_size']}, shipped ToyCLIP, one thread, "
        f"CPU kernels {r['cpu_capability']}; cold inductor cache."
    )


def run_shares(r: dict) -> str:
    rows = [
        [
            x["scenario"],
            x["method"],
            x["runs"],
            f"{100 * x['median_share']:.1f}%",
            f"{100 * x['min_share']:.1f}–{100 * x['max_share']:.1f}%",
            "holds" if x["holds"] else "misses",
        ]
        for x in r["rows"]
    ]
    return (
        table(rows, ["scenario", "method", "runs", "evaluate share (median)", "range", "<= 20%"])
        + f"\n\nRead from the runs under `{r['runs']}` by `eval_share.py --from-runs` (each run's `metrics.json` → "
        "`seconds`, as the runner recorded them while the study trained)."
    )


def toyworld(r: dict) -> str:
    rows = []
    for size, stages in r["results"].items():
        for stage, v in stages.items():
            speed = (
                f"{v['speedup_vs_baseline_cpu']:.2f}x / {v['speedup_vs_baseline_wall']:.2f}x"
                if "speedup_vs_baseline_cpu" in v
                else ""
            )
            rows.append([size, stage, f(v["images_per_s_cpu"], 0), f(v["images_per_s_wall"], 0), speed])
    calls = ", ".join(f"{n:,} at {size} px" for size, n in r["images_per_call"].items())
    note = f"One thread, median of {r['repeats']} repeats, {calls} per call"
    note += (
        f"; baseline = {r['baseline']} (the whole-batch renderer the blocked one replaced; same pixels, tested)."
        if r.get("baseline")
        else "."
    )
    return (
        table(rows, ["px", "stage", "images/s (thread CPU time)", "images/s (wall)", "speed-up vs baseline cpu / wall"])
        + "\n\n"
        + note
    )


def pretrain(r: dict) -> str:
    rows = [
        ["pretraining step (render + forward/backward + AdamW)", f(r["ms_per_step"], 0), f(r["scenes_per_s"], 0)],
        ["rendering a batch alone", f(r["render_ms_per_step"], 1), f(r["render_scenes_per_s"], 0)],
    ]
    return (
        table(rows, ["what", "ms/step", "scenes/s"])
        + f"\n\nBatch {r['batch_size']}, {r['method']}. Rendering is {100 * r['render_share_of_step']:.1f}% of a step; "
        f"the full recipe ({r['recipe']['steps']} steps) would take ~{r['full_recipe_minutes_estimate']:.0f} min of loop at this rate."
    )


def targets(step: dict | None, share: dict | None, runs: dict | None = None) -> str:
    rows = []
    for t in (step or {}).get("targets", []):
        rows.append([t["target"], t["value"], t["limit"], "holds" if t["holds"] else "misses"])
    if share and "share" in share:
        s = share["share"]
        rows.append(
            [
                f"evaluation <= 20% of {s['scenario']} ({s['method']}) wall time",
                f"{100 * s['evaluate_share']:.1f}%",
                "20%",
                "holds" if s["holds"] else "misses",
            ]
        )
    if runs:
        worst = max(runs["rows"], key=lambda x: x["median_share"])
        held = sum(x["holds"] for x in runs["rows"])
        rows.append(
            [
                "evaluation <= 20%, every (scenario, method) of the study's runs",
                f"{held} of {len(runs['rows'])} hold; worst {worst['scenario']} {worst['method']} "
                f"{100 * worst['median_share']:.1f}%",
                "20%",
                "holds" if held == len(runs["rows"]) else "misses",
            ]
        )
    return table(rows, ["issue #7 target", "measured", "limit", "status"])


def render() -> str:
    step, share = load("train_step_cpu.json"), load("eval_share_cpu.json")
    tw, pre = load("toyworld_generation.json"), load("pretrain_throughput_cpu.json")
    parts = [
        "### Machines\n\n"
        + machines(
            {
                "train_step_cpu.json": step,
                "peft_step_cpu.json": load("peft_step_cpu.json"),
                "eval_share_cpu.json": share,
                "eval_levers_cpu.json": load("eval_levers_cpu.json"),
                "pretrain_throughput_cpu.json": pre,
                "toyworld_generation.json": tw,
            }
        )
    ]
    runs = load("eval_share_runs.json")
    parts.append("### Targets (CPU)\n\n" + targets(step, share, runs))
    if step:
        parts.append("### Training step, every method (`train_step_cpu.json`)\n\n" + train_step(step))
        parts.append("### Reference style (teacher texts re-encoded every step, fp32)\n\n" + reference_style(step))
    gpu = load("train_step_cuda.json")
    if gpu:
        parts.append("### Training step on GPU (`train_step_cuda.json`)\n\n" + train_step(gpu))
    peft = load("peft_step_cpu.json")
    if peft:
        parts.append("### Parameter-efficient methods against finetune (`peft_step_cpu.json`)\n\n" + peft_step(peft))
    peft_gpu = load("peft_step_cuda.json")
    if peft_gpu:
        parts.append("### Parameter-efficient methods on GPU (`peft_step_cuda.json`)\n\n" + peft_step(peft_gpu))
    if share:
        parts.append("### Zero-shot evaluation (`eval_share_cpu.json`)\n\n" + eval_share(share))
    levers = load("eval_levers_cpu.json")
    if levers:
        parts.append("### Cheaper image tower? (`eval_levers_cpu.json`)\n\n" + eval_levers(levers))
    if runs:
        parts.append("### Evaluation share of every run of the study (`eval_share_runs.json`)\n\n" + run_shares(runs))
    if tw:
        parts.append("### ToyWorld generation (`toyworld_generation.json`)\n\n" + toyworld(tw))
    if pre:
        parts.append("### ToyCLIP pretraining throughput (`pretrain_throughput_cpu.json`)\n\n" + pretrain(pre))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"replace the part of {README.name} between the markers")
    args = p.parse_args(argv)
    text = render()
    if not args.write:
        print(text)
        return
    readme = README.read_text()
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(
        f"{head}{BEGIN}\n<!-- generated by `python benchmarks/report.py --write`; do not edit by hand -->\n\n"
        f"{text}\n{END}{tail}"
    )
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
