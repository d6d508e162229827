"""The scorecard as one self-contained HTML file: opens offline, loads nothing, runs nothing.

:func:`render_report` turns a :class:`~triage.scorecard.Scorecard` into an HTML5
document with an inline ``<style>``, inline SVG charts (:mod:`triage.svg`) and no
``<script>`` at all. Post text, author names and URLs are customers' input, so they
are hostile by default:

* the template (``templates/report.html``) is rendered by Jinja2 with autoescape on,
  and the only markup it is given unescaped is the SVG built by :mod:`triage.svg`,
  which escapes every text itself;
* a post is linked only when its URL is ``http(s)://`` with a host (:func:`safe_url`);
  any other (``javascript:``, ``data:``, relative) is shown as plain text; links
  carry ``rel="noopener noreferrer"``;
* a Content-Security-Policy ``<meta>`` (``default-src 'none'``) stops a browser from
  loading or running anything, should an escaping mistake ever slip through.

The pieces are separate so the triage app can render the same scorecard as a page:
:func:`scorecard_view` (plain values, formatted), :func:`scorecard_charts` (the SVG
strings) and :func:`safe_url`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from triage import svg
from triage.scorecard import (
    MIN_G2,
    MIN_TERM_COUNT,
    MagicPost,
    PeriodCounts,
    Scorecard,
    Trend,
    shares_by_touchpoint,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: The policy every report carries: nothing may load or run; inline styles and data: images only.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: Characters of a quoted post shown in the report (the link has the rest).
QUOTE_CHARS = 600
#: Touchpoints that get a chart of their own over time (the busiest).
TOUCHPOINT_CHARTS = 6

_environment: Environment | None = None


def environment() -> Environment:
    """The Jinja2 environment of the triage templates: autoescape on for every template, undefined is an error."""
    global _environment
    if _environment is None:
        _environment = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _environment


def safe_url(url: str | None) -> str | None:
    """``url`` when it is safe to link: ``http`` or ``https`` with a host, no whitespace or control characters.

    Anything else (``javascript:``, ``data:``, ``vbscript:``, protocol-relative or
    relative URLs, a URL with a space or newline that a browser might repair into
    something else) is ``None``, and the caller shows the text unlinked.
    """
    if not url:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not parts.hostname:
        return None
    return url


# ------------------------------------------------------------------------------ formatting


def when(value: datetime) -> str:
    """A timestamp as the report writes it: ``2026-03-01 14:05 UTC``."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def day_or_time(value: datetime) -> str:
    """A period bound: the date alone at midnight, else the minute."""
    if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
        return value.strftime("%Y-%m-%d")
    return when(value)


def percent(share: float) -> str:
    """``0.123`` -> ``12.3 %``."""
    return f"{share * 100:.1f} %"


def points(net: float) -> str:
    """A net score (``[-1, 1]``) in points: ``+12.3``, ``-4.0``, ``0.0``."""
    value = round(net * 100, 1)
    return f"{value:+.1f}" if value else "0.0"


def _arrow(delta: float | None, *, good_when_up: bool, threshold: float = 0.0) -> dict[str, str]:
    """A trend arrow: symbol, words for screen readers, and a class (``good``/``bad``/``flat``)."""
    if delta is None:
        return {"symbol": "–", "words": "no comparison", "cls": "flat"}
    if abs(delta) <= threshold:
        return {"symbol": "▬", "words": "unchanged", "cls": "flat"}
    up = delta > 0
    return {
        "symbol": "▲" if up else "▼",
        "words": "up" if up else "down",
        "cls": "good" if up == good_when_up else "bad",
    }


def _counts_view(current: PeriodCounts, previous: PeriodCounts, trend: Trend) -> dict[str, Any]:
    volume_change = (
        f"{trend.volume_ratio * 100:+.0f} %" if trend.volume_ratio is not None else ("new" if current.volume else "–")
    )
    return {
        "volume": f"{current.volume:,}",
        "previous_volume": f"{previous.volume:,}",
        "volume_delta": f"{trend.volume_delta:+,}",
        "volume_change": volume_change,
        "misery": percent(current.misery_share),
        "misery_count": f"{current.misery:,}",
        "previous_misery": percent(previous.misery_share) if previous.volume else "–",
        "misery_arrow": _arrow(
            current.misery_share - previous.misery_share if current.volume and previous.volume else None,
            good_when_up=False,
            threshold=0.0005,
        ),
        "magic": percent(current.magic_share),
        "magic_count": f"{current.magic:,}",
        "previous_magic": percent(previous.magic_share) if previous.volume else "–",
        "magic_arrow": _arrow(
            current.magic_share - previous.magic_share if current.volume and previous.volume else None,
            good_when_up=True,
            threshold=0.0005,
        ),
        "net": points(current.net_score) if current.volume else "–",
        "net_cls": "good" if current.net_score > 0 else "bad" if current.net_score < 0 else "flat",
        "previous_net": points(previous.net_score) if previous.volume else "–",
        "net_delta": points(trend.net_delta) if trend.net_delta is not None else "–",
        "net_arrow": _arrow(trend.net_delta, good_when_up=True, threshold=0.0005),
    }


