"""The modules of the parameter-efficient methods on a tiny real open_clip CLIP: adapters, experts
with noisy top-k routers, usage counts and freezing, LoRA through peft, parameter counts.

What each test checks is a property of the authors' code (JiazuoYu/MoE-Adapters4CL, read in
/work/notes/moe_adapters.md) or of peft on open_clip, with real numbers.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from test_methods import CONTEXT, tiny_clip

from cliplab.methods import get_method
from cliplab.methods.adapters import FROZEN_ROUTE, Adapter, add_branch
from cliplab.methods.experts import MixtureOfAdapters
from cliplab.methods.moe_adapters import moe_layers

torch.set_num_threads(1)


class _Spec:
    """What `model_extension` reads of a scenario."""

    def __init__(self, n_tasks: int, reference: bool = False) -> None:
        self.tasks = [None] * n_tasks
        self.reference = object() if reference else None


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 32, 32, generator=g)
    tokens = open_clip.SimpleTokenizer(context_length=CONTEXT)(["a red circle", "a blue square", "a dax", "a wug"])
    return images, tokens


def _encode(model, images, tokens):
    model.eval()
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def _extended(method: str, n_tasks: int = 2, **options):
    model = tiny_clip()
    m = get_method(method, options)
    m.extend_model(model, m.model_extension(_Spec(n_tasks)))
    return model, m


def _randomise(model) -> None:
    """Give every added module non-zero weights (as training would)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "branches" in name or "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(
    "method, options",
    [
        ("moe_adapters", {"n_experts": 4, "bottleneck": 8, "ddas": False}),
        ("adapter", {"bottleneck": 8}),
        ("lora", {"rank": 4}),
    ],
)
def test_added_modules_leave_the_pretrained_outputs_bit_identical_until_trained(method, options):
    base = tiny_clip()
    images, tokens = _inputs()
    expected = _encode(base, images, tokens)
    model, _ = _extended(method, **options)
    got = _encode(model, images, tokens)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    _randomise(model)
    moved = _encode(model, images, tokens)
    assert (moved[0] - expected[0]).abs().max() > 1e-3 and (moved[1] - expected[1]).abs().max() > 1e-3
    if method == "moe_adapters":  # the frozen route bypasses every expert: pretrained CLIP, bit for bit
        with model.route_state.use(FROZEN_ROUTE):
            frozen = _encode(model, images, tokens)
        assert torch.equal(frozen[0], expected[0]) and torch.equal(frozen[1], expected[1])


def test_adapter_is_the_authors_expert():
    adapter = Adapter(768, 64, scale=0.1, dropout=0.1)
    assert sum(p.numel() for p in adapter.parameters()) == 129 * 768 + 64 == Adapter.parameter_count(768, 64)
    assert (
        adapter.up.weight.abs().sum() == 0 and adapter.up.bias.abs().sum() == 0 and adapter.down.bias.abs().sum() == 0
    )
    assert adapter.down.weight.abs().sum() > 0
    adapter.eval()
    with torch.no_grad():
        adapter.up.bias.fill_(1.0)  # the scale multiplies the bias too
        assert torch.allclose(adapter(torch.zeros(2, 768)), torch.full((2, 768), 0.1))


def _layer(n_experts=6, n_routers=2, **kw) -> MixtureOfAdapters:
    from cliplab.methods.adapters import RouteState

    torch.manual_seed(0)
    layer = MixtureOfAdapters(16, n_experts, n_routers, RouteState(0), bottleneck=4, dropout=0.0, **kw)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.5)
    return layer


def test_noisy_top_k_gates_have_k_nonzeros_summing_to_one_and_no_noise_in_eval():
    layer = _layer()
    r = torch.randn(32, 16)
    layer.eval()
    gates = layer.gates(r, 1)
    assert ((gates > 0).sum(1) == 2).all() and torch.allclose(gates.sum(1), torch.ones(32))
    assert torch.equal(gates, layer.gates(r, 1))  # eval: clean logits, deterministic
    top = (r @ layer.gate[1]).topk(2, dim=1).indices.sort(1).values  # the experts of the clean top-2 logits
    assert torch.equal(torch.nonzero(gates)[:, 1].view(32, 2), top)
    layer.train()
    assert not torch.equal(layer.gates(r, 1), layer.gates(r, 1))  # training: noise ε ⊙ softplus(r·W_n) + 0.01


