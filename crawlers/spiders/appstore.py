"""Apple App Store customer reviews, from the public RSS feed in JSON.

``GET /{cc}/rss/customerreviews/page={n}/id={app_id}/sortby=mostrecent/json``
(``https://itunes.apple.com``; pages 1..10, 50 reviews each) returns
``{"feed": {"entry": [...], "link": [...], ...}}`` in Apple's JSON rendering of
Atom: every value is ``{"label": ...}``. ``entry`` is a list, a single object
when there is one review, or missing when there are none; older feeds put the
app itself first (an entry without ``im:rating``), which is skipped.

Entry fields used: ``id.label``, ``author.name.label``, ``author.uri.label``,
``updated.label``, ``title.label``, ``content.label``, ``im:rating.label``,
``im:version.label``, ``im:voteSum.label``, ``im:voteCount.label``,
``link.attributes.href``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider, dig
from crawlers.text import parse_timestamp

MAX_PAGES = 10


def label(entry: dict[str, Any], *path: str) -> Any:
    """``entry[path...]["label"]`` (Apple wraps every value in a label object)."""
    return dig(entry, *path, "label")


class AppStoreSpider(MomentsSpider):
    """Crawl the most recent reviews of one app in one storefront."""

    name = "appstore"
    default_base_url = "https://itunes.apple.com"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_id = self.query.strip().removeprefix("id")
        self.country = (self.ctx.country or "us").lower()

    async def start(self) -> AsyncIterator[Any]:
        yield self.page_request(1)

    def page_request(self, page: int) -> Request:
        """One page of the reviews feed."""
        path = f"/{self.country}/rss/customerreviews/page={page}/id={self.app_id}/sortby=mostrecent/json"
        return self.request(self.api_url(path), self.parse, cb_kwargs={"page": page})

    def parse(self, response: Response, page: int) -> Iterator[Any]:
        data = self.load_json(response)
        if data is None:
            return
        feed = dig(data, "feed")
        if not isinstance(feed, dict):
            self.layout_changed(response, "an object with a 'feed'")
            return
        entries = feed.get("entry") or []
        if isinstance(entries, dict):
            entries = [entries]
        reached_stop = False
        reviews = 0
        for entry in entries:
            if not isinstance(entry, dict) or label(entry, "im:rating") is None:
                continue  # the app's own entry, not a review
            reviews += 1
            if self.past_stop(parse_timestamp(label(entry, "updated"))):
                reached_stop = True
            yield self.entry_to_post(entry)
        if reviews and not reached_stop and page < MAX_PAGES and self._has_next(feed, page):
            yield self.page_request(page + 1)

    @staticmethod
    def _has_next(feed: dict[str, Any], page: int) -> bool:
        # Apple links "next" and "last"; with no links at all, try the next page.
        links = feed.get("link") or []
        if isinstance(links, dict):
            links = [links]
        last = next(
            (dig(link, "attributes", "href") for link in links if dig(link, "attributes", "rel") == "last"), None
        )
        if not last:
            return True
        marker = "page="
        try:
            last_page = int(last.split(marker, 1)[1].split("/", 1)[0])
        except (IndexError, ValueError):
            return True
        return page < last_page

    def entry_to_post(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Map one review entry to a raw post."""
        vote_sum = label(entry, "im:voteSum")
        return self.post(
            native_id=label(entry, "id"),
            text=label(entry, "content") or "",
            title=label(entry, "title"),
            url=dig(entry, "link", "attributes", "href"),
            created_at=label(entry, "updated"),
            author={"handle": label(entry, "author", "name")},
            engagement={"score": vote_sum},
            rating=label(entry, "im:rating"),
            extra={
                "app_id": self.app_id,
                "country": self.country,
                "app_version": label(entry, "im:version"),
                "vote_sum": vote_sum,
                "vote_count": label(entry, "im:voteCount"),
                "author_uri": label(entry, "author", "uri"),
            },
        )
