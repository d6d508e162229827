"""Run spiders in-process with Scrapy and return each source's health.

:func:`crawl` runs one source; :func:`crawl_many` runs several side by side in
one Scrapy process, where a source that is down does not stop the others.

Twisted's reactor cannot be restarted, so only the first crawl of a process
runs in it; any later call transparently runs in a fresh child process
(``python -m crawlers.runner``) and returns the same :class:`CrawlStats`.

A crawl by id (``ids=[...]``, ``moments crawl SOURCE --ids FILE``) fetches
known posts of :data:`BY_ID_SOURCES` by their native ids instead of searching,
to re-poll their engagement (see :func:`crawl`).

Politeness defaults (robots.txt obeyed, AutoThrottle, 2 concurrent requests
per domain, a 1 s download delay, backoff on 429/5xx) can be switched to
"as fast as possible" with ``MOMENTS_CRAWL_FAST=1`` or
``settings={"MOMENTS_CRAWL_FAST": True}`` (robots.txt is still obeyed and
``Retry-After`` still honoured, capped at a few seconds). Crawls that only
reach loopback servers or local files (tests, the offline demo) are fast
unless ``settings`` says ``MOMENTS_CRAWL_FAST: False``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawlers.context import CrawlStats, RunContext
from crawlers.state import IDS_STATE_KEY, Clock, CrawlState, default_state_dir, resolve_as_of
from crawlers.text import parse_timestamp
from moments.config import SOURCES, MomentsConfig, load_config

VERSION = "0.1.0"

SPIDERS: dict[str, str] = {
    "mastodon": "crawlers.spiders.mastodon:MastodonSpider",
    "bluesky": "crawlers.spiders.bluesky:BlueskySpider",
    "reddit": "crawlers.spiders.reddit:RedditSpider",
    "hackernews": "crawlers.spiders.hackernews:HackerNewsSpider",
    "lemmy": "crawlers.spiders.lemmy:LemmySpider",
    "appstore": "crawlers.spiders.appstore:AppStoreSpider",
    "jsonld": "crawlers.spiders.jsonld:JsonLdSpider",
    "rss": "crawlers.spiders.rss:RssSpider",
    "import": "crawlers.spiders.file_import:FileImportSpider",
}
assert set(SPIDERS) == set(SOURCES)

#: Sources whose posts can be fetched by native id (``--ids``).
BY_ID_SOURCES = ("mastodon", "bluesky", "reddit", "hackernews", "lemmy")

DEFAULT_SETTINGS: dict[str, Any] = {
    "BOT_NAME": "moments",
    "ROBOTSTXT_OBEY": True,
    "AUTOTHROTTLE_ENABLED": True,
    "AUTOTHROTTLE_START_DELAY": 1.0,
    "AUTOTHROTTLE_MAX_DELAY": 60.0,
    "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
    "DOWNLOAD_DELAY": 1.0,
    "CONCURRENT_REQUESTS": 16,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
    "DOWNLOAD_TIMEOUT": 30,
    "RETRY_TIMES": 3,
    "RETRY_HTTP_CODES": [429, 500, 502, 503, 504, 522, 524, 408],
    "COOKIES_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "DEFAULT_DROPITEM_LOG_LEVEL": "DEBUG",
    "LOG_LEVEL": "INFO",
    "LOG_INSTALL_ROOT_HANDLER": False,
    "DOWNLOADER_MIDDLEWARES": {
        "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
        "crawlers.middlewares.PoliteRetryMiddleware": 550,
        "crawlers.middlewares.RateLimitMiddleware": 560,
    },
    "ITEM_PIPELINES": {
        "crawlers.pipelines.CleanPipeline": 100,
        "crawlers.pipelines.BrandPipeline": 200,
        "crawlers.pipelines.DuplicatePipeline": 300,
        "crawlers.pipelines.IncrementalPipeline": 400,
        "crawlers.pipelines.JsonlWriterPipeline": 900,
    },
    "EXTENSIONS": {"crawlers.health.HealthExtension": 100},
    "MOMENTS_RETRY_BACKOFF": 1.0,
    "MOMENTS_MAX_RETRY_AFTER": 300.0,
}

# Tests and benchmarks: no deliberate delays (robots.txt and Retry-After still apply).
FAST_SETTINGS: dict[str, Any] = {
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
    "MOMENTS_RETRY_BACKOFF": 0.05,
    "MOMENTS_MAX_RETRY_AFTER": 3.0,
}


@dataclass
class CrawlJob:
    """One source + query to crawl (see :func:`crawl` for the fields).

    With ``ids`` (native ids) it is a crawl by id: those posts are fetched,
    not a search; ``query`` may then be empty.
    """

    source: str
    query: str
    base_url: str | None = None
    output: Path | None = None
    since: str | datetime | None = None
    country: str = "us"
    extra: dict[str, Any] = field(default_factory=dict)
    ids: list[str] | None = None


def normalize_ids(source: str, ids: Iterable[str]) -> list[str]:
    """Native ids as a crawl by id takes them: one per entry, in order, each once.

    Blank entries and ``#`` comments are skipped, and a whole post id
    (``mastodon:1100``, as in ``Post.id``) loses its ``source:`` prefix.
    """
    prefix = f"{source}:"
    out: dict[str, None] = {}
    for raw in ids:
        native_id = str(raw).strip()
        if not native_id or native_id.startswith("#"):
            continue
        out[native_id.removeprefix(prefix)] = None
    return list(out)


def user_agent(config: MomentsConfig | None) -> str:
    """A User-Agent naming the project and how to reach whoever runs it."""
    contact = (config.contact_url if config else None) or os.environ.get("MOMENTS_CONTACT_URL")
    contact = contact or "https://github.com/moments-oss/moments"
    return f"Moments/{VERSION} (+{contact}; public-post monitoring for customer care)"


def build_settings(config: MomentsConfig | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """Scrapy settings for a Moments crawl: politeness defaults, then overrides."""
    from scrapy.settings import Settings

    settings = Settings()
    settings.setdict(DEFAULT_SETTINGS, priority="project")
    settings.set("USER_AGENT", user_agent(config), priority="project")
    overrides = dict(overrides or {})
    fast = overrides.pop("MOMENTS_CRAWL_FAST", None)
    if fast is None:
        fast = os.environ.get("MOMENTS_CRAWL_FAST", "") not in ("", "0", "false", "no")
    if fast:
        # cmdline priority: beats the per-spider politeness in custom_settings.
        settings.setdict(FAST_SETTINGS, priority="cmdline")
    settings.setdict(overrides, priority="cmdline")
    return settings


def spider_class(source: str) -> type:
    """The spider class of a source name.

    Raises:
        ValueError: Unknown source.
    """
    try:
        module_name, class_name = SPIDERS[source].split(":")
    except KeyError:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SPIDERS)}") from None
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls


def _as_config(config: str | Path | MomentsConfig | None) -> MomentsConfig | None:
    if config is None or isinstance(config, MomentsConfig):
        return config
    return load_config(config)


def _as_since(since: str | datetime | None) -> datetime | None:
    if since is None or since == "":
        return None
    parsed = parse_timestamp(since)
    if parsed is None:
        raise ValueError(f"--since is not an ISO 8601 timestamp: {since!r}")
    return parsed


def state_key(job: CrawlJob) -> str:
    """What a cursor is kept per: the query, and the storefront for the App Store.

    A crawl by id with a query shares its search's state (it adds snapshots,
    never moves the cursor); without one it has its own, :data:`IDS_STATE_KEY`.
    """
    if job.ids is not None and not job.query:
        return IDS_STATE_KEY
    return f"{job.query}@{job.country.lower()}" if job.source == "appstore" else job.query


def _is_local(job: CrawlJob) -> bool:
    """Whether a job only talks to this machine (loopback server or a local file)."""
    if job.source == "import" and not job.base_url and not job.query.startswith(("http://", "https://")):
        return True
    target = job.base_url or (job.query if job.query.startswith(("http://", "https://")) else None)
    host = urlsplit(target).hostname if target else None
    return host in ("127.0.0.1", "localhost", "::1")


def _reactor_used() -> bool:
    # Importing twisted.internet.reactor would install one; only look if it exists.
    reactor = sys.modules.get("twisted.internet.reactor")
    return bool(reactor is not None and (getattr(reactor, "_startedBefore", False) or reactor.running))


def crawl(
    source: str,
    query: str,
    *,
    base_url: str | None = None,
    output: Path | str | None = None,
    config: str | Path | MomentsConfig | None = None,
    since: str | datetime | None = None,
    as_of: str | datetime | None = None,
    country: str = "us",
    state_dir: Path | str | None = None,
    settings: dict[str, Any] | None = None,
    ids: Iterable[str] | None = None,
) -> CrawlStats:
    """Crawl one source with a real Scrapy crawl and write posts as JSONL.

    Args:
        source: ``mastodon``, ``bluesky``, ``reddit``, ``hackernews``, ``lemmy``,
            ``appstore``, ``jsonld``, ``rss`` or ``import``.
        query: Hashtag (mastodon); search terms (bluesky, reddit, hackernews,
            lemmy; ``r/NAME`` for a subreddit's new posts); app id (appstore);
            page URL/path or sitemap (jsonld); feed URL/path (rss); the file (import).
        base_url: Service root (default: the public service); a local mock
            server stands in for it in tests and the demo.
        output: JSONL file to write (overwritten); stdout when ``None``.
        config: ``brands.yaml`` path or a loaded config; enables brand matching,
            credentials, the contact URL and import column mappings.
        since: Only posts created at or after this time.
        as_of: Replay clock for ``crawled_at`` (else ``MOMENTS_AS_OF``, else now).
        country: App Store storefront (two letters).
        state_dir: Cursor and health directory (default ``$MOMENTS_HOME/crawl-state``).
        settings: Scrapy setting overrides (``MOMENTS_CRAWL_FAST: True`` drops delays).
        ids: Crawl by id: fetch these posts (native ids, ``Post.id`` without
            ``source:``) instead of searching, to re-poll their engagement;
            only for :data:`BY_ID_SOURCES`, and ``query`` may be ``""``. Every
            post fetched is written with this poll's snapshot appended to its
            ``engagement_history`` (one per ``as_of``); none is dropped as
            already seen or for not matching a brand; a post that is gone
            (404, deleted, missing from a batch answer) is a drop ``gone``,
            not an error. The cursor never moves: with ``query`` the
            snapshots go into that search's state, else into their own.

    Returns:
        The run's :class:`CrawlStats` (also written to the state directory).

    Raises:
        ValueError: Unknown source, a source that cannot fetch by id, a bad timestamp.
    """
    job = CrawlJob(
        source,
        query,
        base_url,
        Path(output) if output else None,
        since,
        country,
        ids=normalize_ids(source, ids) if ids is not None else None,
    )
    return crawl_many([job], config=config, as_of=as_of, state_dir=state_dir, settings=settings)[0]


def crawl_many(
    jobs: list[CrawlJob],
    *,
    config: str | Path | MomentsConfig | None = None,
    as_of: str | datetime | None = None,
    state_dir: Path | str | None = None,
    settings: dict[str, Any] | None = None,
) -> list[CrawlStats]:
    """Crawl several sources concurrently in one Scrapy process (see :func:`crawl`).

    Returns:
        One :class:`CrawlStats` per job, in order; a failing source is reported
        unhealthy and does not stop the others.
    """
    for job in jobs:
        if job.ids is not None and job.source not in BY_ID_SOURCES:
            raise ValueError(f"{job.source} cannot fetch posts by id; --ids works for {', '.join(BY_ID_SOURCES)}")
    loaded = _as_config(config)
    if all(_is_local(job) for job in jobs) and "MOMENTS_CRAWL_FAST" not in (settings or {}):
        # Politeness protects other people's servers; a recorded corpus on
        # loopback (the demo, tests) or a local file needs none of the delays.
        settings = {**(settings or {}), "MOMENTS_CRAWL_FAST": True}
    if _reactor_used():
        return _crawl_in_child(jobs, loaded, as_of, state_dir, settings)
    return _crawl_here(jobs, loaded, as_of, state_dir, settings)


def _crawl_here(
    jobs: list[CrawlJob],
    config: MomentsConfig | None,
    as_of: str | datetime | None,
    state_dir: Path | str | None,
    settings: dict[str, Any] | None,
) -> list[CrawlStats]:
    from scrapy.crawler import CrawlerProcess

    clock = Clock(resolve_as_of(as_of))
    root = Path(state_dir) if state_dir else default_state_dir()
    # Logging belongs to the caller (the moments CLI configures it); Scrapy's
    # logging setup resets its loggers to DEBUG, so put the caller's levels back.
    levels = {name: logging.getLogger(name).level for name in ("scrapy", "twisted", "py.warnings")}
    quiet = logging.getLogger("scrapy").getEffectiveLevel() > logging.INFO
    if quiet:
        logging.disable(logging.INFO)  # Scrapy's start-up banner
    try:
        process = CrawlerProcess(build_settings(config, settings))
    finally:
        if quiet:
            logging.disable(logging.NOTSET)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    contexts: list[RunContext] = []
    for job in jobs:
        ctx = RunContext(
            source=job.source,
            query=job.query,
            clock=clock,
            state=CrawlState.load(root, job.source, state_key(job)),
            config=config,
            since=_as_since(job.since),
            output=job.output,
            country=job.country,
            ids=job.ids,
        )
        contexts.append(ctx)
        deferred = process.crawl(spider_class(job.source), ctx=ctx, base_url=job.base_url, query=job.query)
        deferred.addErrback(_record_failure, ctx)
    # Signal handlers can only be installed from the main thread (Prefect runs tasks in workers).
    process.start(install_signal_handlers=threading.current_thread() is threading.main_thread())
    results = []
    for ctx in contexts:
        if ctx.stats is None:
            ctx.stats = CrawlStats(
                ctx.source,
                ctx.query,
                errors=max(ctx.errors, 1),
                healthy=False,
                health_reason="crawl did not run",
                ids=len(ctx.ids) if ctx.ids is not None else None,
            )
            ctx.stats.error_samples = ctx.error_samples
        results.append(ctx.stats)
    return results


def _record_failure(failure: Any, ctx: RunContext) -> None:
    ctx.error(f"crawl failed: {failure.getErrorMessage()}")


def _crawl_in_child(
    jobs: list[CrawlJob],
    config: MomentsConfig | None,
    as_of: str | datetime | None,
    state_dir: Path | str | None,
    settings: dict[str, Any] | None,
) -> list[CrawlStats]:
    with tempfile.TemporaryDirectory(prefix="moments-crawl-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        stats_path = Path(tmp) / "stats.json"
        spec = {
            "jobs": [
                {
                    "source": j.source,
                    "query": j.query,
                    "base_url": j.base_url,
                    "output": str(j.output) if j.output else None,
                    "since": j.since.isoformat() if isinstance(j.since, datetime) else j.since,
                    "country": j.country,
                    "ids": j.ids,
                }
                for j in jobs
            ],
            "config": config.model_dump(mode="json", by_alias=True) if config else None,
            "as_of": as_of.isoformat() if isinstance(as_of, datetime) else as_of,
            "state_dir": str(state_dir) if state_dir else None,
            "settings": settings,
            "stats_out": str(stats_path),
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "crawlers.runner", str(spec_path)], check=False)
        if not stats_path.exists():
            return [
                CrawlStats(
                    j.source,
                    j.query,
                    errors=1,
                    healthy=False,
                    health_reason="crawl process failed",
                    ids=len(j.ids) if j.ids is not None else None,
                )
                for j in jobs
            ]
        return [CrawlStats(**s) for s in json.loads(stats_path.read_text(encoding="utf-8"))]


def _child_main(spec_path: str) -> int:
    """Entry point of the child process: run the jobs of a spec file, write their stats."""
    from moments.config import parse_config

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    jobs = [
        CrawlJob(
            j["source"],
            j["query"],
            j["base_url"],
            Path(j["output"]) if j["output"] else None,
            j["since"],
            j["country"],
            ids=j.get("ids"),
        )
        for j in spec["jobs"]
    ]
    config = parse_config(spec["config"]) if spec["config"] is not None else None
    stats = _crawl_here(jobs, config, spec["as_of"], spec["state_dir"], spec["settings"])
    Path(spec["stats_out"]).write_text(json.dumps([s.to_dict() for s in stats]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
