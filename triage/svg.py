"""Small inline SVG charts as strings: no dependency, no script, no external font or stylesheet.

The scorecard report (:mod:`triage.report`) is one HTML file that must open offline and
run nothing, and the triage app shows the same charts in its pages; so a chart here is
a self-contained ``<svg>`` element, drawn on the server, readable without JavaScript:

* :func:`line_chart`: one or more time series (misery and magic over time);
* :func:`bar_chart`: horizontal bars diverging around 0 (net moment score per touchpoint);
* :func:`band_chart`: a line with a shaded band (a forecast's low..high range);
* :func:`engagement_chart`: a post's engagement snapshots, with its forecast band.

Every chart has ``role="img"``, an ``aria-label`` and a ``<title>`` (what a screen reader
and a hover say), axes with labelled ticks, a legend when there is more than one series,
and a ``<title>`` on each point and bar for its exact value. A page scales them to its width with
``svg.chart { max-width: 100%; height: auto; }`` (the report's stylesheet has it; the
attribute stays out of the SVG, where some renderers read ``height: auto`` as zero). Every piece of text,
labels included, goes through :func:`html.escape`: series names can be brand or
touchpoint names someone typed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

#: Colours by series name; other series take :data:`CYCLE` in order.
COLORS: dict[str, str] = {
    "misery": "#b3261e",
    "magic": "#1b7f3b",
    "neutral": "#6b7280",
    "engagement": "#1f4e9c",
    "expected": "#1f4e9c",
}
#: Colours for series not named in :data:`COLORS`, colour-blind-safe (Okabe-Ito).
CYCLE: tuple[str, ...] = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
NEGATIVE = "#b3261e"
POSITIVE = "#1b7f3b"
AXIS = "#4b5563"
GRID = "#e5e7eb"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

Point = tuple[datetime, float]


def _e(value: object) -> str:
    """Escaped text or attribute value (quotes too)."""
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def format_number(value: float) -> str:
    """A value as a tick or hover shows it: ``1.2k``, ``35``, ``0.25``."""
    if not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        return f"{value / 1_000_000:.1f}".rstrip("0").rstrip(".") + "M"
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    if magnitude == int(magnitude):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _open(width: int, height: int, title: str, description: str | None) -> list[str]:
    label = title if not description else f"{title}. {description}"
    parts = [
        f'<svg class="chart" role="img" aria-label="{_e(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="{_e(FONT)}" font-size="12">',
        f"<title>{_e(title)}</title>",
    ]
    if description:
        parts.append(f"<desc>{_e(description)}</desc>")
    return parts


def _empty(width: int, height: int, title: str, message: str = "No data in this period") -> str:
    parts = _open(width, height, title, message)
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="{AXIS}">{_e(message)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------ scales and ticks


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) covering ``[low, high]``, about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    count_ticks = round((last - first) / step)
    return [round(first + i * step, 10) for i in range(count_ticks + 1)]


@dataclass(frozen=True)
class _Linear:
    """A linear scale from a value domain to pixels."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.p0 + (value - self.lo) / span * (self.p1 - self.p0)


_TIME_STEPS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(minutes=1), "%H:%M"),
    (timedelta(minutes=5), "%H:%M"),
    (timedelta(minutes=15), "%H:%M"),
    (timedelta(minutes=30), "%H:%M"),
    (timedelta(hours=1), "%H:%M"),
    (timedelta(hours=3), "%H:%M"),
    (timedelta(hours=6), "%d %b %H:%M"),
    (timedelta(hours=12), "%d %b %H:%M"),
    (timedelta(days=1), "%d %b"),
    (timedelta(days=2), "%d %b"),
    (timedelta(days=7), "%d %b"),
    (timedelta(days=14), "%d %b"),
    (timedelta(days=30), "%d %b %Y"),
    (timedelta(days=91), "%b %Y"),
    (timedelta(days=365), "%Y"),
)


