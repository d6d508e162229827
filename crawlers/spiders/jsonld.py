"""Review pages marked up with schema.org JSON-LD (``Review``, ``AggregateRating``).

The query is a page URL or path, a sitemap (``urlset`` or ``sitemapindex``),
or several of them separated by commas, resolved against the base URL.

Each ``Review`` node (top level, in ``@graph``, or nested as an item's
``review``) becomes a post: ``reviewBody`` is the text, ``name``/``headline``
the title, ``reviewRating.ratingValue`` the rating, ``datePublished`` the
creation time (none: ``created_at`` is null), ``author.name`` the author. The
page's ``AggregateRating`` is not a post; it is kept on each review in
``extra["aggregate_rating"]``. A page reached twice (same URL, or the same
``<link rel="canonical">``) yields its reviews once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin

from scrapy.http import Response
from scrapy.utils.sitemap import Sitemap

from crawlers.spiders.base import MomentsSpider
from crawlers.text import stable_id


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    values = raw if isinstance(raw, list) else [raw]
    return {str(v).rsplit("/", 1)[-1] for v in values if v}


def _name(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name") or value.get("alternateName")
    return str(value) if value else None


def _walk(node: Any, parent: dict[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every JSON-LD object with the object that holds it."""
    if isinstance(node, list):
        for child in node:
            yield from _walk(child, parent)
    elif isinstance(node, dict):
        yield node, parent
        for key, value in node.items():
            if key != "@context":
                yield from _walk(value, node if key != "@graph" else parent)


class JsonLdSpider(MomentsSpider):
    """Crawl review pages (or a sitemap of them) for schema.org reviews."""

    name = "jsonld"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pages_seen: set[str] = set()
        self.reviews_seen: set[str] = set()

    async def start(self) -> AsyncIterator[Any]:
        for target in (t.strip() for t in self.query.split(",")):
            if target:
                url = urljoin(self.base_url, target) if self.base_url else target
                yield self.request(url, self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        body = response.body.lstrip()[:512].lower()
        ctype = (response.headers.get("Content-Type") or b"").decode("latin-1").lower()
        if b"<urlset" in body or b"<sitemapindex" in body or ("xml" in ctype and b"<html" not in body):
            yield from self.parse_sitemap(response)
        elif "html" in ctype or b"<html" in body or b"<!doctype" in body:
            yield from self.parse_page(response)
        else:
            self.ctx.drop("wrong_content_type", f"{ctype or 'no content type'} at {response.url}")
            self.ctx.error(f"expected an HTML page or a sitemap, got {ctype or 'no content type'} from {response.url}")

    def parse_sitemap(self, response: Response) -> Iterator[Any]:
        try:
            sitemap = Sitemap(response.body)
        except Exception as exc:  # lxml raises several kinds on broken XML
            self.ctx.drop("malformed_sitemap", f"{response.url}: {exc}")
            self.ctx.error(f"malformed sitemap at {response.url}: {exc}")
            return
        for entry in sitemap:
            loc = entry.get("loc")
            if loc:
                yield self.request(urljoin(response.url, loc), self.parse)

    def parse_page(self, response: Response) -> Iterator[Any]:
        import extruct

        canonical = response.xpath('//link[@rel="canonical"]/@href').get()
        page_key = urljoin(response.url, canonical) if canonical else response.url
        if page_key in self.pages_seen:
            self.ctx.drop("page_seen_twice", response.url)
            return
        self.pages_seen.add(page_key)
        try:
            data = extruct.extract(response.text, base_url=response.url, syntaxes=["json-ld"], errors="log")
        except Exception as exc:
            self.ctx.drop("malformed_jsonld", f"{response.url}: {exc}")
            self.ctx.error(f"unreadable JSON-LD at {response.url}: {exc}")
            return
        nodes = list(_walk(data.get("json-ld", [])))
        aggregate = self.aggregate_rating(nodes)
        found = 0
        for node, parent in nodes:
            if "Review" not in _types(node):
                continue
            found += 1
            post = self.review_to_post(node, parent, page_key, aggregate)
            if post["native_id"] in self.reviews_seen:
                self.ctx.drop("review_seen_twice", str(post["native_id"]))
                continue
            self.reviews_seen.add(str(post["native_id"]))
            yield post
        if not found:
            self.ctx.drop("no_reviews_on_page", response.url)

    @staticmethod
    def aggregate_rating(nodes: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any] | None:
        """The page's ``AggregateRating`` (standalone or an item's ``aggregateRating``)."""
        for node, parent in nodes:
            if "AggregateRating" in _types(node):
                keys = ("ratingValue", "reviewCount", "ratingCount", "bestRating", "worstRating")
                rating = {k: node[k] for k in keys if k in node}
                item = _name(node.get("itemReviewed")) or (_name(parent) if parent else None)
                if item:
                    rating["itemReviewed"] = item
                return rating
        return None

    def review_to_post(
        self, node: dict[str, Any], parent: dict[str, Any] | None, page_url: str, aggregate: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Map one schema.org ``Review`` to a raw post."""
        body = node.get("reviewBody") or node.get("description") or node.get("text") or ""
        author = _name(node.get("author"))
        date = node.get("datePublished") or node.get("dateCreated")
        raw_rating = node.get("reviewRating")
        review_rating: dict[str, Any] = raw_rating if isinstance(raw_rating, dict) else {}
        native_id = node.get("@id") or node.get("url") or stable_id(page_url, author, date, body)
        item = _name(node.get("itemReviewed")) or (_name(parent) if parent and "Review" not in _types(parent) else None)
        return self.post(
            native_id=native_id,
            text=str(body),
            html=True,
            title=node.get("name") or node.get("headline"),
            url=node.get("url") or page_url,
            created_at=date,
            author={"handle": author},
            rating=review_rating.get("ratingValue"),
            extra={
                "page_url": page_url,
                "item_reviewed": item,
                "best_rating": review_rating.get("bestRating"),
                "worst_rating": review_rating.get("worstRating"),
                "aggregate_rating": aggregate,
            },
        )
