"""Source health: per run, per source, what happened, kept next to the cursor.

:class:`HealthExtension` runs when a spider closes: it folds Scrapy's own
counters (requests, responses) and the run context's (posts, drops, errors)
into a :class:`~crawlers.context.CrawlStats`, judges health, appends the run
to the source's state file and writes ``health.json`` in the state directory
(latest stats of every source + query), then saves the cursor.

Unhealthy means: every request failed (the source is down or blocking us), or
no posts were parsed although earlier runs averaged some (output fell to zero,
which usually means the layout or the API changed).

A crawl by id is judged on reachability alone (the posts asked for may all be
gone, which is no fault of the source), adds no run to the state's baseline,
and is kept in ``health.json`` under ``source:query#ids``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals

from crawlers.context import CrawlStats

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler

    from crawlers.context import RunContext

log = logging.getLogger("moments.health")

RUNS_FOR_BASELINE = 5


def judge(stats: CrawlStats, previous_runs: list[dict[str, Any]]) -> tuple[bool, str]:
    """Decide whether a run was healthy, and why not.

    Args:
        stats: This run.
        previous_runs: Earlier runs of the same source + query, oldest first.
    """
    good_responses = stats.responses - stats.robots_responses - stats.retried_responses - stats.errors
    if stats.requests and good_responses <= 0 and stats.errors:
        return False, f"source unreachable or failing: {stats.errors} errors, no good response"
    recent = [r.get("parsed", 0) for r in previous_runs[-RUNS_FOR_BASELINE:]]
    baseline = sum(recent) / len(recent) if recent else 0.0
    if stats.parsed == 0 and baseline > 0:
        return False, f"output fell to zero (previous runs averaged {baseline:.1f} posts)"
    return True, ""


def _retried_responses(scrapy_stats: dict[str, Any]) -> int:
    """Responses retried for their status: Scrapy counts them as ``retry/reason_count/503 Service Unavailable``.

    (Retried network failures, ``retry/reason_count/twisted...``, got no response.)
    """
    prefix = "retry/reason_count/"
    return sum(
        int(count) for key, count in scrapy_stats.items() if key.startswith(prefix) and key[len(prefix) :][:3].isdigit()
    )


def write_health(state_dir: Path, stats: CrawlStats) -> None:
    """Merge one run's stats into ``<state_dir>/health.json`` (keyed by :attr:`CrawlStats.health_key`)."""
    path = state_dir / "health.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        data = {}
    data[stats.health_key] = stats.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(json.dumps(data, indent=1, sort_keys=True))
    os.replace(handle.name, path)


class HealthExtension:
    """Collect a run's health when its spider closes, and persist state."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.started_at = datetime.now(UTC)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        ctx: RunContext | None = getattr(spider, "ctx", None)
        if ctx is None:
            return
        scrapy_stats = self.crawler.stats.get_stats() if self.crawler.stats else {}
        stats = CrawlStats(
            source=ctx.source,
            query=ctx.query,
            started_at=self.started_at.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            requests=int(scrapy_stats.get("downloader/request_count", 0)),
            responses=int(scrapy_stats.get("downloader/response_count", 0)),
            robots_responses=int(scrapy_stats.get("robotstxt/response_count", 0)),
            retried_responses=_retried_responses(scrapy_stats),
            parsed=ctx.parsed,
            items=ctx.items,
            repolled=ctx.repolled,
            drops=dict(ctx.drops),
            errors=ctx.errors,
            error_samples=list(ctx.error_samples),
            finish_reason=reason,
            output=str(ctx.output) if ctx.output else None,
            ids=len(ctx.ids) if ctx.ids is not None else None,
        )
        # A file import makes no HTTP request; Scrapy still counts file:// downloads.
        state = ctx.state
        stats.healthy, stats.health_reason = judge(stats, [] if ctx.by_id else state.runs)
        if stats.healthy and stats.errors == 0 and stats.responses > 0:
            state.last_success = ctx.now.isoformat()
        if not ctx.by_id:
            state.runs.append(
                {
                    "at": ctx.now.isoformat(),
                    "parsed": stats.parsed,
                    "items": stats.items,
                    "errors": stats.errors,
                    "healthy": stats.healthy,
                }
            )
        state.prune(ctx.now)
        stats.last_success = state.last_success
        try:
            if ctx.by_id:
                state.save_polled(ctx.polled, ctx.now)
            else:
                state.save()
            stats.last_success = state.last_success  # a crawl by id merged it with the file's
            if state.path is not None:
                write_health(state.path.parent.parent, stats)
        except OSError as exc:
            log.error("could not save crawl state for %s: %s", ctx.source, exc)
        if not stats.healthy:
            log.warning("%s %r unhealthy: %s", ctx.source, ctx.query, stats.health_reason)
        ctx.stats = stats
