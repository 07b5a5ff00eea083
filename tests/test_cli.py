"""``python -m illusion validate`` through its command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from illusion.errors import DataError
from illusion.sources import load_items
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
        item("q3", "fr", "Capitale de l'Italie ?", "Rome", ["Milan", "Turin", "Naples"]),
        item("q2", "fr", "Capitale de l'Italie ?", "Rome", ["Milan", "Turin", "Rome"]),
    ])
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    out = result.stdout
    # the row problems of every file, not only the first file's
    assert "en.jsonl:1: field 'distractors' entry 'Paris' matches the gold form 'Paris'" in out
    assert "fr.jsonl:2: field 'distractors' entry 'Rome' matches the gold form 'Rome'" in out
    # ids whose rows are invalid still count as present: q1 and q2 are not reported missing
    assert "1 of 3 ids missing for 'en' (q3)" in out and "1 of 3 ids missing for 'fr' (q1)" in out
    assert "4 problem(s)" in out


def test_validate_prints_every_problem_not_only_the_first_twenty(tmp_path):
    write_items(tmp_path, [item(f"q{n}", "en", "", "Paris", ["Lyon", "Nice", "Brest"]) for n in range(25)])
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    assert all(f"en.jsonl:{n + 1}: field 'question' must be a non-empty string" in result.stdout for n in range(25))
    assert "25 problem(s)" in result.stdout and "more" not in result.stdout


# --- validate and the suite read a dataset through the same loaders: same problems, same words ---

GOOD = [item("q1", "en", "Capital of France?", "Paris", ["Lyon", "Nice", "Brest"]),
        item("q2", "en", "Capital of Italy?", "Rome", ["Milan", "Turin", "Naples"])]


def empty_language(tmp_path):
    write_items(tmp_path / "data", GOOD)
    (tmp_path / "data" / "fr.jsonl").write_text("\n")
    return tmp_path / "data", "fr.jsonl: no items"


def only_an_empty_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "en.jsonl").write_text("")
    return tmp_path / "data", "en.jsonl: no items"


def unaligned(tmp_path):
    write_items(tmp_path / "data", [*GOOD, {**GOOD[0], "lang": "fr", "question": "Capitale de la France ?"}])
    return tmp_path / "data", "fr.jsonl: 1 of 2 ids missing for 'fr' (q2)"


def csv_with_bad_json_list(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('id,lang,question,answer,aliases,distractors,type\n'
                    'q1,en,Capital of France?,Paris,,"[""Lyon"",""Nice"",""Brest""]",place\n'
                    'q2,en,Capital of Italy?,Rome,"[""Roma""","[""Milan"",""Turin"",""Naples""]",place\n',
                    encoding="utf-8")
    return path, f"{path}:3: column 'aliases' is not a JSON list"


