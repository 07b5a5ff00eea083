"""``python -m illusion sweep``: one method at several sparsities, probed on the same items.

The illusion is a trend, not a point: as sparsity grows, generation accuracy falls away while
MC accuracy holds on longer, so the illusion rate (recognition-only / MC-correct) climbs. Each
sparsity is one ``IllusionSession`` with its own recipe, so pruned checkpoints and results come
from the same caches the pytest plugin fills: the dense reference is probed once for the whole
sweep (and never again on a rerun), and a rerun computes nothing.

Outputs: ``sweep.json`` (config + one point per sparsity, 0 = the dense reference), ``sweep.html``
(self-contained, offline) and ``sweep.svg`` (one standalone figure, e.g. for a README). The HTML
and SVG are rendered from the JSON record alone.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from .report import plots
from .errors import ConfigError
from .report.plots import esc
from .prune import parse_recipe
from .report.page import html_page
from .report import recovery_scope_text
from .session import IllusionSession, RunConfig
from .verdict import ItemVerdict, LanguageStats, by_language, language_stats

SWEEP_VERSION = 1
Progress = Callable[[str], None]

# (record field, legend name, colour): orange is the illusion, as in report.html.
METRICS = (
    ("mc_accuracy", "MC accuracy", "#0072B2"),
    ("gen_accuracy", "generation accuracy", "#009E73"),
    ("illusion_rate", "illusion rate", "#D55E00"),
)
COLUMNS = 3  # small multiples per row in sweep.svg
PANEL_WIDTH, PANEL_HEIGHT = 350, 250  # wide enough for a two-row legend


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SweepSettings:
    """What to sweep: a base run configuration (without a recipe), one method, its sparsities."""

    base: RunConfig  # model, dataset, langs, limit, seed, dtype, calibration...; ``prune`` is ignored
    method: str  # magnitude | wanda | sparsegpt
    sparsities: tuple[float, ...]  # ascending, each in (0, 1); 0 (dense) is always added

    def run_config(self, sparsity: float) -> RunConfig:
        return replace(self.base, prune=parse_recipe(f"{self.method}:{sparsity}", option="--sparsities").spec)

    def as_dict(self) -> dict:
        cfg = self.base
        return {
            "model": cfg.model, "method": self.method, "sparsities": list(self.sparsities),
            "dataset": cfg.dataset or "fixtures/qa", "langs": list(cfg.langs) if cfg.langs else None,
            "limit_per_lang": cfg.limit_per_lang, "seed": cfg.seed, "device": cfg.device, "dtype": cfg.dtype,
            "batch_size": cfg.batch_size, "prompt_format": cfg.prompt_format, "max_new_tokens": cfg.max_new_tokens,
            "recovery": cfg.recovery,
            "calibration": {"langs": list(cfg.calibration_langs) if cfg.calibration_langs else None,
                            "samples": cfg.calibration_samples, "seqlen": cfg.calibration_seqlen,
                            "seed": cfg.calibration_seed},
        }


def parse_sparsities(text: str, method: str) -> tuple[float, ...]:
    """``0.3,0.5,0.7`` -> (0.3, 0.5, 0.7), each checked as a recipe (``parse_recipe``), ascending."""
    fields = [field.strip() for field in text.split(",")]
    if not any(fields):
        raise ConfigError(f"--sparsities {text!r} is empty; give comma-separated fractions, e.g. 0.3,0.5,0.7")
    values: list[float] = []
    for field in fields:
        if not field:
            raise ConfigError(f"--sparsities {text!r} has an empty entry; remove the extra comma")
        recipe = parse_recipe(f"{method}:{field}", option="--sparsities")
        if recipe.sparsity in values:
            raise ConfigError(f"--sparsities {text!r} lists {field} twice; give each sparsity once")
        values.append(float(recipe.sparsity))  # type: ignore[arg-type]
    return tuple(sorted(values))


def check_settings(settings: SweepSettings) -> None:
    """Everything that can be checked without loading a model, so a bad option fails in a second."""
    from .models import parse_spec

    parse_spec(settings.base.model)
    for sparsity in settings.sparsities:
        settings.run_config(sparsity)
    cfg = settings.base
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size}: must be at least 1")
    _ = cfg.calibration  # building it validates the calibration options


def prepare_out_dir(path: Path) -> Path:
    """Create ``path`` and prove it is writable before minutes of pruning, not after."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"--out {str(path)!r}: cannot write there ({exc.strerror or exc}); "
                          "choose a directory you can create and write") from None
    return path