def time_ticks(start: datetime, end: datetime, count: int = 6) -> tuple[list[datetime], str]:
    """Tick times (aligned to whole units since the Unix epoch, UTC) and the ``strftime`` format to label them."""
    span = max(end - start, timedelta(minutes=1))
    step, fmt = next(((s, f) for s, f in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + math.ceil((start - epoch) / step) * step
    ticks: list[datetime] = []
    at = first
    while at <= end and len(ticks) < 50:
        ticks.append(at)
        at += step
    if fmt == "%H:%M" and (end - start) >= timedelta(hours=12):
        fmt = "%d %b %H:%M"
    return ticks, fmt


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class _Frame:
    """The plot area of a time chart: scales, and the axes drawn around it."""

    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    start: datetime
    end: datetime
    y: _Linear
    yticks: tuple[float, ...]

    def x(self, at: datetime) -> float:
        total = (self.end - self.start).total_seconds() or 1.0
        return self.left + (_utc(at) - self.start).total_seconds() / total * (self.right - self.left)

    def axes(self, y_label: str, y_format: Callable[[float], str]) -> list[str]:
        parts: list[str] = ['<g class="axes">']
        for tick in self.yticks:
            py = self.y(tick)
            parts.append(
                f'<line x1="{_n(self.left)}" x2="{_n(self.right)}" y1="{_n(py)}" y2="{_n(py)}" stroke="{GRID}"/>'
            )
            parts.append(
                f'<text x="{_n(self.left - 6)}" y="{_n(py + 4)}" text-anchor="end" fill="{AXIS}">'
                f"{_e(y_format(tick))}</text>"
            )
        ticks, fmt = time_ticks(self.start, self.end)
        for at in ticks:
            px = self.x(at)
            parts.append(
                f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{_n(self.bottom)}" y2="{_n(self.bottom + 4)}" stroke="{AXIS}"/>'
            )
            parts.append(
                f'<text x="{_n(px)}" y="{_n(self.bottom + 17)}" text-anchor="middle" fill="{AXIS}">'
                f"{_e(at.strftime(fmt))}</text>"
            )
        parts.append(
            f'<line x1="{_n(self.left)}" x2="{_n(self.right)}" y1="{_n(self.bottom)}" y2="{_n(self.bottom)}" '
            f'stroke="{AXIS}"/>'
        )
        parts.append(
            f'<line x1="{_n(self.left)}" x2="{_n(self.left)}" y1="{_n(self.top)}" y2="{_n(self.bottom)}" '
            f'stroke="{AXIS}"/>'
        )
        if y_label:
            cy = (self.top + self.bottom) / 2
            parts.append(
                f'<text transform="translate(14 {_n(cy)}) rotate(-90)" text-anchor="middle" fill="{AXIS}">'
                f"{_e(y_label)}</text>"
            )
        parts.append(
            f'<text x="{_n(self.right)}" y="{_n(self.bottom + 32)}" text-anchor="end" fill="{AXIS}">UTC</text>'
        )
        parts.append("</g>")
        return parts


def _frame(
    width: int,
    height: int,
    start: datetime,
    end: datetime,
    low: float,
    high: float,
    *,
    legend_rows: int,
) -> _Frame:
    top = 16 + 18 * legend_rows
    ticks = nice_ticks(min(low, 0.0), max(high, 1.0))
    left, right, bottom = 58.0, float(width - 30), float(height - 40)
    if end <= start:
        end = start + timedelta(hours=1)
    return _Frame(
        width=width,
        height=height,
        left=left,
        right=right,
        top=float(top),
        bottom=bottom,
        start=_utc(start),
        end=_utc(end),
        y=_Linear(ticks[0], ticks[-1], bottom, float(top)),
        yticks=tuple(ticks),
    )


def _legend(entries: Sequence[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """Swatches and names on one row from ``x``: ``(name, colour, kind)`` with kind ``line``, ``dash`` or ``band``."""
    parts = ['<g class="legend">']
    for name, color, kind in entries:
        if kind == "band":
            parts.append(
                f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="18" height="10" fill="{_e(color)}" opacity="0.25"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            parts.append(
                f'<line x1="{_n(x)}" x2="{_n(x + 18)}" y1="{_n(y - 4)}" y2="{_n(y - 4)}" stroke="{_e(color)}" '
                f'stroke-width="2.5"{dash}/>'
            )
        parts.append(f'<text x="{_n(x + 23)}" y="{_n(y)}" fill="#111827">{_e(name)}</text>')
        x += 23 + 7.2 * len(name) + 18
    parts.append("</g>")
    return parts


def _polyline(frame: _Frame, points: Sequence[Point], color: str, *, dashed: bool = False) -> str:
    coords = " ".join(f"{_n(frame.x(at))},{_n(frame.y(v))}" for at, v in points)
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return (
        f'<polyline points="{coords}" fill="none" stroke="{_e(color)}" stroke-width="2" '
        f'stroke-linejoin="round" stroke-linecap="round"{dash}/>'
    )


def _markers(frame: _Frame, name: str, points: Sequence[Point], color: str, fmt: Callable[[float], str]) -> list[str]:
    # One hoverable dot per point, with its exact value; too many dots would be noise, so only up to 400.
    if len(points) > 400:
        return []
    radius = 3 if len(points) <= 60 else 2
    return [
        f'<circle cx="{_n(frame.x(at))}" cy="{_n(frame.y(v))}" r="{radius}" fill="{_e(color)}">'
        f"<title>{_e(name)}: {_e(fmt(v))} at {_e(_when(at))}</title></circle>"
        for at, v in points
    ]


# ------------------------------------------------------------------------------ charts


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    y_label: str = "",
    width: int = 720,
    height: int = 260,
    colors: Mapping[str, str] | None = None,
    description: str | None = None,
    y_format: Callable[[float], str] = format_number,
) -> str:
    """Time series as lines on one time axis, with a legend when there are several.

    Args:
        series: ``{name: [(time, value), ...]}``; times UTC (naive ones taken as UTC).
        title: What the chart shows (its ``<title>`` and ``aria-label``).
        y_label: The unit of the values, written along the y axis.
        width, height: Size in pixels (the chart scales down to fit its container).
        colors: Colour per series name (default :data:`COLORS`, then :data:`CYCLE`).
        description: A sentence for screen readers (``<desc>``).
        y_format: How a value reads on ticks and hovers.
    """
    named = {
        name: sorted(((_utc(t), float(v)) for t, v in points), key=lambda p: p[0]) for name, points in series.items()
    }
    named = {name: points for name, points in named.items() if points}
    if not named:
        return _empty(width, height, title)
    times = [t for points in named.values() for t, _ in points]
    values = [v for points in named.values() for _, v in points]
    palette = _palette(named, colors)
    frame = _frame(width, height, min(times), max(times), min(values), max(values), legend_rows=1)
    parts = _open(width, height, title, description)
    parts += frame.axes(y_label, y_format)
    for name, points in named.items():
        parts.append(f'<g class="series" data-series="{_e(name)}">')
        parts.append(_polyline(frame, points, palette[name]))
        parts += _markers(frame, name, points, palette[name], y_format)
        parts.append("</g>")
    parts += _legend([(name, palette[name], "line") for name in named], frame.left, 14)
    parts.append("</svg>")
    return "".join(parts)


def _palette(names: Sequence[str] | Mapping[str, object], colors: Mapping[str, str] | None) -> dict[str, str]:
    chosen = {**COLORS, **(colors or {})}
    spare = iter(CYCLE * 4)
    return {name: chosen.get(name) or next(spare, "#000000") for name in names}


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 720,
    bar_height: int = 22,
    domain: tuple[float, float] | None = None,
    value_format: Callable[[float], str] = format_number,
    description: str | None = None,
    axis_label: str = "",
) -> str:
    """Horizontal bars diverging around 0: negative ones red, to the left; positive ones green, to the right.

    Args:
        bars: ``(label, value)`` in the order drawn, top to bottom.
        title: What the chart shows.
        width: Width in pixels; the height follows the number of bars.
        bar_height: Height of one bar's row.
        domain: The value range of the axis (default: the data's, always including 0).
        value_format: How a value is written beside its bar and on the ticks.
        description: A sentence for screen readers.
        axis_label: The unit, under the axis.
    """
    if not bars:
        return _empty(width, 120, title)
    values = [float(v) if math.isfinite(v) else 0.0 for _, v in bars]
    lo, hi = domain if domain else (min(0.0, *values), max(0.0, *values))
    if hi <= lo:
        hi = lo + 1
    ticks = nice_ticks(lo, hi, 4)
    shown = [label if len(label) <= 30 else label[:29] + "…" for label, _ in bars]
    label_width = 16 + 7.0 * max(len(label) for label in shown)
    # Room beside the plot for the value written past the end of a bar: left of negative, right of positive.
    left, right = label_width + (48.0 if lo < 0 else 8.0), float(width - 56)
    top = 10.0
    height = int(top + bar_height * len(bars) + 44)
    x = _Linear(ticks[0], ticks[-1], left, right)
    zero = x(0.0)
    bottom = top + bar_height * len(bars)
    parts = _open(width, height, title, description)
    parts.append('<g class="axes">')
    for tick in ticks:
        px = x(tick)
        parts.append(f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{_n(top)}" y2="{_n(bottom)}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{_n(px)}" y="{_n(bottom + 16)}" text-anchor="middle" fill="{AXIS}">'
            f"{_e(value_format(tick))}</text>"
        )
    if axis_label:
        parts.append(
            f'<text x="{_n((left + right) / 2)}" y="{_n(bottom + 34)}" text-anchor="middle" fill="{AXIS}">'
            f"{_e(axis_label)}</text>"
        )
    parts.append("</g>")
    for i, ((label, _), value) in enumerate(zip(bars, values, strict=True)):
        y = top + i * bar_height
        px = x(value)
        x0, x1 = sorted((zero, px))
        color = NEGATIVE if value < 0 else POSITIVE
        text = value_format(value)
        parts.append(f'<g class="bar"><title>{_e(label)}: {_e(text)}</title>')
        parts.append(
            f'<text x="{_n(label_width - 8)}" y="{_n(y + bar_height / 2 + 4)}" text-anchor="end" fill="#111827">'
            f"{_e(shown[i])}</text>"
        )
        parts.append(
            f'<rect x="{_n(x0)}" y="{_n(y + 3)}" width="{_n(max(x1 - x0, 1.0))}" height="{_n(bar_height - 6)}" '
            f'fill="{color}"/>'
        )
        anchor, tx = ("end", x0 - 4) if value < 0 else ("start", x1 + 4)
        parts.append(
            f'<text x="{_n(tx)}" y="{_n(y + bar_height / 2 + 4)}" text-anchor="{anchor}" fill="{color}">'
            f"{_e(text)}</text>"
        )
        parts.append("</g>")
    parts.append(f'<line x1="{_n(zero)}" x2="{_n(zero)}" y1="{_n(top)}" y2="{_n(bottom)}" stroke="{AXIS}"/>')
    parts.append("</svg>")
    return "".join(parts)


def band_chart(
    points: Sequence[Point],
    band_low: Sequence[Point],
    band_high: Sequence[Point],
    *,
    title: str,
    y_label: str = "",
    width: int = 720,
    height: int = 260,
    line_name: str = "observed",
    band_name: str = "range",
    expected: Sequence[Point] = (),
    expected_name: str = "expected",
    color: str = COLORS["engagement"],
    description: str | None = None,
    y_format: Callable[[float], str] = format_number,
) -> str:
    """A line with a shaded band (e.g. engagement so far and the forecast's low..high range).

    Args:
        points: The observed line.
        band_low, band_high: The band's lower and upper edges, at the same times
            (``band_low[i]`` pairs with ``band_high[i]``); empty for no band.
        title: What the chart shows.
        y_label: The unit of the values.
        line_name, band_name: Their names in the legend.
        expected: A dashed line inside the band (the forecast's expected value); may be empty.
        expected_name: Its name in the legend.
        color: Colour of the line and the band.
        description: A sentence for screen readers.
        y_format: How a value reads on ticks and hovers.

    Raises:
        ValueError: The band's edges have different lengths.
    """
    if len(band_low) != len(band_high):
        raise ValueError("band_low and band_high need one point each per time")
    observed = sorted(((_utc(t), float(v)) for t, v in points), key=lambda p: p[0])
    low = [(_utc(t), float(v)) for t, v in band_low]
    high = [(_utc(t), float(v)) for t, v in band_high]
    dashed = sorted(((_utc(t), float(v)) for t, v in expected), key=lambda p: p[0])
    everything = observed + low + high + dashed
    if not everything:
        return _empty(width, height, title)
    times = [t for t, _ in everything]
    values = [v for _, v in everything]
    frame = _frame(width, height, min(times), max(times), min(values), max(values), legend_rows=1)
    parts = _open(width, height, title, description)
    parts += frame.axes(y_label, y_format)
    legend: list[tuple[str, str, str]] = []
    if low:
        outline = [*high, *reversed(low)]
        coords = " ".join(f"{_n(frame.x(t))},{_n(frame.y(v))}" for t, v in outline)
        tip = f"{band_name}: {y_format(low[-1][1])} to {y_format(high[-1][1])} by {_when(high[-1][0])}"
        parts.append(
            f'<polygon class="band" points="{coords}" fill="{_e(color)}" opacity="0.18">'
            f"<title>{_e(tip)}</title></polygon>"
        )
        legend.append((band_name, color, "band"))
    if dashed:
        parts.append(_polyline(frame, dashed, color, dashed=True))
        parts += _markers(frame, expected_name, dashed[-1:], color, y_format)
        legend.append((expected_name, color, "dash"))
    if observed:
        parts.append(_polyline(frame, observed, color))
        parts += _markers(frame, line_name, observed, color, y_format)
        legend.insert(0, (line_name, color, "line"))
    parts += _legend(legend, frame.left, 14)
    parts.append("</svg>")
    return "".join(parts)


def engagement_chart(
    snapshots: Sequence[tuple[datetime, int]],
    forecast: tuple[float, float, float, datetime] | None = None,
    *,
    title: str = "Engagement over time",
    width: int = 720,
    height: int = 240,
) -> str:
    """A post's engagement as polled, and where its forecast expects it by the horizon.

    Args:
        snapshots: ``(time, total engagement)`` per poll.
        forecast: ``(expected, low, high, horizon_end)``: the forecast total at
            ``horizon_end`` and its range, drawn from the last snapshot as a dashed
            line inside a shaded band; ``None``: no forecast.
        title: What the chart shows.
        width, height: Size in pixels.
    """
    observed: list[Point] = sorted(((_utc(t), float(v)) for t, v in snapshots), key=lambda p: p[0])
    if forecast is None or not observed:
        return band_chart(
            observed, [], [], title=title, y_label="interactions", width=width, height=height, line_name="engagement"
        )
    expected, low, high, horizon_end = forecast
    last_at, last_value = observed[-1]
    end = _utc(horizon_end)
    description = (
        f"Forecast: {format_number(expected)} interactions expected by {_when(end)} "
        f"(range {format_number(low)} to {format_number(high)})."
    )
    return band_chart(
        observed,
        [(last_at, last_value), (end, float(low))],
        [(last_at, last_value), (end, float(high))],
        title=title,
        y_label="interactions",
        width=width,
        height=height,
        line_name="engagement",
        band_name="forecast range",
        expected=[(last_at, last_value), (end, float(expected))],
        expected_name="expected",
        description=description,
    )
