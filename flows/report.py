"""Human-readable views of the store: the care team's flag queue and the touchpoint scorecard."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from crawlers.schema import Post
from search.store import TouchpointCount

_PRIORITY_STYLE = {"P1": "bold red", "P2": "red", "P3": "yellow", "P4": "dim"}


def excerpt(text: str, width: int = 80) -> str:
    """The first ``width`` characters of a post on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def flags_table(posts: Sequence[Post]) -> Table:
    """The open-flag queue: priority, touchpoint, why, excerpt and link."""
    table = Table(title=f"Open flags ({len(posts)})", show_lines=True, expand=True)
    table.add_column("Pri", no_wrap=True)
    table.add_column("Touchpoint", no_wrap=True)
    table.add_column("Why", ratio=3)
    table.add_column("Excerpt", ratio=3)
    table.add_column("URL", ratio=2, overflow="fold")
    for post in posts:
        flag = post.flag
        if flag is None:
            continue
        touchpoint = post.classification.touchpoint if post.classification else "?"
        table.add_row(
            f"[{_PRIORITY_STYLE.get(flag.priority, '')}]{flag.priority}[/]",
            touchpoint,
            "\n".join(flag.reasons[:2]),
            excerpt(post.text),
            post.url or post.id,
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


def print_flags(posts: Sequence[Post], *, as_json: bool, console: Console | None = None) -> None:
    """Print the open flags as a table, or as a JSON array of full posts."""
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in posts], ensure_ascii=False, indent=2))
        return
    console = console or Console()
    if not posts:
        console.print("No open flags.")
        return
    console.print(flags_table(posts))