# ----------------------------------------------------------------------------- points


@dataclass(frozen=True)
class SweepPoint:
    """One sparsity's per-language and overall counts (0.0 is the dense reference)."""

    sparsity: float
    recipe: str | None  # None for the dense reference
    overall: LanguageStats
    languages: dict[str, LanguageStats]
    pruning_induced: dict[str, int]  # per language: recognition-only where the reference was not
    recovery_probed: bool  # recovery probes run on the candidate only, so not on the dense point

    def as_dict(self) -> dict:
        def stats(s: LanguageStats, induced: int) -> dict:
            return stats_record(s, pruning_induced=induced, recovery_probed=self.recovery_probed)

        return {
            "sparsity": self.sparsity, "recipe": self.recipe,
            "overall": stats(self.overall, sum(self.pruning_induced.values())),
            "languages": {lang: stats(s, self.pruning_induced.get(lang, 0)) for lang, s in self.languages.items()},
        }


def stats_record(stats: LanguageStats, *, pruning_induced: int, recovery_probed: bool) -> dict:
    """LanguageStats as JSON plus accuracies; demoted/erased are null where no recovery probe ran."""
    record = stats.as_dict()
    record["mc_accuracy"] = stats.mc_correct / stats.items if stats.items else None
    record["gen_accuracy"] = stats.gen_correct / stats.items if stats.items else None
    record["pruning_induced"] = pruning_induced
    if not recovery_probed:
        record["demoted"] = record["erased"] = record["not_probed"] = None
    return record


def candidate_point(sparsity: float, recipe: str, verdicts: Sequence[ItemVerdict]) -> SweepPoint:
    langs = by_language(verdicts)
    return SweepPoint(sparsity, recipe, language_stats([v.candidate for v in verdicts]),
                      {lang: lv.candidate for lang, lv in langs.items()},
                      {lang: lv.pruning_induced for lang, lv in langs.items()}, recovery_probed=True)


def dense_point(verdicts: Sequence[ItemVerdict]) -> SweepPoint:
    langs = by_language(verdicts)
    return SweepPoint(0.0, None, language_stats([v.reference for v in verdicts]),
                      {lang: lv.reference for lang, lv in langs.items()},
                      {lang: 0 for lang in langs}, recovery_probed=False)


def run_sweep(settings: SweepSettings, *, progress: Progress | None = None) -> list[SweepPoint]:
    """Prune and probe at each sparsity; the dense point comes from the first one's reference side.

    One session per sparsity, all items in one batch; the session reads the results store first
    and prunes only when the candidate's results are missing.
    """
    say = progress or (lambda _msg: None)
    points: list[SweepPoint] = []
    for n, sparsity in enumerate(settings.sparsities, 1):
        config = settings.run_config(sparsity)
        tag = f"sparsity {sparsity:g}"
        say(f"{tag} ({n}/{len(settings.sparsities)}): {config.prune}")
        started = time.monotonic()
        session = IllusionSession(config, progress=lambda msg, tag=tag: say(f"{tag}: {msg}"))
        verdicts = session.verdicts(session.items)
        if not points:
            points.append(dense_point(verdicts))
            say(f"dense reference: {_headline(points[0].overall)}")
        points.append(candidate_point(sparsity, config.prune or "", verdicts))
        say(f"{tag}: {_headline(points[-1].overall)} ({time.monotonic() - started:.1f} s)")
        session.release()  # before the next sparsity prunes and loads its own: one model resident at a time
    return points


def _headline(stats: LanguageStats) -> str:
    rate = "n/a" if stats.illusion_rate is None else f"{stats.illusion_rate:.2f}"
    return (f"{stats.items} items, MC {stats.mc_correct}, generation {stats.gen_correct}, "
            f"recognition-only {stats.recognition_only}, illusion rate {rate}")


def sweep_record(settings: SweepSettings, points: Sequence[SweepPoint]) -> dict:
    """sweep.json: a versioned config plus points in ascending sparsity."""
    return {"version": SWEEP_VERSION, "config": settings.as_dict(), "points": [p.as_dict() for p in points]}


# ----------------------------------------------------------------------------- figures


