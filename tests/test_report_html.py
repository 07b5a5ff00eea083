"""report.md and report.html: escaping of hostile text, layout invariants, and the real page in Chromium.

The unit tests build records by hand. The browser tests open a report the real plugin wrote for the
real embedded SmolLM2 in headless Chromium (Debian's /usr/bin/chromium, driven through its command
line: --dump-dom, --screenshot and console logging to stderr), with a hostile question whose
payload, if it ever ran, would mark the DOM.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from illusion.report import plots
from illusion.report.html_report import CATEGORY_COLORS, CSS, SCRIPT, render_html
from illusion.report.markdown import md_escape, render_markdown
from illusion.report.page import content_security_policy
from illusion.report.records import build_report, item_record, write_report
from illusion.report.summary import worst_items
from illusion.results import ItemResult
from illusion.verdict import ItemVerdict
from tiny import item as item_row
from tiny import write_items

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "illusion_tests" / "test_consistency.py"
HOSTILE_QUESTION = ("What is <script>document.body.setAttribute('data-pwned','2')</script>"
                    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"> the capital of Italy?")
HOSTILE_GENERATION = "a | b `code` <b>bold</b> & **loud** @octocat https://evil.example"
CONFIG = {"model": "cand-model", "reference": "ref-model", "prune": "wanda:0.5", "dataset": "fixtures/qa",
          "seed": 0, "dtype": "auto", "prompt_format": "auto"}


def report_csp() -> str:
    """report.html's Content-Security-Policy: its own style and script, by hash."""
    return content_security_policy(CSS, SCRIPT)


# ----------------------------------------------------------------------------- hand-built records

def result(lang: str, id_: str, *, mc: bool, gen: bool, rank: int, generation: str = "gold",
           recovered_by: tuple[str, ...] = ()) -> ItemResult:
    return ItemResult(lang=lang, id=id_, prompt="p", options=("gold", "a", "b", "c"),
                      mc_scores=(-1.0, -2.0, -3.0, -4.0) if mc else (-5.0, -2.0, -3.0, -4.0),
                      generation=generation, gold_rank=rank, first_position_rank=rank,
                      matched="gold" if gen else None, recovered_by=recovered_by if mc and not gen else ())


def record(lang: str, id_: str, *, cand: dict, ref: dict, question: str = "Q?") -> dict:
    verdict = ItemVerdict(candidate=result(lang, id_, **cand), reference=result(lang, id_, **ref))
    return item_record(verdict, question=question, aliases=["au"], item_type="entity")


GOOD = dict(mc=True, gen=True, rank=1)
ILLUSION = dict(mc=True, gen=False, rank=40, generation="no idea")


def hostile_report(**extra_languages) -> dict:
    records = [
        record("en", "q1", cand={**ILLUSION, "generation": HOSTILE_GENERATION, "recovered_by": ("beam",)},
               ref=GOOD, question=HOSTILE_QUESTION),
        record("en", "q2", cand=GOOD, ref=GOOD),
        record("fr", "q1", cand=dict(mc=False, gen=False, rank=900), ref=dict(mc=False, gen=False, rank=300)),
    ]
    report = build_report(records, CONFIG)
    for lang, extra in extra_languages.items():
        report["languages"][lang].update(extra)
    return report