def test_zero_initialised_router_noise_has_the_authors_std():
    """At init W_g = W_n = 0: logits = ε · (softplus(0) + 0.01) = 0.703 ε, so every new router starts at random."""
    from cliplab.methods.adapters import RouteState

    layer = MixtureOfAdapters(16, 8, 1, RouteState(0), top_k=8)  # top_k = E: a softmax over every logit
    layer.train()
    noise = torch.randn(4000, 8, generator=torch.Generator().manual_seed(1))
    layer._noise = lambda like: noise
    gates = layer.gates(torch.randn(4000, 16), 0)
    assert torch.allclose(gates, torch.softmax(0.70315 * noise, 1), atol=1e-5)
    layer.eval()  # no noise: all logits 0, the first k experts by torch.topk's order, equal weights
    assert torch.allclose(layer.gates(torch.randn(3, 16), 0), torch.full((3, 8), 1 / 8))


def test_sparse_dispatch_equals_dense_and_routing_is_per_sample():
    layer = _layer(n_experts=5)
    layer.eval()
    x = torch.randn(7, 9, 16)
    sparse = layer(x)
    layer.dispatch = "dense"
    dense = layer(x)
    assert torch.allclose(sparse, dense, atol=1e-6)
    # per sample: a sample's output is its gates' mixture of the experts applied to all its tokens
    gates = layer.gates(x[:, 0], 0)
    manual = sum(gates[3, e] * layer.experts[e](x[3]) for e in range(5))
    assert torch.allclose(sparse[3], manual, atol=1e-6)


def test_usage_counts_k_per_sample_in_training_only():
    model, _ = _extended("moe_adapters", n_experts=4, bottleneck=8, ddas=False)
    images, tokens = _inputs()
    model.route_state.active = 1
    model.eval()
    with torch.no_grad():
        model.encode_image(images), model.encode_text(tokens)
    assert all(layer.usage.sum() == 0 for _, _, layer in moe_layers(model))
    model.train()
    model.encode_image(images)
    model.encode_text(tokens)
    for tower, _, layer in moe_layers(model):
        n = len(images) if tower == "image" else len(tokens)
        assert layer.usage[1].sum() == 2 * n and layer.usage[0].sum() == 0  # k = 2 per sample, router 1 only


def test_text_routes_ignore_the_prompt_at_test_time():
    """The text router reads the start-of-text token, identical for every prompt under the causal mask."""
    model, _ = _extended("moe_adapters", n_experts=6, bottleneck=8, ddas=False)
    _randomise(model)
    images, tokens = _inputs()
    seen = []
    for _, _, layer in moe_layers(model):
        layer.register_forward_hook(lambda mod, args, out: seen.append((mod, mod.gates(args[0][:, 0], 0))))
    _encode(model, images, tokens)
    text_gates = [g for mod, g in seen if mod in {layer for t, _, layer in moe_layers(model) if t == "text"}]
    image_gates = [g for mod, g in seen if mod not in {layer for t, _, layer in moe_layers(model) if t == "text"}]
    assert text_gates and all(torch.allclose(g, g[:1].expand_as(g), atol=1e-5) for g in text_gates)
    assert any(not torch.allclose(g, g[:1].expand_as(g), atol=1e-3) for g in image_gates)  # images do differ


