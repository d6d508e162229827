"""Mastodon: public posts with a hashtag.

API (https://docs.joinmastodon.org/methods/timelines/#tag,
https://docs.joinmastodon.org/methods/search/#v2):

* ``GET /api/v1/timelines/tag/:hashtag?limit=40``: an array of Status; older
  pages via ``max_id``, linked from the ``Link: <...>; rel="next"`` header.
* ``GET /api/v2/search?q=...&type=statuses`` (only with a token: full-text
  search needs an authenticated user); ``{"statuses": [...]}``.
* By id (https://docs.joinmastodon.org/methods/statuses/#get):
  ``GET /api/v1/statuses/:id`` returns one Status (public ones need no token;
  the token is sent when configured); 404 when it is deleted or not visible.
* Resharers, by id only (https://docs.joinmastodon.org/methods/statuses/#reblogged_by):
  ``GET /api/v1/statuses/:id/reblogged_by?limit=80`` returns an array of
  Account (``acct``, ``followers_count``), newest first; older pages via the
  ``Link: <...>; rel="next"`` header. Asked for only when ``reblogs_count`` > 0,
  at most :data:`~crawlers.spiders.base.MAX_RESHARE_PAGES` pages a post; the
  post is yielded after them, with ``reshares`` filled.

Status fields used: ``id``, ``created_at``, ``content`` (HTML),
``spoiler_text``, ``language``, ``url``/``uri``, ``favourites_count``,
``reblogs_count``, ``replies_count``, ``quotes_count``, ``mentions[].acct``,
``tags[].name``, ``account.{acct,display_name,followers_count}`` and ``reblog``
(a boost: the original status, so the boost is marked a duplicate of it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from scrapy.http import Response

from crawlers.spiders.base import MAX_RESHARE_PAGES, MomentsSpider, dig, link_header
from crawlers.text import parse_timestamp

PAGE_SIZE = 40
#: Accounts per ``reblogged_by`` page (the API's maximum).
RESHARE_PAGE_SIZE = 80


class MastodonSpider(MomentsSpider):
    """Crawl a Mastodon instance's hashtag timeline (and search, with a token)."""

    name = "mastodon"
    default_base_url = "https://mastodon.social"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = self.query.lstrip("#")
        creds = self.ctx.config.credentials_for("mastodon") if self.ctx.config else {}
        self.token = creds.get("token")
        self.seen: set[str] = set()

    async def start(self) -> AsyncIterator[Any]:
        if self.ids is not None:
            for request in self.id_requests(self.ids):
                yield request
            return
        yield self.request(self.api_url(f"/api/v1/timelines/tag/{self.tag}", {"limit": PAGE_SIZE}), self.parse)
        if self.token:
            yield self.request(
                self.api_url("/api/v2/search", {"q": self.query, "type": "statuses", "limit": PAGE_SIZE}),
                self.parse_search,
                headers={"Authorization": f"Bearer {self.token}"},
            )

    @property
    def auth_headers(self) -> dict[str, str]:
        """The token, when one is configured (public statuses need none)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def id_requests(self, ids: list[str]) -> Iterator[Any]:
        """One ``GET /api/v1/statuses/:id`` per id."""
        for native_id in ids:
            url = self.api_url(f"/api/v1/statuses/{quote(native_id, safe='')}")
            yield self.id_request(url, self.parse_status, headers=self.auth_headers, cb_kwargs={"native_id": native_id})

    def parse_status(self, response: Response, native_id: str) -> Iterator[Any]:
        if self.is_gone(response):
            self.gone(native_id, f"HTTP {response.status}")
            return
        status = self.load_json(response)
        if status is None:
            return
        if not isinstance(status, dict) or "id" not in status:
            self.layout_changed(response, "a Status object with an id")
            return
        post = self.status_to_post(status)
        # A boost's counters are its original's (see status_to_post), and so are its resharers.
        inner = status["reblog"] if isinstance(status.get("reblog"), dict) and status["reblog"].get("id") else status
        count = self.wants_reshares(str(post["native_id"]), inner.get("reblogs_count"))
        if count is None:
            yield post
            return
        url = self.api_url(
            f"/api/v1/statuses/{quote(str(inner['id']), safe='')}/reblogged_by", {"limit": RESHARE_PAGE_SIZE}
        )
        yield self.reblogged_by_request(url, post=post, count=count, reshares=[], page=1)

    def reblogged_by_request(
        self, url: str, *, post: dict[str, Any], count: int, reshares: list[dict[str, Any]], page: int
    ) -> Any:
        """One page of a status's resharers; the post rides along until the last one."""
        return self.request(
            url,
            self.parse_reblogged_by,
            headers=self.auth_headers,
            errback=self.reshares_failed,
            cb_kwargs={"post": post, "count": count, "reshares": reshares, "page": page},
            dont_filter=True,  # a filtered request would take the post with it
        )

    def parse_reblogged_by(
        self, response: Response, post: dict[str, Any], count: int, reshares: list[dict[str, Any]], page: int
    ) -> Iterator[Any]:
        """A ``reblogged_by`` page: its accounts, then the next page or the post."""
        accounts = self.reshare_json(response)
        if not isinstance(accounts, list):
            yield self.reshares_incomplete(post, reshares, "not an array of accounts", response.url)
            return
        reshares = reshares + [
            {"handle": handle, "followers": account.get("followers_count")}
            for account in accounts
            if isinstance(account, dict) and (handle := account.get("acct") or account.get("username"))
        ]
        next_url = link_header(response, "next")
        if next_url and accounts and page < MAX_RESHARE_PAGES:
            yield self.reblogged_by_request(next_url, post=post, count=count, reshares=reshares, page=page + 1)
        else:
            yield self.with_reshares(post, reshares, count)

    def parse(self, response: Response) -> Iterator[Any]:
        statuses = self.load_json(response)
        if statuses is None:
            return
        if not isinstance(statuses, list):
            self.layout_changed(response, "an array of statuses")
            return
        # Ask for the next page first, so its download overlaps this page's processing.
        next_url = link_header(response, "next")
        if next_url and statuses and not self._reached_stop(statuses):
            yield self.request(next_url, self.parse)
        yield from self._page(response, statuses)

    def parse_search(self, response: Response) -> Iterator[Any]:
        data = self.load_json(response)
        if data is None:
            return
        statuses = dig(data, "statuses")
        if not isinstance(statuses, list):
            self.layout_changed(response, "an object with a 'statuses' array")
            return
        yield from self._page(response, statuses)
        if len(statuses) >= PAGE_SIZE and not self._reached_stop(statuses):
            last = dig(statuses, -1, "id")
            params = {"q": self.query, "type": "statuses", "limit": PAGE_SIZE, "max_id": last}
            yield self.request(
                self.api_url("/api/v2/search", params),
                self.parse_search,
                headers={"Authorization": f"Bearer {self.token}"},
            )

    def _reached_stop(self, statuses: list[Any]) -> bool:
        if self.ctx.stop_at is None:
            return False  # a first run takes everything: no timestamps to parse
        return any(self.past_stop(parse_timestamp(dig(s, "created_at"))) for s in statuses)

    def _page(self, response: Response, statuses: list[Any]) -> Iterator[dict[str, Any]]:
        for status in statuses:
            if not isinstance(status, dict) or "id" not in status:
                self.ctx.drop("unexpected_layout", f"status without id at {response.url}")
                continue
            native_id = str(status["id"])
            # The timeline and search can return the same status.
            if native_id in self.seen:
                continue
            self.seen.add(native_id)
            yield self.status_to_post(status)

    def status_to_post(self, status: dict[str, Any]) -> dict[str, Any]:
        """Map one Mastodon Status to a raw post."""
        boosted = status.get("reblog") if isinstance(status.get("reblog"), dict) else None
        inner = boosted or status
        account = inner.get("account") or {}
        return self.post(
            native_id=status["id"],
            text=inner.get("content") or "",
            html=True,
            title=inner.get("spoiler_text") or None,
            url=inner.get("url") or inner.get("uri"),
            created_at=status.get("created_at"),
            author={
                "handle": account.get("acct") or account.get("username"),
                "display_name": account.get("display_name") or None,
                "followers": account.get("followers_count"),
            },
            engagement={
                "likes": inner.get("favourites_count"),
                "shares": inner.get("reblogs_count"),
                "replies": inner.get("replies_count"),
                "quotes": inner.get("quotes_count"),
            },
            lang=inner.get("language"),
            mentions=[str(m["acct"]) for m in inner.get("mentions") or [] if isinstance(m, dict) and m.get("acct")],
            urls=[str(u) for u in [dig(inner, "card", "url")] if u],
            duplicate_of=f"mastodon:{boosted['id']}" if boosted and boosted.get("id") else None,
            extra={
                "tags": [t.get("name") for t in inner.get("tags") or [] if isinstance(t, dict)] or None,
                "visibility": inner.get("visibility"),
                "in_reply_to_id": inner.get("in_reply_to_id"),
                "account_url": account.get("url"),
            },
        )
