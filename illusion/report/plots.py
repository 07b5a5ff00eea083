"""Small SVG charts as pure functions returning strings, for the self-contained report.html.

No plotting library: the report must open offline and stay one file, and a few hundred lines of
SVG cover what it needs (stacked bars, a log-log scatter, a line chart for sparsity sweeps). Every
piece of text that reaches the SVG goes through ``esc``, since labels can come from datasets and
model output. Empty inputs draw an empty frame with a "no data" note instead of dividing by zero.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Sequence

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999933", "#000000")
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""
AXIS, GRID, INK = "#444", "#e3e3e3", "#222"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(text: object) -> str:
    """Text or attribute content, escaped (quotes too), without characters XML/SVG forbids."""
    return html.escape(_NOT_XML.sub("", str(text)), quote=True)


def fmt(value: float) -> str:
    """A compact tick label: 1, 2.5, 10k, 0.05."""
    if value == 0:
        return "0"
    if abs(value) >= 1000 and float(value).is_integer():
        for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:g}{suffix}"
    return f"{value:.3g}"


# ----------------------------------------------------------------------------- scales and ticks

def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1/2/5 x 10^k steps), about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"nice_ticks: lo={lo}, hi={hi} must be finite numbers")
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-9 * max(1.0, abs(lo)):  # one value (or a sliver): show it on a unit-wide axis
        hi = lo + max(1.0, abs(lo))
    if not math.isfinite(hi - lo):
        raise ValueError(f"nice_ticks: the range [{lo}, {hi}] is too wide to label")
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    n = int(round((stop - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering [lo, hi] (both > 0)."""
    if not (lo > 0 and hi > 0):
        raise ValueError(f"log_ticks: lo={lo}, hi={hi} must be positive; a log axis cannot show 0")
    lo, hi = min(lo, hi), max(lo, hi)
    first, last = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    return [10.0 ** k for k in range(first, max(last, first + 1) + 1)]


@dataclass(frozen=True)
class Scale:
    """Maps a data domain onto a pixel range, linearly or in log10."""

    lo: float
    hi: float
    start: float  # pixel position of lo
    end: float  # pixel position of hi
    log: bool = False

    def __call__(self, value: float) -> float:
        f = math.log10 if self.log else float
        span = f(self.hi) - f(self.lo)
        t = (f(value) - f(self.lo)) / span if span else 0.5
        return self.start + t * (self.end - self.start)


def axis_scale(values: Sequence[float], start: float, end: float, *, log: bool = False,
               zero: bool = False, integer: bool = False) -> tuple[Scale, list[float]]:
    """A scale and its ticks for ``values`` (log: positive values only; zero: include 0;
    integer: whole-number ticks, for counts)."""
    if log:
        positive = [v for v in values if v > 0] or [1.0]
        ticks = log_ticks(min(positive), max(positive))
    else:
        finite = list(values) or [0.0, 1.0]
        lo, hi = min([*finite, 0.0] if zero else finite), max(finite)
        ticks = nice_ticks(lo, hi)
        if integer and len(ticks) > 1 and ticks[1] - ticks[0] < 1:
            ticks = [float(v) for v in range(math.floor(lo), math.ceil(hi) + 1)]
    return Scale(ticks[0], ticks[-1], start, end, log), ticks


# ----------------------------------------------------------------------------- frame pieces

@dataclass(frozen=True)
class Frame:
    """Canvas size and the margins around the plotting area."""

    width: int = 640
    height: int = 320
    left: int = 60
    right: int = 20
    top: int = 34
    bottom: int = 56

    @property
    def x0(self) -> float:
        return self.left

    @property
    def x1(self) -> float:
        return self.width - self.right

    @property
    def y0(self) -> float:  # bottom of the plot area (pixel y grows downwards)
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        return self.top


def _open(frame: Frame, title: str, label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{esc(label or title)}" {FONT} '
        f'font-size="12" class="chart">',
        f'<text x="{frame.width / 2:.1f}" y="20" text-anchor="middle" font-size="14" font-weight="600" '
        f'fill="{INK}">{esc(title)}</text>' if title else "",
    ]


def _no_data(frame: Frame) -> str:
    return (f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{(frame.y0 + frame.y1) / 2:.1f}" '
            f'text-anchor="middle" fill="#777">no data</text>')


