"""Prune the weight matrices of a causal LM's decoder blocks: magnitude, Wanda or SparseGPT.

Which matrices (the scope: attention and MLP/expert projections, whatever module holds them) is
defined once, in ``illusion.scope``; every one of them is pruned and verified, or the run fails.

Same shape as the reference implementations (locuslab/wanda ``lib/prune.py``, IST-DASLab/sparsegpt
``sparsegpt.py``): capture the first block's inputs, then for each block hook its linears and
accumulate statistics (``add_batch``), prune, free, and re-run the block on the pruned weights to
feed the next one. So each block is calibrated on what the already-pruned blocks produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, get_args

import torch
from torch import nn

from illusion.checkpoint import MARKER_VERSION, inspect_output, marker_name, write_checkpoint
from illusion.errors import ConfigError, ModelError, RecipeError
from illusion.paths import fixtures_dir
from illusion.scope import BlockScope, ExpertGroup, Matrix, model_scope

Method = Literal["magnitude", "wanda", "sparsegpt"]
METHODS: tuple[str, ...] = get_args(Method)

_VALID_FORMS = (
    "valid forms: METHOD:SPARSITY (e.g. wanda:0.5) or METHOD:N:M (e.g. sparsegpt:2:4) "
    f"with METHOD in {', '.join(METHODS)}"
)
# Sequences per block forward. Fixed, not an option: it bounds activation memory, and keeping it
# constant keeps the float rounding of the statistics (hence the masks) identical across runs.
_CHUNK = 8
_SPARSEGPT_BLOCKSIZE = 128  # columns per lazy-update block, as in the reference
_SPARSEGPT_PERCDAMP = 0.01  # dampening: this fraction of mean(diag(H)) is added to the diagonal


# ----------------------------------------------------------------------------- recipes


def _recipe_problem(method: object, sparsity: object, n: object, m: object) -> str | None:
    if method not in METHODS:
        return f"unknown method {method!r}"
    if sparsity is not None:
        if n is not None or m is not None:
            return "give either a sparsity or N:M, not both"
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
            return f"sparsity must be a number, got {sparsity!r}"
        if not 0 < sparsity < 1:
            return f"sparsity must be in (0, 1), got {sparsity!r}"
        return None
    if n is None or m is None:
        return "give a sparsity or both N and M"
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (n, m)):
        return f"N and M must be integers, got {n!r}:{m!r}"
    if not 0 < n < m:
        return f"N:M needs 0 < N < M, got {n}:{m}"
    return None


@dataclass(frozen=True)
class PruneRecipe:
    """What to prune and how much. Exactly one of ``sparsity`` or ``n``/``m`` is set."""

    method: Method
    sparsity: float | None = None  # unstructured, 0 < s < 1: fraction zeroed in each output row
    # (magnitude, Wanda) or in each block of 128 input columns, all rows together (SparseGPT)
    n: int | None = None  # N:M semi-structured: n zeros in each group of m consecutive inputs
    m: int | None = None

    def __post_init__(self) -> None:
        problem = _recipe_problem(self.method, self.sparsity, self.n, self.m)
        if problem:
            raise RecipeError(f"{self!r}: {problem}; {_VALID_FORMS}")

    @property
    def structured(self) -> bool:
        return self.sparsity is None

    @property
    def amount(self) -> str:
        """``0.5`` or ``2:4``: the part of the spec after the method."""
        return f"{self.n}:{self.m}" if self.structured else repr(float(self.sparsity))

    @property
    def spec(self) -> str:
        """The text ``parse_recipe`` reads back, e.g. ``wanda:0.5``."""
        return f"{self.method}:{self.amount}"

    @property
    def label(self) -> str:
        """Filesystem- and snapshot-safe name, e.g. ``wanda-0.5`` or ``sparsegpt-2of4``."""
        return f"{self.method}-{self.amount.replace(':', 'of')}"


def parse_recipe(text: str, *, option: str = "--illusion-prune") -> PruneRecipe:
    """Read ``METHOD:SPARSITY`` or ``METHOD:N:M``; ``option`` names the source in errors."""

    def fail(problem: str) -> RecipeError:
        return RecipeError(f"{option} {text!r}: {problem}; {_VALID_FORMS}")

    parts = text.strip().split(":")
    if not text.strip():
        raise fail("empty recipe")
    if parts[0] not in METHODS:
        raise fail(f"unknown method {parts[0]!r}")
    sparsity = n = m = None
    if len(parts) == 2:
        try:
            sparsity = float(parts[1])
        except ValueError:
            raise fail(f"sparsity {parts[1]!r} is not a number") from None
    elif len(parts) == 3:
        try:
            n, m = int(parts[1]), int(parts[2])
        except ValueError:
            raise fail(f"N:M {parts[1]!r}:{parts[2]!r} must be two integers") from None
    else:
        raise fail(f"expected 2 or 3 ':'-separated fields, got {len(parts)}")
    problem = _recipe_problem(parts[0], sparsity, n, m)
    if problem:
        raise fail(problem)
    return PruneRecipe(parts[0], sparsity=sparsity, n=n, m=m)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- calibration data


@dataclass(frozen=True)
class CalibrationConfig:
    """Which text calibrates Wanda and SparseGPT: seeded token windows from fixtures/calibration."""

    langs: tuple[str, ...] = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "sw")
    samples: int = 64  # windows; languages take turns, so each gets ~samples/len(langs)
    seqlen: int = 256  # tokens per window
    seed: int = 0  # seeds the generator that picks window starts

    def __post_init__(self) -> None:
        if isinstance(self.langs, str) or not self.langs or len(set(self.langs)) < len(self.langs):
            raise ConfigError(
                f"calibration langs {self.langs!r}: give a tuple of distinct language codes, "
                "e.g. ('en', 'de')"
            )
        object.__setattr__(self, "langs", tuple(self.langs))
        for name in ("samples", "seqlen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"calibration {name}={value!r}: must be a positive integer")


def calibration_root() -> Path:
    """The shipped calibration text: ``fixtures/calibration`` (or its copy in the wheel)."""
    return fixtures_dir() / "calibration"


def calibration_batch(
    tokenizer, config: CalibrationConfig, root: Path | None = None
) -> torch.Tensor:
    """Return a LongTensor [samples, seqlen] of random windows, languages round-robin.

    ``root`` holds one ``<lang>.txt`` per language (default: ``calibration_root()``).
    """
    root = Path(root) if root is not None else calibration_root()
    available = sorted(p.stem for p in root.glob("*.txt"))
    tokens: dict[str, torch.Tensor] = {}
    for lang in config.langs:
        path = root / f"{lang}.txt"
        if lang not in available:
            raise ConfigError(
                f"calibration language {lang!r}: {path} does not exist; available: "
                f"{', '.join(available) or 'none'} (to add one, see {root / 'README.md'})"
            )
        text = path.read_text(encoding="utf-8")
        ids = tokenizer.encode(text, add_special_tokens=False, verbose=False)
        if len(ids) < config.seqlen:
            raise ConfigError(
                f"{path}: {len(ids)} tokens, fewer than one window of seqlen={config.seqlen}; "
                "use a smaller seqlen or add text to the file"
            )
        tokens[lang] = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(config.seed)
    rows = []
    for i in range(config.samples):
        ids = tokens[config.langs[i % len(config.langs)]]
        start = int(torch.randint(len(ids) - config.seqlen + 1, (1,), generator=generator))
        rows.append(ids[start : start + config.seqlen])
    return torch.stack(rows)


# ----------------------------------------------------------------------------- masks and pruners


def _lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k lowest scores in each row (stable sort: ties go to the lower index)."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, torch.sort(score, dim=1, stable=True)[1][:, :k], True)
    return mask


def _nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of the n lowest scores in each group of m consecutive columns of each row."""
    rows, cols = score.shape
    return _lowest(score.reshape(-1, m), n).reshape(rows, cols)


