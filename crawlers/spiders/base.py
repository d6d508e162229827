"""What every Moments spider shares: base URL handling, JSON reading, errors, paging stops."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode, urljoin

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawlers.context import RunContext
from moments.records import post_id

log = logging.getLogger("moments.crawl")

#: Pages of resharers read per post in a crawl by id: a viral post's list is long, and
#: each page is one more request to the source (Mastodon: 3 x 80, Bluesky: 3 x 100 accounts).
MAX_RESHARE_PAGES = 3

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]+)"?')


def link_header(response: Response, rel: str = "next") -> str | None:
    """The URL of one relation in an RFC 8288 ``Link`` header (Mastodon paging)."""
    raw = response.headers.get("Link")
    if not raw:
        return None
    for url, rels in _LINK.findall(raw.decode("latin-1")):
        if rel in rels.split():
            return url
    return None


def dig(data: Any, *path: str | int, default: Any = None) -> Any:
    """``data[a][b]...`` or ``default`` when any step is missing or of the wrong type."""
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data if data is not None else default


#: Statuses that mean "this post is not there (any more)": a drop ``gone``, not an error.
GONE_STATUSES = (404, 410)


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MomentsSpider(scrapy.Spider):
    """Base spider: takes a base URL (the service root) and a query, and a run context.

    Subclasses set ``name`` (the source name), ``default_base_url`` and
    implement :meth:`start`, yielding raw post dicts for the pipelines (see
    :meth:`post`).

    A crawl by id (``ctx.ids``, see :attr:`ids`): a spider that can fetch
    posts by native id does so instead of searching, with :meth:`id_request`
    (a 404/410 answer is then :meth:`gone`, not an error) and the same
    item-building code as its search.

    Resharers (crawl by id only): a spider whose source lists who reshared a
    post asks :meth:`wants_reshares` (at which count), chains its listing requests with the raw
    post in ``cb_kwargs`` (``post``, ``count``, ``reshares`` so far), and
    yields the post once with :meth:`with_reshares`; :meth:`reshares_failed`
    is their errback, which never loses the post. The pipeline stamps each
    account with the poll time and keeps the first one seen across polls
    (:class:`crawlers.pipelines.IncrementalPipeline`).
    """

    default_base_url: ClassVar[str | None] = None

    def __init__(self, *, ctx: RunContext, base_url: str | None = None, query: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.query = query
        base = base_url or self.default_base_url or ""
        self.base_url = base.rstrip("/") + "/" if base else ""
        #: Native id -> reshare count, for posts whose resharers this run listed (see with_reshares).
        self.reshares_listed: dict[str, int] = {}

    @property
    def ids(self) -> list[str] | None:
        """The native ids to fetch in a crawl by id; ``None`` for a search."""
        return self.ctx.ids

    # Requests -----------------------------------------------------------------

    def api_url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """Absolute URL of a documented path under the base URL, with query parameters."""
        url = urljoin(self.base_url, path.lstrip("/")) if self.base_url else path
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        return f"{url}?{urlencode(clean, doseq=True)}" if clean else url

    def request(self, url: str, callback: Any, **kwargs: Any) -> scrapy.Request:
        """A request whose failures are counted, not fatal."""
        kwargs.setdefault("errback", self.on_error)
        return scrapy.Request(url, callback=callback, **kwargs)

    def id_request(
        self, url: str, callback: Any, *, extra_statuses: Iterable[int] = (), **kwargs: Any
    ) -> scrapy.Request:
        """A request for one post by id: a 404/410 (and ``extra_statuses``) reaches the callback.

        The callback checks :meth:`is_gone` first.
        """
        meta = dict(kwargs.pop("meta", None) or {})
        meta["handle_httpstatus_list"] = [*GONE_STATUSES, *extra_statuses]
        return self.request(url, callback, meta=meta, **kwargs)

    @staticmethod
    def is_gone(response: Response) -> bool:
        """Whether a by-id answer says the post is not there (404, 410)."""
        return response.status in GONE_STATUSES

    def gone(self, native_id: str, detail: str = "") -> None:
        """Count a post asked for by id that is deleted, removed or unknown."""
        self.ctx.drop("gone", f"{native_id}: {detail}" if detail else native_id)

    def bad_id(self, native_id: str, expected: str) -> None:
        """Count an id that cannot be one of this source's (no request is made for it)."""
        self.ctx.drop("bad_id", f"{native_id!r}: expected {expected}")

    def on_error(self, failure: Failure) -> None:
        """Count a failed request by kind; robots.txt refusals are drops, not errors."""
        request = getattr(failure, "request", None)
        url = request.url if request is not None else "?"
        if failure.check(HttpError):
            response = failure.value.response  # type: ignore[union-attr]
            self.ctx.error(f"HTTP {response.status} from {url}")
        elif failure.check(IgnoreRequest):
            self.ctx.drop("robots_disallowed", url)
        else:
            self.ctx.error(f"{failure.type.__name__ if failure.type else 'error'} fetching {url}: {failure.value}")

    # Resharers (crawl by id) --------------------------------------------------

    def wants_reshares(self, native_id: str, count: Any) -> int | None:
        """The reshare count to list this post's resharers at, or ``None`` to list none.

        Only in a crawl by id, only when the post was reshared, and not when
        the count is the one an earlier poll listed them at (``reshares_count``
        in the crawl state): the pipeline then gives the post the resharers the
        state keeps.
        """
        if not self.ctx.by_id or type(count) is not int or count <= 0:
            return None
        known = self.ctx.state.recent.get(post_id(self.ctx.source, native_id)) or {}
        return None if known.get("reshares_count") == count else count

    def with_reshares(self, post: dict[str, Any], reshares: list[dict[str, Any]], count: int) -> dict[str, Any]:
        """The raw post with its resharers (``handle``, ``followers``), listed at ``count``.

        Listed means read without a failure, up to :data:`MAX_RESHARE_PAGES` pages.
        """
        post["reshares"] = reshares
        self.reshares_listed[str(post["native_id"])] = count
        return post

    def reshares_failed(self, failure: Failure) -> Iterator[dict[str, Any]]:
        """Errback of a resharer request: warn, and send the post with the resharers read so far."""
        request = getattr(failure, "request", None)
        kwargs = request.cb_kwargs if request is not None else {}
        if failure.check(HttpError):
            why = f"HTTP {failure.value.response.status}"  # type: ignore[union-attr]
        elif failure.check(IgnoreRequest):
            why = "request ignored (robots.txt?)"
        else:
            why = f"{failure.type.__name__ if failure.type else 'error'}: {failure.value}"
        post = kwargs.get("post")
        if post is not None:
            yield self.reshares_incomplete(post, kwargs.get("reshares"), why, request.url if request else "?")

    def reshares_incomplete(
        self, post: dict[str, Any], reshares: list[dict[str, Any]] | None, why: str, url: str
    ) -> dict[str, Any]:
        """The raw post with the resharers read before a listing failed: warned and counted, not an error.

        The post is not marked as listed, so the next poll asks again.
        """
        log.warning(
            "%s: resharers of %s not read in full (%s at %s); the post goes out with %d of them",
            self.ctx.source,
            post.get("native_id"),
            why,
            url,
            len(reshares or []),
        )
        stats = getattr(getattr(self, "crawler", None), "stats", None)
        if stats is not None:
            stats.inc_value("moments/reshares_failed")
        post["reshares"] = list(reshares or [])
        return post

    @staticmethod
    def reshare_json(response: Response) -> Any | None:
        """A resharer page as JSON, or ``None`` when it is not JSON (the caller warns)."""
        try:
            return json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            return None

    # Responses ----------------------------------------------------------------

    def load_json(self, response: Response) -> Any | None:
        """The response body as JSON, or ``None`` (counted, logged) when it is not JSON."""
        ctype = (response.headers.get("Content-Type") or b"").decode("latin-1").lower()
        body = response.body.lstrip()
        if "json" not in ctype and not body.startswith((b"{", b"[")):
            self.ctx.drop("wrong_content_type", f"{ctype or 'no content type'} at {response.url}")
            self.ctx.error(f"expected JSON, got {ctype or 'no content type'} from {response.url}")
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self.ctx.drop("malformed_json", f"{response.url}: {exc}")
            self.ctx.error(f"malformed JSON from {response.url}: {exc}")
            return None

    def layout_changed(self, response: Response, expected: str) -> None:
        """Count a page whose JSON no longer has the documented shape."""
        self.ctx.drop("unexpected_layout", f"{response.url}: expected {expected}")
        self.ctx.error(f"unexpected layout at {response.url}: expected {expected}")

    def past_stop(self, created_at: datetime | None) -> bool:
        """Whether a post is older than this run needs (so paging can stop)."""
        stop = self.ctx.stop_at
        return stop is not None and created_at is not None and created_at < stop

    @staticmethod
    def post(
        *,
        native_id: Any,
        text: str | None,
        html: bool = False,
        title: str | None = None,
        url: str | None = None,
        created_at: Any = None,
        author: dict[str, Any] | None = None,
        engagement: dict[str, Any] | None = None,
        rating: Any = None,
        lang: str | None = None,
        urls: Iterable[str] = (),
        mentions: Iterable[str] = (),
        duplicate_of: str | None = None,
        extra: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """A raw post for the pipelines: platform values, not yet cleaned or validated."""
        return {
            "native_id": native_id,
            "text": text,
            "html": html,
            "title": title,
            "url": url,
            "created_at": created_at,
            "author": {k: v for k, v in (author or {}).items() if v is not None},
            "engagement": engagement or {},
            "rating": rating,
            "lang": lang,
            "urls": list(urls),
            "mentions": list(mentions),
            "duplicate_of": duplicate_of,
            "extra": {k: v for k, v in (extra or {}).items() if v is not None},
            "source": source,
        }
