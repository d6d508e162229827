"""RSS 2.0 and Atom feeds (parsed with feedparser).

The query is a feed URL or a path under the base URL. Entry fields used:
``id``/``guid`` (else the link), ``link``, ``title``, ``content``/``summary``
(HTML), ``published``/``updated``, ``author``, ``tags``, and
``slash:comments`` (the RSS Slash module) as the reply count. An Atom
``<link rel="next">`` (RFC 5005 paged feeds) is followed.
"""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider
from crawlers.text import stable_id

MAX_PAGES = 20


def _time(entry: Any, *keys: str) -> datetime | None:
    for key in keys:
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            # feedparser normalises to UTC struct_time.
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


class RssSpider(MomentsSpider):
    """Crawl one RSS or Atom feed."""

    name = "rss"

    async def start(self) -> AsyncIterator[Any]:
        url = urljoin(self.base_url, self.query.strip()) if self.base_url else self.query.strip()
        yield self.request(url, self.parse, cb_kwargs={"page": 1})

    def parse(self, response: Response, page: int) -> Iterator[Any]:
        import feedparser

        parsed = feedparser.parse(response.body, response_headers={"content-location": response.url})
        entries = parsed.get("entries") or []
        if not entries:
            if parsed.get("bozo"):
                reason = parsed.get("bozo_exception")
                self.ctx.drop("malformed_feed", f"{response.url}: {reason}")
                self.ctx.error(f"not a readable feed at {response.url}: {reason}")
            elif not parsed.get("version"):
                ctype = (response.headers.get("Content-Type") or b"").decode("latin-1")
                self.ctx.drop("wrong_content_type", f"{ctype} at {response.url}")
                self.ctx.error(f"expected RSS or Atom, got {ctype or 'no content type'} from {response.url}")
            return
        feed_title = parsed.get("feed", {}).get("title")
        reached_stop = False
        for entry in entries:
            created = _time(entry, "published", "updated", "created")
            if self.past_stop(created):
                reached_stop = True
            yield self.entry_to_post(entry, created, feed_title, response.url)
        next_link = next(
            (link.get("href") for link in parsed.get("feed", {}).get("links", []) if link.get("rel") == "next"), None
        )
        if next_link and not reached_stop and page < MAX_PAGES:
            yield self.request(urljoin(response.url, next_link), self.parse, cb_kwargs={"page": page + 1})

    def entry_to_post(self, entry: Any, created: datetime | None, feed_title: str | None, feed_url: str) -> dict:
        """Map one feed entry to a raw post."""
        content = entry.get("content") or []
        body = content[0].get("value") if content else entry.get("summary") or entry.get("description") or ""
        link = entry.get("link")
        native_id = entry.get("id") or link or stable_id(feed_url, entry.get("title"), body)
        comments = entry.get("slash_comments")
        return self.post(
            native_id=native_id,
            text=body,
            html=True,
            title=entry.get("title"),
            url=link,
            created_at=created,
            author={"handle": entry.get("author")},
            engagement={"replies": comments},
            lang=entry.get("language") or None,
            extra={
                "feed_title": feed_title,
                "feed_url": feed_url,
                "tags": [t.get("term") for t in entry.get("tags", []) if t.get("term")] or None,
            },
        )
