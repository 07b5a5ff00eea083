"""report.json: one record per item, the per-language summary, and writing the three report files.

Reports are built from plain item records (dicts), the same ones each test attaches to its
pytest report, so the controller of an xdist run can report items its workers computed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Sequence

from ..files import write_atomic
from ..results import result_from_dict, result_to_dict
from ..verdict import ItemVerdict, LanguageVerdict, by_language, language_gate
from .html_report import render_html
from .markdown import render_markdown

REPORT_VERSION = 1


def item_record(verdict: ItemVerdict, *, question: str, aliases: Sequence[str], item_type: str) -> dict:
    """One report.json item: enough to recompute it from ``prompt`` and ``options`` alone."""
    cand = verdict.candidate
    return {
        "id": cand.id, "lang": cand.lang, "question": question, "prompt": cand.prompt,
        "options": list(cand.options), "answer": cand.options[0], "aliases": list(aliases),
        "type": item_type, "outcome": verdict.outcome, "pruning_induced": verdict.pruning_induced,
        "candidate": result_to_dict(cand),
        "reference": {**result_to_dict(verdict.reference), "recovery": None},  # probes run on the candidate only
    }


def verdict_from_record(record: dict) -> ItemVerdict:
    common = dict(lang=record["lang"], id=record["id"], prompt=record["prompt"], options=record["options"])
    return ItemVerdict(candidate=result_from_dict(record["candidate"], **common),
                       reference=result_from_dict(record["reference"], **common))


def language_table(records: Iterable[dict]) -> dict[str, LanguageVerdict]:
    return by_language([verdict_from_record(r) for r in records])


def language_summary(lv: LanguageVerdict) -> dict:
    """One language as report.json has it: candidate counts, pairing and the reference's counts."""
    return {**lv.candidate.as_dict(), "pruning_induced": lv.pruning_induced,
            "reference": {**lv.reference.as_dict(), "demoted": None, "erased": None, "not_probed": None}}  # not probed


TEST_KINDS = ("mc_implies_generation", "gold_rank", "language_gate")


def no_tests() -> dict:
    return {"passed": 0, "failed": 0, "xfailed": 0, "skipped": 0, "by_test": {}}


def count_outcomes(outcomes: Iterable[tuple[str, str, str]]) -> dict[str, dict]:
    """Per language: pytest outcome totals, and the same split by test (kind, lang, outcome)."""
    counts: dict[str, dict] = {}
    for kind, lang, outcome in outcomes:
        entry = counts.setdefault(lang, no_tests())
        entry[outcome] = entry.get(outcome, 0) + 1
        split = entry["by_test"].setdefault(kind, {})
        split[outcome] = split.get(outcome, 0) + 1
    return counts


def build_report(records: Sequence[dict], config: dict, outcomes: Iterable[tuple[str, str, str]] | None = None) -> dict:
    """The report.json document (DESIGN contract; extra fields are additions, never renames).

    ``outcomes`` are the run's pytest outcomes as (test kind, lang, outcome); without them the
    consistency verdicts stand in. Each language also carries its McNemar gate, computed from
    the same paired items with the run's alpha and illusion budget.
    """
    languages = language_table(records)
    if outcomes is None:
        outcomes = [("mc_implies_generation", r["lang"], {"pass": "passed", "fail": "failed", "xfail": "xfailed"}[r["outcome"]])
                    for r in records]
    tests = count_outcomes(outcomes)
    verdicts = [verdict_from_record(r) for r in records]
    alpha, budget = config.get("alpha", 0.05), config.get("max_illusion_rate")
    return {
        "version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "languages": {
            lang: {**language_summary(lv), "tests": tests.get(lang, no_tests()),
                   "gate": language_gate(lang, verdicts, alpha=alpha, max_illusion_rate=budget).as_dict()}
            for lang, lv in languages.items()
        },
        "items": sorted(records, key=lambda r: (r["lang"], r["id"])),
    }


def write_report(directory: str | Path, report: dict) -> Path:
    """Write report.json, report.md and report.html, each atomically; return the report.json path."""
    root = Path(directory)
    path = root / "report.json"
    write_atomic(path, json.dumps(report, indent=1, ensure_ascii=False).encode("utf-8"))
    write_atomic(root / "report.md", render_markdown(report).encode("utf-8"))
    write_atomic(root / "report.html", render_html(report).encode("utf-8"))
    return path
