"""``python -m illusion validate`` through its command line."""

from __future__ import annotations

import subprocess
import sys

from tiny import item, write_items


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "illusion", *args], capture_output=True, text=True)


def test_validate_passes_on_the_shipped_set():
    result = run("validate")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("ok: ")


def test_validate_lists_every_problem(tmp_path):
    write_items(tmp_path, [
        item("q1", "en", "Capital of France?", "Paris", ["Lyon", "Nice", "Paris"]),
        item("q2", "en", "Capital of Italy?", "Rome", ["Milan", "Turin", "Naples"]),
        item("q1", "fr", "Capitale de la France ?", "Paris", ["Lyon", "Nice", "Brest"]),
    ])
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    out = result.stdout
    assert "en.jsonl:1: field 'distractors' entry 'Paris' matches the gold form 'Paris'" in out
    assert "fr.jsonl: ids q2 are missing" in out
    assert "2 problem(s)" in out


def test_prune_writes_a_checkpoint_plain_transformers_loads(tiny_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pruned"
    result = run("prune", "--model", str(tiny_dir), "--method", "magnitude", "--sparsity", "0.5", "--out", str(out),
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "block 2/2" in result.stderr  # progress per block
    model = AutoModelForCausalLM.from_pretrained(out)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert float((weight == 0).float().mean()) == 0.5
    dense = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert torch.equal(model.model.embed_tokens.weight, dense.model.embed_tokens.weight)
    assert any(p.name == "model.safetensors" for p in out.iterdir())


def test_prune_wanda_with_calibration_languages(tiny_dir, tmp_path):
    out = tmp_path / "wanda"
    result = run("prune", "--model", str(tiny_dir), "--method", "wanda", "--nm", "2:4", "--out", str(out),
                 "--calibration-langs", "fr,de", "--calibration-samples", "4", "--calibration-seqlen", "32",
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "4x32 calibration tokens (fr,de)" in result.stderr and "wanda:2:4" in result.stdout


def test_prune_rejects_bad_amounts_with_valid_forms(tiny_dir, tmp_path):
    result = run("prune", "--model", str(tiny_dir), "--method", "wanda", "--sparsity", "1.5", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--sparsity 'wanda:1.5': sparsity must be in (0, 1)" in result.stderr
    assert "valid forms" in result.stderr


def test_cache_info_and_clear(tmp_path, monkeypatch):
    from illusion.store import ResultStore
    from test_store import ITEM, RESULT

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path))
    ResultStore(tmp_path / "results.sqlite3").put("m", "c", [(ITEM, RESULT)])
    assert "1 results for 1 model(s)" in run("cache", "info").stdout
    assert "removed 1 results" in run("cache", "clear").stdout
    assert "0 results" in run("cache", "info").stdout


def test_cache_info_reports_a_damaged_store_and_clear_replaces_it(tmp_path, monkeypatch):
    from test_store import damage, filled_store

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path))
    path = tmp_path / "results.sqlite3"
    filled_store(path)
    damage(path, "results table")
    before = path.read_bytes()
    info = run("cache", "info")
    assert info.returncode == 2 and "damaged" in info.stderr, info
    assert "python -m illusion cache clear" in info.stderr and "delete" in info.stderr
    assert path.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))  # info only looks
    cleared = run("cache", "clear")
    assert cleared.returncode == 0 and "moved it to" in cleared.stderr, cleared
    assert list(tmp_path.glob("results.sqlite3.corrupt-*"))
    after = run("cache", "info")
    assert after.returncode == 0 and "0 results for 0 model(s)" in after.stdout, after


def test_cache_info_reports_a_foreign_file_without_touching_it(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path))
    path = tmp_path / "results.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    before = path.read_bytes()
    info = run("cache", "info")
    assert info.returncode == 2 and "not a results store" in info.stderr and "users" in info.stderr, info
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite3"]
