"""Verdicts -> report records, the terminal table and report.json.

Reports are built from plain item records (dicts), the same ones each test attaches to its
pytest report, so the controller of an xdist run can report items its workers computed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

from . import plots
from .models import write_atomic
from .plots import esc
from .results import result_from_dict, result_to_dict
from .terminal import safe_text
from .verdict import CATEGORIES, ItemVerdict, LanguageVerdict, by_language

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


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rank(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


TERMINAL_LABELS = {"recognition-only": "recog-only", "generation-only": "gen-only"}  # a narrower table


def language_summary(lv: LanguageVerdict) -> dict:
    """One language as report.json has it: candidate counts, pairing and the reference's counts."""
    return {**lv.candidate.as_dict(), "pruning_induced": lv.pruning_induced,
            "reference": {**lv.reference.as_dict(), "demoted": None, "erased": None}}  # not probed


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
    from .verdict import language_gate

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
    if result.recovery == "demoted":
        return f"demoted: recovered by {', '.join(result.recovered_by)}"
    return "erased: neither beam search (4), sampling (8 at T=0.7) nor one in-context example recovers it"


# ============================================================================ report.md and report.html
# Both render from the report.json document alone (so a saved report.json can be re-rendered), and
# treat every dataset or model string as hostile: report.md is pasted into pull-request comments and
# report.html is opened in a browser.

CATEGORY_NAMES = {"both": "both", "recognition_only": "recognition-only", "generation_only": "generation-only",
                  "neither": "neither"}
CATEGORY_SHORT = {"both": "both", "recognition_only": "recog-only", "generation_only": "gen-only",
                  "neither": "neither"}
CATEGORY_COLORS = {"both": "#009E73", "recognition_only": "#D55E00", "generation_only": "#0072B2",
                   "neither": "#8c8c8c"}
RECOVERY_COLORS = {"demoted": "#E69F00", "erased": "#6a3d9a"}
PROBES = {"beam": ("beam", "beam search", "#56B4E9"), "sampling": ("samp.", "sampling", "#009E73"),
          "one_shot": ("1-shot", "one-shot", "#b8860b")}  # probe: (bar label, legend name, colour)
WORST_PER_LANG = 5
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def clip(text: object, limit: int) -> str:
    """One line of at most ``limit`` characters: newlines shown as ⏎, control characters dropped."""
    line = _NEWLINE.sub(" ⏎ ", _CONTROL.sub("", str(text)).replace("\t", " "))
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def candidate_label(config: dict) -> str:
    prune = config.get("prune")
    return f"{config.get('model', '?')}" + (f" pruned {prune}" if prune else "")


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


def _by_lang(report: dict) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {lang: [] for lang in report.get("languages", {})}
    for item in report.get("items", []):
        groups.setdefault(item["lang"], []).append(item)
    return groups


def _share(count: int, total: int) -> str:
    return f"{count / total:.2f}" if total else "-"


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
        "demoted/erased": f"{stats.get('demoted', 0)}/{stats.get('erased', 0)}",  # probes run on the candidate only
    }


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


def _test_counts(report: dict) -> dict[str, int]:
    totals = {"passed": 0, "failed": 0, "xfailed": 0}
    for stats in report.get("languages", {}).values():
        for name in totals:
            totals[name] += stats.get("tests", {}).get(name, 0)
    return totals


