"""Human-readable views of the store: the care team's flag queue, one flag, and the touchpoint scorecard."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from moments.records import Flag, FlagEvent, Post
from search.store import TouchpointCount

_HEADLINE = ("priority", "score", "status", "assignee")
_PRIORITY_STYLE = {"P1": "bold red", "P2": "red", "P3": "yellow", "P4": "dim"}


def excerpt(text: str, width: int = 80) -> str:
    """The first ``width`` characters of a post on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def flags_table(flags: Sequence[Flag], posts: Mapping[str, Post | None] | None = None) -> Table:
    """The flag queue: priority, status, touchpoint, why, excerpt, link and id."""
    posts = posts or {}
    table = Table(title=f"Open flags ({len(flags)})", show_lines=True, expand=True)
    table.add_column("Pri", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Touchpoint", no_wrap=True)
    table.add_column("Why", ratio=3)
    table.add_column("Excerpt", ratio=3)
    table.add_column("Flag / URL", ratio=2, overflow="fold")
    for flag in flags:
        post = posts.get(flag.post_ids[0]) if flag.post_ids else None
        status = Text(flag.status + (f"\n@{flag.assignee}" if flag.assignee else ""))
        table.add_row(
            f"[{_PRIORITY_STYLE.get(flag.priority, '')}]{flag.priority}[/]",
            status,
            Text(flag.touchpoint or "?"),
            # Post text, names and reasons are hostile input: plain Text, never console markup.
            Text("\n".join(flag.reasons[:2])),
            Text(excerpt(post.text) if post else f"{len(flag.post_ids)} posts"),
            Text(f"{flag.id}\n{post.url or ''}" if post else flag.id),
        )
    return table


def scorecard_table(rows: Sequence[TouchpointCount]) -> Table:
    """Magic versus misery per touchpoint, worst first."""
    table = Table(title="Moments of truth by touchpoint")
    table.add_column("Touchpoint")
    table.add_column("Misery", justify="right", style="red")
    table.add_column("Magic", justify="right", style="green")
    table.add_column("Neutral", justify="right", style="dim")
    table.add_column("Net", justify="right")
    for row in sorted(rows, key=lambda r: (r.magic - r.misery, r.touchpoint)):
        table.add_row(row.touchpoint, str(row.misery), str(row.magic), str(row.neutral), f"{row.magic - row.misery:+d}")
    return table


def print_flags(
    flags: Sequence[Flag],
    posts: Mapping[str, Post | None] | None = None,
    *,
    as_json: bool,
    console: Console | None = None,
) -> None:
    """Print flags as a table, or as a JSON array of flag records."""
    if as_json:
        print(json.dumps([f.model_dump(mode="json") for f in flags], ensure_ascii=False, indent=2))
        return
    console = console or Console()
    if not flags:
        console.print("No flags.")
        return
    console.print(flags_table(flags, posts))


def print_flag_detail(
    flag: Flag, events: Sequence[FlagEvent], posts: Sequence[Post], *, as_json: bool, console: Console | None = None
) -> None:
    """One flag as a care agent reads it: figures, reasons, posts, and the event log."""
    if as_json:
        document = {
            "flag": flag.model_dump(mode="json"),
            "events": [e.model_dump(mode="json") for e in events],
            "posts": [p.model_dump(mode="json") for p in posts],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return
    console = console or Console()
    style = _PRIORITY_STYLE.get(flag.priority, "")
    console.print(f"[bold]{flag.id}[/]  [{style}]{flag.priority}[/]  {flag.status}  (version {flag.version})")
    console.print(
        f"kind {flag.kind} · brand {flag.brand or '-'} · touchpoint {flag.touchpoint or '-'} · score {flag.score:g}"
        + (f" · assigned to {flag.assignee}" if flag.assignee else "")
    )
    console.print(
        f"opened {flag.opened_at:%Y-%m-%d %H:%M} UTC · updated {flag.updated_at:%Y-%m-%d %H:%M} UTC"
        + (f" · first response {flag.first_response_at:%Y-%m-%d %H:%M}" if flag.first_response_at else "")
        + (f" · closed {flag.resolved_at:%Y-%m-%d %H:%M}" if flag.resolved_at else "")
    )
    console.print("[bold]Reasons[/]")
    for reason in flag.reasons:
        console.print(f"  • {reason}", markup=False)
    console.print(f"[bold]Posts[/] ({len(flag.post_ids)})")
    for post in posts:
        author = post.author.handle or post.author.display_name or "?"
        console.print(f"  {post.id} by {author}: {excerpt(post.text, 120)}", markup=False)
        if post.url:
            console.print(f"    {post.url}", markup=False)
    table = Table(title=f"Events ({len(events)})", expand=True)
    table.add_column("v", justify="right")
    table.add_column("When (UTC)", no_wrap=True)
    table.add_column("Who")
    table.add_column("What")
    table.add_column("Changes", ratio=2, overflow="fold")
    table.add_column("Note", ratio=2)
    for event in events:
        if event.action in ("opened", "migrated"):
            # A new record: its headline figures say enough (`show --json` has every field).
            changes = ", ".join(f"{c.field} {c.new}" for c in event.changes if c.field in _HEADLINE)
        else:
            changes = "; ".join(f"{c.field}: {c.old} -> {c.new}" for c in event.changes if c.field != "reasons")
        table.add_row(
            str(event.version),
            f"{event.at:%Y-%m-%d %H:%M:%S}",
            Text(event.actor),
            event.action,
            Text(changes),
            Text(event.note or ""),
        )
    console.print(table)


def _md(text: object) -> str:
    # Markdown table cells: a pipe or a newline in user text must not break the table.
    return str(text).replace("|", "\\|").replace("\n", " ")


def daily_report(summary: Any, config: Any, store_url: str | None) -> str:
    """The nightly report as Markdown: posts, flags, bursts, notifications and source health.

    Args:
        summary: The nightly run's :class:`flows.flows.TickSummary`.
        config: The loaded :class:`moments.config.MomentsConfig`.
        store_url: The store, for the active queue and the touchpoint summary.
    """
    from search import open_store

    lines = [
        f"# Moments nightly report, {summary.now:%Y-%m-%d %H:%M} UTC",
        "",
        f"**{'PARTIAL' if summary.partial else 'Complete'}**: " + summary.line(),
        "",
        "## Posts",
        "",
        "| crawled | re-polled | recovered | classified | reused | indexed | spooled |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.crawled} | {summary.repolled} | {summary.recovered} | {summary.classified} | {summary.reused} "
        f"| {summary.indexed} | {summary.spooled} |",
        "",
        "## Flags",
        "",
        f"This run: {summary.flags or 'no changes'}.",
    ]
    if summary.bursts:
        lines += ["", "Bursts: " + "; ".join(_md(b) for b in summary.bursts) + "."]
    try:
        with open_store(store_url) as store:
            active_count = store.count_flags()
            active = store.list_flags(limit=20)
            by_touchpoint = store.touchpoint_summary()
        lines += ["", f"Active flags: {active_count}. The 20 most urgent:", ""]
        lines += ["| priority | flag | brand | touchpoint | status | score |", "|---|---|---|---|---|---:|"]
        lines += [
            f"| {f.priority} | `{_md(f.id)}` | {_md(f.brand or '')} | {_md(f.touchpoint or '')} | {f.status} "
            f"| {f.score:.2f} |"
            for f in active
        ]
        lines += ["", "## Touchpoints", "", "| touchpoint | posts | misery | magic |", "|---|---:|---:|---:|"]
        lines += [f"| {_md(t.touchpoint)} | {t.total} | {t.misery} | {t.magic} |" for t in by_touchpoint[:15]]
    except Exception as exc:  # the report still goes out with what the run itself knows
        lines += ["", f"(The store could not be read for the queue: {_md(exc)})"]
    lines += [
        "",
        "## Notifications",
        "",
        f"{summary.notifications or 'none'} ({summary.notifications_sent} notices sent).",
        "",
        "## Source health",
        "",
        "| source | health |",
        "|---|---|",
    ]
    lines += [f"| {_md(name)} | {health} |" for name, health in sorted(summary.source_health.items())]
    if summary.problems:
        lines += ["", "## Left for the next run", ""] + [f"- {_md(p)}" for p in summary.problems]
    return "\n".join(lines) + "\n"
