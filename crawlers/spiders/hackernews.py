"""Hacker News, through the Algolia search API: stories and comments.

API (https://hn.algolia.com/api):
``GET /api/v1/search_by_date?query=...&tags=story|comment&hitsPerPage=N&page=P[&numericFilters=created_at_i>T]``
returns ``{"hits": [...], "page": P, "nbPages": N, "hitsPerPage": H, ...}``,
newest first. Stories and comments are two request streams; ``page`` pages.

Hit fields used: ``objectID``, ``created_at``/``created_at_i``, ``title``,
``url``, ``author``, ``points``, ``num_comments``, ``story_text``,
``comment_text`` (HTML), ``story_id``, ``story_title``, ``parent_id``.

By id: ``GET /api/v1/items/:id`` returns one item with its reply tree:
``{"id", "type": "story"|"comment"|..., "created_at", "created_at_i",
"author", "title", "url", "text" (HTML), "points", "parent_id", "story_id",
"children": [item...]}``; 404 when unknown. It is read as a search hit; a
story's ``num_comments`` is its replies counted through ``children`` (deleted
ones, without an author, left out, as HN's own count does). An item without
author, text or title was deleted: gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider, dig

PAGE_SIZE = 100
MAX_PAGES = 50  # Algolia serves at most 1000 hits per query


class HackerNewsSpider(MomentsSpider):
    """Search Hacker News stories and comments by date."""

    name = "hackernews"
    default_base_url = "https://hn.algolia.com"
    tags: tuple[str, ...] = ("story", "comment")

    async def start(self) -> AsyncIterator[Any]:
        if self.ids is not None:
            for native_id in self.ids:
                if not native_id.isdigit():
                    self.bad_id(native_id, "a numeric item id")
                    continue
                url = self.api_url(f"/api/v1/items/{native_id}")
                yield self.id_request(url, self.parse_item, cb_kwargs={"native_id": native_id})
            return
        for tag in self.tags:
            yield self.page_request(tag, 0)

    def parse_item(self, response: Response, native_id: str) -> Iterator[Any]:
        """One item fetched by id, mapped as the search hit it would be."""
        if self.is_gone(response):
            self.gone(native_id, f"HTTP {response.status}")
            return
        item = self.load_json(response)
        if item is None:
            return
        if not isinstance(item, dict) or item.get("id") is None:
            self.layout_changed(response, "an item object with an id")
            return
        if item.get("author") is None and not item.get("text") and not item.get("title"):
            self.gone(native_id, "deleted")
            return
        is_comment = item.get("type") == "comment"
        hit = {
            "objectID": str(item["id"]),
            "created_at": item.get("created_at"),
            "created_at_i": item.get("created_at_i"),
            "author": item.get("author"),
            "title": item.get("title"),
            "url": item.get("url"),
            "points": item.get("points"),
            # Search hits carry no reply count for comments; neither does this.
            "num_comments": None if is_comment else _replies(item.get("children")),
            "comment_text" if is_comment else "story_text": item.get("text"),
            "story_id": item.get("story_id"),
            "parent_id": item.get("parent_id"),
            "_tags": [str(item.get("type") or "story")],
        }
        yield self.hit_to_post(hit, "comment" if is_comment else "story")

    def page_request(self, tag: str, page: int) -> Request:
        """One page of one stream (``story`` or ``comment``)."""
        stop = self.ctx.stop_at
        params = {
            "query": self.query,
            "tags": tag,
            "hitsPerPage": PAGE_SIZE,
            "page": page or None,
            "numericFilters": f"created_at_i>{int(stop.timestamp())}" if stop else None,
        }
        return self.request(self.api_url("/api/v1/search_by_date", params), self.parse, cb_kwargs={"tag": tag})

    def parse(self, response: Response, tag: str) -> Iterator[Any]:
        data = self.load_json(response)
        if data is None:
            return
        hits = dig(data, "hits")
        if not isinstance(hits, list):
            self.layout_changed(response, "an object with a 'hits' array")
            return
        for hit in hits:
            if not isinstance(hit, dict) or not hit.get("objectID"):
                self.ctx.drop("unexpected_layout", f"hit without objectID at {response.url}")
                continue
            yield self.hit_to_post(hit, tag)
        page = dig(data, "page", default=0)
        pages = dig(data, "nbPages", default=0)
        if isinstance(page, int) and isinstance(pages, int) and hits and page + 1 < min(pages, MAX_PAGES):
            yield self.page_request(tag, page + 1)

    def hit_to_post(self, hit: dict[str, Any], tag: str) -> dict[str, Any]:
        """Map one Algolia hit to a raw post."""
        object_id = str(hit["objectID"])
        is_comment = tag == "comment" or "comment" in (hit.get("_tags") or [])
        text = hit.get("comment_text") if is_comment else hit.get("story_text")
        title = None if is_comment else hit.get("title")
        return self.post(
            native_id=object_id,
            text=text or "",
            html=True,
            title=title,
            url=f"https://news.ycombinator.com/item?id={object_id}",
            created_at=hit.get("created_at") or hit.get("created_at_i"),
            author={"handle": hit.get("author")},
            engagement={"score": hit.get("points"), "replies": hit.get("num_comments")},
            urls=[hit["url"]] if hit.get("url") else [],
            extra={
                "kind": "comment" if is_comment else "story",
                "story_id": hit.get("story_id"),
                "story_title": hit.get("story_title") if is_comment else None,
                "parent_id": hit.get("parent_id"),
            },
        )


def _replies(children: Any) -> int:
    """Replies in an item's ``children`` tree, deleted ones (no author) left out."""
    count = 0
    stack = list(children) if isinstance(children, list) else []
    while stack:
        child = stack.pop()
        if not isinstance(child, dict):
            continue
        if child.get("author") is not None:
            count += 1
        if isinstance(child.get("children"), list):
            stack.extend(child["children"])
    return count