def unescaped(text: str, chars: str = "|") -> list[str]:
    """Characters of ``chars`` that no backslash escapes (a backslash escapes the next character)."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in chars:
            found.append(text[i])
        i += 1
    return found


def unescaped_pipes(line: str) -> int:
    return len(unescaped(line))


def markdown_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


# ----------------------------------------------------------------------------- Markdown

def test_markdown_escapes_hostile_text_and_keeps_table_shape():
    md = render_markdown(hostile_report())
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md and "&lt;b&gt;bold&lt;/b&gt; &amp;" in md
    assert "\\`code\\`" in md and "\\*\\*loud\\*\\*" in md
    assert "@octocat" not in md and "https://evil" not in md  # no mention ping, no autolink
    tables = markdown_tables(md)
    assert len(tables) == 3  # the language table and one worst-items table per language
    for table in tables:
        columns = {unescaped_pipes(line) for line in table}
        assert len(columns) == 1, table


def test_markdown_summary_rows_pair_reference_and_candidate():
    md = render_markdown(hostile_report())
    en_row = next(line for line in md.splitlines() if line.startswith("| en |"))
    cells = [c.strip() for c in en_row.strip("|").split("|")]
    assert cells[:2] == ["en", "2"]
    assert cells[2] == "1.00 → 1.00"  # MC acc: both items MC-correct on both models
    assert cells[3] == "1.00 → 0.50"  # gen acc
    assert cells[5] == "0 → 1"  # recognition-only
    assert "Tests: 2 passed, 1 failed, 0 xfailed" in md


def test_markdown_lists_pruning_induced_first_and_truncates():
    records = [record("en", f"r{n}", cand=dict(mc=False, gen=False, rank=10 * (n + 2)), ref=GOOD) for n in range(5)]
    records += [record("en", f"p{n}", cand={**ILLUSION, "generation": "x" * 500}, ref=GOOD) for n in range(2)]
    md = render_markdown(build_report(records, CONFIG), worst_per_lang=3)
    rows = [line for line in markdown_tables(md)[1][2:]]
    assert [row.split("|")[1].strip() for row in rows] == ["p0", "p1", "r4"]  # then largest rank ratio
    assert "… and 4 more" in md
    assert "x" * 100 not in md and "x…" in md


def test_build_report_gates_every_language():
    report = hostile_report()
    en = report["languages"]["en"]["gate"]
    assert (en["pairs"], en["lost"], en["gained"]) == (2, 1, 0) and en["passed"]  # one loss is no evidence
    assert report["languages"]["fr"]["gate"]["pairs"] == 0


def test_markdown_shows_gate_only_when_present():
    gate = {"pairs": 2, "lost": 1, "gained": 0, "p_value": 0.0123, "alpha": 0.05, "recognition_only": 1,
            "mc_correct": 2, "illusion_rate": 0.5, "interval": [0.1, 0.9], "max_illusion_rate": 0.2, "passed": False}
    bare = hostile_report(en={"gate": None}, fr={"gate": None})  # build_report adds gates; a reader may not
    assert "gate" not in markdown_tables(render_markdown(bare))[0][0]
    md = render_markdown(hostile_report(en={"gate": gate}, fr={"gate": None}))
    header, _, en_row, fr_row = markdown_tables(md)[0]
    assert header.rstrip(" |").endswith("gate")
    assert "**FAIL** p=0.0123" in en_row and fr_row.rstrip(" |").endswith("-")
    page = render_html(hostile_report(en={"gate": {**gate, "passed": True}}))
    assert 'class="badge pass">PASS' in page and "p=0.0123" in page


@given(st.text(max_size=300))
def test_md_escape_is_one_inert_table_cell(text):
    cell = md_escape(text)
    assert "\n" not in cell and "\r" not in cell and "<" not in cell and ">" not in cell
    assert unescaped(cell, "|`*_[]~$") == []  # no table break, code, emphasis, link or math
    assert unescaped_pipes("| " + cell + " |") == 2  # a trailing backslash cannot eat the cell border
    assert not re.search(r"@\w|://", cell)  # no mention, no autolink


# ----------------------------------------------------------------------------- HTML (string level)

def test_html_escapes_hostile_text():
    page = render_html(hostile_report())
    assert page.count("<script") == 1  # only the page's own script
    assert "<img" not in page and "<b>bold" not in page and "onerror=\"document" not in page
    assert html.escape(HOSTILE_QUESTION, quote=True) in page
    assert html.escape(HOSTILE_GENERATION, quote=True) in page


def test_html_is_self_contained_and_its_csp_allows_only_its_own_code():
    page = render_html(hostile_report())
    assert all(value.startswith("data:") for value in re.findall(r'(?:src|href)="([^"]*)"', page))
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"https://evil.example"}  # that one is model text
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never loaded
    csp = report_csp()
    assert f'content="{html.escape(csp)}"' in page and "default-src 'none'" in csp and "unsafe" not in csp
    for tag in ("script", "style"):
        [body] = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp


def test_html_has_the_three_plots_and_every_item():
    report = hostile_report()
    page = render_html(report)
    assert page.count("<svg") == 3
    for title in ("Categories per language", "Gold rank shift per item", "Demoted or erased"):
        assert title in page
    rows = re.findall(r'<tr data-lang="(\w+)" data-cat="(\w+)" data-induced="(\d)">', page)
    assert sorted(rows) == sorted((i["lang"], i["candidate"]["category"], str(int(i["pruning_induced"])))
                                  for i in report["items"])


def test_empty_report_renders():
    report = build_report([], CONFIG)
    page, md = render_html(report), render_markdown(report)
    assert "No items were evaluated" in page and "No items were evaluated" in md
    assert page.count("no data") == 3


def test_write_report_writes_all_three(tmp_path):
    report = hostile_report()
    path = write_report(tmp_path / "out", report)
    assert path == tmp_path / "out" / "report.json"
    assert json.loads(path.read_text(encoding="utf-8")) == report
    assert (tmp_path / "out" / "report.md").read_text(encoding="utf-8") == render_markdown(report)
    assert (tmp_path / "out" / "report.html").read_text(encoding="utf-8") == render_html(report)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json", "report.md"]


flags = st.tuples(st.booleans(), st.booleans(), st.integers(1, 5000))


@given(st.lists(st.tuples(flags, flags), min_size=1, max_size=30))
def test_worst_items_order(rows):
    records = [record("en", f"i{n}", cand=dict(mc=c[0], gen=c[1], rank=c[2]), ref=dict(mc=r[0], gen=r[1], rank=r[2]))
               for n, (c, r) in enumerate(rows)]
    worst = worst_items(records)
    induced = [item["pruning_induced"] for item in worst]
    assert induced == sorted(induced, reverse=True)  # pruning-induced first
    assert sum(induced) == sum(r["pruning_induced"] for r in records)  # and all of them
    for item in records:
        cand, ref = item["candidate"], item["reference"]
        listed = any(w is item for w in worst)
        assert listed == (cand["category"] == "recognition_only" or cand["gold_rank"] > ref["gold_rank"])
    rest = [cand["candidate"]["gold_rank"] / cand["reference"]["gold_rank"] for cand in worst if not cand["pruning_induced"]]
    assert rest == sorted(rest, reverse=True)


# ----------------------------------------------------------------------------- plots (pure)

@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_nice_ticks_cover_the_range_with_even_steps(lo, hi):
    ticks = plots.nice_ticks(lo, hi)
    assert ticks[0] <= min(lo, hi) + 1e-6 and ticks[-1] >= max(lo, hi) - 1e-6
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and 2 <= len(ticks) <= 12


@given(st.floats(1e-3, 1e9), st.floats(1e-3, 1e9))
def test_log_scale_maps_ends_and_is_monotonic(a, b):
    scale, ticks = plots.axis_scale([a, b], 100, 500, log=True)
    assert scale(ticks[0]) == pytest.approx(100) and scale(ticks[-1]) == pytest.approx(500)
    assert (scale(a) <= scale(b)) == (a <= b) or a == pytest.approx(b)
    assert all(t > 0 for t in ticks)


labels = st.text(max_size=40)
counts = st.integers(0, 10_000)


@settings(max_examples=50)
@given(st.lists(st.tuples(labels, st.lists(st.tuples(labels, counts), max_size=4)), max_size=6),
       st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**6), labels), max_size=30),
       st.lists(st.tuples(labels, st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=8)), max_size=4))
def test_charts_are_well_formed_svg_for_any_labels(groups, points, series):
    bar_groups = [plots.BarGroup(g, tuple(plots.Bar(name, (plots.Segment(name, n, "#123456"),)) for name, n in bars))
                  for g, bars in groups]
    svgs = [
        plots.stacked_bars(bar_groups, y_label="<items>", title="t & t", legend_entries=[("<b>", "#000")]),
        plots.log_scatter([plots.Point(x, y, "#D55E00", t) for x, y, t in points], x_label="x", y_label="y"),
        plots.line_chart([plots.Series(n, tuple(p)) for n, p in series], "sparsity", "rate", title="<script>"),
    ]
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed: no label broke out of its element
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert not root.findall(".//{http://www.w3.org/2000/svg}script") and "nan" not in svg.lower().replace("nanosec", "")


def test_line_chart_draws_each_series():
    svg = plots.line_chart([plots.Series("en", ((0.0, 0.1), (0.5, 0.4), (0.7, 0.8))),
                            plots.Series("fr", ((0.0, 0.2), (0.5, 0.6)))], "sparsity", "illusion rate")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f".//{ns}polyline")) == 2 and len(root.findall(f".//{ns}circle")) == 5
    assert "sparsity" in svg and "illusion rate" in svg


# ----------------------------------------------------------------------------- real Chromium

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0")
CONSOLE_LINE = re.compile(r":CONSOLE[:(\]]")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("headless Chromium is needed for the report.html tests and was not found; install it with "
                    "`apt-get install -y --no-install-recommends chromium` (make test does this)", pytrace=False)
    return path


def run_chromium(chromium: str, page: Path, tmp_path: Path, *, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """(DOM after the page's scripts ran, console lines) for a local page."""
    args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom"]
    if screenshot:
        args += [f"--screenshot={screenshot}", "--window-size=1280,2000"]
    done = subprocess.run([*args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, [line for line in done.stderr.splitlines() if CONSOLE_LINE.search(line)]


class Dom(HTMLParser):
    """Tags, body attributes and text of a dumped DOM."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.body: dict[str, str | None] = {}
        self.texts: list[str] = []
        self.by_id: dict[str, str] = {}
        self._open_id: list[tuple[str, str]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if "id" in attrs:
            self._open_id.append((tag, attrs["id"]))
            self.by_id.setdefault(attrs["id"], "")

    def handle_endtag(self, tag):
        if self._open_id and self._open_id[-1][0] == tag:
            self._open_id.pop()

    def handle_data(self, data):
        self.texts.append(data)
        for _, ident in self._open_id:
            self.by_id[ident] += data


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and not interlace, (depth, color, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        unfilter(kind, line, prev, channels)
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    """Undo one scanline's PNG filter in place (None, Sub, Up, Average, Paeth)."""
    if kind == 2:
        line[:] = bytes((a + b) & 255 for a, b in zip(line, prev))
        return
    for i in range(len(line)) if kind in (1, 3, 4) else ():
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        else:
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255


def test_chromium_checks_can_fail(chromium, tmp_path):
    """Control: an unescaped payload without a CSP does mark the DOM, and a thrown error is captured."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"></head>"
                    f"<body><p>{HOSTILE_QUESTION}</p><script>undefinedFunction();</script></body></html>")
    dom, console = run_chromium(chromium, page, tmp_path)
    assert "data-pwned" in Dom(dom).body
    assert any("Uncaught" in line for line in console), console


HOSTILE_ITEMS = [  # two languages, three shared ids; one question carries the payload
    item_row("q1", "en", HOSTILE_QUESTION, "Rome", ["Milan", "Naples", "Florence"]),
    item_row("q2", "en", "What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"]),
    item_row("q3", "en", "What is the capital of Japan?", "Tokyo", ["Osaka", "Kyoto", "Yokohama"]),
    item_row("q1", "fr", HOSTILE_QUESTION.replace("What is", "Quelle est").replace(" the capital of Italy?",
                                                                                    " la capitale de l'Italie ?"),
             "Rome", ["Milan", "Naples", "Florence"]),
    item_row("q2", "fr", "Quelle est la capitale de la France ?", "Paris", ["Lyon", "Marseille", "Nice"]),
    item_row("q3", "fr", "Quelle est la capitale du Japon ?", "Tokyo", ["Osaka", "Kyoto", "Yokohama"]),
]

# Appended to a copy of the page (with its hash added to the CSP) to drive the page's own sorting
# and filtering; it records what it saw on <body data-test-result>.
DRIVER_JS = """
(function () {
  var table = document.getElementById("item-table"), out = {};
  function visible(col) {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; })
      .map(function (r) { return col === undefined ? r : r.cells[col].getAttribute("data-sort"); });
  }
  var rank = table.tHead.rows[0].cells[6].querySelector("button");
  rank.click(); out.ascending = visible(6);
  rank.click(); out.descending = visible(6);
  var lang = document.getElementById("f-lang"); lang.value = "fr"; lang.dispatchEvent(new Event("change"));
  out.langs = visible().map(function (r) { return r.getAttribute("data-lang"); });
  lang.value = ""; lang.dispatchEvent(new Event("change"));
  var text = document.getElementById("f-text"); text.value = "JAPON"; text.dispatchEvent(new Event("input"));
  out.filtered = visible().map(function (r) { return r.textContent; });
  out.count = document.getElementById("f-count").textContent;
  document.body.setAttribute("data-test-result", JSON.stringify(out));
})();
"""


def test_real_report_in_chromium(chromium, pytester, monkeypatch, tmp_path, shared_cache):
    """The acceptance check: the real plugin's report for the real SmolLM2, opened in headless Chromium."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ILLUSION_CACHE", str(shared_cache))
    data = write_items(tmp_path / "qa", HOSTILE_ITEMS)
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    pytester.path.joinpath("illusion_tests", "test_consistency.py").write_text(SUITE.read_text())
    run = pytester.runpytest("illusion_tests", "--illusion-dataset", str(data), "--illusion-report", "out",
                             "-p", "no:cacheprovider")
    assert run.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), run.stdout.str()[-3000:]
    out = pytester.path / "out"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(report["items"]) == 6 and HOSTILE_QUESTION in {i["question"] for i in report["items"]}
    assert (out / "report.md").is_file()

    shot = tmp_path / "report.png"
    dom_text, console = run_chromium(chromium, out / "report.html", tmp_path, screenshot=shot)
    dom = Dom(dom_text)
    assert "data-pwned" not in dom.body  # neither the <script> nor the onerror= payload ran
    assert "img" not in dom.tags and dom.tags.count("script") == 1  # the payload stayed text
    assert dom.tags.count("svg") == 3 and dom.tags.count("rect") > 10
    text = "".join(dom.texts)
    assert HOSTILE_QUESTION in text  # shown as the literal question
    assert dom.by_id["f-count"] == "6 of 6 items shown"  # the page's script ran under its CSP
    assert console == [], console  # no errors, no CSP refusals, no logging at all
    check_screenshot(shot)
    check_sorting_and_filtering(chromium, out / "report.html", tmp_path)