def test_freezing_the_most_used_experts_keeps_them_selectable_but_untrained():
    layer = _layer(n_experts=6, n_routers=2)
    layer.usage[0] = torch.tensor([5.0, 1.0, 9.0, 0.0, 3.0, 0.0])
    assert sorted(layer.freeze_most_used(0, 2)) == [0, 2]
    trainable = {id(p) for p in layer.trainable(1)}
    assert all(id(p) not in trainable for e in (0, 2) for p in layer.experts[e].parameters())
    assert id(layer.gate[1]) in trainable and id(layer.gate[0]) not in trainable
    layer.usage[1] = torch.tensor([9.0, 8.0, 0.0, 0.0, 0.0, 0.0])
    layer.freeze_most_used(1, 2)  # the union grows by at most 2 (expert 0 was frozen already)
    assert layer.frozen.tolist() == [True, True, True, False, False, False]
    layer.eval()  # frozen experts are still chosen by the routers
    with torch.no_grad():
        layer.gate[0].zero_()
        layer.gate[0][:, 0] = 10.0
    assert (layer.gates(torch.ones(3, 16), 0)[:, 0] > 0).all()


def test_lora_through_peft_reaches_attention_and_mlp_and_only_it_trains():
    model, method = _extended("lora", rank=4, alpha=8.0)
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    # per block: attn (in_proj: A, B; out_proj: A, B), c_fc (A, B), c_proj (A, B); 2 + 2 blocks
    assert len(names) == 8 * 4
    assert any("attn.lora_A" in n for n in names) and any("out_proj.lora_A" in n for n in names)
    assert any("mlp.c_fc.lora_A" in n for n in names) and any(n.startswith("visual.") for n in names)
    _randomise(model)
    model.train()
    model.requires_grad_(False)

    class Ctx:
        pass

    ctx = Ctx()
    ctx.model = model
    params = method.trainable_parameters(ctx)
    for p in params:
        p.requires_grad_(True)
    images, tokens = _inputs()
    (model.encode_image(images).sum() + model.encode_text(tokens).sum()).backward()
    assert len(params) == 32 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_lora_rejects_unknown_targets():
    with pytest.raises(ValueError, match=r"targets must name some of \['attn', 'mlp'\]"):
        get_method("lora", {"targets": "attn,qkv"})


def test_moe_options_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="DDAS chooses between per-task routers"):
        get_method("moe_adapters", {"router": "shared"})
    with pytest.raises(ValueError, match="top_k must be between 1 and n_experts"):
        get_method("moe_adapters", {"n_experts": 2, "top_k": 3})
    with pytest.raises(ValueError, match="alexnet_weights"):
        model = tiny_clip()
        method = get_method("moe_adapters", {"ddas_features": "alexnet"})
        method.extend_model(model, method.model_extension(_Spec(2)))


def test_adapters_refuse_blocks_they_cannot_plug_into():
    with pytest.raises(TypeError, match="ResidualAttentionBlock"):
        add_branch(torch.nn.Linear(2, 2), "adapter", torch.nn.Identity())


def test_parameter_counts_of_vit_b16_match_the_authors_code():
    """51,059,712 (MTIL: 22 experts, 11 routers) and 4,027,392 (CIL: 2 experts, 1 router) on ViT-B/16."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16")
    for options, n_tasks, expected in (
        ({"n_experts": 22, "ddas": False}, 11, 51_059_712),
        ({"n_experts": 2, "router": "shared", "freeze_top": 0, "ddas": False}, 10, 4_027_392),
    ):
        extended = _fresh_blocks(model)
        before = sum(p.numel() for p in extended.parameters())
        method = get_method("moe_adapters", options)
        layout = method.model_extension(_Spec(n_tasks))
        method.extend_model(extended, layout)
        added = sum(p.numel() for p in extended.parameters()) - before
        e, r = options["n_experts"], layout["n_routers"]
        experts = 12 * e * (Adapter.parameter_count(768, 64) + Adapter.parameter_count(512, 64))  # 129d + 64 each
        routers = 12 * r * (2 * 768 * e + 2 * 512 * e)  # W_g and W_n per router and block
        assert added == experts + routers == expected


def _fresh_blocks(model):
    """The model with its blocks restored to plain open_clip blocks (the test reuses one ViT-B/16)."""
    from open_clip.transformer import ResidualAttentionBlock

    for tower in (model.visual.transformer, model.transformer):
        for block in tower.resblocks:
            if hasattr(block, "branches"):
                del block.branches
                block.__class__ = ResidualAttentionBlock
    if hasattr(model, "route_state"):
        del model.route_state
    return model
