"""``moments report``: the brand manager's scorecard as one self-contained HTML file."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from moments.cli import Commands
from moments.errors import UsageError
from moments.records import utc_now

DESCRIPTION = """\
Write the scorecard of a period as one HTML file: per customer-journey touchpoint,
the volume of posts, the share of misery and of magic, the net moment score (magic
share minus misery share, in points), the trend against the previous period of the
same length, the misery themes that stand out, and the best moments of magic to share
with the staff who made them. Charts are inline SVG.

The file is self-contained: it opens offline, loads nothing and runs no script, so it
can be mailed or archived as it is. Post text and names are escaped; only http(s)
links to the original posts are kept.

WHEN is an ISO date (2026-11-01, midnight UTC), an ISO time (2026-11-01T09:00,
UTC unless it names a zone, e.g. 2026-11-01T09:00+01:00), or a time before now:
90m, 36h, 7d, 2w. The period is [--since, --until): --until itself is excluded.

examples:
  moments report --since 7d -o scorecard.html
  moments report --since 2026-11-01 --until 2026-12-01 --brand "Northwind Air" -o november.html
  moments report --since 24h --store http://127.0.0.1:9200 -o today.html
"""

EPILOG = """\
The previous period is the one just before --since, of the same length (a report of
the last 7 days compares with the 7 days before). Periods up to 3 days are charted per
hour, longer ones per day.

exit status: 0 written; 1 the store failed; 2 bad dates (unreadable, or --since not
before --until) or an output path that cannot be written.
"""

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, *, now: datetime, option: str) -> datetime:
    """A ``WHEN`` as UTC: an ISO date or datetime (naive is UTC), or ``7d`` / ``36h`` / ``90m`` / ``2w`` before ``now``.

    Raises:
        UsageError: ``value`` is none of these (exit 2, naming the option).
    """
    text = value.strip()
    if text.lower() == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), _UNITS[match.group(2).lower()]
        return now - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a date: use an ISO date (2026-11-01), an ISO time "
            "(2026-11-01T09:00Z) or a time before now (90m, 36h, 7d, 2w)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A reader (a browser, a mail job) sees the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _cmd_report(args: argparse.Namespace) -> int:
    from search import open_store
    from triage.report import points, render_report
    from triage.scorecard import build_scorecard

    now = args.as_of or utc_now()
    since = parse_when(args.since, now=now, option="--since")
    until = parse_when(args.until, now=now, option="--until") if args.until else now
    if since >= until:
        raise UsageError(f"--since ({since:%Y-%m-%d %H:%M} UTC) must be before --until ({until:%Y-%m-%d %H:%M} UTC)")
    output: Path = args.output
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder; name the HTML file to write (e.g. {output / 'report.html'})")
    with open_store(args.store) as store:
        scorecard = build_scorecard(store, since=since, until=until, brand=args.brand, now=utc_now())
    html = render_report(scorecard)
    try:
        write_atomically(output, html)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None

    total = scorecard.total
    worst = min(
        (row for row in scorecard.touchpoints if row.current.volume), key=lambda r: r.current.net_score, default=None
    )
    trend = scorecard.trend.net_delta
    summary = (
        f"{scorecard.posts:,} posts, {total.volume:,} classified, net moment score "
        + (points(total.net_score) if total.volume else "–")
        + (f" ({points(trend)} vs previous period)" if trend is not None else "")
        + (f", worst touchpoint {worst.label} {points(worst.current.net_score)}" if worst is not None else "")
    )
    print(output)
    print(f"report: {scorecard.brand or 'all brands'}, {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC: {summary}")
    return 0


def _as_of(value: str) -> datetime:
    try:
        return parse_when(value, now=utc_now(), option="--as-of")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(commands: Commands) -> None:
    """Add ``moments report`` (the scorecard as an HTML file)."""
    parser = commands.add(
        "report",
        help="write the touchpoint scorecard of a period as one self-contained HTML file",
        description=DESCRIPTION,
        epilog=EPILOG,
        handler=_cmd_report,
        options=("store", "brand"),
    )
    parser.add_argument("--since", required=True, metavar="WHEN", help="start of the period (inclusive)")
    parser.add_argument("--until", metavar="WHEN", default=None, help="end of the period (excluded; default: now)")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="FILE", help="the HTML file to write (replaced atomically)"
    )
    parser.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        metavar="WHEN",
        help="what 'now' means for relative times and the default --until (replaying a recorded corpus)",
    )
