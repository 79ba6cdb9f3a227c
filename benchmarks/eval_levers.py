#!/usr/bin/env python
"""What two ways of making evaluation's image tower cheaper would buy, and what they would cost.

Why: evaluation misses its <= 20% share on the cheapest runs (`eval_share.py`), bound by the
towers' forward passes. Two levers keep the model and the data: compiling the tower
(`torch.compile`, inductor) and running it under bf16 autocast. This measures both against the
fp32 eager tower cliplab evaluates with, on the shipped ToyCLIP and ToyWorld probe images:

- images/s of each (median of `--repeats` timed passes over `--images` images, batch 256, the
  three alternated pass by pass);
- for `torch.compile`: the first call, which compiles (cold inductor cache; per process and per
  new batch shape: 1,000 images give batches of 256 and 232);
- how far each moves the image embeddings from fp32 eager (max abs difference; smallest cosine
  between normalised embeddings), i.e. whether evaluation numbers could change.

Not part of `make bench` (compiling takes about half a minute):

    python benchmarks/eval_levers.py
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# A cold inductor cache, as a user's first run meets it (a warm one would hide the compile time).
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cliplab-inductor-")
atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cliplab.data import TensorImageDataset  # noqa: E402
from cliplab.toyworld.tasks import zero_shot_tasks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, timed, write_json  # noqa: E402
from eval_share import interleaved_s, toyclip  # noqa: E402
from report import eval_levers as levers_table  # noqa: E402


def probe_batches(bundle, n: int, batch_size: int) -> list[torch.Tensor]:
    """`n` held-out ToyWorld probe images through the eval transform, in evaluation batches."""
    task = zero_shot_tasks(seed=0, n=n)["shape"]
    data = TensorImageDataset(task.images, task.labels, task.classnames, ["{}"], transform=bundle.eval_transform)
    return list(torch.stack([data[i][0] for i in range(len(data))]).split(batch_size))


def encode_all(encode, batches: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encode(b).float() for b in batches])


def bf16_encoder(model):
    def encode(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode_image(x)

    return encode


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    cos = (F.normalize(reference, dim=-1) * F.normalize(other, dim=-1)).sum(-1)
    return {"max_abs_diff": float((reference - other).abs().max()), "min_cosine": float(cos.min())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="a last, smaller batch as in evaluation (a second shape)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the other CPU benchmarks)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    bundle = toyclip(torch.device("cpu"))
    model = bundle.model.eval()
    batches = probe_batches(bundle, args.images, args.batch_size)
    result: dict[str, Any] = {
        "benchmark": "eval_levers",
        "machine": machine_info(torch.device("cpu")),
        "images": args.images,
        "batch_size": args.batch_size,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    reference = encode_all(model.encode_image, batches)
    compiled = torch.compile(model.encode_image)
    compile_s = timed(lambda: encode_all(compiled, batches))  # first call compiles (every batch shape)
    encoders = {
        "fp32 eager (cliplab)": model.encode_image,
        "torch.compile (inductor)": compiled,
        "bf16 autocast": bf16_encoder(model),
    }
    fns = {name: (lambda encode=encode: encode_all(encode, batches)) for name, encode in encoders.items()}
    times = interleaved_s(fns, args.repeats, lambda: None)  # alternated call by call: load hits all alike
    rows = {
        name: {"images_per_s": args.images / times[name]["median"], **compare(reference, fn())}
        for name, fn in fns.items()
    }
    rows["torch.compile (inductor)"]["first_call_s"] = compile_s
    result["levers"] = rows
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    print(levers_table(result))
    write_json(RESULTS / "eval_levers_cpu.json", result)


if __name__ == "__main__":
    main()
