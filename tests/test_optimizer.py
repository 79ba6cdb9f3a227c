"""The training loop's AdamW: fused by default, the same update as torch's per-tensor loop."""

from __future__ import annotations

import pytest
import torch

from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.optim import adamw


def _trained_copy(impl: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    optimizer = adamw(list(net.parameters()), lr=1e-2, weight_decay=0.1, impl=impl)
    data = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(10):
        optimizer.zero_grad()
        net(data).pow(2).mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


def test_fused_is_the_default_and_is_used_on_cpu():
    optimizer = adamw([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert optimizer.defaults["fused"] is True


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_every_kernel_gives_the_per_tensor_loop_update(impl):
    for ours, reference in zip(_trained_copy(impl), _trained_copy("for_loop")):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_unknown_kernel_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="optimizer_impl must be one of"):
        apply_overrides(TrainConfig(), {"optimizer_impl": "sgd"})
