"""Quantized candidates: compressed-tensors checkpoints and GGUF quantizations built here from the
tiny model are evaluated as plain transformers runs them, and a quantization this machine cannot
run is one clear error.

"Plain transformers" is ``AutoModelForCausalLM.from_pretrained`` on the same files, then
``model(...)`` for the MC scores and ``model.generate(...)`` for the greedy answer; only the token
ids come from the suite's prompt helpers, so both sides score the same text.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import compressed_tensors  # noqa: F401  imported before any in-process pytester run (see conftest.py)
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from illusion.data import Item
from illusion.errors import ModelError
from illusion.models import directory_fingerprint, load_model, parse_spec
from illusion.engine.text import build_prompt, continuation_ids, encode_prompt, resolve_format
from illusion.probes import ProbeConfig, probe
from tiny import WORDS, build_model_dir, item, write_gguf, write_items

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = {"en": "What is the name of the old river?", "fr": "Quel est le nom de la vieille ville ?"}
ITEMS = [Item(id=f"q{i}", lang=lang, question=question, answer=WORDS[i], aliases=(),
              distractors=tuple(WORDS[i + 1:i + 4]), type="entity")
         for i, (lang, question) in enumerate([*QUESTIONS.items(), ("en", "Quel est le nom ?"), ("fr", "river?")])]
# scheme, format, the dtype the quantized weights are stored in
COMPRESSED = [("W4A16", "pack-quantized", "I32"), ("W8A16", "pack-quantized", "I32"),
              ("W8A8", "int-quantized", "I8"), ("W8A8", "naive-quantized", "I8"),
              ("FP8_DYNAMIC", "float-quantized", "F8_E4M3")]
DYNAMIC_ACTIVATIONS = {"W8A8", "FP8_DYNAMIC"}  # activations quantized per token at run time
GGUF_TYPES = ["Q8_0", "Q4_0", "Q5_1"]  # what the gguf package can quantize (K-quants it only reads)


def _quantizer():
    spec = importlib.util.spec_from_file_location("quantize_compressed", ROOT / "examples" / "quantize_compressed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quantize_checkpoint = _quantizer().quantize_checkpoint


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("quantized") / "dense", seed=3)


@pytest.fixture(scope="module")
def compressed(dense, tmp_path_factory):
    """scheme-format -> a compressed-tensors checkpoint of ``dense`` (built once per module)."""
    built: dict[str, Path] = {}

    def get(scheme: str, fmt: str) -> Path:
        key = f"{scheme}-{fmt}"
        if key not in built:
            built[key] = quantize_checkpoint(dense, tmp_path_factory.mktemp(key) / "model", scheme=scheme, fmt=fmt,
                                             group_size=32)
        return built[key]
    return get


def plain_results(model, tokenizer, items) -> list[tuple[list[tuple[float, ...]], str]]:
    """Per item: each option's MC score (summed log-probability after the prompt) by ``model(...)``
    three ways: prompt+option alone in one forward, the option after the prompt's cache, and the
    item's options together in one right-padded batch; and the greedy answer line by
    ``model.generate(...)``.

    The ways agree to ~1e-5 for dense and weight-only models. With dynamic activation quantization
    (W8A8, FP8_DYNAMIC) the float noise of a different batch shape (1e-7) can move an activation
    across a rounding boundary, and plain transformers' own scores of the same option then differ by
    one quantization step (measured: 0.007 on one of 16 options, W8A8, alone vs batched). The suite
    batches too, in its own shapes, so it is held to within 1e-4 of the range of plain transformers'
    own scores (for these schemes: on all but a few options, which stay within one rounding step;
    see ``assert_suite_equals_plain``)."""
    fmt = resolve_format(tokenizer, "auto")
    stops = sorted({tokenizer.eos_token_id, *([model.generation_config.eos_token_id] if isinstance(
        model.generation_config.eos_token_id, int) else model.generation_config.eos_token_id or [])} - {None})
    out = []
    with torch.no_grad():
        for it in items:
            prompt = build_prompt(tokenizer, it.question, fmt)
            ids = encode_prompt(tokenizer, prompt, fmt)
            scores = []
            options = (it.answer, *it.distractors)
            batched = _batched_scores(model, tokenizer, ids, [continuation_ids(tokenizer, prompt, o) for o in options])
            for option, in_batch in zip(options, batched):
                cont = continuation_ids(tokenizer, prompt, option)
                targets = torch.tensor(cont)[:, None]
                logits = model(torch.tensor([ids + cont])).logits[0].float()
                full = torch.log_softmax(logits[len(ids) - 1:-1], dim=-1).gather(-1, targets).sum()
                prompt_out = model(torch.tensor([ids]), use_cache=True)
                cached = torch.log_softmax(prompt_out.logits[0, -1].float(), dim=-1)[cont[0]]
                if len(cont) > 1:
                    rest = model(torch.tensor([cont[:-1]]), cache=prompt_out.cache).logits[0].float()
                    cached = cached + torch.log_softmax(rest, dim=-1).gather(-1, targets[1:]).sum()
                scores.append((float(full), float(cached), in_batch))
            generated = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=24, do_sample=False, eos_token_id=stops,
                                       pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(generated[0, len(ids):], skip_special_tokens=True)
            out.append((scores, text.lstrip().split("\n", 1)[0].rstrip()))
    return out


def _batched_scores(model, tokenizer, ids: list[int], conts: list[list[int]]) -> list[float]:
    """Scores of prompt+option for all options in one right-padded batch."""
    rows = [ids + cont for cont in conts]
    width = max(len(row) for row in rows)
    batch = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        batch[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
    logprobs = torch.log_softmax(model(batch, attention_mask=mask).logits.float(), dim=-1)
    return [float(logprobs[r, len(ids) - 1:len(ids) - 1 + len(cont)].gather(-1, torch.tensor(cont)[:, None]).sum())
            for r, cont in enumerate(conts)]


ROUNDING_STEP = 0.05  # bound on what one flipped activation rounding moves a summed log-probability (tiny model)


def assert_suite_equals_plain(suite, plain, *, dynamic_activations: bool = False) -> None:
    """MC scores within 1e-4 of plain transformers' and the same greedy answers. With dynamic
    activation quantization, at most one option in eight may instead be off by a rounding flip
    (less than ROUNDING_STEP; see ``plain_results``)."""
    off = []
    for result, (scores, answer) in zip(suite, plain):
        off += scores_off(result.mc_scores, scores, result.key)
        assert result.generation == answer, result.key
    total = sum(len(result.mc_scores) for result in suite)
    if dynamic_activations:
        assert len(off) <= total // 8 and all(gap < ROUNDING_STEP for _, gap in off), off
    else:
        assert not off, off


def scores_off(suite_scores, plain_scores, key: str) -> list[tuple[str, float]]:
    """(key, distance) of each suite score further than 1e-4 from the range of plain transformers'
    scores of the option."""
    assert len(suite_scores) == len(plain_scores), key
    gaps = [max(min(ways) - score, score - max(ways)) for score, ways in zip(suite_scores, plain_scores)]
    return [(key, gap) for gap in gaps if gap > 1e-4]


def stored_dtypes(directory: Path) -> set[str]:
    with safe_open(str(directory / "model.safetensors"), "pt") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys() if "q_proj" in name}


@pytest.mark.parametrize("scheme, fmt, stored", COMPRESSED, ids=[f"{s}-{f}" for s, f, _ in COMPRESSED])
def test_compressed_tensors_candidate_is_evaluated_as_transformers_runs_it(compressed, dense, scheme, fmt, stored):
    directory = compressed(scheme, fmt)
    assert json.loads((directory / "config.json").read_text())["quantization_config"]["format"] == fmt
    assert stored in stored_dtypes(directory)  # the weights really are stored quantized

    suite = probe(load_model(parse_spec(str(directory)), dtype="float32", device="cpu"), ITEMS, ProbeConfig())

    plain = plain_results(AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32),
                          AutoTokenizer.from_pretrained(directory), ITEMS)
    assert_suite_equals_plain(suite, plain, dynamic_activations=scheme in DYNAMIC_ACTIVATIONS)
    dense_suite = probe(load_model(parse_spec(str(dense)), dtype="float32", device="cpu"), ITEMS, ProbeConfig())
    differences = [abs(a - b) for q, d in zip(suite, dense_suite) for a, b in zip(q.mc_scores, d.mc_scores)]
    assert max(differences) > 1e-3  # the quantization is applied, not skipped


@pytest.mark.parametrize("qtype", GGUF_TYPES)
def test_gguf_quantized_candidate_is_evaluated_as_transformers_loads_it(dense, tmp_path, qtype):
    path = write_gguf(dense, tmp_path / f"tiny-{qtype}.gguf", qtype)

    suite = probe(load_model(parse_spec(str(path)), dtype="float32", device="cpu"), ITEMS, ProbeConfig())

    plain = plain_results(AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32),
                          AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name), ITEMS)
    assert_suite_equals_plain(suite, plain)
    full = write_gguf(dense, tmp_path / "tiny-f32.gguf")
    full_suite = probe(load_model(parse_spec(str(full)), dtype="float32", device="cpu"), ITEMS, ProbeConfig())
    assert max(abs(a - b) for q, d in zip(suite, full_suite) for a, b in zip(q.mc_scores, d.mc_scores)) > 1e-4


@pytest.mark.parametrize("candidate", ["W4A16", "Q8_0"])
def test_a_quantized_candidate_runs_through_the_suite_against_its_dense_reference(
        pytester, compressed, dense, tmp_path, candidate):
    model = (compressed("W4A16", "pack-quantized") if candidate == "W4A16"
             else write_gguf(dense, tmp_path / "tiny-Q8_0.gguf", "Q8_0"))
    data = write_items(tmp_path / "qa", [item(it.id, it.lang, it.question, it.answer, it.distractors) for it in ITEMS])
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    shutil.copy(ROOT / "illusion_tests" / "test_consistency.py", pytester.path / "illusion_tests")
    report = tmp_path / "report"

    result = pytester.runpytest("illusion_tests", "--illusion-model", str(model), "--illusion-reference", str(dense),
                                "--illusion-dataset", str(data), "--illusion-dtype", "float32",
                                "--illusion-report", str(report), "-p", "no:cacheprovider")

    assert result.ret in (0, 1), result.stdout.str()  # findings or none: the run itself worked
    outcomes = result.parseoutcomes()
    assert sum(outcomes.get(k, 0) for k in ("passed", "failed", "xfailed")) == len(ITEMS)
    items = json.loads((report / "report.json").read_text())["items"]
    loaded = (AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32) if candidate == "W4A16" else
              AutoModelForCausalLM.from_pretrained(model.parent, gguf_file=model.name, dtype=torch.float32))
    tokenizer = AutoTokenizer.from_pretrained(dense)
    by_key = {(it.lang, it.id): it for it in ITEMS}
    plain = plain_results(loaded, tokenizer, [by_key[(row["lang"], row["id"])] for row in items])
    for row, (scores, answer) in zip(items, plain):
        assert not scores_off(row["candidate"]["mc_scores"], scores, row["id"])
        assert row["candidate"]["generation"] == answer


def with_quantization(dense: Path, target: Path, quantization: dict) -> Path:
    """A copy of ``dense`` whose config.json declares ``quantization`` (a hand-written config)."""
    shutil.copytree(dense, target)
    config = json.loads((target / "config.json").read_text())
    config["quantization_config"] = quantization
    (target / "config.json").write_text(json.dumps(config))
    return target


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


UNRUNNABLE = [
    pytest.param({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
                 "bitsandbytes", id="bitsandbytes-4bit",
                 marks=pytest.mark.skipif(_installed("bitsandbytes"), reason="bitsandbytes is installed here")),
    pytest.param({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True},
                 "optimum", id="gptq",
                 marks=pytest.mark.skipif(_installed("optimum"), reason="optimum is installed here")),
    pytest.param({"quant_method": "eetq", "weights": "int8"}, "GPU", id="eetq-needs-a-gpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")),
]


@pytest.mark.parametrize("quantization, needs", UNRUNNABLE)
def test_a_quantization_this_machine_cannot_run_is_one_clear_error(dense, tmp_path, quantization, needs):
    directory = with_quantization(dense, tmp_path / "model", quantization)
    with pytest.raises(ModelError) as error:
        load_model(parse_spec(str(directory)), dtype="float32", device="cpu")
    message = str(error.value)
    assert f"quant_method {quantization['quant_method']!r}" in message and needs in message
    assert "which needs" in message and "dense checkpoint" in message


def test_compressed_tensors_missing_names_the_extra_to_install(compressed, monkeypatch):
    from transformers.quantizers import quantizer_compressed_tensors

    monkeypatch.setattr(quantizer_compressed_tensors, "is_compressed_tensors_available", lambda: False)
    with pytest.raises(ModelError, match=r"which needs a Python package .*benchmark-illusion\[compressed\]"):
        load_model(parse_spec(str(compressed("W4A16", "pack-quantized"))), dtype="float32", device="cpu")


def test_a_quant_method_transformers_does_not_know_is_refused(dense, tmp_path):
    """transformers skips it with a warning and would run the layers dense (here: random, see below)."""
    directory = with_quantization(dense, tmp_path / "model", {"quant_method": "brand-new-q3"})
    with pytest.raises(ModelError, match=r"quant_method 'brand-new-q3', which transformers .* does not know"):
        load_model(parse_spec(str(directory)), dtype="float32", device="cpu")


def test_quantized_weights_without_their_config_are_refused_not_run_random(compressed, tmp_path):
    """Packed weights under a config.json that does not declare them: transformers finds no
    ``weight`` tensors and initialises them at random, with only a warning."""
    directory = shutil.copytree(compressed("W4A16", "pack-quantized"), tmp_path / "stripped")
    config = json.loads((directory / "config.json").read_text())
    del config["quantization_config"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"lacks weights the model needs \(model\.layers\.0\..*\); they would be random"):
        load_model(parse_spec(str(directory)), dtype="float32", device="cpu")


def test_the_fingerprint_follows_the_quantization_config(compressed, tmp_path):
    original = compressed("W8A8", "int-quantized")
    directory = shutil.copytree(original, tmp_path / "copy")
    assert directory_fingerprint(directory) == directory_fingerprint(original)
    config = json.loads((directory / "config.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["input_activations"] = None  # same weights, no act. quant
    (directory / "config.json").write_text(json.dumps(config))
    assert directory_fingerprint(directory) != directory_fingerprint(original)


def test_the_suite_stops_with_exit_4_and_the_cli_with_one_line(pytester, dense, tmp_path):
    directory = with_quantization(dense, tmp_path / "bnb", {"quant_method": "bitsandbytes", "load_in_8bit": True})
    if _installed("bitsandbytes"):
        pytest.skip("bitsandbytes is installed here")
    data = write_items(tmp_path / "qa", [item(it.id, it.lang, it.question, it.answer, it.distractors) for it in ITEMS])
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    shutil.copy(ROOT / "illusion_tests" / "test_consistency.py", pytester.path / "illusion_tests")

    result = pytester.runpytest("illusion_tests", "--illusion-model", str(directory), "--illusion-reference",
                                str(dense), "--illusion-dataset", str(data), "-p", "no:cacheprovider")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "which needs" in output and "bitsandbytes" in output and "Traceback" not in output

    cli = subprocess.run([sys.executable, "-m", "illusion", "export", str(directory), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    lines = [line for line in cli.stderr.splitlines() if "which needs" in line]
    assert len(lines) == 1 and "bitsandbytes" in lines[0]
    assert not (tmp_path / "out").exists()
