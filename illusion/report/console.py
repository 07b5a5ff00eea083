"""What pytest prints: the per-language table in the terminal summary, and why an item failed.

Dataset text and model output are untrusted: every value goes through ``terminal.safe_text``.
"""

from __future__ import annotations

from ..terminal import safe_text
from ..verdict import ItemVerdict, LanguageVerdict
from .records import language_summary
from .summary import language_cells

TERMINAL_LABELS = {"recognition-only": "recog-only", "generation-only": "gen-only"}  # a narrower table


def format_table(languages: dict[str, LanguageVerdict]) -> list[str]:
    """Per-language rows for the terminal, each cell ``reference -> candidate``."""
    cells = {lang: language_cells(language_summary(lv), arrow="->", every_category=True)
             for lang, lv in languages.items()}
    if not cells:
        return []
    header = ("lang", *(TERMINAL_LABELS.get(name, name) for name in next(iter(cells.values()))))
    rows = [header, *((safe_text(lang), *row.values()) for lang, row in cells.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


def _scores_line(result) -> str:
    cells = [f"{'*' if i == 0 else ''}{safe_text(opt)} {score:.2f}"
             for i, (opt, score) in enumerate(zip(result.options, result.mc_scores))]
    return " | ".join(cells) + f"   (margin {result.mc_margin:+.2f}; * = gold)"


def consistency_message(verdict: ItemVerdict, item) -> str:
    """Why an item failed: question, gold, MC scores, greedy output and gold rank, both models.

    Dataset text and model output are untrusted: each value is shown through ``safe_text``.
    """
    cand, ref = verdict.candidate, verdict.reference
    hedge = f"   (also names distractor(s): {', '.join(map(safe_text, cand.hedged_with))})" if cand.hedged_with else ""
    aliases = ", ".join(map(safe_text, item.aliases)) or "-"
    return safe_text("\n".join([
        f"[{safe_text(verdict.key)}] recognition-only: the candidate picks the gold in multiple choice "
        "but does not say it",
        f"  question:    {safe_text(item.question)}",
        f"  gold:        {safe_text(item.answer)}   (aliases: {aliases})",
        f"  MC scores:   {_scores_line(cand)}",
        f"  greedy:      {cand.generation!r}{hedge}",
        f"  gold rank:   candidate {cand.gold_rank} (first position {cand.first_position_rank})"
        f" | reference {ref.gold_rank} (first position {ref.first_position_rank})",
        f"  recovery:    {_recovery_line(cand)}",
        f"  reference:   {verdict.reference_category}, greedy {ref.generation!r}",
    ]), lines=True)


def _recovery_line(result) -> str:
    if result.recovery == "not_probed":
        return "not probed (outside this run's --illusion-recovery scope)"
    if result.recovery == "demoted":
        return f"demoted: recovered by {', '.join(result.recovered_by)}"
    return "erased: neither beam search (4), sampling (8 at T=0.7) nor one in-context example recovers it"