def _y_axis(frame: Frame, scale: Scale, ticks: Sequence[float], label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = scale(tick)
        parts.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{frame.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS}">{esc(fmt(tick))}</text>')
    parts.append(f'<line x1="{frame.x0}" x2="{frame.x0}" y1="{frame.y0}" y2="{frame.y1}" stroke="{AXIS}"/>')
    cy = (frame.y0 + frame.y1) / 2
    parts.append(f'<text x="14" y="{cy:.1f}" text-anchor="middle" fill="{INK}" '
                 f'transform="rotate(-90 14 {cy:.1f})">{esc(label)}</text>')
    return parts


def _x_axis(frame: Frame, scale: Scale, ticks: Sequence[float], label: str) -> list[str]:
    parts = []
    for tick in ticks:
        x = scale(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y0}" y2="{frame.y1}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{frame.y0 + 16}" text-anchor="middle" fill="{AXIS}">{esc(fmt(tick))}</text>')
    parts.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{frame.y0}" y2="{frame.y0}" stroke="{AXIS}"/>')
    parts.append(f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{frame.height - 10}" text-anchor="middle" '
                 f'fill="{INK}">{esc(label)}</text>')
    return parts


LEGEND_TOP, LEGEND_ROW = 38, 16


def legend(entries: Sequence[tuple[str, str]], x: float, *, max_width: float) -> tuple[list[str], float]:
    """Colour swatches with labels, left to right from (x, LEGEND_TOP), wrapping at ``max_width``.

    Returns the SVG parts and the y where the plotting area may start below the legend.
    """
    parts, cx, cy = [], x, LEGEND_TOP
    for name, color in entries:
        width = 24 + 7 * len(name)  # ~7 px per character at 12 px: generous, so labels never collide
        if cx > x and cx + width > x + max_width:
            cx, cy = x, cy + LEGEND_ROW
        parts.append(f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="11" height="11" rx="2" fill="{esc(color)}"/>')
        parts.append(f'<text x="{cx + 15:.1f}" y="{cy:.1f}" fill="{INK}">{esc(name)}</text>')
        cx += width
    return parts, (cy + 14 if entries else 30)


# ----------------------------------------------------------------------------- charts

@dataclass(frozen=True)
class Segment:
    """One coloured part of a stacked bar."""

    label: str  # legend name, also used in the tooltip
    value: float
    color: str


@dataclass(frozen=True)
class Bar:
    label: str  # short text under the bar
    segments: tuple[Segment, ...]
    note: str = ""  # tooltip prefix, e.g. "en reference"

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


@dataclass(frozen=True)
class BarGroup:
    label: str  # text under the group (a language)
    bars: tuple[Bar, ...]


def stacked_bars(groups: Sequence[BarGroup], *, y_label: str, title: str = "",
                 legend_entries: Sequence[tuple[str, str]] = (), bar_width: int = 26, height: int = 340) -> str:
    """Groups of stacked bars (e.g. per language: reference next to candidate); width grows with groups."""
    n_bars = sum(len(g.bars) for g in groups)
    inner = n_bars * (bar_width + 6) + len(groups) * 22
    width = max(420, 60 + 20 + inner)
    keys, top = legend(legend_entries, 60, max_width=width - 80)
    frame = Frame(width=width, height=height, top=int(top), bottom=62)
    parts = _open(frame, title, f"{title}: {y_label}") + keys
    totals = [bar.total for g in groups for bar in g.bars]
    scale, ticks = axis_scale([*totals, 1.0], frame.y0, frame.y1, zero=True, integer=True)
    parts += _y_axis(frame, scale, ticks, y_label)
    parts.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{frame.y0}" y2="{frame.y0}" stroke="{AXIS}"/>')
    if not n_bars:
        parts.append(_no_data(frame))
    x = frame.x0 + 11 + (frame.x1 - frame.x0 - inner) / 2  # centred
    for group in groups:
        start = x
        for bar in group.bars:
            parts += _stack(bar, x, bar_width, scale)
            parts.append(f'<text x="{x + bar_width / 2:.1f}" y="{frame.y0 + 13}" text-anchor="middle" font-size="10" '
                         f'fill="{AXIS}">{esc(bar.label)}</text>')
            x += bar_width + 6
        parts.append(f'<text x="{(start + x - 6) / 2:.1f}" y="{frame.y0 + 30}" text-anchor="middle" font-weight="600" '
                     f'fill="{INK}">{esc(group.label)}</text>')
        x += 22
    parts.append("</svg>")
    return "".join(parts)


def _stack(bar: Bar, x: float, width: float, scale: Scale) -> list[str]:
    parts, base = [], 0.0
    for seg in bar.segments:
        if seg.value <= 0:
            continue
        top, bottom = scale(base + seg.value), scale(base)
        tip = f"{bar.note + ': ' if bar.note else ''}{seg.label} {fmt(seg.value)}"
        parts.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{bottom - top:.1f}" '
                     f'fill="{esc(seg.color)}" stroke="#fff" stroke-width="0.5"><title>{esc(tip)}</title></rect>')
        if bottom - top >= 13:
            parts.append(f'<text x="{x + width / 2:.1f}" y="{(top + bottom) / 2 + 4:.1f}" text-anchor="middle" '
                         f'font-size="10" fill="#fff">{esc(fmt(seg.value))}</text>')
        base += seg.value
    return parts


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    color: str
    title: str = ""  # tooltip


def log_scatter(points: Sequence[Point], *, x_label: str, y_label: str, title: str = "",
                legend_entries: Sequence[tuple[str, str]] = (), diagonal: bool = True,
                size: int = 420, note_above: str = "", note_below: str = "") -> str:
    """A square log-log scatter (e.g. gold rank before vs after), with the y = x diagonal."""
    keys, top = legend(legend_entries, 64, max_width=size)
    frame = Frame(width=size + 80, height=size + int(top) + 50, top=int(top), bottom=50, left=64, right=16)
    parts = _open(frame, title, f"{title}: {y_label} against {x_label}") + keys
    values = [v for p in points for v in (p.x, p.y) if v > 0] or [1.0, 10.0]
    xs, ticks = axis_scale(values, frame.x0, frame.x1, log=True)  # same domain on both axes
    ys = Scale(xs.lo, xs.hi, frame.y0, frame.y1, log=True)
    parts += _x_axis(frame, xs, ticks, x_label) + _y_axis(frame, ys, ticks, y_label)
    if diagonal:
        parts.append(f'<line x1="{frame.x0}" y1="{frame.y0}" x2="{frame.x1}" y2="{frame.y1}" stroke="#999" '
                     f'stroke-dasharray="4 4"/>')
    if note_above:
        parts.append(f'<text x="{frame.x0 + 8}" y="{frame.y1 + 14}" fill="#777">{esc(note_above)}</text>')
    if note_below:
        parts.append(f'<text x="{frame.x1 - 8}" y="{frame.y0 - 8}" text-anchor="end" fill="#777">{esc(note_below)}</text>')
    if not points:
        parts.append(_no_data(frame))
    for p in points:
        if p.x > 0 and p.y > 0:
            parts.append(f'<circle cx="{xs(p.x):.1f}" cy="{ys(p.y):.1f}" r="5" fill="{esc(p.color)}" fill-opacity="0.7" '
                         f'stroke="#fff" stroke-width="0.8"><title>{esc(p.title)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]
    color: str = ""  # default: the palette, in series order


def line_chart(series: Sequence[Series], x_label: str, y_label: str, *, title: str = "", log_x: bool = False,
               log_y: bool = False, width: int = 640, height: int = 340) -> str:
    """Lines with markers, one per series (e.g. illusion rate against sparsity, one line per language)."""
    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    keys, top = legend([(s.name, c) for s, c in zip(series, colors)], 64, max_width=width - 84)
    frame = Frame(width=width, height=height, top=int(top), bottom=50, left=64)
    parts = _open(frame, title, f"{title}: {y_label} against {x_label}") + keys
    pts = [(x, y) for s in series for x, y in s.points if _finite(x, y)]
    xs, xt = axis_scale([x for x, _ in pts], frame.x0, frame.x1, log=log_x)
    ys, yt = axis_scale([y for _, y in pts], frame.y0, frame.y1, log=log_y, zero=not log_y)
    parts += _x_axis(frame, xs, xt, x_label) + _y_axis(frame, ys, yt, y_label)
    if not pts:
        parts.append(_no_data(frame))
    for s, color in zip(series, colors):
        drawn = sorted((x, y) for x, y in s.points if _finite(x, y) and (x > 0 or not log_x) and (y > 0 or not log_y))
        coords = " ".join(f"{xs(x):.1f},{ys(y):.1f}" for x, y in drawn)
        if len(drawn) > 1:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{esc(color)}" stroke-width="2"/>')
        for x, y in drawn:
            parts.append(f'<circle cx="{xs(x):.1f}" cy="{ys(y):.1f}" r="3.5" fill="{esc(color)}">'
                         f'<title>{esc(f"{s.name}: {fmt(x)}, {fmt(y)}")}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
