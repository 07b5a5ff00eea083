"""Verdicts -> report records, the terminal table and report.json.

Reports are built from plain item records (dicts), the same ones each test attaches to its
pytest report, so the controller of an xdist run can report items its workers computed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Sequence

from .models import write_atomic
from .probe import result_from_dict, result_to_dict
from .verdict import ItemVerdict, LanguageStats, LanguageVerdict, by_language

REPORT_VERSION = 1


def item_record(verdict: ItemVerdict, *, question: str, aliases: Sequence[str], item_type: str) -> dict:
    """One report.json item: enough to recompute it from ``prompt`` and ``options`` alone."""
    cand = verdict.candidate
    return {
        "id": cand.id, "lang": cand.lang, "question": question, "prompt": cand.prompt,
        "options": list(cand.options), "answer": cand.options[0], "aliases": list(aliases),
        "type": item_type, "outcome": verdict.outcome, "pruning_induced": verdict.pruning_induced,
        "candidate": result_to_dict(cand), "reference": result_to_dict(verdict.reference),
    }


def verdict_from_record(record: dict) -> ItemVerdict:
    common = dict(lang=record["lang"], id=record["id"], prompt=record["prompt"], options=record["options"])
    return ItemVerdict(candidate=result_from_dict(record["candidate"], **common),
                       reference=result_from_dict(record["reference"], **common))


def language_table(records: Iterable[dict]) -> dict[str, LanguageVerdict]:
    return by_language([verdict_from_record(r) for r in records])


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rank(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _acc(stats: LanguageStats, count: int) -> str:
    return f"{count / stats.items:.2f}" if stats.items else "-"


def format_table(languages: dict[str, LanguageVerdict]) -> list[str]:
    """Per-language rows, each cell ``reference -> candidate``."""
    header = ("lang", "items", "MC acc", "gen acc", "both", "recog-only", "gen-only", "neither",
              "illusion rate", "median gold rank", "pruning-induced", "demoted/erased")
    rows = [header]
    for lang, lv in languages.items():
        ref, cand = lv.reference, lv.candidate
        rows.append((
            lang, str(cand.items),
            f"{_acc(ref, ref.mc_correct)} -> {_acc(cand, cand.mc_correct)}",
            f"{_acc(ref, ref.gen_correct)} -> {_acc(cand, cand.gen_correct)}",
            f"{ref.both} -> {cand.both}", f"{ref.recognition_only} -> {cand.recognition_only}",
            f"{ref.generation_only} -> {cand.generation_only}", f"{ref.neither} -> {cand.neither}",
            f"{_rate(ref.illusion_rate)} -> {_rate(cand.illusion_rate)}",
            f"{_rank(ref.median_gold_rank)} -> {_rank(cand.median_gold_rank)}",
            str(lv.pruning_induced), f"{cand.demoted}/{cand.erased}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


def build_report(records: Sequence[dict], config: dict) -> dict:
    """The report.json document (DESIGN contract; extra fields are additions, never renames)."""
    languages = language_table(records)
    outcomes: dict[str, dict[str, int]] = {}
    for record in records:
        counts = outcomes.setdefault(record["lang"], {"passed": 0, "failed": 0, "xfailed": 0})
        counts[{"pass": "passed", "fail": "failed", "xfail": "xfailed"}[record["outcome"]]] += 1
    return {
        "version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "languages": {
            lang: {**lv.candidate.as_dict(), "pruning_induced": lv.pruning_induced,
                   "tests": outcomes[lang], "reference": lv.reference.as_dict()}
            for lang, lv in languages.items()
        },
        "items": sorted(records, key=lambda r: (r["lang"], r["id"])),
    }


def write_report(directory: str | Path, report: dict) -> Path:
    """Write report.json atomically; return its path."""
    path = Path(directory) / "report.json"
    write_atomic(path, json.dumps(report, indent=1, ensure_ascii=False).encode("utf-8"))
    return path


def _scores_line(result) -> str:
    cells = [f"{'*' if i == 0 else ''}{opt} {score:.2f}" for i, (opt, score) in enumerate(zip(result.options, result.mc_scores))]
    return " | ".join(cells) + f"   (margin {result.mc_margin:+.2f}; * = gold)"


def consistency_message(verdict: ItemVerdict, item) -> str:
    """Why an item failed: question, gold, MC scores, greedy output and gold rank, both models."""
    cand, ref = verdict.candidate, verdict.reference
    hedge = f"   (also names distractor(s): {', '.join(cand.hedged_with)})" if cand.hedged_with else ""
    aliases = ", ".join(item.aliases) or "-"
    return "\n".join([
        f"[{verdict.key}] recognition-only: the candidate picks the gold in multiple choice but does not say it",
        f"  question:    {item.question}",
        f"  gold:        {item.answer}   (aliases: {aliases})",
        f"  MC scores:   {_scores_line(cand)}",
        f"  greedy:      {cand.generation!r}{hedge}",
        f"  gold rank:   candidate {cand.gold_rank} (first position {cand.first_position_rank})"
        f" | reference {ref.gold_rank} (first position {ref.first_position_rank})",
        f"  recovery:    {_recovery_line(cand)}",
        f"  reference:   {verdict.reference_category}, greedy {ref.generation!r}",
    ])


def _recovery_line(result) -> str:
    if result.recovery == "demoted":
        return f"demoted: recovered by {', '.join(result.recovered_by)}"
    return "erased: neither beam search (4), sampling (8 at T=0.7) nor one in-context example recovers it"