def demo_args() -> list[str]:
    """The Makefile's DEMO_ARGS, so this test follows `make demo` if the demo changes."""
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^DEMO_ARGS \?= (.*)$", makefile, re.M).group(1).split()


# The committed demo baselines were recorded on one CPU. float32 results on another kind of x86-64
# CPU differ in the last bits (its matmul kernels sum in another order): a rank far down the
# distribution can move a few positions (the tolerance absorbs that), and a greedy step or an MC
# choice that sits on a near-tie can flip, changing an item's category (DEMO_FLIP_BUDGET absorbs a
# few of those). A real regression moves far more items: the test's control applies the same rule
# to the dense reference's records as the baseline and the pruned candidate's as the current ones.
DEMO_RANK_TOLERANCE = 2
DEMO_FLIP_BUDGET = 0.05  # of the demo's gold-rank tests


def flip_budget(items: int) -> int:
    return max(1, int(items * DEMO_FLIP_BUDGET))


def rank_regressions(pairs: list[tuple[dict, dict]], tolerance: int) -> int:
    """How many (baseline, current) rank records regressed under the snapshot tests' own rule."""
    from illusion.snapshots import compare

    return sum(compare("item", old, new, tolerance).regressed for old, new in pairs)


def test_rank_regression_rule_counts_category_and_rank_losses():
    both, demoted = {"category": "both", "gold_rank": 1}, {"category": "recognition_only", "gold_rank": 1}
    far, farther = {"category": "neither", "gold_rank": 100}, {"category": "neither", "gold_rank": 121}
    assert rank_regressions([(both, both), (far, {**far, "gold_rank": 120})], DEMO_RANK_TOLERANCE) == 0
    assert rank_regressions([(both, demoted), (far, farther), (demoted, both)], DEMO_RANK_TOLERANCE) == 2
    assert flip_budget(240) == 12 and flip_budget(10) == 1


