"""``python -m illusion export``: a model spec written as a plain Hugging Face checkpoint directory,
into an ``--out`` that holds nothing the project did not write (checkpoint.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_cli import check_refused_untouched, prune_into, tree, unrelated_files
from tiny import write_gguf

TEXT = "What is the name of the old river?"


def export(spec: str | Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "illusion", "export", str(spec), "--out", str(out), *extra],
                          capture_output=True, text=True)


def plain_logits(directory: Path) -> tuple[list[int], torch.Tensor]:
    """Token ids and logits of TEXT, loaded the way a user's own code would: plain transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        return ids[0].tolist(), model(ids).logits


def test_export_writes_a_checkpoint_plain_transformers_loads_with_the_sources_logits(tiny_dir, tmp_path):
    out = tmp_path / "exported"
    result = export(tiny_dir, out)
    assert result.returncode == 0, result.stderr
    assert f"--illusion-model {out}" in result.stdout
    ids, logits = plain_logits(out)
    source_ids, source_logits = plain_logits(tiny_dir)
    assert ids == source_ids and torch.equal(logits, source_logits)
    marker = json.loads((out / "illusion-export.json").read_text())
    assert marker["written_by"] == "python -m illusion export" and marker["complete"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*marker["files"], "illusion-export.json"])
    assert any(name.endswith(".safetensors") for name in marker["files"]) and "config.json" in marker["files"]

    again = export(tiny_dir, out)  # a directory export wrote: rewritten in place, no --force needed
    assert again.returncode == 0, again.stderr
    assert torch.equal(plain_logits(out)[1], source_logits)


def test_export_a_gguf_gives_the_ggufs_logits(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = write_gguf(tiny_dir, tmp_path / "tiny.gguf")
    out = tmp_path / "exported"
    result = export(gguf, out)
    assert result.returncode == 0, result.stderr
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # the GGUF as transformers reads it
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        source_logits = model(ids).logits
    exported_ids, logits = plain_logits(out)
    assert exported_ids == ids[0].tolist() and torch.equal(logits, source_logits)
    assert json.loads((out / "illusion-export.json").read_text())["base"] == str(gguf)


def test_export_refuses_a_non_empty_out_it_did_not_write_and_leaves_it_untouched(tiny_dir, tmp_path):
    out = tmp_path / "models"
    unrelated_files(out)
    (out / "config.json").write_text("{}")  # even a file the checkpoint would write: not replaced
    before = tree(out)
    check_refused_untouched(export(tiny_dir, out), out, before)


def test_export_with_force_replaces_only_the_checkpoints_own_files(tiny_dir, tmp_path):
    out = tmp_path / "models"
    before = unrelated_files(out)
    result = export(tiny_dir, out, "--force")
    assert result.returncode == 0, result.stderr
    assert {name: tree(out)[name] for name in before} == before
    assert torch.equal(plain_logits(out)[1], plain_logits(tiny_dir)[1])


def test_export_and_prune_take_over_each_others_directories(tiny_dir, tmp_path):
    """Either command may rewrite a checkpoint the other wrote; the old marker and files go with it,
    the user's files stay."""
    out = tmp_path / "models"
    before = unrelated_files(out)
    assert prune_into(tiny_dir, out, "--force").returncode == 0
    (out / "model-00002-of-00002.safetensors").write_bytes(b"stale shard")
    marker = json.loads((out / "illusion-prune.json").read_text())
    (out / "illusion-prune.json").write_text(json.dumps({**marker, "files": [*marker["files"],
                                                                             "model-00002-of-00002.safetensors"]}))
    result = export(tiny_dir, out)
    assert result.returncode == 0, result.stderr
    assert not (out / "illusion-prune.json").exists() and not (out / "model-00002-of-00002.safetensors").exists()
    files = json.loads((out / "illusion-export.json").read_text())["files"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "illusion-export.json", "notes.txt", "other-model"])
    assert {name: tree(out)[name] for name in before} == before
    assert torch.equal(plain_logits(out)[1], plain_logits(tiny_dir)[1])

    result = prune_into(tiny_dir, out)
    assert result.returncode == 0, result.stderr
    assert not (out / "illusion-export.json").exists() and (out / "illusion-prune.json").is_file()
    assert {name: tree(out)[name] for name in before} == before


@pytest.mark.parametrize("bad", ["file", "spec"])
def test_export_errors_name_the_problem(tiny_dir, tmp_path, bad):
    out = tmp_path / "out"
    if bad == "file":
        out.write_text("x")
        result, named = export(tiny_dir, out), "is a file"
    else:
        result, named = export(tmp_path / "missing", out), "is not a builtin"
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_export_the_builtin_gives_what_the_suite_evaluates(shared_cache, tmp_path, monkeypatch):
    from illusion.models import converted_gguf_dir, parse_spec

    monkeypatch.setenv("ILLUSION_CACHE", str(shared_cache))  # SmolLM2 converted once per test session
    out = tmp_path / "smollm2"
    result = export("smollm2-135m", out)
    assert result.returncode == 0, result.stderr
    ids, logits = plain_logits(out)
    source_ids, source_logits = plain_logits(converted_gguf_dir(parse_spec("smollm2-135m")))
    assert ids == source_ids and torch.equal(logits, source_logits)
    assert json.loads((out / "illusion-export.json").read_text())["base"] == "smollm2-135m"
