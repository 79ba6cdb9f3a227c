"""Multi-process training through `torchrun`: DistributedDataParallel over the student forward.

Each rank takes a disjoint share of every global batch (the same step-addressable schedule), the
student's single forward per step is DDP-wrapped so gradients are averaged across ranks, and only
rank 0 evaluates and writes results. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def local_device(device: torch.device) -> torch.device:
    """On CUDA, each rank uses the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def wrap(student: nn.Module, find_unused_parameters: bool = False, broadcast_buffers: bool = True) -> nn.Module:
    """DDP-wrap the student when running distributed (identity otherwise).

    `find_unused_parameters`: some trained parameters may get no gradient in a step (top-k
    experts); `broadcast_buffers=False` keeps each rank's buffers (e.g. per-rank usage counts that
    the method all-reduces itself) instead of overwriting them with rank 0's at every forward.
    """
    if not is_distributed():
        return student
    device_ids = [torch.cuda.current_device()] if next(student.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(
        student,
        device_ids=device_ids,
        find_unused_parameters=find_unused_parameters,
        broadcast_buffers=broadcast_buffers,
    )


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_model(model: nn.Module) -> None:
    """Make every rank hold rank 0's weights (after rank 0 changed them outside the loop)."""
    if is_distributed():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
