"""The real suite on the real embedded SmolLM2-135M, on a handful of items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent.parent / "illusion_tests"


def test_suite_runs_on_smollm2(pytester, monkeypatch, shared_cache):
    monkeypatch.setenv("ILLUSION_CACHE", str(shared_cache))  # the converted SmolLM2; no results (--illusion-no-cache)
    pytester.makeini("[pytest]\n")
    target = pytester.mkpydir("illusion_tests")
    for module in ("test_consistency.py", "test_gold_rank.py", "test_languages.py"):
        target.joinpath(module).write_text((SUITE / module).read_text())
    result = pytester.runpytest("illusion_tests", "--illusion-langs", "en,fr", "--illusion-limit-per-lang", "4",
                                "--illusion-report", "out", "--illusion-no-cache", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    items = report["items"]
    assert len(items) == 8 and {i["lang"] for i in items} == {"en", "fr"}
    # Every test of the run is counted in report.json, by language and by test: item tests and gates.
    outcomes = result.parseoutcomes()
    kinds = ("passed", "failed", "xfailed", "skipped")
    tests = {k: sum(lang["tests"][k] for lang in report["languages"].values()) for k in kinds}
    assert tests == {k: outcomes.get(k, 0) for k in kinds} and sum(tests.values()) == 8 * 2 + 2
    en = report["languages"]["en"]["tests"]["by_test"]
    assert sum(en["gold_rank"].values()) == 4 and sum(en["language_gate"].values()) == 1
    assert en["gold_rank"] == {"failed": 4}  # no committed baselines in this directory: each says how to record
    gate = report["languages"]["fr"]["gate"]
    assert 0 <= gate["p_value"] <= 1 and gate["pairs"] == report["languages"]["fr"]["mc_correct"]
    assert (pytester.path / "out" / "report.md").is_file() and (pytester.path / "out" / "report.html").is_file()
    for item in items:
        cand = item["candidate"]
        assert item["prompt"].startswith("<|im_start|>system") and item["prompt"].endswith("assistant\n")
        assert len(cand["mc_scores"]) == len(item["options"]) >= 4
        assert cand["gold_rank"] >= 1 and "\n" not in cand["generation"]
        # No pruning: the candidate is the reference; only the candidate gets recovery probes.
        assert item["reference"]["recovery"] is None
        assert {**item["candidate"], "recovery": None} == item["reference"]
    # The dense model answers easy English questions: at least half of these are generation-correct.
    english = [i for i in items if i["lang"] == "en"]
    assert sum(i["candidate"]["gen_correct"] for i in english) >= 2
    assert "benchmark-illusion" in result.stdout.str()
