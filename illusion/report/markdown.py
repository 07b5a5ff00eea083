"""report.md: the run's summary and the worst items per language, ready to paste as a
pull-request comment.

Rendered from the report.json document alone. Every dataset or model string is hostile: the
comment must not ping people, link, or break its tables (``md_escape``).
"""

from __future__ import annotations

import re
from typing import Sequence

from .summary import (CATEGORY_NAMES, candidate_label, clip, gate_text, recovery_scope_text, items_by_lang, language_cells,
                      outcome_totals, worst_items)

WORST_PER_LANG = 5
_MD_PUNCT = re.compile(r"([\\`*_\[\]|~$])")
_MD_BLOCK_START = re.compile(r"^(\s*)([#+\-=]|\d+[.)])")


def md_escape(text: object, limit: int = 200) -> str:
    """Untrusted text as inert inline Markdown, safe inside a table cell.

    Backslash-escapes emphasis, code, link, table, strikethrough and math characters; turns
    ``< > &`` into entities (no raw HTML); breaks @mentions, bare URLs and block markers at the
    start (a heading, list or rule) so a model's output cannot ping people, link or restyle a comment.
    """
    line = clip(text, limit)
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    line = _MD_PUNCT.sub(r"\\\1", line)
    line = line.replace("@", "@\u2060").replace("://", ":\u2060//").replace("www.", "www\u2060.")
    return _MD_BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), line)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub table; cells must already be escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(report: dict, *, worst_per_lang: int = WORST_PER_LANG) -> str:
    """report.md: ready to paste as a pull-request comment."""
    config, languages = report.get("config", {}), report.get("languages", {})
    tests = outcome_totals(report)
    lines = [
        "## benchmark-illusion report", "",
        f"**Candidate:** {md_escape(candidate_label(config))} · **Reference:** {md_escape(config.get('reference', '?'))}"
        f" · dataset {md_escape(config.get('dataset', '?'))} · seed {md_escape(config.get('seed', '?'))}"
        f" · dtype {md_escape(config.get('dtype', '?'))} · prompt {md_escape(config.get('prompt_format', '?'))}",
        "",
        f"Recovery probes ran on {md_escape(recovery_scope_text(config))}.",
        "",
        f"Tests: {tests['passed']} passed, {tests['failed']} failed, {tests['xfailed']} xfailed. "
        "Each cell: reference → candidate. Illusion rate = recognition-only / MC-correct.",
        "",
    ]
    if not languages:
        return "\n".join(lines + ["_No items were evaluated._", ""])
    has_gate = any(isinstance(stats.get("gate"), dict) for stats in languages.values())
    header = ["lang", *language_cells(next(iter(languages.values())))] + (["gate"] if has_gate else [])
    rows = []
    for lang, stats in languages.items():
        row = [md_escape(lang, 20), *language_cells(stats).values()]
        if has_gate:
            verdict, details = gate_text(stats.get("gate"))
            row.append(f"**{verdict}** {md_escape(details)}" if verdict else "-")
        rows.append(row)
    lines += md_table(header, rows) + [""] + _md_worst(report, worst_per_lang)
    return "\n".join(lines) + "\n"


def _md_worst(report: dict, limit: int) -> list[str]:
    lines = ["### Items to look at", "",
             "Pruning-induced recognition-only items first, then other illusions and gold-rank drops "
             "(largest candidate/reference rank ratio first).", ""]
    header = ["id", "category (ref → cand)", "gold rank (ref → cand)", "recovery", "question", "gold",
              "candidate greedy"]
    for lang, items in items_by_lang(report).items():
        worst = worst_items(items)
        lines.append(f"#### {md_escape(lang, 20)}: {len(worst)} of {len(items)} items")
        if not worst:
            lines += ["", "No illusions and no gold-rank drops.", ""]
            continue
        rows = [_md_item_row(item) for item in worst[:limit]]
        lines += [""] + md_table(header, rows)
        if len(worst) > limit:
            lines.append(f"\n… and {len(worst) - limit} more (see report.html)")
        lines.append("")
    return lines


def _md_item_row(item: dict) -> list[str]:
    cand, ref = item["candidate"], item["reference"]
    category = f"{CATEGORY_NAMES[ref['category']]} → **{CATEGORY_NAMES[cand['category']]}**"
    if item["pruning_induced"]:
        category += " (pruning-induced)"
    recovery = (cand.get("recovery") or "-").replace("_", " ")
    if cand.get("recovered_by"):
        recovery += " by " + md_escape(", ".join(cand["recovered_by"]), 40)
    return [md_escape(item["id"], 30), category, f"{ref['gold_rank']} → {cand['gold_rank']}", recovery,
            md_escape(item.get("question", ""), 120), md_escape(item.get("answer", ""), 40),
            md_escape(cand.get("generation", ""), 80)]
