"""Tests for illusion.prune: recipes, calibration windows, and the three pruning methods.

Models are tiny Llamas built here from a fixed seed; the tokenizer is a byte-level BPE trained
here on the shipped calibration text. Nothing is downloaded.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from illusion.errors import ConfigError, ModelError, RecipeError
from illusion.prune import (
    CalibrationConfig,
    PruneRecipe,
    PruneStats,
    calibration_batch,
    calibration_root,
    parse_recipe,
    prune_linear,
    prune_model,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

METHODS = ("magnitude", "wanda", "sparsegpt")
SHIPPED_LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "sw")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_llama(*, tie: bool = True, dtype: torch.dtype = torch.float32) -> nn.Module:
    """2 blocks, hidden 64, MLP 192 (so down_proj spans two SparseGPT blocks of 128), GQA."""
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(dtype).eval()


def token_batch(samples: int = 16, seqlen: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randint(128, (samples, seqlen), generator=torch.Generator().manual_seed(seed))


def block_linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and name.startswith("model.layers.")
    }


# ----------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("wanda:0.5", "wanda-0.5"),
        ("sparsegpt:2:4", "sparsegpt-2of4"),
        ("magnitude:0.7", "magnitude-0.7"),
    ],
)
def test_recipe_round_trips_and_labels(text, label):
    recipe = parse_recipe(text)
    assert recipe.label == label
    assert parse_recipe(recipe.spec) == recipe


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("wanda", "expected 2 or 3"),
        ("wanda:0", "sparsity must be in (0, 1)"),
        ("wanda:1", "sparsity must be in (0, 1)"),
        ("wanda:1.5", "sparsity must be in (0, 1)"),
        ("wanda:abc", "'abc' is not a number"),
        ("foo:0.5", "unknown method 'foo'"),
        ("wanda:3:2", "0 < N < M"),
        ("wanda:0:4", "0 < N < M"),
        ("wanda:2:4:1", "expected 2 or 3"),
        ("", "empty recipe"),
    ],
)
def test_bad_recipe_names_value_and_lists_valid_forms(text, problem):
    with pytest.raises(RecipeError) as info:
        parse_recipe(text)
    message = str(info.value)
    assert message.startswith(f"--illusion-prune {text!r}: ")
    assert problem in message
    assert "METHOD:SPARSITY (e.g. wanda:0.5)" in message
    assert "METHOD:N:M (e.g. sparsegpt:2:4)" in message
    assert "magnitude, wanda, sparsegpt" in message


def test_recipe_record_validates_itself():
    with pytest.raises(RecipeError, match="either a sparsity or N:M"):
        PruneRecipe("wanda", sparsity=0.5, n=2, m=4)
    with pytest.raises(RecipeError, match="unknown method"):
        PruneRecipe("random", sparsity=0.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the methods


def zeros_per_sparsegpt_block(weight: torch.Tensor, sparsity: float) -> list[tuple[int, int]]:
    """(zeros, floor(rows * width * s)) for each block of 128 input columns (the last shorter)."""
    rows, cols = weight.shape
    return [
        (int((weight[:, i : i + 128] == 0).sum()), int(rows * min(128, cols - i) * sparsity))
        for i in range(0, cols, 128)
    ]


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
@settings(max_examples=4, deadline=None)
@given(sparsity=st.floats(min_value=0.05, max_value=0.95))
def test_unstructured_prunes_exactly_floor_cols_times_s_per_row(method, sparsity):
    model = tiny_llama()
    stats = prune_model(model, PruneRecipe(method, sparsity=sparsity), token_batch(8, 16))
    linears = block_linears(model)
    assert set(stats.layers) == set(linears) and len(linears) == 2 * len(PROJECTIONS)
    for name, layer in linears.items():
        want = int(layer.in_features * sparsity)
        zeros_per_row = (layer.weight == 0).sum(dim=1)
        assert (zeros_per_row == want).all(), (name, want, zeros_per_row.unique())
        assert stats.layers[name] == pytest.approx(want / layer.in_features)


@settings(max_examples=4, deadline=None)
@given(sparsity=st.floats(min_value=0.05, max_value=0.95))
def test_unstructured_sparsegpt_prunes_exactly_floor_rows_width_s_per_128_column_block(sparsity):
    model = tiny_llama()  # down_proj has 192 columns: a block of 128 and a last one of 64
    stats = prune_model(model, PruneRecipe("sparsegpt", sparsity=sparsity), token_batch(8, 16))
    linears = block_linears(model)
    assert set(stats.layers) == set(linears) and len(linears) == 2 * len(PROJECTIONS)
    for name, layer in linears.items():
        blocks = zeros_per_sparsegpt_block(layer.weight, sparsity)
        assert all(got == want for got, want in blocks), (name, blocks)
        want = sum(w for _, w in blocks) / layer.weight.numel()
        assert stats.layers[name] == pytest.approx(want)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4)])
def test_n_m_pattern_holds_in_every_group(method, n, m):
    model = tiny_llama()
    stats = prune_model(model, PruneRecipe(method, n=n, m=m), token_batch())
    for name, layer in block_linears(model).items():
        zeros_per_group = (layer.weight == 0).reshape(-1, m).sum(dim=1)
        assert (zeros_per_group == n).all(), name
    assert stats.total == pytest.approx(n / m)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("method", METHODS)
def test_only_block_linears_change(method, tie):
    model = tiny_llama(tie=tie)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lm_head = model.get_output_embeddings().weight.detach().clone()
    prune_model(model, parse_recipe(f"{method}:0.5"), token_batch())
    pruned = {f"{name}.weight" for name in block_linears(model)}
    for name, param in model.named_parameters():
        if name in pruned:
            assert not torch.equal(param, before[name]), name
        else:  # embeddings, lm_head (tied or not), norms
            assert torch.equal(param, before[name]), name
    assert torch.equal(model.get_output_embeddings().weight, lm_head)


def uneven_inputs(seed: int, tokens: int = 1024, cols: int = 256) -> torch.Tensor:
    """Activations like an LLM's: column norms spanning two orders of magnitude, and columns
    correlated through a few shared factors. (With independent columns OBS updates have nothing
    to exploit, and SparseGPT's per-block mask can then lose to Wanda's row-wide one.)"""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1, 1, cols)[torch.randperm(cols, generator=generator)]
    factors = torch.randn(tokens, 8, generator=generator)
    factors = factors @ torch.randn(8, cols, generator=generator)
    noise = torch.randn(tokens, cols, generator=generator)
    return (factors / 8**0.5 + 0.5 * noise) * scales


def linear_from_seed(seed: int, rows: int = 64, cols: int = 256) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(cols, rows, bias=False)


@pytest.mark.parametrize("spec", ["sparsegpt:0.5", "sparsegpt:2:4"])
def test_sparsegpt_keeps_pruned_zeros_and_updates_the_rest(spec):
    layer, X = linear_from_seed(0), uneven_inputs(0)
    before = layer.weight.detach().clone()
    mask = prune_linear(layer, parse_recipe(spec), X)
    after = layer.weight.detach()
    assert (after[mask] == 0).all()
    changed = after[~mask] != before[~mask]  # OBS moved the surviving weights
    assert changed.float().mean() > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reconstruction_error_sparsegpt_le_wanda_le_magnitude(seed):
    X = uneven_inputs(seed)
    errors = {}
    for method in METHODS:
        layer = linear_from_seed(seed)
        dense_out = layer(X).detach()
        prune_linear(layer, PruneRecipe(method, sparsity=0.5), X)
        errors[method] = torch.linalg.norm(dense_out - layer(X).detach()).item()
    assert errors["sparsegpt"] <= errors["wanda"] <= errors["magnitude"], errors


def published_sparsegpt(W: torch.Tensor, X: torch.Tensor, sparsity: float, *, strict: bool) -> torch.Tensor:
    """SparseGPT's unstructured ``fasterprune`` as published (IST-DASLab/sparsegpt), written out
    directly in the reference's [rows, cols] layout: per block of 128 columns,
    ``tmp = W1**2 / diag(Hinv1)**2``, ``thresh = sort(tmp.flatten())[int(tmp.numel() * s)]``,
    ``mask1 = tmp <= thresh`` (``strict``: ``tmp < thresh``, i.e. exactly the k lowest when no two
    scores tie), then the column-by-column OBS update and the lazy update of the later blocks.
    Returns the pruned weights."""
    W = W.clone().float()
    rows, cols = W.shape
    H = 2 * X.t().float() @ X.float()  # one 2-D batch: nsamples = 1
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += 0.01 * torch.mean(torch.diag(H)) * torch.eye(cols)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, cols, 128):
        i2 = min(i1 + 128, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        tmp = W1**2 / torch.diag(Hinv1).reshape(1, -1) ** 2
        thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
        mask1 = tmp < thresh if strict else tmp <= thresh
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W


@pytest.mark.parametrize("seed", [0, 1])
def test_sparsegpt_mask_is_the_published_one_threshold_per_block_over_all_rows(seed):
    layer, X = linear_from_seed(seed, rows=48, cols=320), uneven_inputs(seed, cols=320)  # blocks 128+128+64
    dense = layer.weight.detach().clone()
    mask = prune_linear(layer, parse_recipe("sparsegpt:0.5"), X)
    expected = published_sparsegpt(dense, X, 0.5, strict=True)
    assert torch.equal(mask, expected == 0)
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-4, atol=1e-5)
    # One threshold for all rows: rows end with different counts (a per-row quota would not).
    assert len((layer.weight == 0).sum(dim=1).unique()) > 1
    # The reference's `<=` also prunes the threshold weight itself: one more in the first block
    # (later blocks then drift, since that extra zero feeds the lazy updates).
    first = published_sparsegpt(dense, X, 0.5, strict=False)[:, :128] == 0
    assert int(first.sum()) == int(mask[:, :128].sum()) + 1 and bool(first[mask[:, :128]].all())


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 20),
    sparsity=st.floats(min_value=0.01, max_value=0.99),
    levels=st.sampled_from([3, 1000]),  # 3 levels: many ties; 1000: few
    seed=st.integers(0, 2**16),
)
def test_block_mask_takes_exactly_the_k_lowest_with_the_published_threshold(rows, cols, sparsity, levels, seed):
    from illusion.prune import sparsegpt_block_mask

    generator = torch.Generator().manual_seed(seed)
    score = torch.randint(levels, (rows, cols), generator=generator).float()
    mask = sparsegpt_block_mask(score, sparsity)
    k = int(score.numel() * sparsity)
    assert int(mask.sum()) == k
    if k == 0:
        return
    thresh = torch.sort(score.flatten())[0][k]  # the reference's threshold
    assert bool(mask[score < thresh].all())  # everything strictly below it is pruned ...
    assert not bool(mask[score > thresh].any())  # ... nothing above it
    # Ties at the threshold: the lower row-major index is pruned first.
    flat, at = mask.flatten(), (score.flatten() == thresh).nonzero().flatten()
    assert torch.equal(flat[at], torch.sort(flat[at].int(), descending=True, stable=True)[0].bool())
    if (score.flatten() == thresh).sum() == 1:  # no tie: the reference's <= mask is ours + one
        assert torch.equal(score <= thresh, mask | (score == thresh))


def test_sparsegpt_verification_checks_the_exact_count_in_every_block(monkeypatch):
    import illusion.prune as prune

    def reference_le_rule(score, sparsity):  # prunes k + 1 per block: the check must refuse it
        return score <= torch.sort(score.flatten())[0][int(score.numel() * sparsity)]

    monkeypatch.setattr(prune, "sparsegpt_block_mask", reference_le_rule)
    with pytest.raises(RuntimeError, match=r"prunes 3073 weights in the SparseGPT block of columns 0\.\.127, want exactly 3072"):
        prune_linear(linear_from_seed(0, rows=48, cols=320), parse_recipe("sparsegpt:0.5"), uneven_inputs(0, cols=320))


@pytest.mark.parametrize(
    ("spec", "pruned_cols"), [("wanda:0.5", [0, 1, 2, 3]), ("wanda:2:4", [0, 1, 4, 5])]
)
def test_wanda_prunes_the_lowest_norm_inputs(spec, pruned_cols):
    layer = nn.Linear(8, 4, bias=False)
    nn.init.ones_(layer.weight)
    X = torch.diag(torch.arange(1.0, 9.0))  # input column j has norm j + 1
    mask = prune_linear(layer, parse_recipe(spec), X)
    expected = torch.zeros(4, 8, dtype=torch.bool)
    expected[:, pruned_cols] = True
    assert torch.equal(mask, expected)
    assert torch.equal(layer.weight == 0, expected)


def test_blocks_are_calibrated_on_the_pruned_blocks_before_them():
    dense, calibration = tiny_llama(), token_batch()
    pruned = copy.deepcopy(dense)
    prune_model(pruned, parse_recipe("wanda:0.5"), calibration)
    # Dense block 1 behind pruned block 0: the inputs Wanda must have used for block 1.
    hybrid = copy.deepcopy(dense)
    hybrid.model.layers[0].load_state_dict(pruned.model.layers[0].state_dict())

    def block1_masks(model):
        sq_norms, handles = {}, []
        for name, mod in model.model.layers[1].named_modules():
            if isinstance(mod, nn.Linear):
                hook = lambda _m, inp, _o, name=name: sq_norms.__setitem__(  # noqa: E731
                    name, inp[0].reshape(-1, inp[0].shape[-1]).square().sum(0)
                )
                handles.append(mod.register_forward_hook(hook))
        with torch.no_grad():
            model(calibration, use_cache=False)
        for handle in handles:
            handle.remove()
        masks = {}
        for name, mod in dense.model.layers[1].named_modules():
            if isinstance(mod, nn.Linear):
                score = mod.weight.abs() * sq_norms[name].sqrt()
                keep = torch.sort(score, dim=1, stable=True)[1][:, : mod.in_features // 2]
                masks[name] = torch.zeros_like(score, dtype=torch.bool).scatter_(1, keep, True)
        return masks

    actual = {
        name: mod.weight == 0
        for name, mod in pruned.model.layers[1].named_modules()
        if isinstance(mod, nn.Linear)
    }
    sequential, from_dense = block1_masks(hybrid), block1_masks(dense)
    assert all(torch.equal(actual[name], sequential[name]) for name in actual)
    assert not all(torch.equal(actual[name], from_dense[name]) for name in actual)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_bfloat16_model_keeps_its_dtype_and_exact_sparsity(method):
    model = tiny_llama(dtype=torch.bfloat16)
    prune_model(model, PruneRecipe(method, sparsity=0.5), token_batch())
    for layer in block_linears(model).values():
        assert layer.weight.dtype == torch.bfloat16
        if method == "sparsegpt":
            assert all(got == want for got, want in zeros_per_sparsegpt_block(layer.weight, 0.5))
        else:
            assert ((layer.weight == 0).sum(dim=1) == layer.in_features // 2).all()


def test_progress_reports_each_block_and_stats_add_up():
    lines = []
    recipe = parse_recipe("wanda:0.5")
    stats = prune_model(tiny_llama(), recipe, token_batch(), progress=lines.append)
    assert lines == [
        "wanda 0.5: block 1/2 pruned (7 matrices)",
        "wanda 0.5: block 2/2 pruned (7 matrices)",
    ]
    assert isinstance(stats, PruneStats) and stats.total == pytest.approx(0.5)


def test_magnitude_needs_no_calibration_but_wanda_does():
    prune_model(tiny_llama(), parse_recipe("magnitude:0.5"), None)
    with pytest.raises(ConfigError, match="calibration_batch"):
        prune_model(tiny_llama(), parse_recipe("wanda:0.5"), None)


def test_n_m_that_does_not_divide_a_layer_fails_before_pruning():
    model = tiny_llama()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(RecipeError, match=r"q_proj has 64 input columns, not a multiple of M=3"):
        prune_model(model, parse_recipe("wanda:2:3"), token_batch())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", ["opt", "gpt_neox"])
def test_other_decoder_families_are_found_and_pruned(family):
    config = transformers.AutoConfig.for_model(
        family, hidden_size=64, ffn_dim=128, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, vocab_size=128, max_position_embeddings=64, word_embed_proj_dim=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    stats = prune_model(model, parse_recipe("sparsegpt:0.5"), token_batch())
    assert len(stats.layers) == {"opt": 12, "gpt_neox": 8}[family]
    for name, layer in model.named_modules():
        if name in stats.layers:
            blocks = zeros_per_sparsegpt_block(layer.weight, 0.5)
            assert all(got == want for got, want in blocks), (name, blocks)


def test_model_without_decoder_blocks_is_refused():
    model = nn.Sequential(nn.Embedding(128, 64), nn.Linear(64, 128))  # no ModuleList of blocks
    with pytest.raises(ModelError, match=r"cannot find its decoder blocks.*GPT-2"):
        prune_model(model, parse_recipe("magnitude:0.5"), None)


# ----------------------------------------------------------------------------- calibration


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on the shipped calibration text, wrapped as an HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train([str(calibration_root() / f"{lang}.txt") for lang in SHIPPED_LANGS], trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok)


def test_every_shipped_language_fills_the_default_batch(tokenizer):
    config = CalibrationConfig()
    assert set(config.langs) == set(SHIPPED_LANGS)
    batch = calibration_batch(tokenizer, config)
    assert batch.shape == (64, 256) and batch.dtype == torch.long


def test_windows_are_seeded_and_come_from_each_language_in_turn(tokenizer):
    config = CalibrationConfig(langs=("en", "ja", "sw"), samples=7, seqlen=32, seed=3)
    batch = calibration_batch(tokenizer, config)
    assert batch.shape == (7, 32)
    assert torch.equal(batch, calibration_batch(tokenizer, config))
    other = CalibrationConfig(langs=config.langs, samples=7, seqlen=32, seed=4)
    assert not torch.equal(batch, calibration_batch(tokenizer, other))
    for i, row in enumerate(batch):
        text = (calibration_root() / f"{config.langs[i % 3]}.txt").read_text(encoding="utf-8")
        ids = torch.tensor(tokenizer.encode(text, add_special_tokens=False))
        assert (ids.unfold(0, 32, 1) == row).all(dim=1).any(), i


def test_unknown_language_lists_the_available_ones(tokenizer):
    with pytest.raises(ConfigError) as info:
        calibration_batch(tokenizer, CalibrationConfig(langs=("en", "xx")))
    message = str(info.value)
    assert "'xx'" in message and "xx.txt does not exist" in message
    assert "available: ar, de, en, es, fr, hi, ja, ru, sw, zh" in message


def test_text_shorter_than_one_window_says_how_many_tokens(tokenizer, tmp_path):
    (tmp_path / "en.txt").write_text("Too short.", encoding="utf-8")
    n_tokens = len(tokenizer.encode("Too short.", add_special_tokens=False))
    with pytest.raises(ConfigError, match=rf"en.txt: {n_tokens} tokens, fewer than one window"):
        calibration_batch(tokenizer, CalibrationConfig(langs=("en",)), root=tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"langs": ()}, {"langs": "en"}, {"langs": ("en", "en")}, {"samples": 0}, {"seqlen": -1}],
)
def test_bad_calibration_config_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        CalibrationConfig(**kwargs)


# ----------------------------------------------------------------------------- the cache key


def test_pruned_fingerprint_follows_device_dtype_and_calibration():
    from illusion.prune import pruned_fingerprint

    wanda = parse_recipe("wanda:0.5")

    def key(recipe=wanda, calibration=CalibrationConfig(), device="cpu", dtype="float32"):
        return pruned_fingerprint("base", recipe, calibration, device=device, dtype=dtype)

    assert key() == key()
    assert key(device="cuda") != key()
    assert key(device="cuda:0") == key(device="cuda:1")  # the kind of device decides, not its index
    assert key(dtype="bfloat16") != key()
    assert key(calibration=CalibrationConfig(seed=1)) != key()
    remote = pruned_fingerprint("base", wanda, CalibrationConfig(), device="cpu", dtype="float32", trust_remote_code=True)
    assert remote != key()  # the repository's own forward made the calibration activations
    magnitude = parse_recipe("magnitude:0.5")  # reads no calibration text: its seed must not re-prune
    assert key(magnitude, CalibrationConfig(seed=1)) == key(magnitude)


def test_the_item_seed_does_not_reprune_but_the_calibration_seed_and_device_do(tiny_dir, tmp_path, monkeypatch):
    from illusion.session import IllusionSession, RunConfig

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path))

    def key(**options):
        config = RunConfig(model=str(tiny_dir), prune="wanda:0.5", **{"device": "cpu", **options})
        return IllusionSession(config)._pruned_key[1]

    assert key(seed=1) == key(seed=2)
    assert key(calibration_seed=1) != key(calibration_seed=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert key(device="cuda") != key(device="cpu")
    assert RunConfig(prune="wanda:0.5", calibration_seed=3).as_dict()["calibration"]["seed"] == 3


def test_calibration_seed_is_an_option_and_an_ini_key(pytester):
    from illusion.options import run_config

    pytester.makeini("[pytest]\nillusion_calibration_seed = 7\n")
    config = run_config(pytester.parseconfig("--illusion-prune", "wanda:0.5", "--illusion-seed", "3"))
    assert config.calibration.seed == 7 and config.seed == 3
    assert config.as_dict()["calibration"]["seed"] == 7
    assert run_config(pytester.parseconfig("--illusion-calibration-seed", "0")).calibration.seed == 0


def test_the_pruned_cache_holds_the_checkpoint_and_its_recipe_and_no_staging(tiny_dir, tmp_path, monkeypatch):
    import json

    from illusion.session import IllusionSession, RunConfig

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path))
    session = IllusionSession(RunConfig(model=str(tiny_dir), prune="magnitude:0.5", device="cpu"))
    target = session._pruned_dir()
    marker = json.loads((target / "illusion-prune.json").read_text())
    assert marker["fingerprint"] == session._pruned_key[1] and marker["device"] == "cpu"
    assert marker["recipe"] == "magnitude:0.5" and marker["complete"]
    assert sorted(p.name for p in target.iterdir()) == sorted([*marker["files"], "illusion-prune.json"])
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, target.name + ".lock"])


# ----------------------------------------------------------------------------- block at a time


@pytest.mark.parametrize("spec", ["magnitude:0.5", "wanda:0.5", "sparsegpt:0.5", "sparsegpt:2:4"])
def test_block_at_a_time_gives_bit_identical_weights(spec):
    """The staged path (model kept where it is, one block at a time moved to ``device``) against
    pruning in place. On this CPU-only test both devices are the CPU, so the moves are no-ops:
    it proves the staged path captures, calibrates and prunes exactly as the in-place one, not
    that a GPU gives the same bits (that needs a GPU run)."""
    in_place, staged = tiny_llama(tie=False), tiny_llama(tie=False)
    prune_model(in_place, parse_recipe(spec), token_batch())
    stats = prune_model(staged, parse_recipe(spec), token_batch(), device="cpu")
    reference = in_place.state_dict()
    assert all(torch.equal(reference[name], value) for name, value in staged.state_dict().items())
    assert {p.device.type for p in staged.parameters()} == {"cpu"} and len(stats.layers) == 14


def test_one_block_at_a_time_visits_the_device_and_goes_back(monkeypatch):
    import illusion.prune as prune

    model, events = tiny_llama(), []
    names = {id(model): "outside", **{id(b): f"block {i}" for i, b in enumerate(model.model.layers)}}

    def move(module, device):
        if names[id(module)] == "outside":  # the blocks are detached while the rest moves
            assert len(module.model.layers) == 0
        events.append(f"{names[id(module)]} -> {device}")
        module.to(device)

    class Watched(prune._Wanda):
        def prune(self, recipe):
            events.append(f"prune {self.layer.weight.device}")
            return super().prune(recipe)

    monkeypatch.setattr(prune, "_move", move)
    monkeypatch.setitem(prune._PRUNERS, "wanda", Watched)
    prune_model(model, parse_recipe("wanda:0.5"), token_batch(), device="cpu")
    per_block = lambda i: [f"block {i} -> cpu", *["prune cpu"] * 7, f"block {i} -> cpu"]  # noqa: E731
    assert events == ["outside -> cpu", "outside -> cpu", *per_block(0), *per_block(1)]


def test_a_failure_midway_puts_the_block_back(monkeypatch):
    import illusion.prune as prune

    model, moved = tiny_llama(), []
    monkeypatch.setattr(prune, "_move", lambda module, device: moved.append(module))

    def fail(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(prune, "_verify", fail)
    with pytest.raises(RuntimeError, match="boom"):
        prune_model(model, parse_recipe("magnitude:0.5"), None, device="cpu")
    block0 = model.model.layers[0]
    assert moved == [model, model, block0, block0]  # outside there and back; block 0 there and back


def test_blocks_offloaded_by_accelerate_are_refused_with_the_way_out(tmp_path):
    from accelerate import dispatch_model

    model = tiny_llama()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                  "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    model = dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path))
    with pytest.raises(ModelError, match=r"model\.layers\.1: its weights are offloaded.*--device cuda"):
        prune_model(model, parse_recipe("magnitude:0.5"), None, device="cpu")
    block0 = model.model.layers[0]
    assert all(torch.equal(p, before[f"model.layers.0.{n}"]) for n, p in block0.named_parameters())


def test_a_model_dispatched_by_accelerate_is_pruned_where_its_blocks_are(monkeypatch):
    """accelerate's hooks place each block (here all on the CPU, hooks forced): nothing is moved,
    and the weights equal those of pruning the plain model."""
    from accelerate import dispatch_model

    import illusion.prune as prune

    plain, dispatched = tiny_llama(tie=False), tiny_llama(tie=False)
    names = ("model.embed_tokens", "model.rotary_emb", "model.layers.0", "model.layers.1", "model.norm", "lm_head")
    dispatched = dispatch_model(dispatched, device_map=dict.fromkeys(names, "cpu"), force_hooks=True)
    assert dispatched.hf_device_map and hasattr(dispatched.model.layers[0], "_hf_hook")
    moves = []
    monkeypatch.setattr(prune, "_move", lambda module, device: moves.append(module))
    prune_model(plain, parse_recipe("sparsegpt:0.5"), token_batch())
    prune_model(dispatched, parse_recipe("sparsegpt:0.5"), token_batch(), device="cpu")
    assert moves == []
    reference = plain.state_dict()
    assert all(torch.equal(reference[name], value) for name, value in dispatched.state_dict().items())
