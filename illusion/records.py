"""What the run's tests report, collected for the table, report.json and the baseline summary.

Each suite test's report carries its kind and language (``label_report``), an item test its
item record (``item_properties``) and a gate test the records of its language; ``RunRecords``
reads them from every report, this process's or an xdist worker's, so the summary and
report.json are the same with and without xdist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import pytest

if TYPE_CHECKING:
    from .data import Item
    from .session import RunConfig
    from .verdict import ItemVerdict

ITEM_PROPERTY = "illusion_item"  # an item test's record (call report; also in junit)
TEST_PROPERTY = "illusion_test"  # kind, lang and item id of a suite test: never parsed back from its id
GATE_RECORDS_PROPERTY = "illusion_gate_records"  # the item records a gate used (call report only, not junit)
GATE_RECORDS_KEY = pytest.StashKey[list]()  # a gate test's item records, until its call report is made


def item_properties(verdict: ItemVerdict, item: Item) -> list[tuple[str, Any]]:
    """What an item's test states on its report: readable fields for --junitxml, and the full
    record that feeds the summary and report.json."""
    from .report import item_record

    record = item_record(verdict, question=item.question, aliases=item.aliases, item_type=item.type)
    cand = verdict.candidate
    return [("illusion_category", verdict.candidate_category), ("illusion_gold_rank", cand.gold_rank),
            ("illusion_recovered_by", ",".join(cand.recovered_by or ())),
            (ITEM_PROPERTY, json.dumps(record, ensure_ascii=False))]


def gate_records(items: Sequence[Item], verdicts: Sequence[ItemVerdict]) -> list[dict]:
    """The item records a language gate used: its row in the report states the gate's numbers."""
    from .report import item_record

    return [item_record(verdict, question=item.question, aliases=item.aliases, item_type=item.type)
            for item, verdict in zip(items, verdicts)]


def suite_test(item: pytest.Item) -> dict | None:
    """Kind, language and item id of one of the suite's tests, from its parameters; None for others."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    kind = getattr(item, "originalname", item.name).removeprefix("test_")
    if kind in ("mc_implies_generation", "gold_rank") and "illusion_item" in params:
        return {"kind": kind, "lang": params["illusion_item"].lang, "id": params["illusion_item"].id}
    if kind == "language_gate" and "illusion_lang" in params:
        return {"kind": kind, "lang": params["illusion_lang"], "id": None}
    return None


def label_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """Every report of a suite test says which test it is (an xdist worker's reach the controller
    with it), so a test that errors in setup still counts under its language; a gate's call
    report carries the records it used."""
    test = suite_test(item)
    if test is not None:
        report.user_properties.append((TEST_PROPERTY, json.dumps(test, ensure_ascii=False)))
    if report.when == "call" and GATE_RECORDS_KEY in item.stash:
        report.user_properties.append((GATE_RECORDS_PROPERTY, json.dumps(item.stash[GATE_RECORDS_KEY],
                                                                         ensure_ascii=False)))


@dataclass(eq=False)  # a plugin object: compared by identity
class RunRecords:
    """What the run's tests reported (in this process, or an xdist worker's): item records, gold-rank
    baseline notes and pytest outcomes; a pytest plugin object. The table, report.json and the
    baseline summary are made from these alone, so they are the same with and without xdist."""

    records: dict[tuple[str, str], dict] = field(default_factory=dict)  # (lang, id) -> item record
    snapshot_notes: dict[str, dict] = field(default_factory=dict)  # item key -> baseline note
    outcomes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # node id -> (kind, lang, outcome)
    report_path: str | None = None  # report.json, once written

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from .snapshots import NOTE_PROPERTY

        if report.when == "call" or (report.when == "setup" and not report.passed):
            self._count(report)
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == ITEM_PROPERTY:
                record = json.loads(value)
                self.records[record["lang"], record["id"]] = record
            elif name == GATE_RECORDS_PROPERTY:  # the report's row of a gated language: the gate's items
                self.records.update({(r["lang"], r["id"]): r for r in json.loads(value)})
            elif name == NOTE_PROPERTY:
                note = json.loads(value)
                self.snapshot_notes[note["key"]] = note

    def _count(self, report: pytest.TestReport) -> None:
        """The pytest outcome of each suite test, by kind and language, for report.json."""
        test = next((json.loads(value) for name, value in report.user_properties if name == TEST_PROPERTY), None)
        if test is None:
            return
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        self.outcomes[report.nodeid] = (test["kind"], test["lang"], outcome)

    def write_report(self, run: RunConfig) -> None:
        """report.json, .md and .html under ``--illusion-report``, when it is given."""
        if not run.report_dir:
            return
        from .report import build_report, write_report

        report = build_report(list(self.records.values()), run.as_dict(), self.outcomes.values())
        self.report_path = str(write_report(run.report_dir, report))

    def table_lines(self, run: RunConfig) -> list[str]:
        """The per-language table, headed by what was compared (unescaped: print through safe_text)."""
        from .report import format_table, language_table, recovery_scope_text

        candidate = run.model + (f" pruned {run.prune}" if run.prune else "")
        return [f"candidate: {candidate}   reference: {run.reference_spec}   (each cell: reference -> candidate)",
                f"recovery probes (demoted/erased) ran on {recovery_scope_text(run.as_dict())}",
                *format_table(language_table(self.records.values()))]
