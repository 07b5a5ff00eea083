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