@contextlib.contextmanager
def every_core():
    """torch on all cores for one in-process run, then back to this worker's share (tests/conftest.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_make_demo_report_in_chromium(chromium, pytester, monkeypatch, tmp_path, shared_cache):
    """`make demo`'s own run (its options, the three suite modules, the committed baselines): its rank
    tests match the baselines within what another CPU can move, and its report.html renders in Chromium."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ILLUSION_CACHE", str(shared_cache))
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    for module in ("test_consistency.py", "test_gold_rank.py", "test_languages.py"):
        pytester.path.joinpath("illusion_tests", module).write_text((SUITE.parent / module).read_text())
    shutil.copytree(ROOT / "snapshots", pytester.path / "snapshots")
    with every_core():  # the longest test of `make test`: the other worker is done long before it
        run = pytester.runpytest("illusion_tests", *demo_args(), "--illusion-rank-tolerance",
                                 str(DEMO_RANK_TOLERANCE), "--illusion-report", "out", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.stdout.str()[-3000:]  # the illusions it exists to show
    report = json.loads((pytester.path / "out" / "report.json").read_text(encoding="utf-8"))
    ranks = [stats["tests"]["by_test"]["gold_rank"] for stats in report["languages"].values()]
    assert sum(sum(r.values()) for r in ranks) == len(report["items"]), ranks  # one rank test per item ran
    failed = [line for line in run.outlines if line.startswith("FAILED") and "test_gold_rank[" in line]
    budget = flip_budget(len(report["items"]))
    assert sum(r.get("failed", 0) for r in ranks) <= budget, "\n".join(failed)  # reproduces the baselines
    # Control: the rule and budget do fail a material regression (dense -> Wanda 50%, from this run).
    pairs = [(item["reference"], item["candidate"]) for item in report["items"]]
    assert rank_regressions(pairs, DEMO_RANK_TOLERANCE) > budget
    dom_text, console = run_chromium(chromium, pytester.path / "out" / "report.html", tmp_path,
                                     screenshot=tmp_path / "demo.png")
    dom = Dom(dom_text)
    n = len(report["items"])
    assert dom.by_id["f-count"] == f"{n} of {n} items shown" and dom.tags.count("svg") == 3
    assert console == [], console
    check_screenshot(tmp_path / "demo.png")


def check_screenshot(shot: Path) -> None:
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 2000)
    channels = len(rows[0]) // width
    pixels = [row[i:i + 3] for row in rows[::4] for i in range(0, len(row), channels * 4)]
    colours = {bytes(p) for p in pixels}
    assert len(colours) > 20, "the screenshot is (nearly) one colour"
    plotted = {bytes.fromhex(c[1:]) for c in CATEGORY_COLORS.values()}
    assert sum(p in plotted for p in pixels) > 50, "no category colour visible: the SVG plots did not render"


def check_sorting_and_filtering(chromium: str, page: Path, tmp_path: Path) -> None:
    source = page.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(DRIVER_JS.encode()).digest()).decode()
    csp = html.escape(report_csp())
    assert csp in source
    driven = source.replace(csp, html.escape(report_csp().replace(
        "script-src ", f"script-src 'sha256-{digest}' ")))
    driven = driven.replace("</body>", f"<script>{DRIVER_JS}</script></body>")
    copy = tmp_path / "driven.html"
    copy.write_text(driven, encoding="utf-8")
    dom_text, console = run_chromium(chromium, copy, tmp_path)
    assert console == [], console
    result = json.loads(Dom(dom_text).body["data-test-result"])
    ranks = [float(v) for v in result["ascending"]]
    assert ranks == sorted(ranks) and len(ranks) == 6
    assert [float(v) for v in result["descending"]] == sorted(ranks, reverse=True)
    assert result["langs"] == ["fr"] * 3
    assert len(result["filtered"]) == 1 and "Japon" in result["filtered"][0]
    assert result["count"] == "1 of 6 items shown"