def sparsegpt_block_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask of the k = floor(rows * cols * sparsity) lowest scores of a whole [rows, cols]
    block, all rows together.

    SparseGPT's unstructured rule (IST-DASLab ``fasterprune``: one threshold per block of 128
    columns over every row). The reference takes ``thresh = sort(flat)[k]`` and prunes
    ``score <= thresh``, which zeroes k + 1 weights (more on ties at the threshold). We take
    exactly the k lowest instead, so the sparsity is exact: a stable sort of the row-major
    flattening, so among equal scores the lower row, then the lower column, is pruned first.
    Without ties this is the reference's mask minus its one threshold weight.
    """
    k = int(score.numel() * sparsity)
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    if k > 0:
        mask[torch.sort(score.flatten(), stable=True)[1][:k]] = True
    return mask.reshape(score.shape)


def _mask(score: torch.Tensor, recipe: PruneRecipe) -> torch.Tensor:
    if recipe.structured:
        return _nm_mask(score, recipe.n, recipe.m)
    return _lowest(score, int(score.shape[1] * recipe.sparsity))


class _Magnitude:
    """|W| per output row; needs no calibration."""

    def __init__(self, layer: nn.Linear):
        self.layer = layer

    def add_batch(self, inp: torch.Tensor) -> None:
        pass

    def prune(self, recipe: PruneRecipe) -> torch.Tensor:
        mask = _mask(self.layer.weight.detach().float().abs(), recipe)
        self.layer.weight.data[mask] = 0
        return mask

    def free(self) -> None:
        pass


class _Wanda(_Magnitude):
    """Score |W_ij| * ||X_j||_2, compared within each output row."""

    def __init__(self, layer: nn.Linear):
        super().__init__(layer)
        self.nsamples = 0  # sequences seen, as in the reference (not tokens)
        self.scaler_row = torch.zeros(layer.in_features, device=layer.weight.device)

    def add_batch(self, inp: torch.Tensor) -> None:
        batch = inp.shape[0] if inp.dim() == 3 else 1
        inp = inp.reshape(-1, inp.shape[-1]).float()  # [tokens, in_features]
        self.scaler_row *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.scaler_row += inp.square().sum(0) / self.nsamples

    def prune(self, recipe: PruneRecipe) -> torch.Tensor:
        score = self.layer.weight.detach().float().abs() * self.scaler_row.sqrt().unsqueeze(0)
        mask = _mask(score, recipe)
        self.layer.weight.data[mask] = 0
        return mask

    def free(self) -> None:
        self.scaler_row = None


class _SparseGPT(_Magnitude):
    """OBS pruning with lazy block updates; H = 2/nsamples * sum X X^T."""

    def __init__(self, layer: nn.Linear):
        super().__init__(layer)
        self.nsamples = 0
        cols = layer.in_features
        self.H = torch.zeros(cols, cols, device=layer.weight.device)

    def add_batch(self, inp: torch.Tensor) -> None:
        batch = inp.shape[0] if inp.dim() == 3 else 1
        inp = inp.reshape(-1, inp.shape[-1]).t().float()  # [in_features, tokens]
        self.H *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        inp = (2 / self.nsamples) ** 0.5 * inp
        self.H += inp @ inp.t()

    def prune(self, recipe: PruneRecipe) -> torch.Tensor:
        # Transposed against the reference ([cols, rows]): column i of W is the contiguous row
        # W[i], which makes the per-column loop below about twice as fast on CPU.
        W = self.layer.weight.detach().float().t().contiguous()
        cols = W.shape[0]
        H, self.H = self.H, None
        dead = torch.diag(H) == 0  # inputs that were always zero: their weights do nothing
        H[dead, dead] = 1
        W[dead] = 0
        H.diagonal().add_(_SPARSEGPT_PERCDAMP * torch.mean(torch.diag(H)))
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
        m = recipe.m or 1
        blocksize = max(m, _SPARSEGPT_BLOCKSIZE // m * m)  # N:M groups never straddle blocks
        mask = torch.zeros_like(W, dtype=torch.bool)
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1, Hinv1, mask1 = W[i1:i2], Hinv[i1:i2, i1:i2], mask[i1:i2]  # views, updated in place
            d = torch.diag(Hinv1).unsqueeze(1)
            Err1 = torch.zeros_like(W1)
            if not recipe.structured:  # one threshold over the whole block, as in the reference
                score = (W1.square() / d.square()).t()  # [rows, i2 - i1], the reference's layout
                mask1.copy_(sparsegpt_block_mask(score, recipe.sparsity).t())
            scale = mask1 / d  # err = (w - q) / d: w / d where pruned, 0 where kept
            for i in range(i2 - i1):
                if recipe.structured and i % m == 0:
                    score = W1[i : i + m].square() / d[i : i + m].square()
                    mask1[i : i + m] = _nm_mask(score.t(), recipe.n, m).t()
                    scale[i : i + m] = mask1[i : i + m] / d[i : i + m]
                err = torch.mul(W1[i], scale[i], out=Err1[i])
                W1[i:].addr_(Hinv1[i, i:], err, alpha=-1)  # OBS update; leaves W1[i] = q
            W1.masked_fill_(mask1, 0)  # exact zeros (the update leaves rounding residue)
            W[i2:].addmm_(Hinv[i1:i2, i2:].t(), Err1, alpha=-1)  # lazy update of later blocks
        self.layer.weight.data.copy_(W.t().to(self.layer.weight.dtype))
        return mask.t().contiguous()

    def free(self) -> None:
        self.H = None


_PRUNERS = {"magnitude": _Magnitude, "wanda": _Wanda, "sparsegpt": _SparseGPT}


def prune_linear(
    layer: nn.Linear, recipe: PruneRecipe, inputs: torch.Tensor | None = None
) -> torch.Tensor:
    """Prune one Linear in place, given its inputs [tokens, in] or [batch, seq, in].

    Returns the bool mask [out, in] of the weights it zeroed. Magnitude ignores ``inputs``.
    """
    _check_divisible({"layer": layer}, recipe)
    pruner = _PRUNERS[recipe.method](layer)
    with torch.no_grad():
        if recipe.method != "magnitude":
            if inputs is None:
                raise ConfigError(f"{recipe.spec}: {recipe.method} needs calibration inputs")
            pruner.add_batch(inputs.to(layer.weight.device))
        mask = pruner.prune(recipe)
        pruner.free()
        _verify("layer", layer.weight, mask, recipe)
    return mask


def _check_divisible(linears: dict[str, nn.Linear | Matrix], recipe: PruneRecipe) -> None:
    for name, layer in linears.items():
        if recipe.structured and layer.in_features % recipe.m:
            raise RecipeError(
                f"{recipe.spec}: {name} has {layer.in_features} input columns, not a multiple of "
                f"M={recipe.m}; choose an M that divides the layer widths (2:4 and 4:8 usually do)"
            )


def sparsegpt_block_quota(mask: torch.Tensor, sparsity: float) -> list[tuple[int, int, int]]:
    """(first column, pruned, required) for each SparseGPT block of an unstructured [rows, cols]
    mask: blocks of 128 columns (the last may be shorter), each with floor(rows * width * S)."""
    rows, cols = mask.shape
    return [
        (i1, int(mask[:, i1 : i1 + _SPARSEGPT_BLOCKSIZE].sum()),
         int(rows * min(_SPARSEGPT_BLOCKSIZE, cols - i1) * sparsity))
        for i1 in range(0, cols, _SPARSEGPT_BLOCKSIZE)
    ]


def _verify(name: str, weight: torch.Tensor, mask: torch.Tensor, recipe: PruneRecipe) -> float:
    """Check the mask has exactly the target count and its weights are zero; return sparsity.

    The count is per group for N:M, per block of 128 columns for unstructured SparseGPT (its mask
    rule), and per row for unstructured magnitude and Wanda.
    """
    if recipe.method == "sparsegpt" and not recipe.structured:
        wrong = [q for q in sparsegpt_block_quota(mask, recipe.sparsity) if q[1] != q[2]]
        if wrong:
            i1, got, want = wrong[0]
            raise RuntimeError(
                f"bug in illusion.prune: {name} prunes {got} weights in the SparseGPT block of "
                f"columns {i1}..{min(i1 + _SPARSEGPT_BLOCKSIZE, mask.shape[1]) - 1}, want exactly {want}"
            )
    else:
        if recipe.structured:
            counts, want = mask.reshape(-1, recipe.m).sum(1), recipe.n
        else:
            counts, want = mask.sum(1), int(mask.shape[1] * recipe.sparsity)
        if not bool((counts == want).all()):
            raise RuntimeError(
                f"bug in illusion.prune: {name} prunes {int(counts.min())}..{int(counts.max())} "
                f"weights per {'group' if recipe.structured else 'row'}, want exactly {want}"
            )
    if bool(weight[mask].any()):
        raise RuntimeError(f"bug in illusion.prune: {name} has non-zero weights under its mask")
    return float((weight == 0).float().mean())


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class PruneStats:
    """What pruning achieved over exactly the in-scope weights (see ``illusion.scope``), and what in
    the decoder blocks was left out and why."""

    recipe: PruneRecipe
    layers: dict[str, float]  # matrix name, e.g. "model.layers.0.mlp.up_proj" or "...experts.down_proj[3]" -> zeros
    total: float  # zeros / weights over all in-scope matrices
    weights: int = 0  # how many weights are in scope
    left_out: dict[str, str] = field(default_factory=dict)  # block parameter -> why it is never pruned
    experts: int = 0  # fused experts in scope (each pruned as its own layers)
    uncalibrated: tuple[str, ...] = ()  # experts (or layers) no calibration token reached: pruned by magnitude

    def left_out_by_reason(self) -> dict[str, list[str]]:
        """Reason -> the block parameters left out for it, in model order."""
        grouped: dict[str, list[str]] = {}
        for name, reason in self.left_out.items():
            grouped.setdefault(reason, []).append(name)
        return grouped


class _StopForward(Exception):
    """Raised by the capture hook once the first block's inputs are recorded."""