def _magic_view(post: MagicPost) -> dict[str, Any]:
    text = " ".join(post.text.split())
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 1] + "…"
    author = post.author_handle or post.author_name or "someone"
    if post.author_handle and post.author_name and post.author_name != post.author_handle:
        author = f"{post.author_name} ({post.author_handle})"
    return {
        "text": text,
        "author": author,
        "source": post.source,
        "date": when(post.created_at),
        "href": safe_url(post.url),
        "url_text": post.url or "",
        "engagement": f"{post.engagement:,}",
        "positive": f"{post.positive * 100:.0f} %",
    }


def scorecard_view(scorecard: Scorecard) -> dict[str, Any]:
    """The scorecard as plain, formatted values for a template (no markup: the template escapes them)."""
    brand = scorecard.brand or "All brands"
    return {
        "brand": brand,
        "title": f"Moments scorecard: {brand}",
        "since": day_or_time(scorecard.since),
        "until": day_or_time(scorecard.until),
        "previous_since": day_or_time(scorecard.previous_since),
        "previous_until": day_or_time(scorecard.previous_until),
        "generated_at": when(scorecard.generated_at),
        "posts": f"{scorecard.posts:,}",
        "previous_posts": f"{scorecard.previous_posts:,}",
        "classified": f"{scorecard.total.volume:,}",
        "bucket": "hour" if scorecard.bucket.total_seconds() <= 3600 else "day",
        "total": _counts_view(scorecard.total, scorecard.previous_total, scorecard.trend),
        "touchpoints": [
            {
                "id": row.touchpoint,
                "label": row.label,
                "counts": _counts_view(row.current, row.previous, row.trend),
                "themes": [
                    {
                        "term": theme.term,
                        "count": f"{theme.count:,}",
                        "reference_count": f"{theme.reference_count:,}",
                        "g2": f"{theme.g2:.1f}",
                    }
                    for theme in row.themes
                ],
                "misery": row.current.misery,
                "best_magic": [_magic_view(post) for post in row.best_magic],
            }
            for row in scorecard.touchpoints
        ],
        "sample_notes": scorecard.sample.lines(),
        "min_term_count": MIN_TERM_COUNT,
        "min_g2": f"{MIN_G2:g}",
    }


def _series_of(rows: Sequence[tuple[datetime, int]]) -> list[tuple[datetime, float]]:
    return [(at, float(n)) for at, n in rows]


def scorecard_charts(scorecard: Scorecard) -> dict[str, Any]:
    """The scorecard's charts as SVG strings: ``net`` (bars), ``over_time`` and ``by_touchpoint`` ({id: svg})."""
    period = f"{day_or_time(scorecard.since)} to {day_or_time(scorecard.until)}"
    bars = [(label, net * 100) for label, net in shares_by_touchpoint(scorecard)]
    net = svg.bar_chart(
        bars,
        title=f"Net moment score by touchpoint, {period}",
        description="Magic share minus misery share, in points; below zero, misery outweighs magic.",
        domain=(min(-10.0, *(v for _, v in bars)), max(10.0, *(v for _, v in bars))) if bars else None,
        value_format=lambda v: f"{v:+.1f}" if round(v, 1) else "0",
        axis_label="net moment score (points)",
    )
    unit = "hour" if scorecard.bucket.total_seconds() <= 3600 else "day"
    overall = scorecard.series
    over_time = svg.line_chart(
        {name: _series_of(rows) for name, rows in overall.items()},
        title=f"Misery and magic posts per {unit}, {period}",
        y_label=f"posts per {unit}",
        description=f"Counts of misery and magic posts per {unit}, every touchpoint together.",
    )
    busiest = [row for row in scorecard.touchpoints if row.current.misery or row.current.magic][:TOUCHPOINT_CHARTS]
    by_touchpoint = {
        row.touchpoint: svg.line_chart(
            {name: _series_of(row.series.get(name, ())) for name in ("misery", "magic")},
            title=f"{row.label}: misery and magic per {unit}",
            y_label=f"posts per {unit}",
            width=480,
            height=200,
        )
        for row in busiest
    }
    return {
        "net": Markup(net),
        "over_time": Markup(over_time),
        "by_touchpoint": {k: Markup(v) for k, v in by_touchpoint.items()},
    }


def render_report(scorecard: Scorecard) -> str:
    """The scorecard as one HTML5 document: inline style and SVG, no script, nothing loaded from anywhere."""
    template = environment().get_template("report.html")
    return template.render(
        csp=Markup(CONTENT_SECURITY_POLICY),  # a constant without a double quote: safe in the attribute
        view=scorecard_view(scorecard),
        charts=scorecard_charts(scorecard),
    )
