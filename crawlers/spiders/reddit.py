"""Reddit: posts matching search terms, or a subreddit's newest posts.

API (https://www.reddit.com/dev/api/#GET_search, #GET_new):

* ``GET /search.json?q=...&sort=new&limit=100[&after=t3_x]`` for search terms;
* ``GET /r/{sub}/new.json?limit=100[&after=t3_x]`` for a query ``r/{sub}``.

Both return a Listing: ``{"kind": "Listing", "data": {"after": "t3_x",
"children": [{"kind": "t3", "data": {...}}]}}``; paging follows ``after``.
Link fields used: ``id``, ``name``, ``title``, ``selftext``, ``author``,
``subreddit``, ``created_utc``, ``permalink``, ``url``, ``score``,
``num_comments``, ``upvote_ratio``.

By id (https://www.reddit.com/dev/api/#GET_api_info):
``GET /api/info.json?id=t3_a,t3_b`` (at most 100 fullnames) returns the same
Listing holding the things that exist; a native id is the fullname
(``t3_abc``; a bare ``abc`` is taken as a link). A thing missing from the
answer, or deleted or removed (``[deleted]``/``[removed]`` text,
``removed_by_category``), is gone.

OAuth (``credentials.reddit.client_id`` / ``client_secret``): an
application-only token from ``POST /api/v1/access_token``
(``grant_type=client_credentials``, HTTP basic auth) then
``Authorization: bearer <token>`` on every call. Against the real service the
token comes from ``www.reddit.com`` and API calls then go to
``https://oauth.reddit.com`` (or ``credentials.reddit.api_base``); against
any other base URL (a local recording server) both use the base URL.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider, batches, dig
from crawlers.text import parse_timestamp

PAGE_SIZE = 100
OAUTH_BASE_URL = "https://oauth.reddit.com"
INFO_BATCH = 100
_FULLNAME = re.compile(r"^(t[1-6]_)?[a-z0-9]+$", re.IGNORECASE)
_GONE_TEXT = ("[deleted]", "[removed]")


class RedditSpider(MomentsSpider):
    """Crawl Reddit search results or a subreddit's ``new`` listing."""

    name = "reddit"
    default_base_url = "https://www.reddit.com"
    # Reddit allows ~100 queries a minute with OAuth, ~10 without.
    custom_settings = {"CONCURRENT_REQUESTS_PER_DOMAIN": 1, "DOWNLOAD_DELAY": 2.0}  # noqa: RUF012

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        creds = self.ctx.config.credentials_for("reddit") if self.ctx.config else {}
        self.client_id = creds.get("client_id")
        self.client_secret = creds.get("client_secret")
        self.api_base = creds.get("api_base")
        self.headers: dict[str, str] = {}
        query = self.query.strip()
        self.subreddit = query[2:].strip("/") if query.lower().startswith("r/") else None

    async def start(self) -> AsyncIterator[Any]:
        if self.client_id and self.client_secret:
            basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            yield self.request(
                self.api_url("/api/v1/access_token"),
                self.parse_token,
                method="POST",
                body=urlencode({"grant_type": "client_credentials"}),
                headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
                dont_filter=True,
            )
        else:
            for request in self.first_requests():
                yield request

    def parse_token(self, response: Response) -> Iterator[Any]:
        token = dig(self.load_json(response), "access_token")
        if token:
            self.headers = {"Authorization": f"bearer {token}"}
            # Authenticated calls are served from a different host than the token.
            if self.api_base:
                self.base_url = self.api_base.rstrip("/") + "/"
            elif self.base_url.rstrip("/") == self.default_base_url:
                self.base_url = OAUTH_BASE_URL + "/"
        else:
            self.ctx.error("reddit OAuth gave no access_token; crawling anonymously")
        yield from self.first_requests()

    def first_requests(self) -> Iterator[Request]:
        """The first listing page, or (a crawl by id) the ``/api/info`` batches."""
        if self.ids is None:
            yield self.listing_request(None)
            return
        names = []
        for native_id in self.ids:
            match = _FULLNAME.match(native_id)
            if match is None:
                self.bad_id(native_id, "a fullname such as t3_abc123")
                continue
            name = native_id.lower()  # fullnames are lower-case base 36
            names.append(name if match.group(1) else f"t3_{name}")
        for batch in batches(list(dict.fromkeys(names)), INFO_BATCH):
            url = self.api_url("/api/info.json", {"id": ",".join(batch), "raw_json": 1})
            yield self.request(url, self.parse_info, headers=self.headers, cb_kwargs={"names": batch})

    def parse_info(self, response: Response, names: list[str]) -> Iterator[Any]:
        """An ``/api/info`` Listing: the things found, and a drop ``gone`` for the rest."""
        data = self.load_json(response)
        if data is None:
            return
        children = dig(data, "data", "children")
        if not isinstance(children, list):
            self.layout_changed(response, "a Listing with data.children")
            return
        found = set()
        for child in children:
            thing = dig(child, "data")
            if not isinstance(thing, dict) or not thing.get("id"):
                self.ctx.drop("unexpected_layout", f"listing child without data.id at {response.url}")
                continue
            kind = dig(child, "kind", default="t3")
            name = str(thing.get("name") or f"{kind}_{thing['id']}")
            found.add(name)
            text = thing.get("selftext") if kind == "t3" else thing.get("body")
            if thing.get("removed_by_category") or text in _GONE_TEXT:
                self.gone(name, "deleted or removed")
                continue
            yield self.link_to_post(thing, kind)
        for name in names:
            if name not in found:
                self.gone(name, "not in the /api/info answer")

    def listing_request(self, after: str | None) -> Request:
        """One page of the search or subreddit listing."""
        if self.subreddit:
            url = self.api_url(f"/r/{self.subreddit}/new.json", {"limit": PAGE_SIZE, "after": after, "raw_json": 1})
        else:
            params = {"q": self.query, "sort": "new", "limit": PAGE_SIZE, "after": after, "raw_json": 1}
            url = self.api_url("/search.json", params)
        return self.request(url, self.parse, headers=self.headers)

    def parse(self, response: Response) -> Iterator[Any]:
        data = self.load_json(response)
        if data is None:
            return
        children = dig(data, "data", "children")
        if not isinstance(children, list):
            self.layout_changed(response, "a Listing with data.children")
            return
        reached_stop = any(self.past_stop(parse_timestamp(dig(c, "data", "created_utc"))) for c in children)
        after = dig(data, "data", "after")
        # Next page first: its download overlaps this page's processing.
        if after and children and not reached_stop:
            yield self.listing_request(str(after))
        for child in children:
            link = dig(child, "data")
            if not isinstance(link, dict) or not link.get("id"):
                self.ctx.drop("unexpected_layout", f"listing child without data.id at {response.url}")
                continue
            yield self.link_to_post(link, dig(child, "kind", default="t3"))

    def link_to_post(self, link: dict[str, Any], kind: str) -> dict[str, Any]:
        """Map one Listing child (a link, or a comment) to a raw post."""
        permalink = link.get("permalink")
        body = link.get("selftext") if kind == "t3" else link.get("body")
        outbound = link.get("url") if link.get("url") and not link.get("is_self") else None
        return self.post(
            native_id=link.get("name") or f"{kind}_{link['id']}",
            text=body or "",
            title=link.get("title"),
            url=f"https://www.reddit.com{permalink}" if permalink else link.get("url"),
            created_at=link.get("created_utc"),
            author={"handle": link.get("author")},
            engagement={
                "score": link.get("score"),
                "replies": link.get("num_comments"),
                "upvote_ratio": link.get("upvote_ratio"),
            },
            urls=[outbound] if outbound else [],
            extra={"subreddit": link.get("subreddit"), "over_18": link.get("over_18"), "kind": kind},
        )