def _to(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _capture_inputs(model, block: nn.Module, calibration: torch.Tensor) -> list:
    """Run the model on each chunk until the first block; keep (hidden, args, kwargs) per chunk."""
    captured = []

    def hook(_module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden.detach(), args[1:], kwargs))
        raise _StopForward

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    device = model.get_input_embeddings().weight.device
    try:
        for chunk in calibration.split(_CHUNK):
            try:
                model(input_ids=chunk.to(device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    if len(captured) != len(calibration.split(_CHUNK)):
        raise ModelError(f"{type(model).__name__}: the forward pass never reached decoder block 0")
    return captured


def _feed(pruner, name: str, seen: dict[str, int]):
    """Forward hook that hands a layer's input to its pruner's ``add_batch`` and counts its tokens."""

    def hook(_module, inputs, _output):
        seen[name] += inputs[0].numel() // inputs[0].shape[-1]
        pruner.add_batch(inputs[0])

    return hook


def _feed_experts(group: ExpertGroup, pruners: dict, seen: dict[str, int]):
    """Forward hook on a fused experts module: each expert's pruners get the tokens the router sent
    it (its gate_up/up projection their hidden states, its down projection what it makes of them)."""

    def hook(_module, args, kwargs, _output):
        hidden, index = group.routed(args, kwargs)
        for e, (first, second) in enumerate(zip(group.first, group.second)):
            rows = (index == e).any(dim=-1).nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            x = hidden[rows]
            seen[group.expert_name(e)] += rows.numel()
            pruners[first.name].add_batch(x)
            pruners[second.name].add_batch(group.down_input(e, x))

    return hook


def _run_block(block: nn.Module, captured: list, *, keep: bool = True) -> list:
    """Run ``block`` on each captured chunk; with ``keep``, return outputs as the next inputs."""
    device = next(block.parameters()).device
    outputs = []
    for hidden, args, kwargs in captured:
        out = block(hidden.to(device), *_to(args, device), **_to(kwargs, device))
        if keep:
            outputs.append((out[0] if isinstance(out, tuple) else out, args, kwargs))
    return outputs


def _calibration_units(scope: BlockScope) -> dict[str, list[Matrix]]:
    """What receives calibration tokens as one: each hooked layer alone, each expert's two matrices."""
    units = {name: [matrix] for name, (_module, matrix) in scope.hooked.items()}
    for group in scope.experts:
        units.update({group.expert_name(e): [first, second]
                      for e, (first, second) in enumerate(zip(group.first, group.second))})
    return units


def _prune_block(block: nn.Module, scope: BlockScope, recipe: PruneRecipe, captured: list | None):
    """Calibrate (on ``captured``, unless magnitude) and prune one block's in-scope matrices.

    Returns each matrix's verified zero fraction and the units no calibration token reached,
    which fall back to magnitude (an expert the router never chose has no statistics to weigh)."""
    pruners = {matrix.name: _PRUNERS[recipe.method](matrix) for matrix in scope.matrices}
    units = _calibration_units(scope)
    seen = dict.fromkeys(units, 0)
    handles = [module.register_forward_hook(_feed(pruners[name], name, seen))
               for name, (module, _matrix) in scope.hooked.items()]
    handles += [group.module.register_forward_hook(_feed_experts(group, pruners, seen), with_kwargs=True)
                for group in scope.experts]
    try:
        if captured is not None:
            _run_block(block, captured, keep=False)  # dense pass feeds the hooks
    finally:
        for handle in handles:
            handle.remove()
    uncalibrated = [unit for unit, count in seen.items() if captured is not None and count == 0]
    for unit in uncalibrated:
        for matrix in units[unit]:
            pruners[matrix.name].free()
            pruners[matrix.name] = _Magnitude(matrix)
    fallback = replace(recipe, method="magnitude")  # verified by magnitude's rule, not the method's
    layers = {}
    for matrix in scope.matrices:
        pruner = pruners.pop(matrix.name)
        used = fallback if type(pruner) is _Magnitude else recipe
        mask = pruner.prune(used)
        pruner.free()
        layers[matrix.name] = _verify(matrix.name, matrix.weight, mask, used)  # each mask freed at once
    return layers, uncalibrated


def _check_coverage(scopes: list[BlockScope], layers: dict[str, float]) -> None:
    """Every in-scope matrix was pruned and verified, and nothing else was."""
    names = [matrix.name for scope in scopes for matrix in scope.matrices]
    missing, extra = [n for n in names if n not in layers], sorted(set(layers) - set(names))
    if missing or extra:
        raise RuntimeError(
            f"bug in illusion.prune: in-scope matrices left unpruned: {', '.join(missing) or 'none'}; "
            f"pruned outside the scope: {', '.join(extra) or 'none'}"
        )


class _Staging:
    """Where each decoder block is pruned, for a model that stays where it is.

    With a pruning ``device``, the model stays in its memory (usually the CPU: a 70B model need
    not fit the device) and moves to ``device`` one piece at a time, as the Wanda and SparseGPT
    reference code do for 65B-70B models: everything outside the decoder blocks (embeddings,
    rotary tables, final norm, head) while the first block's inputs are captured, so those inputs
    are computed on ``device`` exactly as if the whole model were there; then each block in turn,
    calibrated and pruned there, and moved back before the next. Without a ``device``, or for a
    model dispatched by accelerate (``hf_device_map``: its hooks place each block), every block is
    pruned where its weights are.
    """

    def __init__(self, model: nn.Module, prefix: str, blocks: nn.ModuleList, device) -> None:
        self.model, self.blocks = model, blocks
        parent, _, self.attr = prefix.rpartition(".")
        self.parent = model.get_submodule(parent)
        self.device = None if device is None else torch.device(device)
        self.home: dict[int, torch.device] = {}  # id(module) -> device it came from
        if getattr(model, "hf_device_map", None):
            self.device = None  # accelerate placed the blocks; its hooks move the activations
            for i, block in enumerate(blocks):
                if any(p.device.type == "meta" for p in block.parameters()):
                    raise ModelError(
                        f"{prefix}.{i}: its weights are offloaded by accelerate's device_map (cpu or "
                        "disk offload keeps them outside the module), so pruning in place cannot change "
                        "them; load the model without a device_map (on the CPU) and give the pruning "
                        "device instead (python -m illusion prune --device cuda moves one decoder block "
                        "at a time to it)"
                    )
        elif self.device is not None:
            devices = {p.device for p in model.parameters()}
            if len(devices) > 1:
                raise ModelError(
                    f"{type(model).__name__}: its weights are on {', '.join(sorted(map(str, devices)))}; "
                    f"to prune on {self.device}, load it on one device (the CPU) or with an accelerate device_map"
                )

    def _place(self, module: nn.Module, device: torch.device) -> None:
        self.home.setdefault(id(module), next(module.parameters()).device)
        _move(module, device)

    def _return(self, module: nn.Module) -> None:
        home = self.home.pop(id(module), None)
        if home is not None:
            _move(module, home)
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def outside_on_device(self) -> None:
        """Move everything but the decoder blocks to the pruning device (for the capture)."""
        if self.device is not None:
            blocks = getattr(self.parent, self.attr)
            setattr(self.parent, self.attr, nn.ModuleList())  # detached, so .to() leaves them
            try:
                self._place(self.model, self.device)
            finally:
                setattr(self.parent, self.attr, blocks)

    def outside_home(self) -> None:
        if id(self.model) in self.home:
            blocks = getattr(self.parent, self.attr)
            setattr(self.parent, self.attr, nn.ModuleList())
            try:
                self._return(self.model)
            finally:
                setattr(self.parent, self.attr, blocks)

    def enter(self, block: nn.Module) -> None:
        if self.device is not None:
            self._place(block, self.device)

    def leave(self, block: nn.Module) -> None:
        self._return(block)

    def restore(self) -> None:
        """Put back whatever is still on the pruning device (after an error midway)."""
        for block in self.blocks:
            self.leave(block)
        self.outside_home()


def _move(module: nn.Module, device: torch.device) -> None:
    """``module.to(device)``, in one place so that tests can watch the moves."""
    module.to(device)


def prune_model(
    model: nn.Module,
    recipe: PruneRecipe,
    calibration: torch.Tensor | None,
    *,
    device: str | torch.device | None = None,
    progress: Callable[[str], None] | None = None,
) -> PruneStats:
    """Prune the in-scope matrices of ``model``'s decoder blocks in place, block by block.

    The scope (``illusion.scope``) is every attention and MLP/expert projection of the blocks;
    each expert of an MoE is pruned as its own layers, calibrated on the tokens its router sends it.
    ``calibration`` holds token ids [samples, seqlen] (see ``calibration_batch``); magnitude
    ignores it. ``device``: where to compute; the model stays where it is and one decoder block
    at a time moves there and back (see ``_Staging``); None prunes each block where it is.
    ``progress`` gets one line per block.
    """
    prefix, blocks, scopes = model_scope(model)
    _check_divisible({matrix.name: matrix for scope in scopes for matrix in scope.matrices}, recipe)
    calibrated = recipe.method != "magnitude"
    if calibrated and (
        calibration is None
        or calibration.dim() != 2
        or calibration.dtype not in (torch.long, torch.int)
        or calibration.numel() == 0
    ):
        raise ConfigError(
            f"{recipe.spec}: {recipe.method} needs calibration token ids, a LongTensor "
            "[samples, seqlen]; build one with calibration_batch(tokenizer, CalibrationConfig())"
        )
    staging = _Staging(model, prefix, blocks, device)
    was_training = model.training
    model.eval()
    layers: dict[str, float] = {}
    uncalibrated: list[str] = []
    try:
        with torch.no_grad():
            staging.outside_on_device()
            captured = _capture_inputs(model, blocks[0], calibration) if calibrated else None
            staging.outside_home()
            for index, (block, scope) in enumerate(zip(blocks, scopes)):
                staging.enter(block)
                block_layers, block_uncalibrated = _prune_block(block, scope, recipe, captured)
                layers.update(block_layers)
                uncalibrated += block_uncalibrated
                if calibrated and index + 1 < len(blocks):
                    captured = _run_block(block, captured)  # pruned block feeds the next one
                staging.leave(block)
                if progress:
                    progress(
                        f"{recipe.method} {recipe.amount}: block {index + 1}/{len(blocks)} "
                        f"pruned ({len(scope.matrices)} matrices)"
                    )
    finally:
        staging.restore()
        model.train(was_training)
    _check_coverage(scopes, layers)
    matrices = [matrix for scope in scopes for matrix in scope.matrices]
    zeros = sum(int((matrix.weight == 0).sum()) for matrix in matrices)
    weights = sum(matrix.weight.numel() for matrix in matrices)
    return PruneStats(
        recipe=recipe, layers=layers, total=zeros / max(weights, 1), weights=weights,
        left_out={name: why for scope in scopes for name, why in scope.left_out.items()},
        experts=sum(len(group.first) for scope in scopes for group in scope.experts),
        uncalibrated=tuple(uncalibrated),
    )


# ----------------------------------------------------------------------------- checkpoints

# Bumped whenever pruning changes numerically, so cached pruned checkpoints are not reused.
PRUNE_VERSION = 3  # 2: MoE experts and Conv1D pruned; 3: SparseGPT's mask is one threshold per 128-column block
# The dtype pruning runs in: weights load in float32, statistics accumulate in float32.
PRUNE_DTYPE = "float32"
# Written into every checkpoint this module writes: the recipe, and the files it wrote (checkpoint.py).
MARKER = marker_name("prune")


def device_type(device: str) -> str:
    """``cuda:1`` -> ``cuda``: the kind of device, which decides the numerics (not its index)."""
    return device.split(":", 1)[0]


def pruned_fingerprint(
    base_fingerprint: str, recipe: PruneRecipe, calibration: CalibrationConfig, *, device: str, dtype: str,
    trust_remote_code: bool = False,
) -> str:
    """Fingerprint of a pruned model, known without pruning: base weights + recipe + calibration
    (for the methods that use one) + the device type and dtype the pruning computes in + whether the
    repository's own model code ran (its forward decides the calibration activations). The last
    enters the key only when set, so existing pruned caches keep their keys."""
    import hashlib
    import json

    key = {"base": base_fingerprint, "recipe": recipe.spec, "calibration": _calibration_record(recipe, calibration),
           "device": device_type(device), "dtype": dtype, "version": PRUNE_VERSION}
    if trust_remote_code:
        key["trust_remote_code"] = True
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _calibration_record(recipe: PruneRecipe, calibration: CalibrationConfig) -> dict | None:
    if recipe.method == "magnitude":
        return None  # magnitude reads no calibration text: changing it must not re-prune
    return {"langs": list(calibration.langs), "samples": calibration.samples, "seqlen": calibration.seqlen,
            "seed": calibration.seed}


# ----------------------------------------------------------------------------- the output directory


def write_pruned(model, tokenizer, out: Path, manifest: dict, *, force: bool) -> list[str]:
    """Write the pruned checkpoint and its marker ``illusion-prune.json`` to ``out`` (see
    ``checkpoint.write_checkpoint``); return the file names written."""
    return write_checkpoint(model, tokenizer, out, manifest, command="prune", force=force)


def prune_checkpoint(
    spec,
    recipe: PruneRecipe,
    calibration: CalibrationConfig,
    out: Path,
    *,
    device: str = "cpu",
    trust_remote_code: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PruneStats:
    """Load ``spec`` in float32, prune it, and write a standard HF checkpoint to ``out``.

    ``out`` must be absent, empty, or a checkpoint ``prune`` or ``export`` wrote before, unless ``force``
    (see ``inspect_output``); it is checked before the model loads.
    """
    from .models import load_model, resolve_device

    out = Path(out)
    inspect_output(out, force=force)
    device = resolve_device(device)
    say = progress or (lambda _msg: None)
    # The model stays on the CPU and one decoder block at a time visits ``device`` (prune_model),
    # so a model larger than the device prunes too; the result is the same as all on the device.
    loaded = load_model(spec, dtype=PRUNE_DTYPE, device="cpu", trust_remote_code=trust_remote_code, progress=say)
    ids = calibration_batch(loaded.tokenizer, calibration) if recipe.method != "magnitude" else None
    say(f"pruning {spec.raw} with {recipe.spec}"
        + (f" on {ids.shape[0]}x{ids.shape[1]} calibration tokens ({','.join(calibration.langs)})" if ids is not None else "")
        + ("" if device == "cpu" else f", one decoder block at a time on {device}"))
    stats = prune_model(loaded.model, recipe, ids, device=device, progress=say)
    manifest = {
        "written_by": "python -m illusion prune", "version": MARKER_VERSION, "base": spec.raw,
        "base_fingerprint": loaded.fingerprint, "recipe": recipe.spec,
        "calibration": _calibration_record(recipe, calibration), "device": device_type(device),
        "dtype": PRUNE_DTYPE, "zeros": stats.total, "scope": scope_record(stats),
        "fingerprint": pruned_fingerprint(loaded.fingerprint, recipe, calibration, device=device, dtype=PRUNE_DTYPE,
                                          trust_remote_code=trust_remote_code),
    }
    write_pruned(loaded.model, loaded.tokenizer, out, manifest, force=force)
    for line in describe_scope(stats):
        say(line)
    say(f"wrote {out}")
    return stats


def scope_record(stats: PruneStats) -> dict:
    """The marker's account of what was pruned: matrices and weights in scope, experts, the ones
    pruned by magnitude for want of calibration tokens, and what was left out, by reason."""
    return {"matrices": len(stats.layers), "weights": stats.weights, "experts": stats.experts,
            "uncalibrated": list(stats.uncalibrated), "left_out": stats.left_out_by_reason()}


def describe_scope(stats: PruneStats, *, shown: int = 3) -> list[str]:
    """Lines for the user: sparsity over the scope, what was left out and why, magnitude fallbacks."""
    lines = [f"{stats.total:.2%} zeros over the {stats.weights} weights of {len(stats.layers)} in-scope matrices "
             "(the decoder blocks' attention and MLP/expert projections)"]
    for reason, names in stats.left_out_by_reason().items():
        more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
        lines.append(f"left out ({reason}): {len(names)} parameters: {', '.join(names[:shown])}{more}")
    if stats.uncalibrated:
        what = f"of {stats.experts} experts " if stats.experts else ""
        more = ", ..." if len(stats.uncalibrated) > shown else ""
        lines.append(f"{len(stats.uncalibrated)} {what}received no calibration tokens and were pruned by magnitude: "
                     f"{', '.join(stats.uncalibrated[:shown])}{more}")
    return lines
