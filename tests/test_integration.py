"""The real suite on the real embedded SmolLM2-135M, on a handful of items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent.parent / "illusion_tests"


def test_suite_runs_on_smollm2(pytester):
    pytester.makeini("[pytest]\n")
    target = pytester.mkpydir("illusion_tests")
    target.joinpath("test_consistency.py").write_text((SUITE / "test_consistency.py").read_text())
    result = pytester.runpytest("illusion_tests", "--illusion-langs", "en,fr", "--illusion-limit-per-lang", "4",
                                "--illusion-report", "out", "--illusion-no-cache", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    items = report["items"]
    assert len(items) == 8 and {i["lang"] for i in items} == {"en", "fr"}
    outcomes = result.parseoutcomes()
    tests = {k: sum(lang["tests"][k] for lang in report["languages"].values()) for k in ("passed", "failed", "xfailed")}
    assert tests == {k: outcomes.get(k, 0) for k in ("passed", "failed", "xfailed")}
    for item in items:
        cand = item["candidate"]
        assert item["prompt"].startswith("<|im_start|>system") and item["prompt"].endswith("assistant\n")
        assert len(cand["mc_scores"]) == len(item["options"]) >= 4
        assert cand["gold_rank"] >= 1 and "\n" not in cand["generation"]
        assert item["candidate"] == item["reference"]  # no pruning yet: candidate is the reference
    # The dense model answers easy English questions: at least half of these are generation-correct.
    english = [i for i in items if i["lang"] == "en"]
    assert sum(i["candidate"]["gen_correct"] for i in english) >= 2
    assert "benchmark-illusion" in result.stdout.str()
