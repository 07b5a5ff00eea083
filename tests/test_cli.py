"""``python -m illusion validate`` through its command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_cli_runs_in_the_tests_private_cache(tmp_path_factory, monkeypatch):
    """tests/conftest.py points ILLUSION_CACHE and HOME into the session's temporary directory for
    every test, and the subprocesses a test starts inherit both: no test reaches the user's cache."""
    base = str(tmp_path_factory.getbasetemp())
    assert run("cache", "info").stdout.startswith(base)
    monkeypatch.delenv("ILLUSION_CACHE")  # then the default, ~/.cache/illusion, must be under a temporary HOME
    assert run("cache", "info").stdout.startswith(base)


@pytest.mark.parametrize("test_body, exit_code", [
    ("pathlib.Path(GUARDED, 'results.sqlite3').read_text()", pytest.ExitCode.OK),
    ("pathlib.Path(GUARDED, 'models').mkdir()", pytest.ExitCode.TESTS_FAILED),
    ("pathlib.Path(GUARDED, 'results.sqlite3').write_text('y')", pytest.ExitCode.TESTS_FAILED),
])
def test_cache_guard_fails_a_session_that_changes_the_user_cache(pytester, test_body, exit_code):
    """The guard tests/conftest.py puts on the user's cache: reading is fine, any change fails the run."""
    guarded = pytester.mkdir("user-cache")
    (guarded / "results.sqlite3").write_text("x")
    pytester.makeconftest(f"""
from cache_guard import CacheGuard

def pytest_configure(config):
    config.pluginmanager.register(CacheGuard([{str(guarded)!r}]), "guard")
""")
    pytester.makepyfile(test_touch=f"import pathlib\nGUARDED = {str(guarded)!r}\n\n"
                                   f"def test_touch():\n    {test_body}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == exit_code, result.stdout.str()
    assert ("the user's illusion cache changed while the tests ran" in result.stdout.str()) == bool(exit_code)
