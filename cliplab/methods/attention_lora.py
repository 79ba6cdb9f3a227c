"""LoRA inside `nn.MultiheadAttention`, computed functionally: the frozen weights are never written.

`nn.MultiheadAttention` reads `in_proj_weight` and `out_proj.weight` directly, so a LoRA on them
cannot be a wrapped `nn.Linear`. peft's `lora.MultiheadAttention` merges the update into the base
weights before each forward and subtracts it after; in float32 that round trip moves the "frozen"
weights by an ulp or so per step (measured: up to 6e-8 after 24 steps of the tiny test model),
so a checkpoint of the LoRA tensors alone no longer rebuilds the trained model bit for bit. Here
the module's class is swapped in place (its parameter names are kept) for a subclass whose forward
passes ``W + ΔW`` to `F.multi_head_attention_forward`; the frozen tensors stay bit-identical.

- `QKVLoRAAttention` (SIT, LifeLong-CLIP `models/clip/lora.py`): one rank-r update of the fused
  [Wq; Wk; Wv] (A: r x d, B: 3d x r) and one of the out-projection, both scaled by α / r.
- `KVLoRAAttention` (CoLeCLIP, `model/pet/lora.py` KVLoRA): rank-r updates of the key and value
  rows only, each with a learnable scale initialised to 1; active only while a task trains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _FunctionalAttention(nn.MultiheadAttention):
    """`nn.MultiheadAttention` whose forward uses `effective_weights()` while `lora_active`."""

    lora_active: bool

    def effective_weights(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, **kwargs):
        if not self.lora_active:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask, **kwargs)
        in_weight, out_weight = self.effective_weights()
        if self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        out, weights = F.multi_head_attention_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            in_weight.to(query.dtype),
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            out_weight.to(query.dtype),
            self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            **kwargs,
        )
        return (out.transpose(0, 1) if self.batch_first else out), weights


def _swap(attn: nn.Module, cls: type, what: str) -> None:
    if type(attn) is not nn.MultiheadAttention:
        raise TypeError(
            f"{what} plugs into nn.MultiheadAttention (open_clip's ViT and text blocks), not {type(attn).__name__}"
        )
    if attn._qkv_same_embed_dim is False:
        raise TypeError(f"{what} needs the fused in-projection (equal query/key/value widths)")
    attn.__class__ = cls


class QKVLoRAAttention(_FunctionalAttention):
    """W_in + (α/r)·B_in·A_in on the fused q/k/v projection and W_out + (α/r)·B_out·A_out."""

    lora_scaling: float

    def effective_weights(self) -> tuple[Tensor, Tensor]:
        s = self.lora_scaling
        return (
            self.in_proj_weight + s * (self.lora_in_B @ self.lora_in_A),
            self.out_proj.weight + s * (self.lora_out_B @ self.lora_out_A),
        )


def add_qkv_lora(attn: nn.Module, rank: int, alpha: float, init_b: str = "zero") -> None:
    """A: Kaiming-uniform (a=√5), B: zero (LoRA), or ``init_b="xavier"``: the in-projection's A and B
    Xavier-uniform (SIT's released code, `lora.py` 449-452: the model moves before any training)."""
    _swap(attn, QKVLoRAAttention, "LoRA")
    d, device = attn.embed_dim, attn.in_proj_weight.device
    attn.lora_active, attn.lora_scaling = True, float(alpha) / rank
    attn.lora_in_A = nn.Parameter(torch.empty(rank, d, device=device))
    attn.lora_in_B = nn.Parameter(torch.zeros(3 * d, rank, device=device))
    attn.lora_out_A = nn.Parameter(torch.empty(rank, d, device=device))
    attn.lora_out_B = nn.Parameter(torch.zeros(d, rank, device=device))
    nn.init.kaiming_uniform_(attn.lora_in_A, a=math.sqrt(5))
    nn.init.kaiming_uniform_(attn.lora_out_A, a=math.sqrt(5))
    if init_b == "xavier":
        nn.init.xavier_uniform_(attn.lora_in_A)
        nn.init.xavier_uniform_(attn.lora_in_B)


class KVLoRAAttention(_FunctionalAttention):
    """W_qkv + [0; s_k·B_k·A_k; s_v·B_v·A_v] (s_k, s_v learnable), the out-projection untouched."""

    def effective_weights(self) -> tuple[Tensor, Tensor]:
        d = self.embed_dim
        delta = torch.cat(
            [
                self.lora_A_k.new_zeros(d, d),
                self.lora_scale_k * (self.lora_B_k @ self.lora_A_k),
                self.lora_scale_v * (self.lora_B_v @ self.lora_A_v),
            ]
        )
        return self.in_proj_weight + delta, self.out_proj.weight

    def reset_kv_lora(self) -> None:
        """A Kaiming-uniform (a=√5), B = 0, scales 1: the frozen attention until trained."""
        with torch.no_grad():
            for a, b in ((self.lora_A_k, self.lora_B_k), (self.lora_A_v, self.lora_B_v)):
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                b.zero_()
            self.lora_scale_k.fill_(1.0)
            self.lora_scale_v.fill_(1.0)


def add_kv_lora(attn: nn.Module, rank: int) -> None:
    _swap(attn, KVLoRAAttention, "CoLeCLIP's text LoRA")
    d, device = attn.embed_dim, attn.in_proj_weight.device
    attn.lora_active = False
    for name in ("k", "v"):
        setattr(attn, f"lora_A_{name}", nn.Parameter(torch.zeros(rank, d, device=device)))
        setattr(attn, f"lora_B_{name}", nn.Parameter(torch.zeros(d, rank, device=device)))
        setattr(attn, f"lora_scale_{name}", nn.Parameter(torch.ones((), device=device)))
    attn.reset_kv_lora()


__all__ = ["KVLoRAAttention", "QKVLoRAAttention", "add_kv_lora", "add_qkv_lora"]
