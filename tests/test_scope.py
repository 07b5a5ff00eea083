"""Tests for illusion.scope and the MoE calibration in illusion.prune: what is pruned, what is left
out and why, and which tokens calibrate each expert. Tiny random models built here; no network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from illusion.errors import ModelError
from illusion.prune import parse_recipe, prune_model
from illusion.scope import BIAS, NORM, ROUTER, VECTOR, model_scope

transformers = pytest.importorskip("transformers")


def tiny(family: str, **extra) -> nn.Module:
    config = transformers.AutoConfig.for_model(
        family, vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=64, **extra)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def tokens(samples: int = 8, seqlen: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(128, (samples, seqlen), generator=torch.Generator().manual_seed(seed))


def test_qwen2_moe_scope_has_experts_and_shared_expert_but_no_gates():
    model = tiny("qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                 shared_expert_intermediate_size=64)
    _prefix, _blocks, scopes = model_scope(model)
    scope = scopes[0]
    assert sorted(scope.hooked) == sorted(f"model.layers.0.{n}" for n in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj"))
    [group] = scope.experts
    assert [m.name for m in group.first] == [f"model.layers.0.mlp.experts.gate_up_proj[{e}]" for e in range(4)]
    assert all(m.weight.shape == (64, 64) for m in group.first)  # [2I, H]
    assert all(m.weight.shape == (64, 32) for m in group.second)  # [H, I]
    assert scope.left_out["model.layers.0.mlp.gate.weight"] == ROUTER
    assert scope.left_out["model.layers.0.mlp.shared_expert_gate.weight"] == ROUTER
    assert scope.left_out["model.layers.0.self_attn.q_proj.bias"] == BIAS
    assert scope.left_out["model.layers.0.input_layernorm.weight"] == NORM
    # every parameter of the block is either a matrix's storage or left out with a reason
    in_scope = {"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"} | {
        f"{name}.weight" for name in scope.hooked}
    names = {f"model.layers.0.{n}" for n, _ in model.model.layers[0].named_parameters()}
    assert names == in_scope | set(scope.left_out) and not in_scope & set(scope.left_out)


def test_matrices_share_the_parameters_storage():
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=64, n_layer=1, n_head=4, vocab_size=128,
                                                                n_positions=64))
    _p, _b, [scope] = model_scope(gpt2)
    _module, c_fc = scope.hooked["transformer.h.0.mlp.c_fc"]
    assert c_fc.weight.shape == (256, 64)  # [out, in] although Conv1D stores [in, out]
    c_fc.weight[3, 5] = 7.0
    assert gpt2.transformer.h[0].mlp.c_fc.weight[5, 3] == 7.0
    mixtral = tiny("mixtral", num_local_experts=4, num_experts_per_tok=2)
    _p, _b, scopes = model_scope(mixtral)
    scopes[1].experts[0].second[2].weight[0, 1] = 5.0
    assert mixtral.model.layers[1].mlp.experts.down_proj[2, 0, 1] == 5.0


def test_a_block_weight_no_pruner_handles_is_an_error_not_a_skip():
    model = tiny("llama")
    model.model.layers[1].mlp.register_parameter("extra", nn.Parameter(torch.ones(8, 8)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match=r"model\.layers\.1\.mlp\.extra \(LlamaMLP, shape \(8, 8\)\): a weight in "
                                         r"the decoder blocks that no pruner handles"):
        prune_model(model, parse_recipe("magnitude:0.5"), None)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-pruned


def test_experts_in_an_unknown_layout_are_an_error():
    class Experts(nn.Module):  # 3-D weights, but not transformers' fused-experts forward
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 8, 64))

        def forward(self, x):
            return x

    model = tiny("llama")
    model.model.layers[0].mlp.experts = Experts()
    with pytest.raises(ModelError, match=r"model\.layers\.0\.mlp\.experts \(Experts\): expert weights .* layout"):
        model_scope(model)


def test_a_one_dimensional_parameter_is_left_out_with_its_reason():
    model = tiny("llama")
    model.model.layers[0].self_attn.register_parameter("scale", nn.Parameter(torch.ones(4)))
    _p, _b, scopes = model_scope(model)
    assert scopes[0].left_out["model.layers.0.self_attn.scale"] == VECTOR


# ----------------------------------------------------------------------------- MoE calibration


def routed_inputs(model: nn.Module, calibration: torch.Tensor, layer: int = 0) -> dict[int, torch.Tensor]:
    """Expert -> the hidden states the router sent it in ``layer``, read off the model's own forward
    (key -1: every token's hidden state)."""
    moe = model.model.layers[layer].mlp
    seen: dict[str, torch.Tensor] = {}
    handles = [moe.gate.register_forward_hook(lambda _m, _i, out: seen.__setitem__("index", out[2])),
               moe.register_forward_hook(lambda _m, inp, _o: seen.__setitem__("hidden", inp[0]))]
    with torch.no_grad():
        model(calibration, use_cache=False)
    for handle in handles:
        handle.remove()
    hidden, index = seen["hidden"].reshape(-1, seen["hidden"].shape[-1]), seen["index"]
    return {-1: hidden, **{e: hidden[(index == e).any(-1)] for e in range(moe.experts.num_experts)}}


def wanda_mask(weight: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Wanda's rule written out: the half of each row with the lowest |W_ij| * ||X_j||."""
    score = weight.abs() * inputs.square().sum(0).sqrt()
    lowest = torch.sort(score, dim=1, stable=True)[1][:, : weight.shape[1] // 2]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, lowest, True)


def test_each_experts_wanda_statistics_come_from_the_tokens_its_router_sends_it():
    dense = tiny("mixtral", num_local_experts=4, num_experts_per_tok=2)
    calibration = tokens(samples=8, seqlen=16)  # one chunk: one dense pass of block 0
    routed = routed_inputs(dense, calibration)
    all_tokens = routed.pop(-1)
    experts = dense.model.layers[0].mlp.experts
    pruned = tiny("mixtral", num_local_experts=4, num_experts_per_tok=2)
    stats = prune_model(pruned, parse_recipe("wanda:0.5"), calibration)
    assert stats.experts == 8 and stats.uncalibrated == ()
    after = pruned.model.layers[0].mlp.experts
    for e, x in routed.items():
        assert 0 < len(x) < calibration.numel()  # the router chose: a share of the tokens, not all
        gate_up = experts.gate_up_proj[e].detach()
        assert torch.equal(after.gate_up_proj[e] == 0, wanda_mask(gate_up, x)), e
        gate, up = (x @ gate_up.t()).chunk(2, dim=-1)
        hidden = experts.act_fn(gate) * up  # what expert e's down_proj receives
        assert torch.equal(after.down_proj[e] == 0, wanda_mask(experts.down_proj[e].detach(), hidden)), e
    # with every token instead of the routed ones the mask would differ
    assert not torch.equal(after.gate_up_proj[0] == 0, wanda_mask(experts.gate_up_proj[0].detach(), all_tokens))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_an_expert_no_token_reaches_falls_back_to_magnitude_and_is_counted(method):
    model = tiny("mixtral", num_local_experts=4, num_experts_per_tok=2)
    for layer in model.model.layers:
        layer.mlp.gate.weight.data.zero_()  # equal logits: every token goes to the same two experts
    calibration = tokens()
    unused = [e for e, x in routed_inputs(model, calibration).items() if e >= 0 and len(x) == 0]
    assert len(unused) == 2
    before = [w.detach().clone() for w in model.model.layers[0].mlp.experts.down_proj]
    stats = prune_model(model, parse_recipe(f"{method}:0.5"), calibration)
    assert set(stats.uncalibrated) == {f"model.layers.{i}.mlp.experts[{e}]" for i in range(2) for e in unused}
    after = model.model.layers[0].mlp.experts.down_proj
    for e in unused:  # magnitude's mask: the smallest |W| of each row (Wanda with equal input norms)
        assert torch.equal(after[e] == 0, wanda_mask(before[e], torch.ones(1, 64)))
    assert stats.total == 0.5
