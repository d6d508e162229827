"""Downloader middlewares: being a polite client of rate-limited APIs.

* :class:`PoliteRetryMiddleware` replaces Scrapy's retry middleware: 429 and
  5xx (and connection failures) are retried with exponential backoff, and a
  ``Retry-After`` header (seconds or an HTTP date) is honoured as the wait.
* :class:`RateLimitMiddleware` reads ``X-RateLimit-Remaining`` /
  ``X-RateLimit-Reset`` (and the IETF ``RateLimit-*`` spelling) on every
  response and, when the budget is spent, holds further requests to that host
  until the window resets.

Both are built from settings (``from_crawler``):

* ``MOMENTS_RETRY_BACKOFF``: base backoff in seconds (doubles per retry).
* ``MOMENTS_MAX_RETRY_AFTER``: cap on any single wait, in seconds.
"""

from __future__ import annotations

import logging
import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.response import response_status_message

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

log = logging.getLogger("moments.politeness")


async def sleep(seconds: float) -> None:
    """Wait without blocking the reactor (works with any Twisted reactor)."""
    if seconds <= 0:
        return
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await maybe_deferred_to_future(deferLater(reactor, seconds, lambda: None))


def _header(response: Response, *names: str) -> str | None:
    for name in names:
        value = response.headers.get(name)
        if value:
            return value.decode("latin-1").strip()
    return None


def seconds_until(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` or rate-limit reset value.

    Understands delta seconds (``120``), Unix epoch seconds (``1732330000``),
    HTTP dates and ISO 8601 timestamps (Mastodon's ``X-RateLimit-Reset``).
    """
    if not value:
        return None
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        # Big numbers are epoch timestamps (Bluesky, GitHub); small ones are deltas.
        return max(0.0, number - now) if number > 1e9 else max(0.0, number)
    from crawlers.text import parse_timestamp

    moment = parse_timestamp(value)
    if moment is None:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, moment.timestamp() - now)


class PoliteRetryMiddleware(RetryMiddleware):
    """Retry 429/5xx and network errors with backoff, honouring ``Retry-After``."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.backoff = settings.getfloat("MOMENTS_RETRY_BACKOFF", 1.0)
        self.max_wait = settings.getfloat("MOMENTS_MAX_RETRY_AFTER", 300.0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        middleware = cls(crawler.settings)
        middleware.crawler = crawler
        return middleware

    def _wait_for(self, request: Request, response: Response | None) -> float:
        attempt = int(request.meta.get("retry_times", 0))
        wait = self.backoff * (2**attempt) * (1 + random.random() / 4)
        if response is not None:
            hinted = seconds_until(_header(response, "Retry-After"))
            if hinted is None and _header(response, "X-RateLimit-Remaining", "RateLimit-Remaining") == "0":
                hinted = seconds_until(_header(response, "X-RateLimit-Reset", "RateLimit-Reset"))
            if hinted is not None:
                wait = hinted
        return min(wait, self.max_wait)

    async def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        wait = self._wait_for(request, response)
        if self.crawler.stats:
            self.crawler.stats.inc_value("moments/retry_wait_ms", int(wait * 1000))
        log.info("HTTP %s from %s: retrying in %.2fs", response.status, request.url, wait)
        await sleep(wait)
        return retry

    async def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:  # type: ignore[override]
        if request.meta.get("dont_retry", False) or not isinstance(exception, self.exceptions_to_retry):
            return None
        retry = self._retry(request, exception)
        if retry is not None:
            await sleep(self._wait_for(request, None))
        return retry


class RateLimitMiddleware:
    """Hold requests to a host whose advertised rate-limit budget is spent."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self.resume_at: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.settings.getfloat("MOMENTS_MAX_RETRY_AFTER", 300.0))

    async def process_request(self, request: Request) -> None:
        host = urlsplit(request.url).netloc
        wait = self.resume_at.get(host, 0.0) - time.monotonic()
        if wait > 0:
            log.info("rate limit of %s spent: waiting %.2fs", host, wait)
            await sleep(wait)

    def process_response(self, request: Request, response: Response) -> Response:
        remaining = _header(response, "X-RateLimit-Remaining", "X-Ratelimit-Remaining", "RateLimit-Remaining")
        if remaining is None:
            return response
        try:
            spent = float(remaining) < 1
        except ValueError:
            return response
        if spent:
            wait = seconds_until(_header(response, "X-RateLimit-Reset", "X-Ratelimit-Reset", "RateLimit-Reset"))
            if wait:
                host = urlsplit(request.url).netloc
                self.resume_at[host] = time.monotonic() + min(wait, self.max_wait)
        return response