def metric_chart(points: Sequence[dict], *, title: str, x_label: str, width: int, height: int) -> str:
    """MC accuracy, generation accuracy and illusion rate of one scope (a language or all) against sparsity."""
    series = [plots.Series(name, tuple((p["sparsity"], p["stats"][field]) for p in points
                                       if p["stats"] and p["stats"].get(field) is not None), color)
              for field, name, color in METRICS]
    return plots.line_chart(series, x_label, "fraction", title=title, width=width, height=height)


def scope_points(record: dict, lang: str | None) -> list[dict]:
    """(sparsity, stats) of one language, or overall when ``lang`` is None, per point."""
    return [{"sparsity": p["sparsity"], "stats": p["overall"] if lang is None else p["languages"].get(lang)}
            for p in record["points"]]


def _languages(record: dict) -> list[str]:
    return list(dict.fromkeys(lang for p in record["points"] for lang in p["languages"]))


def _x_label(record: dict) -> str:
    return f"sparsity ({record['config']['method']}; 0 = dense)"


def _items(record: dict, lang: str | None) -> int:
    stats = scope_points(record, lang)[0]["stats"] if record["points"] else None
    return stats["items"] if stats else 0


def overall_chart(record: dict, *, width: int, height: int = 320) -> str:
    langs = _languages(record)
    title = f"All {len(langs)} language{'s' * (len(langs) != 1)} ({_items(record, None)} items)"
    return metric_chart(scope_points(record, None), title=title, x_label=_x_label(record), width=width, height=height)


def language_charts(record: dict) -> list[tuple[str, str]]:
    """(language, chart) per language, the small multiples."""
    return [(lang, metric_chart(scope_points(record, lang), title=f"{lang} ({_items(record, lang)} items)",
                                x_label=_x_label(record), width=PANEL_WIDTH, height=PANEL_HEIGHT))
            for lang in _languages(record)]


def illusion_by_language_chart(record: dict, *, width: int = 640, height: int = 320) -> str:
    """One line per language: the illusion rate against sparsity."""
    series = [plots.Series(lang, tuple((p["sparsity"], p["stats"]["illusion_rate"]) for p in scope_points(record, lang)
                                       if p["stats"] and p["stats"]["illusion_rate"] is not None))
              for lang in _languages(record)]
    return plots.line_chart(series, _x_label(record), "illusion rate", title="Illusion rate by language",
                            width=width, height=height)


def _caption(record: dict) -> str:
    cfg = record["config"]
    return (f"{cfg['model']} pruned with {cfg['method']}, {cfg['limit_per_lang'] or 'all'} items per language from "
            f"{cfg['dataset']}. Illusion rate = recognition-only / MC-correct (MC right, greedy answer wrong).")


def _svg_heading(record: dict) -> tuple[str, str]:
    """Two short lines for the top of sweep.svg (one long line would overflow the figure)."""
    cfg = record["config"]
    per_lang = f"{cfg['limit_per_lang']} items per language" if cfg["limit_per_lang"] else "all items"
    return (f"{cfg['model']} pruned with {cfg['method']}: MC accuracy, greedy generation accuracy and illusion rate",
            f"{per_lang} from {cfg['dataset']}; sparsity 0 = dense reference; "
            "illusion rate = recognition-only / MC-correct")


