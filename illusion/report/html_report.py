"""report.html: summary cards, the language table, three SVG plots and a sortable, filterable
item table, in one self-contained file (inline CSS, JS and SVG; no external loads).

Rendered from the report.json document alone. Every dataset or model string is hostile and goes
through ``esc``; the page's script only reorders and hides rows, never turns data into markup.
"""

from __future__ import annotations

import json
from typing import Sequence

from ..verdict import CATEGORIES
from . import plots
from .page import html_page
from .plots import esc
from .summary import (CATEGORY_NAMES, candidate_label, clip, gate_text, items_by_lang, language_cells,
                      outcome_totals, recovery_scope_text, rank_change, worst_items)

CATEGORY_SHORT = {"both": "both", "recognition_only": "recog-only", "generation_only": "gen-only",
                  "neither": "neither"}
CATEGORY_COLORS = {"both": "#009E73", "recognition_only": "#D55E00", "generation_only": "#0072B2",
                   "neither": "#8c8c8c"}
RECOVERY_COLORS = {"demoted": "#E69F00", "erased": "#6a3d9a"}
NOT_PROBED_COLOR = "#bbbbbb"  # recognition-only items outside the run's recovery scope
PROBES = {"beam": ("beam", "beam search", "#56B4E9"), "sampling": ("samp.", "sampling", "#009E73"),
          "one_shot": ("1-shot", "one-shot", "#b8860b")}  # probe: (bar label, legend name, colour)


# The page's style: inline, allowed by its hash (page.content_security_policy).
CSS = """
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
SCRIPT = """
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
    ], css=CSS, script=SCRIPT)


def _html_summary(report: dict) -> str:
    languages, items, config = report.get("languages", {}), report.get("items", []), report.get("config", {})
    tests = outcome_totals(report)
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
                 f"answer back; erased: none does. Recovery probes ran on {esc(recovery_scope_text(config))}.</p>")
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
    groups = items_by_lang(report)
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
    for lang, items in items_by_lang(report).items():
        stats = report["languages"].get(lang, {})
        bars = []
        segments = tuple(plots.Segment(name, stats.get(name) or 0, color) for name, color in RECOVERY_COLORS.items())
        if stats.get("not_probed"):  # outside the run's --illusion-recovery scope
            segments += (plots.Segment("not probed", stats["not_probed"], NOT_PROBED_COLOR),)
        bars.append(plots.Bar("cand", segments, note=f"{lang} candidate"))  # probes run on the candidate only
        for probe, (label, name, color) in PROBES.items():
            hits = sum(probe in (item["candidate"].get("recovered_by") or ()) for item in items)
            bars.append(plots.Bar(label, (plots.Segment(f"recovered by {name}", hits, color),),
                                  note=f"{lang} candidate"))
        groups.append(plots.BarGroup(lang, tuple(bars)))
    unprobed = [("not probed", NOT_PROBED_COLOR)] if any(s.get("not_probed") for s in report["languages"].values()) else []
    legend = [*RECOVERY_COLORS.items(), *unprobed, *((f"cand {name}", color) for _, name, color in PROBES.values())]
    return plots.stacked_bars(groups, y_label="recognition-only items", title="Demoted or erased, and by which probe",
                              legend_entries=legend, bar_width=34)


_ITEM_COLUMNS = (("lang", ""), ("id", ""), ("category ref → cand", ""), ("question", ""), ("gold", ""),
                 ("candidate greedy", ""), ("gold rank ref → cand", "num"), ("rank ×", "num"), ("recovered by", ""))
_GENERATION_LIMIT = 300


def _html_items(report: dict) -> str:
    items = report.get("items", [])
    langs = list(items_by_lang(report))
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
    recovered = ", ".join(cand.get("recovered_by") or []) or (cand.get("recovery") or "-").replace("_", " ")
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
