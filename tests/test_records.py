"""What the tests report, collected from pytest reports (illusion.records): the run's table and
report.json are made from this alone, so it must read every kind of report the same way."""

from __future__ import annotations

import json

import pytest

from illusion.records import GATE_RECORDS_PROPERTY, ITEM_PROPERTY, TEST_PROPERTY, RunRecords, suite_test
from illusion.snapshots import NOTE_PROPERTY


def make_report(when: str, outcome: str, props: list, nodeid: str = "t", **extra) -> pytest.TestReport:
    report = pytest.TestReport(nodeid, ("t.py", 0, "t"), {}, outcome, None, when, user_properties=props)
    for name, value in extra.items():
        setattr(report, name, value)
    return report


def test_run_records_collect_items_gates_notes_and_outcomes_from_reports():
    def test(kind: str, lang: str) -> tuple[str, str]:
        return TEST_PROPERTY, json.dumps({"kind": kind, "lang": lang, "id": None})

    records = RunRecords()
    item = {"lang": "pt-BR", "id": "q1", "outcome": "fail"}
    reports = [
        make_report("setup", "passed", [test("mc_implies_generation", "pt-BR")], "a"),  # not counted
        make_report("call", "failed", [test("mc_implies_generation", "pt-BR"), (ITEM_PROPERTY, json.dumps(item)),
                                       (NOTE_PROPERTY, json.dumps({"key": "pt-BR-q1", "status": "missing"}))], "a"),
        make_report("teardown", "passed", [test("mc_implies_generation", "pt-BR")], "a"),  # not counted
        make_report("call", "skipped", [test("mc_implies_generation", "fr")], "b", wasxfail=""),
        make_report("setup", "failed", [test("language_gate", "de")], "c"),  # an error in setup counts
        make_report("call", "passed", [test("language_gate", "fr"),
                                       (GATE_RECORDS_PROPERTY, json.dumps([{"lang": "fr", "id": "q2"}]))], "d"),
        make_report("call", "passed", [("other", "1")], "e"),  # not a suite test
    ]
    for report in reports:
        records.pytest_runtest_logreport(report)
    assert records.records == {("pt-BR", "q1"): item, ("fr", "q2"): {"lang": "fr", "id": "q2"}}
    assert records.snapshot_notes == {"pt-BR-q1": {"key": "pt-BR-q1", "status": "missing"}}
    assert records.outcomes == {"a": ("mc_implies_generation", "pt-BR", "failed"),
                                "b": ("mc_implies_generation", "fr", "xfailed"),
                                "c": ("language_gate", "de", "failed"), "d": ("language_gate", "fr", "passed")}


def test_suite_tests_are_told_by_their_parameters_never_by_their_ids(pytester):
    """``pt-BR-q1`` is item q1 of pt-BR: the kind, language and id come from the parameters."""
    from illusion.data import Item

    item = Item(id="BR-q1", lang="pt", question="?", answer="a", aliases=(), distractors=("b", "c", "d"), type="x")
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.parametrize("illusion_item", [0])
        def test_mc_implies_generation(illusion_item): pass

        @pytest.mark.parametrize("illusion_lang", ["pt-BR"])
        def test_language_gate(illusion_lang): pass

        def test_other(): pass
    """)
    items, _ = pytester.inline_genitems("-p", "no:illusion")
    items[0].callspec.params["illusion_item"] = item  # what the plugin's parametrisation puts there
    assert [suite_test(it) for it in items] == [{"kind": "mc_implies_generation", "lang": "pt", "id": "BR-q1"},
                                                {"kind": "language_gate", "lang": "pt-BR", "id": None}, None]
