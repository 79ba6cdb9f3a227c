"""A mixture of adapter experts with noisy top-k routers: one MoE-Adapters layer (Yu et al., CVPR 2024).

Follows the authors' code (`mtil/clip/model.py`, JiazuoYu/MoE-Adapters4CL at 4572d97), see
/work/notes/moe_adapters.md §1–3:

- E experts (`cliplab.methods.adapters.Adapter`), each applied to every token of a sample;
- R routers, each a pair W_g, W_n ∈ R^{d×E} without bias, zero-initialised (lines 334–338);
- router input r = token 0 of the post-attention residual, no LayerNorm (line 474): the CLS token
  in the image tower, the start-of-text token in the text tower;
- noisy top-k gating after Shazeer et al. (lines 429–460): logits = r·W_g + ε ⊙ (softplus(r·W_n) + 0.01),
  ε ~ N(0, 1) in training only; softmax over the top k logits, scattered into E gates;
- per-sample routing: all tokens of a sample go to the same k experts with the same weights;
- no load-balancing term (the code computes one and discards it, lines 481–483);
- usage counts: after each forward in training, usage[router, e] += #samples with g_e > 0
  (lines 486–492), per block and per tower; the method freezes the most used experts after a task.

The route (`RouteState`) picks the router; the frozen route (-1) switches the layer off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliplab.methods.adapters import FROZEN_ROUTE, Adapter, RouteState, hold


class MixtureOfAdapters(nn.Module):
    """E adapter experts, R noisy top-k routers, usage counts and a frozen-expert mask."""

    def __init__(
        self,
        width: int,
        n_experts: int,
        n_routers: int,
        routes: RouteState,
        top_k: int = 2,
        bottleneck: int = 64,
        scale: float = 0.1,
        dropout: float = 0.1,
        noise_epsilon: float = 0.01,
        noise_at_eval: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be between 1 and n_experts ({n_experts}), got {top_k}")
        self.top_k, self.noise_epsilon, self.noise_at_eval = int(top_k), float(noise_epsilon), bool(noise_at_eval)
        self.experts = nn.ModuleList(Adapter(width, bottleneck, scale, dropout) for _ in range(n_experts))
        self.gate = nn.ParameterList(nn.Parameter(torch.zeros(width, n_experts)) for _ in range(n_routers))
        self.noise = nn.ParameterList(nn.Parameter(torch.zeros(width, n_experts)) for _ in range(n_routers))
        self.register_buffer("frozen", torch.zeros(n_experts, dtype=torch.bool))
        self.register_buffer("usage", torch.zeros(n_routers, n_experts))
        self.dispatch = "sparse"  # "dense" computes every expert on every sample (the same numbers; tests)
        self._eval_draws = 0  # noise draws since the last switch to eval mode (noise_at_eval)
        hold(self, "routes", routes)

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def train(self, mode: bool = True) -> MixtureOfAdapters:
        if not mode:  # the noise of `noise_at_eval` restarts at every evaluation: deterministic numbers
            self._eval_draws = 0
        return super().train(mode)

    def _noise(self, like: Tensor) -> Tensor:
        if self.training:
            return torch.randn_like(like)
        generator = torch.Generator(device=like.device).manual_seed(self._eval_draws)
        self._eval_draws += 1
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def gates(self, r: Tensor, router: int) -> Tensor:
        """(B, E) gates of router `router` for router inputs r (B, d): k non-zeros per row, summing to 1."""
        clean = r @ self.gate[router].to(r.dtype)
        if self.training or self.noise_at_eval:
            std = F.softplus(r @ self.noise[router].to(r.dtype)) + self.noise_epsilon
            logits = clean + self._noise(clean) * std
        else:
            logits = clean
        top, index = logits.topk(self.top_k, dim=1)
        return torch.zeros_like(logits).scatter(1, index, torch.softmax(top, dim=1))

    def forward(self, x: Tensor) -> Tensor | None:
        route = self.routes.current()
        if route == FROZEN_ROUTE:
            return None
        if not 0 <= route < len(self.gate):
            raise IndexError(f"route {route} does not exist: this layer has {len(self.gate)} router(s)")
        gates = self.gates(x[:, 0], route)  # open_clip 3.x blocks are batch-first: token 0 is x[:, 0]
        if self.training:
            with torch.no_grad():
                self.usage[route] += (gates > 0).sum(0).to(self.usage.dtype)
        return self._dense(x, gates) if self.dispatch == "dense" else self._sparse(x, gates)

    def _sparse(self, x: Tensor, gates: Tensor) -> Tensor:
        """Each expert runs on the samples that selected it (the authors' SparseDispatcher)."""
        out = torch.zeros_like(x)
        chosen = gates > 0
        for e in torch.nonzero(chosen.any(0)).flatten().tolist():
            rows = torch.nonzero(chosen[:, e]).flatten()
            y = self.experts[e](x[rows]) * gates[rows, e].to(x.dtype)[:, None, None]
            out = out.index_add(0, rows, y)
        return out

    def _dense(self, x: Tensor, gates: Tensor) -> Tensor:
        outputs = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, L, d)
        return (gates.to(x.dtype)[:, :, None, None] * outputs).sum(1)

    def freeze_most_used(self, router: int, count: int) -> list[int]:
        """Freeze the `count` experts `router` selected most often (ties: torch.topk's order);
        returns them. Frozen experts stay selectable; only their weights no longer change."""
        if count <= 0:
            return []
        chosen = self.usage[router].topk(min(count, self.n_experts)).indices.tolist()
        self.frozen[chosen] = True
        return chosen

    def trainable(self, router: int) -> list[nn.Parameter]:
        """Router `router`'s W_g and W_n and every expert not frozen."""
        params = [self.gate[router], self.noise[router]]
        for expert, frozen in zip(self.experts, self.frozen.tolist()):
            if not frozen:
                params += list(expert.parameters())
        return params


__all__ = ["MixtureOfAdapters"]