# ----------------------------------------------------------------------------- Markdown

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
    tests = _test_counts(report)
    lines = [
        "## benchmark-illusion report", "",
        f"**Candidate:** {md_escape(candidate_label(config))} · **Reference:** {md_escape(config.get('reference', '?'))}"
        f" · dataset {md_escape(config.get('dataset', '?'))} · seed {md_escape(config.get('seed', '?'))}"
        f" · dtype {md_escape(config.get('dtype', '?'))} · prompt {md_escape(config.get('prompt_format', '?'))}",
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
    for lang, items in _by_lang(report).items():
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
    recovery = cand.get("recovery") or "-"
    if cand.get("recovered_by"):
        recovery += " by " + md_escape(", ".join(cand["recovered_by"]), 40)
    return [md_escape(item["id"], 30), category, f"{ref['gold_rank']} → {cand['gold_rank']}", recovery,
            md_escape(item.get("question", ""), 120), md_escape(item.get("answer", ""), 40),
            md_escape(cand.get("generation", ""), 80)]


# ----------------------------------------------------------------------------- HTML

_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:#fff}
header{padding:20px 32px 12px;border-bottom:1px solid var(--line);background:var(--bg)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:var(--muted);margin:0}
main{padding:0 32px 40px;max-width:1500px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:150px;background:#fff}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.langs td{white-space:nowrap}.langs th{white-space:normal}.langs td.gate{white-space:normal;min-width:220px}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 6px;border-radius:10px;font-size:12px;color:#fff;white-space:nowrap}
.cat-both{background:#00795a}.cat-recognition_only{background:#b84c00}.cat-generation_only{background:#0062a0}
.cat-neither{background:#6e7781}.pass{background:#1a7f37}.fail{background:#cf222e}
.induced{color:#b84c00;font-weight:600;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px;max-width:100%;overflow-x:auto}
figcaption{color:var(--muted);font-size:12px;max-width:560px;margin-top:4px}
svg.chart{display:block;max-width:100%;height:auto}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0 10px}
.controls input[type=search]{width:280px;padding:5px 8px;border:1px solid var(--line);border-radius:6px}
.controls select{padding:4px 6px;border:1px solid var(--line);border-radius:6px}
#f-count{color:var(--muted)}
.items td.text{max-width:340px;overflow-wrap:anywhere}
.items th button{all:unset;cursor:pointer}
.items th button::after{content:' \\2195';color:#9aa4ad}
.items th[aria-sort=ascending] button::after{content:' \\25B2';color:var(--accent)}
.items th[aria-sort=descending] button::after{content:' \\25BC';color:var(--accent)}
.items th button:focus-visible{outline:2px solid var(--accent)}
.items tr[hidden]{display:none}
details{margin:8px 0}summary{cursor:pointer;color:var(--muted)}
dl.config{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}
dl.config dt{color:var(--muted)}dl.config dd{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
.note{color:var(--muted)}
"""

# The page's only script. It reorders and hides existing rows and writes numbers with textContent;
# it never turns data into markup, so escaped text stays text.
_JS = """
"use strict";
(function () {
  var table = document.getElementById("item-table");
  if (!table || !table.tBodies.length) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var text = document.getElementById("f-text"), lang = document.getElementById("f-lang");
  var cat = document.getElementById("f-cat"), induced = document.getElementById("f-induced");
  var count = document.getElementById("f-count");
  function apply() {
    var query = text.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var ok = (!query || row.textContent.toLowerCase().indexOf(query) >= 0)
        && (!lang.value || row.getAttribute("data-lang") === lang.value)
        && (!cat.value || row.getAttribute("data-cat") === cat.value)
        && (!induced.checked || row.getAttribute("data-induced") === "1");
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " items shown";
  }
  function key(row, col, numeric) {
    var cell = row.cells[col], value = cell.getAttribute("data-sort");
    if (value === null) { value = cell.textContent; }
    if (!numeric) { return value.toLowerCase(); }
    var number = parseFloat(value);
    return isNaN(number) ? Infinity : number;
  }
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      Array.prototype.forEach.call(heads, function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir);
      var numeric = th.getAttribute("data-type") === "num", sign = dir === "ascending" ? 1 : -1;
      rows.sort(function (a, b) {
        var x = key(a, col, numeric), y = key(b, col, numeric);
        return x < y ? -sign : (x > y ? sign : 0);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  [text, lang, cat, induced].forEach(function (el) {
    el.addEventListener("input", apply);
    el.addEventListener("change", apply);
  });
  apply();
})();
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(css: str | None = None, script: str | None = "") -> str:
    """Nothing loads from anywhere; only the page's own style and script (by hash) may run.

    Hashes instead of 'unsafe-inline': even if some text escaped its escaping, an injected
    <script> or onerror= handler would be refused by the browser. Defaults: report.html's own.
    """
    css = _CSS if css is None else css
    script = _JS if script == "" else script
    scripts = f"; script-src {_csp_hash(script)}" if script else ""
    return (f"default-src 'none'; style-src {_csp_hash(css)}{scripts}; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def html_page(title: str, body: Sequence[str], *, css: str | None = None, script: str | None = "") -> str:
    """A self-contained page: inline style and script allowed by hash, nothing external."""
    css = _CSS if css is None else css
    script = _JS if script == "" else script
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(content_security_policy(css, script))}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">",
        f"<style>{css}</style></head><body>", *body,
        f"<script>{script}</script>" if script else "", "</body></html>\n",
    ])


def render_html(report: dict) -> str:
    """report.html: one self-contained page (inline CSS, JS and SVG; no external loads)."""
    config = report.get("config", {})
    title = f"benchmark-illusion: {candidate_label(config)} vs {config.get('reference', '?')}"
    return html_page(title, [
        "<header>", "<h1>benchmark-illusion report</h1>",
        f"<p class=\"sub\">candidate <b>{esc(candidate_label(config))}</b> · reference "
        f"<b>{esc(config.get('reference', '?'))}</b> · created {esc(report.get('created', '?'))}</p>",
        "</header><main>",
        _html_summary(report), _html_plots(report), _html_items(report),
        "</main>",
    ])


def _html_summary(report: dict) -> str:
    languages, items, config = report.get("languages", {}), report.get("items", []), report.get("config", {})
    tests = _test_counts(report)
    cand_ro = sum(s["recognition_only"] for s in languages.values())
    ref_ro = sum(s.get("reference", s)["recognition_only"] for s in languages.values())
    cards = [
        (len(items), f"items in {len(languages)} language{'s' * (len(languages) != 1)}"),
        (f"{ref_ro} → {cand_ro}", "recognition-only (reference → candidate)"),
        (sum(s.get("pruning_induced", 0) for s in languages.values()), "pruning-induced illusions"),
        (f"{tests['passed']} / {tests['failed']} / {tests['xfailed']}", "tests passed / failed / xfailed"),
    ]
    parts = ["<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">"]
    parts += [f"<div class=\"card\"><b>{esc(value)}</b><span>{esc(label)}</span></div>" for value, label in cards]
    parts.append("</div><p class=\"note\">Each cell: reference → candidate. Illusion rate = recognition-only / "
                 "MC-correct. Demoted: a recovery probe (beam, sampling, one in-context example) brings the "
                 "answer back; erased: none does.</p>")
    parts.append(_html_language_table(languages))
    parts.append("<details><summary>Run configuration</summary><dl class=\"config\">")
    for name, value in config.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"<dt>{esc(name)}</dt><dd>{esc(shown)}</dd>")
    parts.append("</dl></details></section>")
    return "".join(parts)


def _html_language_table(languages: dict) -> str:
    if not languages:
        return "<p>No items were evaluated.</p>"
    has_gate = any(isinstance(stats.get("gate"), dict) for stats in languages.values())
    names = list(language_cells(next(iter(languages.values()))))
    head = "".join(f"<th class=\"num\">{esc(name)}</th>" for name in names) + ("<th>gate</th>" if has_gate else "")
    rows = []
    for lang, stats in languages.items():
        cells = "".join(f"<td class=\"num\">{esc(value)}</td>" for value in language_cells(stats).values())
        if has_gate:
            verdict, details = gate_text(stats.get("gate"))
            cells += (f"<td class=\"gate\"><span class=\"badge {verdict.lower()}\">{verdict}</span> {esc(details)}</td>"
                      if verdict else "<td>-</td>")
        rows.append(f"<tr><th>{esc(lang)}</th>{cells}</tr>")
    return (f"<div class=\"scroll\"><table class=\"langs\"><thead><tr><th>lang</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _html_plots(report: dict) -> str:
    groups = _by_lang(report)
    return "".join([
        "<section id=\"plots\"><h2>Plots</h2><div class=\"plots\">",
        _figure(category_chart(report), "Per language, the four MC × generation cells for the reference (ref) "
                "and the candidate (cand). Orange is the illusion: MC right, generation wrong."),
        _figure(recovery_chart(report), "Recognition-only items that a recovery probe brings back (demoted) or "
                "not (erased), on the candidate (the probes do not run on the reference); beam / sampling / one-shot count "
                "the candidate's items "
                "each probe recovers (an item can count for several)."),
        _figure(rank_scatter([item for items in groups.values() for item in items]),
                "Each point is one item: the gold answer's best rank along the greedy path, reference (x) against "
                "candidate (y), log scales. Above the diagonal the candidate ranks the gold lower."),
        "</div></section>",
    ])


def category_chart(report: dict) -> str:
    """Stacked category bars per language, reference next to candidate."""
    groups = []
    for lang, stats in report.get("languages", {}).items():
        bars = []
        for short, side, data in (("ref", "reference", stats.get("reference", stats)), ("cand", "candidate", stats)):
            segments = tuple(plots.Segment(CATEGORY_NAMES[c], data.get(c, 0), CATEGORY_COLORS[c]) for c in CATEGORIES)
            bars.append(plots.Bar(short, segments, note=f"{lang} {side}"))
        groups.append(plots.BarGroup(lang, tuple(bars)))
    legend = [(CATEGORY_NAMES[c], CATEGORY_COLORS[c]) for c in CATEGORIES]
    return plots.stacked_bars(groups, y_label="items", title="Categories per language", legend_entries=legend)


def rank_scatter(items: Sequence[dict]) -> str:
    """Gold rank, reference against candidate, per item."""
    points = [plots.Point(item["reference"]["gold_rank"], item["candidate"]["gold_rank"],
                          CATEGORY_COLORS[item["candidate"]["category"]],
                          f"{item['lang']} {item['id']}: rank {item['reference']['gold_rank']} → "
                          f"{item['candidate']['gold_rank']} ({CATEGORY_NAMES[item['candidate']['category']]})")
              for item in items]
    legend = [(f"cand {CATEGORY_NAMES[c]}", CATEGORY_COLORS[c]) for c in CATEGORIES]
    return plots.log_scatter(points, x_label="reference gold rank", y_label="candidate gold rank",
                             title="Gold rank shift per item", legend_entries=legend,
                             note_above="candidate worse", note_below="candidate better")


def recovery_chart(report: dict) -> str:
    """Demoted vs erased per language, and which probe recovered the candidate's items."""
    groups = []
    for lang, items in _by_lang(report).items():
        stats = report["languages"].get(lang, {})
        bars = []
        segments = tuple(plots.Segment(name, stats.get(name) or 0, color) for name, color in RECOVERY_COLORS.items())
        bars.append(plots.Bar("cand", segments, note=f"{lang} candidate"))  # probes run on the candidate only
        for probe, (label, name, color) in PROBES.items():
            hits = sum(probe in item["candidate"].get("recovered_by", ()) for item in items)
            bars.append(plots.Bar(label, (plots.Segment(f"recovered by {name}", hits, color),),
                                  note=f"{lang} candidate"))
        groups.append(plots.BarGroup(lang, tuple(bars)))
    legend = [*RECOVERY_COLORS.items(), *((f"cand {name}", color) for _, name, color in PROBES.values())]
    return plots.stacked_bars(groups, y_label="recognition-only items", title="Demoted or erased, and by which probe",
                              legend_entries=legend, bar_width=34)


_ITEM_COLUMNS = (("lang", ""), ("id", ""), ("category ref → cand", ""), ("question", ""), ("gold", ""),
                 ("candidate greedy", ""), ("gold rank ref → cand", "num"), ("rank ×", "num"), ("recovered by", ""))
_GENERATION_LIMIT = 300


def _html_items(report: dict) -> str:
    items = report.get("items", [])
    langs = list(_by_lang(report))
    worst = {id(item): n for n, item in enumerate(worst_items(items))}
    ordered = sorted(items, key=lambda it: (langs.index(it["lang"]), worst.get(id(it), len(worst)), it["id"]))
    lang_options = "".join(f"<option value=\"{esc(lang)}\">{esc(lang)}</option>" for lang in langs)
    cat_options = "".join(f"<option value=\"{c}\">{CATEGORY_NAMES[c]}</option>" for c in CATEGORIES)
    numeric = ' class="num" data-type="num"'
    head = "".join(f"<th{numeric if kind else ''}><button type=\"button\">{esc(name)}</button></th>"
                   for name, kind in _ITEM_COLUMNS)
    return "".join([
        "<section id=\"items-section\"><h2>Items</h2>",
        "<p class=\"note\">Worst first within each language (pruning-induced illusions, then the largest gold-rank "
        "drops). Click a column header to sort.</p>",
        "<div class=\"controls\"><input type=\"search\" id=\"f-text\" placeholder=\"filter text…\" aria-label=\"filter text\">",
        f"<select id=\"f-lang\" aria-label=\"language\"><option value=\"\">all languages</option>{lang_options}</select>",
        f"<select id=\"f-cat\" aria-label=\"candidate category\"><option value=\"\">all candidate categories</option>"
        f"{cat_options}</select>",
        "<label><input type=\"checkbox\" id=\"f-induced\"> pruning-induced only</label>",
        f"<span id=\"f-count\">{len(items)} items</span></div>",
        f"<table class=\"items\" id=\"item-table\"><thead><tr>{head}</tr></thead><tbody>",
        *(_html_item_row(item) for item in ordered),
        "</tbody></table></section>",
    ])


def _html_item_row(item: dict) -> str:
    cand, ref = item["candidate"], item["reference"]
    badge = lambda cat: (f"<span class=\"badge cat-{cat}\" title=\"{CATEGORY_NAMES[cat]}\">"  # noqa: E731
                         f"{CATEGORY_SHORT[cat]}</span>")
    category = f"{badge(ref['category'])} → {badge(cand['category'])}"
    if item["pruning_induced"]:
        category += " <span class=\"induced\">pruning-induced</span>"
    answer = ", ".join([item.get("answer", ""), *item.get("aliases", [])])
    recovered = ", ".join(cand.get("recovered_by", [])) or (cand.get("recovery") or "-")
    order = CATEGORIES.index(cand["category"])
    cells = [
        f"<td>{esc(item['lang'])}</td>", f"<td>{esc(item['id'])}</td>",
        f"<td data-sort=\"{order}-{CATEGORIES.index(ref['category'])}\">{category}</td>",
        f"<td class=\"text\">{esc(item.get('question', ''))}</td>", f"<td class=\"text\">{esc(answer)}</td>",
        f"<td class=\"text\" title=\"reference: {esc(clip(ref.get('generation', ''), _GENERATION_LIMIT))}\">"
        f"{esc(clip(cand.get('generation', ''), _GENERATION_LIMIT))}</td>",
        f"<td class=\"num\" data-sort=\"{cand['gold_rank']}\">{ref['gold_rank']} → {cand['gold_rank']}</td>",
        f"<td class=\"num\" data-sort=\"{rank_change(item):.6g}\">{rank_change(item):.3g}</td>",
        f"<td>{esc(recovered)}</td>",
    ]
    return (f"<tr data-lang=\"{esc(item['lang'])}\" data-cat=\"{esc(cand['category'])}\" "
            f"data-induced=\"{int(bool(item['pruning_induced']))}\">{''.join(cells)}</tr>")
