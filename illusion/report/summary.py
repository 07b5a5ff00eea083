"""What every report format shows, in plain text: the per-language cells, the gate's verdict,
the items worth a look, and the names of the categories.

The terminal table, report.md and report.html all take their numbers from here, so the three
never disagree. Everything reads the report.json document (or its per-language dicts) alone.
"""

from __future__ import annotations

import re
from typing import Sequence

CATEGORY_NAMES = {"both": "both", "recognition_only": "recognition-only", "generation_only": "generation-only",
                  "neither": "neither"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def clip(text: object, limit: int) -> str:
    """One line of at most ``limit`` characters: newlines shown as ⏎, control characters dropped."""
    line = _NEWLINE.sub(" ⏎ ", _CONTROL.sub("", str(text)).replace("\t", " "))
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def candidate_label(config: dict) -> str:
    prune = config.get("prune")
    return f"{config.get('model', '?')}" + (f" pruned {prune}" if prune else "")


RECOVERY_SCOPE_TEXT = {
    "induced": "the pruning-induced recognition-only items only (--illusion-recovery induced)",
    "all": "every recognition-only item (--illusion-recovery all)",
    "off": "no item (--illusion-recovery off)",
}


def recovery_scope_text(config: dict) -> str:
    """Which items the run's recovery probes ran on, for a report's reader. A report written before
    the option existed probed every recognition-only item."""
    return RECOVERY_SCOPE_TEXT.get(config.get("recovery", "all"), str(config.get("recovery")))


def rank_change(item: dict) -> float:
    """How many times worse the candidate ranks the gold than the reference (>1: demoted further)."""
    return max(item["candidate"]["gold_rank"], 1) / max(item["reference"]["gold_rank"], 1)


def worst_items(items: Sequence[dict]) -> list[dict]:
    """Items worth a look, worst first: pruning-induced illusions, then other candidate illusions
    and gold-rank worsenings by the largest rank ratio (1 -> 20 matters more than 300 -> 400)."""
    def worth(item: dict) -> bool:
        return (item["pruning_induced"] or item["candidate"]["category"] == "recognition_only"
                or item["candidate"]["gold_rank"] > item["reference"]["gold_rank"])

    def key(item: dict) -> tuple:
        gap = item["candidate"]["gold_rank"] - item["reference"]["gold_rank"]
        return (not item["pruning_induced"], -rank_change(item), -gap, item["lang"], item["id"])

    return sorted((item for item in items if worth(item)), key=key)


def items_by_lang(report: dict) -> dict[str, list[dict]]:
    """The report's items per language, in the order of its languages."""
    groups: dict[str, list[dict]] = {lang: [] for lang in report.get("languages", {})}
    for item in report.get("items", []):
        groups.setdefault(item["lang"], []).append(item)
    return groups


def _share(count: int, total: int) -> str:
    return f"{count / total:.2f}" if total else "-"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rank(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def language_cells(stats: dict, *, arrow: str = "→", every_category: bool = False) -> dict[str, str]:
    """The per-language summary cells, each ``reference → candidate`` (plain text, no markup).

    One source for the terminal table (``every_category``: also generation-only and neither)
    and the Markdown and HTML reports.
    """
    ref = stats.get("reference", stats)

    def pair(key: str, show=str) -> str:
        return f"{show(ref[key])} {arrow} {show(stats[key])}"

    def accuracy(key: str) -> str:
        return f"{_share(ref[key], ref['items'])} {arrow} {_share(stats[key], stats['items'])}"

    cells = {"items": str(stats["items"]), "MC acc": accuracy("mc_correct"), "gen acc": accuracy("gen_correct"),
             "both": pair("both"), "recognition-only": pair("recognition_only")}
    if every_category:
        cells |= {"generation-only": pair("generation_only"), "neither": pair("neither")}
    return cells | {
        "illusion rate": pair("illusion_rate", _rate),
        "median gold rank": pair("median_gold_rank", _rank),
        "pruning-induced": str(stats.get("pruning_induced", 0)),
        "demoted/erased": _recovery_cell(stats),  # probes run on the candidate only
    }


def _recovery_cell(stats: dict) -> str:
    """``demoted/erased``, plus the recognition-only items the recovery scope did not probe."""
    cell = f"{stats.get('demoted', 0)}/{stats.get('erased', 0)}"
    return cell + (f" ({stats['not_probed']} not probed)" if stats.get("not_probed") else "")


def gate_text(gate: dict | None) -> tuple[str, str]:
    """(PASS/FAIL/"", details) for a language's paired gate, when the run computed one."""
    if not isinstance(gate, dict):
        return "", ""
    verdict = "PASS" if gate.get("passed") else "FAIL"
    details = []
    if gate.get("p_value") is not None:
        details.append(f"p={gate['p_value']:.3g}" + (f" (α {gate['alpha']:g})" if gate.get("alpha") is not None else ""))
    if gate.get("interval"):
        lo, hi = gate["interval"]
        limit = gate.get("max_illusion_rate")
        details.append(f"illusion rate CI [{lo:.2f}, {hi:.2f}]" + (f", max {limit:g}" if limit is not None else ""))
    if gate.get("lost") is not None and gate.get("gained") is not None:
        details.append(f"{gate['lost']} lost / {gate['gained']} gained of {gate.get('pairs', '?')} pairs")
    return verdict, "; ".join(details)


def outcome_totals(report: dict) -> dict[str, int]:
    """The run's pytest outcomes summed over languages: passed, failed, xfailed."""
    totals = {"passed": 0, "failed": 0, "xfailed": 0}
    for stats in report.get("languages", {}).values():
        for name in totals:
            totals[name] += stats.get("tests", {}).get(name, 0)
    return totals