def render_svg(record: dict) -> str:
    """One standalone SVG: a heading, the overall chart, then one small chart per language.

    No by-language overlay here: lines that sit on the same values (e.g. several languages at an
    illusion rate of 1) hide each other, while small multiples show every language.
    """
    gap, top, overall_height = 10, 50, 280
    panels = language_charts(record)
    width = COLUMNS * PANEL_WIDTH + (COLUMNS - 1) * gap
    rows = -(-len(panels) // COLUMNS)
    height = top + overall_height + gap + rows * (PANEL_HEIGHT + gap)
    heading, detail = _svg_heading(record)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(heading)}" {plots.FONT} font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',  # readable on dark backgrounds too
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="15" font-weight="600" '
        f'fill="{plots.INK}">{esc(heading)}</text>',
        f'<text x="{width / 2:.0f}" y="40" text-anchor="middle" fill="#59636e">{esc(detail)}</text>',
        f'<g transform="translate(0 {top})">{overall_chart(record, width=width, height=overall_height)}</g>',
    ]
    for n, (_lang, svg) in enumerate(panels):
        x = (n % COLUMNS) * (PANEL_WIDTH + gap)
        y = top + overall_height + gap + (n // COLUMNS) * (PANEL_HEIGHT + gap)
        parts.append(f'<g transform="translate({x} {y})">{svg}</g>')
    parts.append("</svg>\n")
    return "".join(parts)


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;background:#fff}
header{padding:20px 32px 12px;border-bottom:1px solid #d1d9e0;background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:#59636e;margin:0}main{padding:0 32px 40px;max-width:1500px}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;border:1px solid #d1d9e0;border-radius:8px;padding:8px;max-width:100%;overflow-x:auto}
figcaption{color:#59636e;font-size:12px;max-width:560px;margin-top:4px}
svg.chart{display:block;max-width:100%;height:auto}
table{border-collapse:collapse}th,td{border-bottom:1px solid #d1d9e0;padding:4px 10px;text-align:right}
th{background:#f6f8fa;font-weight:600;white-space:nowrap}th.l,td.l{text-align:left}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}dt{color:#59636e}
dd{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
"""

_TABLE = (("sparsity", None), ("items", "items"), ("MC acc.", "mc_accuracy"), ("gen. acc.", "gen_accuracy"),
          ("illusion rate", "illusion_rate"), ("recognition-only", "recognition_only"),
          ("pruning-induced", "pruning_induced"), ("demoted", "demoted"), ("erased", "erased"),
          ("median gold rank", "median_gold_rank"))


FRACTIONS = {field for field, _name, _color in METRICS}  # shown with two decimals, even 0 and 1


def _cell(field: str, value: object) -> str:
    if value is None:
        return "-"
    if field in FRACTIONS:
        return f"{float(value):.2f}"  # type: ignore[arg-type]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(record: dict, lang: str | None) -> str:
    head = "".join(f"<th>{esc(name)}</th>" for name, _ in _TABLE)
    rows = []
    for point in scope_points(record, lang):
        stats = point["stats"] or {}
        cells = [f"{point['sparsity']:g}"] + [_cell(field, stats.get(field)) for _, field in _TABLE[1:]]
        rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(svg: str, caption: str = "") -> str:
    return f"<figure>{svg}" + (f"<figcaption>{esc(caption)}</figcaption>" if caption else "") + "</figure>"


def render_html(record: dict) -> str:
    """sweep.html: one self-contained page (inline CSS and SVG, no script, no external loads)."""
    cfg = record["config"]
    title = f"benchmark-illusion sweep: {cfg['model']} with {cfg['method']}"
    languages = _languages(record)
    body = [
        f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(_caption(record))}</p></header><main>",
        "<h2>All languages</h2><div class=\"plots\">",
        _figure(overall_chart(record, width=600), "Sparsity 0 is the dense reference. Where generation accuracy "
                "falls below MC accuracy, the benchmark overstates what the model can say."),
        _figure(illusion_by_language_chart(record, width=600),
                "Illusion rate = recognition-only / MC-correct; a language with no MC-correct item has no point at "
                "that sparsity. Lines on the same values hide each other: see the per-language charts and tables."),
        "</div>", _table(record, None),
        "<p class=\"sub\">Demoted/erased: recognition-only items a recovery probe (beam, sampling, one-shot) "
        "brings back or not; recovery probes run on pruned models only, so the dense row shows -. They ran on "
        f"{esc(recovery_scope_text(cfg))}.</p>",
        "<h2>Per language</h2><div class=\"plots\">",
        *(_figure(svg) for _lang, svg in language_charts(record)), "</div>",
        *(f"<h3>{esc(lang)}</h3>{_table(record, lang)}" for lang in languages),
        "<h2>Configuration</h2><dl>",
        *(f"<dt>{esc(k)}</dt><dd>{esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</dd>"
          for k, v in cfg.items()),
        "</dl></main>",
    ]
    return html_page(title, body, css=_CSS, script=None)


def write_outputs(out: Path, record: dict) -> list[Path]:
    """sweep.json, sweep.html and sweep.svg, each written atomically."""
    from .files import write_atomic

    files = {
        "sweep.json": json.dumps(record, indent=2, ensure_ascii=False) + "\n",
        "sweep.html": render_html(record),
        "sweep.svg": render_svg(record),
    }
    for name, text in files.items():
        write_atomic(out / name, text.encode("utf-8"))
    return [out / name for name in files]


def sweep(settings: SweepSettings, out: Path, *, progress: Progress | None = None) -> list[Path]:
    """Check options, run every sparsity, write the three files; returns their paths."""
    check_settings(settings)
    prepare_out_dir(out)
    points = run_sweep(settings, progress=progress)
    return write_outputs(out, sweep_record(settings, points))
