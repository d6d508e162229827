"""Per-run context shared by a spider, its pipelines and the health extension."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crawlers.brands import BrandMatcher
from crawlers.state import REPOLL_HOURS, Clock, CrawlState
from moments.config import MomentsConfig

log = logging.getLogger("moments.crawl")

MAX_ERROR_SAMPLES = 10


@dataclass
class CrawlStats:
    """Health of one source for one run, returned by :func:`crawlers.runner.crawl`.

    Attributes:
        source: The source name (``mastodon``, ``reddit``, ...).
        query: What was asked of it.
        requests: HTTP requests made (including robots.txt and retries).
        responses: Responses received (any status, robots.txt included).
        robots_responses: Of those, robots.txt answers.
        retried_responses: Of those, 429/5xx answers that were retried (not good answers).
        parsed: Posts found in responses, before filtering.
        items: Posts written.
        repolled: Of ``items``, posts seen before and re-polled for engagement.
        drops: Posts (or pages) dropped, by reason.
        errors: Failed requests and unreadable pages.
        error_samples: A few error messages, for the log.
        last_success: When this source last answered without errors (ISO, crawl clock).
        healthy: False when the source was unreachable or its output fell to zero.
        health_reason: Why it is unhealthy (empty when healthy).
        finish_reason: Scrapy's close reason (``finished``, ``shutdown``, ...).
        output: The JSONL file written (``None`` for stdout).
        ids: For a crawl by id (``--ids``), how many ids were asked for; ``None`` for a search.
    """

    source: str
    query: str
    started_at: str = ""
    finished_at: str = ""
    requests: int = 0
    responses: int = 0
    robots_responses: int = 0
    retried_responses: int = 0
    parsed: int = 0
    items: int = 0
    repolled: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    last_success: str | None = None
    healthy: bool = True
    health_reason: str = ""
    finish_reason: str = ""
    output: str | None = None
    ids: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def health_key(self) -> str:
        """Its key in ``health.json``: ``source:query``, and ``source:query#ids`` for a crawl by id."""
        return f"{self.source}:{self.query}" + ("#ids" if self.ids is not None else "")

    def summary(self) -> str:
        """One line for humans (the CLI prints it to stderr)."""
        drops = ", ".join(f"{k}={v}" for k, v in sorted(self.drops.items())) or "none"
        health = "healthy" if self.healthy else f"UNHEALTHY ({self.health_reason})"
        what = repr(self.query)
        if self.ids is not None:
            what = f"by id ({self.ids} ids, {what})" if self.query else f"by id ({self.ids} ids)"
        return (
            f"crawl {self.source} {what}: {self.items} posts written "
            f"({self.repolled} re-polled) from {self.parsed} parsed; {self.requests} requests, "
            f"{self.errors} errors; drops: {drops}; {health}"
        )


@dataclass
class RunContext:
    """Everything one crawl needs beyond the spider's own arguments.

    ``ids`` makes it a crawl by id (``moments crawl SOURCE --ids FILE``): the
    spider fetches exactly those posts (native ids) instead of searching, and
    the pipelines re-poll them (see :class:`crawlers.pipelines.IncrementalPipeline`).
    """

    source: str
    query: str
    clock: Clock
    state: CrawlState
    config: MomentsConfig | None = None
    since: datetime | None = None
    output: Path | None = None
    country: str = "us"
    matcher: BrandMatcher | None = None
    ids: list[str] | None = None
    parsed: int = 0
    items: int = 0
    repolled: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    stats: CrawlStats | None = None
    # Posts a crawl by id re-polled: the state entries it writes back.
    polled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.config is not None and self.config.brands and self.matcher is None:
            self.matcher = BrandMatcher(self.config.brands)
        # Brands that own this source + query: every post is about them.
        self.owner_brands = [
            brand.name
            for brand in (self.config.brands if self.config else [])
            for job in brand.sources
            if job.source == self.source and job.query == self.query and job.match_mode == "all"
        ]
        self.now = self.clock.now()
        # The cursor as the run found it: the pipeline moves state.cursor as it goes.
        self.start_cursor = self.state.cursor_time

    @property
    def stop_at(self) -> datetime | None:
        """Oldest ``created_at`` this run needs; paging stops past it.

        ``--since`` wins. Otherwise a first run (no cursor) takes everything,
        and a re-run goes back to the cursor or to the start of the re-poll
        window, whichever is older, so recent posts are polled again.
        """
        if self.since is not None:
            return self.since
        cursor = self.start_cursor
        if cursor is None:
            return None
        return min(cursor, self.now - timedelta(hours=REPOLL_HOURS))

    @property
    def by_id(self) -> bool:
        """Whether this is a crawl of known posts by id, not a search."""
        return self.ids is not None

    def drop(self, reason: str, detail: str = "") -> None:
        """Count a dropped post or page, and say why in the log."""
        self.drops[reason] += 1
        if detail:
            log.info("%s: dropped (%s): %s", self.source, reason, detail)

    def error(self, message: str) -> None:
        """Count a failed request or unreadable page."""
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message)
        log.warning("%s: %s", self.source, message)
