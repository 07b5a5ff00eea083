"""Which weights pruning touches, defined once for every architecture.

The scope is the weight matrices of the decoder blocks' attention and MLP/expert projections,
whatever holds them: ``nn.Linear``, GPT-2's ``Conv1D`` (weight stored [in, out]), or the fused 3-D
expert parameters of transformers' mixture-of-experts classes (``gate_up_proj`` [E, 2I, H] and
``down_proj`` [E, H, I], or their transposes). Each matrix is seen as a 2-D [out, in] view sharing
the parameter's storage, so a pruner written for ``nn.Linear`` writes straight into the model.

Never in scope: routers and gates (an MoE's ``mlp.gate``, ``shared_expert_gate``), norms, biases,
embeddings, and everything outside the blocks (``lm_head``). ``BlockScope.left_out`` names each
block parameter left out and why. A block parameter of two or more dimensions that is none of
these is an error (``ModelError``), so nothing in the blocks goes unpruned silently.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from illusion.errors import ModelError

# Why a block parameter is never pruned (the values of BlockScope.left_out).
ROUTER = "router/gate: decides where tokens go, never pruned"
NORM = "norm"
BIAS = "bias"
EMBEDDING = "embedding"
VECTOR = "1-D parameter (a scale or offset, not a projection)"

_ROUTER_WORDS = ("gate", "router")  # a child of an MoE block so named is its router or a gate
# The fused experts' forward as transformers 5 calls it: (hidden_states, top_k_index, top_k_weights), by
# position; some name the second argument otherwise (GPT-OSS: router_indices).
_EXPERT_ARGS = ("hidden_states", "top_k_index")


@dataclass(frozen=True, eq=False)
class Matrix:
    """One in-scope weight matrix. ``weight`` is [out, in] and shares the parameter's storage,
    so it has what the pruners read from an ``nn.Linear``: ``weight`` and ``in_features``."""

    name: str  # "model.layers.0.mlp.up_proj" or "model.layers.0.mlp.experts.down_proj[3]"
    weight: torch.Tensor  # [out, in]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]


@dataclass(frozen=True, eq=False)
class ExpertGroup:
    """A fused experts module: expert e is ``first[e]`` (gate_up or up) then ``second[e]`` (down).

    Its calibration inputs come from its forward's arguments, the tokens the router sent to it:
    ``first[e]`` sees those tokens' hidden states, ``second[e]`` what the expert makes of them
    before its down projection (computed with the module's own gate and activation).
    """

    name: str  # "model.layers.0.mlp.experts"
    module: nn.Module
    first_param: str  # "gate_up_proj", or "up_proj" for experts without a gate
    index_arg: str  # the forward's name for the router's choices [tokens, k], e.g. "top_k_index"
    first: tuple[Matrix, ...]
    second: tuple[Matrix, ...]
    first_bias: torch.Tensor | None  # [E, out] when the experts have biases

    def expert_name(self, e: int) -> str:
        return f"{self.name}[{e}]"

    def routed(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [tokens, H], top_k_index [tokens, k]) from the forward's arguments."""
        names = ("hidden_states", self.index_arg)
        named = {**dict(zip(names, args)), **{k: v for k, v in kwargs.items() if k in names}}
        hidden, index = named["hidden_states"], named[self.index_arg]
        return hidden.reshape(-1, hidden.shape[-1]), index.reshape(-1, index.shape[-1])

    def down_input(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """What expert ``e``'s down projection receives for its tokens ``x`` [tokens, H]."""
        proj = x @ self.first[e].weight.t().to(x.dtype)
        if self.first_bias is not None:
            proj = proj + self.first_bias[e].to(x.dtype)
        if not getattr(self.module, "has_gate", True):
            return self.module.act_fn(proj)
        apply_gate = getattr(self.module, "_apply_gate", None)
        if apply_gate is not None:
            return apply_gate(proj)
        gate, up = proj.chunk(2, dim=-1)
        return self.module.act_fn(gate) * up


@dataclass(frozen=True, eq=False)
class BlockScope:
    """The in-scope matrices of one decoder block, and what in it was left out and why."""

    hooked: dict[str, tuple[nn.Module, Matrix]]  # Linear / Conv1D: its forward input calibrates it
    experts: tuple[ExpertGroup, ...]
    left_out: dict[str, str]  # parameter name -> why it is never pruned

    @property
    def matrices(self) -> list[Matrix]:
        out = [matrix for _module, matrix in self.hooked.values()]
        for group in self.experts:
            out += [*group.first, *group.second]
        return out


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers absent: no model can hold a Conv1D
        return None
    return Conv1D


def _projection(module: nn.Module) -> str | None:
    """``"linear"`` or ``"conv1d"`` for a module whose ``weight`` is a projection, else None."""
    if isinstance(module, nn.Linear):
        return "linear"
    conv1d = _conv1d_class()
    if conv1d is not None and isinstance(module, conv1d):
        return "conv1d"
    return None


def _is_router(name: str, module: nn.Module, parent: nn.Module | None) -> bool:
    """A router or gate of an MoE block: named gate/router (or ``*_gate``) beside its experts, or a
    module whose class says it is a router."""
    if "router" in type(module).__name__.lower():
        return True
    if parent is None or not hasattr(parent, "experts"):
        return False
    leaf = name.rsplit(".", 1)[-1].lower()
    return leaf != "experts" and any(leaf == word or leaf.endswith("_" + word) for word in _ROUTER_WORDS)


def _fused_experts(name: str, module: nn.Module) -> ExpertGroup:
    """The experts of a transformers MoE module (3-D ``gate_up_proj``/``up_proj`` and ``down_proj``)."""
    has_gate = getattr(module, "has_gate", hasattr(module, "gate_up_proj"))
    first_name = "gate_up_proj" if has_gate else "up_proj"
    first, second = getattr(module, first_name, None), getattr(module, "down_proj", None)
    transposed = bool(getattr(module, "is_transposed", False))
    try:
        arguments = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        arguments = []
    shapes_agree = (
        isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)
        and first.dim() == 3 and second.dim() == 3 and first.shape[0] == second.shape[0]
    )
    if shapes_agree:
        first_out = first.shape[2] if transposed else first.shape[1]
        second_in = second.shape[1] if transposed else second.shape[2]
        shapes_agree = first_out == second_in * (2 if has_gate else 1)
    # transformers' experts interface (use_experts_implementation sets has_gate) fixes the argument order
    interface = hasattr(module, "has_gate") and arguments[:1] == ["hidden_states"] and len(arguments) >= 3
    if not shapes_agree or not (interface or tuple(arguments[:2]) == _EXPERT_ARGS):
        shapes = {n: tuple(p.shape) for n, p in module.named_parameters(recurse=False)}
        raise ModelError(
            f"{name} ({type(module).__name__}): expert weights {shapes} in a layout this pruner does not know "
            f"(it knows transformers' fused experts: {first_name} [E, out, in] and down_proj [E, in', out'], or "
            "both transposed, with forward(hidden_states, top_k_index, top_k_weights)); they are in scope and "
            "cannot be left unpruned: upgrade benchmark-illusion or report the architecture"
        )

    def matrices(param_name: str, param: torch.Tensor) -> tuple[Matrix, ...]:
        data = param.detach()
        return tuple(Matrix(f"{name}.{param_name}[{e}]", data[e].t() if transposed else data[e])
                     for e in range(data.shape[0]))

    bias = getattr(module, f"{first_name}_bias", None) if getattr(module, "has_bias", False) else None
    return ExpertGroup(name, module, first_name, arguments[1], matrices(first_name, first),
                       matrices("down_proj", second), None if bias is None else bias.detach())


def block_scope(prefix: str, block: nn.Module) -> BlockScope:
    """Sort every parameter of ``block`` (named under ``prefix``) into the scope or ``left_out``."""
    hooked: dict[str, tuple[nn.Module, Matrix]] = {}
    experts: list[ExpertGroup] = []
    left_out: dict[str, str] = {}
    modules = dict(block.named_modules())
    for name, module in modules.items():
        direct = dict(module.named_parameters(recurse=False))
        if not direct:
            continue
        full = f"{prefix}.{name}" if name else prefix
        parent = modules.get(name.rsplit(".", 1)[0] if "." in name else "") if name else None
        kind = _projection(module)
        if _is_router(name, module, parent):
            left_out.update({f"{full}.{p}": ROUTER for p in direct})
        elif kind is not None:
            weight = module.weight.detach()
            hooked[full] = (module, Matrix(full, weight.t() if kind == "conv1d" else weight))
            left_out.update({f"{full}.{p}": BIAS for p in direct if p != "weight"})
        elif any(p.dim() == 3 for p in direct.values()):
            group = _fused_experts(full, module)
            experts.append(group)
            for p, param in direct.items():
                if p not in (group.first_param, "down_proj"):
                    _leave_out(left_out, f"{full}.{p}", module, param)
        else:
            for p, param in direct.items():
                _leave_out(left_out, f"{full}.{p}", module, param)
    return BlockScope(hooked, tuple(experts), left_out)


def _leave_out(left_out: dict[str, str], full: str, module: nn.Module, param: torch.Tensor) -> None:
    """Record why ``param`` is not pruned; a matrix no pruner handles is an error, not a skip."""
    if isinstance(module, nn.Embedding):
        left_out[full] = EMBEDDING
    elif "norm" in type(module).__name__.lower():
        left_out[full] = NORM
    elif full.endswith("bias"):  # also the experts' [E, out] biases
        left_out[full] = BIAS
    elif param.dim() <= 1:
        left_out[full] = VECTOR
    else:
        raise ModelError(
            f"{full} ({type(module).__name__}, shape {tuple(param.shape)}): a weight in the decoder blocks that "
            "no pruner handles (nn.Linear, Conv1D and transformers' fused experts are handled; routers, norms, "
            "biases and embeddings are left out); it would stay dense while the run reports its sparsity: "
            "upgrade benchmark-illusion or report the architecture"
        )


def holds_scope(block: nn.Module) -> bool:
    """Whether a module holds a projection or fused experts: what makes a ModuleList the blocks."""
    return any(_projection(sub) is not None or any(p.dim() == 3 for p in sub.parameters(recurse=False))
               for sub in block.modules())


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Find the ModuleList of decoder blocks (model.layers, model.decoder.layers, transformer.h...)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    depth = getattr(config, "num_hidden_layers", None)
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and (depth is None or len(mod) == depth)
        and holds_scope(mod[0])
    ]
    outer = [(n, mod) for n, mod in found if not any(n.startswith(o + ".") for o, _ in found)]
    if len(outer) != 1:
        where = ", ".join(n for n, _ in outer) or "none"
        raise ModelError(
            f"{type(model).__name__}: cannot find its decoder blocks (one ModuleList of {depth or 'N'} blocks "
            f"holding nn.Linear, Conv1D or fused expert weights; found: {where}); prune a decoder-only causal LM "
            "such as Llama, Qwen, Mistral, Gemma, Phi-3, OPT, GPT-NeoX, Falcon, GPT-2 or Mixtral"
        )
    return outer[0]


def model_scope(model: nn.Module) -> tuple[str, nn.ModuleList, list[BlockScope]]:
    """The decoder blocks and each one's scope."""
    prefix, blocks = decoder_blocks(model)
    return prefix, blocks, [block_scope(f"{prefix}.{i}", block) for i, block in enumerate(blocks)]