def parquet_with_text_lists(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "items.parquet"
    pq.write_table(pa.Table.from_pylist([{**GOOD[0], "aliases": [], "distractors": "Lyon, Nice, Brest"}]), path)
    return path, f"{path}:1: field 'distractors' must be a list of non-empty strings (got 'Lyon, Nice, Brest')"


@pytest.mark.parametrize("make", [empty_language, only_an_empty_file, unaligned, csv_with_bad_json_list,
                                  parquet_with_text_lists])
def test_validate_and_the_suite_report_the_same_problem(tmp_path, make):
    path, problem = make(tmp_path)
    result = run("validate", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem in result.stdout and "problem(s)" in result.stdout
    assert "one JSON object per line" not in result.stdout and "UTF-8" not in result.stdout
    notes: list[str] = []
    try:
        load_items(str(path), note=notes.append)
    except DataError as exc:
        said = str(exc)
    else:
        said = "\n".join(notes)  # the suite runs, and says so in a progress line
    assert problem in said
    line = next(line for line in result.stdout.splitlines() if problem in line)
    assert line in said.splitlines()  # word for word


def test_validate_accepts_every_dataset_form_the_suite_does(tmp_path):
    rows = [{**row, "type": "place"} for row in GOOD]
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    mkqa = tmp_path / "mkqa.jsonl"
    mkqa.write_text("".join(json.dumps({"id": str(n), "lang": lang, "question": f"{lang} question {n}?",
                                        "answers": [{"type": "number", "text": str(n * 7)}]}) + "\n"
                            for lang in ("en", "fr") for n in range(1, 6)))
    for spec in (str(jsonl), f"mkqa:{mkqa}"):
        result = run("validate", spec)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == f"ok: {spec}"
    missing = run("validate", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "no such file; accepted forms:" in missing.stdout


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


def prune_into(model: Path, out: Path, *extra: str, sparsity: str = "0.5") -> subprocess.CompletedProcess:
    return run("prune", "--model", str(model), "--method", "magnitude", "--sparsity", sparsity, "--out", str(out),
               "--device", "cpu", *extra)


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def unrelated_files(directory: Path) -> dict[str, bytes]:
    """A user's files that happen to share the directory ``--out`` names."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "notes.txt").write_text("my notes")
    (directory / "other-model").mkdir()
    (directory / "other-model" / "model.safetensors").write_bytes(bytes(range(256)))
    return tree(directory)


def check_refused_untouched(result, out: Path, before: dict[str, bytes]) -> None:
    """A command refused a non-empty ``--out`` it did not write: usage error naming --out and --force,
    before any work, and every file there byte-identical."""
    assert result.returncode == 2, result.stderr
    assert f"--out {str(out)!r}" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr and "loading" not in result.stderr  # refused before any work
    assert tree(out) == before


def zeros(directory: Path) -> float:
    from transformers import AutoModelForCausalLM

    weight = AutoModelForCausalLM.from_pretrained(directory).model.layers[0].mlp.up_proj.weight
    return float((weight == 0).float().mean())


def test_prune_refuses_a_non_empty_out_it_did_not_write(tiny_dir, tmp_path):
    out = tmp_path / "models"
    before = unrelated_files(out)
    check_refused_untouched(prune_into(tiny_dir, out), out, before)


def test_prune_force_and_rerun_replace_only_the_checkpoint_files(tiny_dir, tmp_path):
    out = tmp_path / "models"
    before = unrelated_files(out)
    (out / "config.json").write_text("{}")  # a file of the same name as one the checkpoint writes
    result = prune_into(tiny_dir, out, "--force")
    assert result.returncode == 0, result.stderr
    assert {name: tree(out)[name] for name in before} == before  # byte-identical
    marker = json.loads((out / "illusion-prune.json").read_text())
    assert marker["recipe"] == "magnitude:0.5" and "config.json" in marker["files"]
    assert not set(marker["files"]) & set(before) and "other-model" not in marker["files"]
    assert zeros(out) == 0.5

    # An earlier run wrote a shard this one does not: the rerun removes it (it wrote it), no --force needed.
    (out / "model-00002-of-00002.safetensors").write_bytes(b"stale shard")
    marker["files"].append("model-00002-of-00002.safetensors")
    (out / "illusion-prune.json").write_text(json.dumps(marker))
    result = prune_into(tiny_dir, out, sparsity="0.25")
    assert result.returncode == 0, result.stderr
    assert {name: tree(out)[name] for name in before} == before
    assert not (out / "model-00002-of-00002.safetensors").exists()
    assert zeros(out) == 0.25
    assert json.loads((out / "illusion-prune.json").read_text())["recipe"] == "magnitude:0.25"
    assert sorted(p.name for p in out.iterdir()) == sorted({*json.loads((out / "illusion-prune.json").read_text())[
        "files"], "illusion-prune.json", "notes.txt", "other-model"})  # no staging left behind


def test_prune_into_an_empty_directory_needs_no_force(tiny_dir, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result = prune_into(tiny_dir, out)
    assert result.returncode == 0, result.stderr
    assert zeros(out) == 0.5


def test_sweep_takes_a_calibration_seed_apart_from_the_item_seed(tmp_path, monkeypatch):
    import illusion.sweep
    from illusion.__main__ import main

    seen = []
    monkeypatch.setattr(illusion.sweep, "sweep", lambda settings, out, progress: seen.append(settings) or [])
    assert main(["sweep", "--out", str(tmp_path), "--seed", "3", "--calibration-seed", "5"]) == 0
    assert seen[0].base.seed == 3 and seen[0].base.calibration.seed == 5
    assert seen[0].as_dict()["calibration"]["seed"] == 5


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


def test_cache_info_shows_the_digest_memo(tmp_path, monkeypatch):
    from illusion.digests import file_digest

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))
    assert "no file digests memoised yet" in run("cache", "info").stdout
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    small.write_bytes(b"s" * 10)
    large.write_bytes(b"l" * (4 << 20))
    file_digest(small), file_digest(large), file_digest(large)  # the second of large is memoised
    info = run("cache", "info")
    assert info.returncode == 0, info
    memo = next(line for line in info.stdout.splitlines() if "digests.json" in line)
    assert f"2 file digest(s) memoised over {10 + (4 << 20)} bytes" in memo
    assert "slowest first hash: " in memo and " s" in memo


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


def test_prune_on_cuda_keeps_the_model_on_the_cpu_and_prunes_block_by_block(tiny_dir, tmp_path, monkeypatch, capsys):
    """Wiring only (no GPU here): ``prune --device cuda`` loads the model on the CPU and hands
    ``cuda`` to prune_model, which moves one decoder block at a time (tests/test_prune.py covers
    that path; here it runs with device cpu)."""
    import torch

    import illusion.prune
    from illusion.__main__ import main

    real, calls = illusion.prune.prune_model, []

    def on_cpu(model, recipe, calibration, *, device=None, progress=None):
        calls.append(({p.device.type for p in model.parameters()}, device))
        return real(model, recipe, calibration, device="cpu", progress=progress)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(illusion.prune, "prune_model", on_cpu)
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_dir), "--method", "magnitude", "--sparsity", "0.5",
                 "--out", str(out), "--device", "cuda"]) == 0
    assert calls == [({"cpu"}, "cuda")]
    assert "one decoder block at a time on cuda" in capsys.readouterr().err
    assert json.loads((out / "illusion-prune.json").read_text())["device"] == "cuda"
