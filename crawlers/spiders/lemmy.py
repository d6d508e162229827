"""Lemmy: posts and comments matching search terms.

API (https://join-lemmy.org/api/, ``GET /api/v3/search``):
``?q=...&type_=Posts|Comments&sort=New&listing_type=All&limit=50&page=P``
returns ``{"type_": ..., "posts": [PostView], "comments": [CommentView],
"communities": [], "users": []}``; ``page`` pages until a page is empty.

PostView: ``post.{id,name,body,url,ap_id,published}``,
``creator.{name,display_name,actor_id}``, ``community.name``,
``counts.{score,upvotes,downvotes,comments}``. CommentView:
``comment.{id,content,ap_id,published}``, ``post.name``,
``counts.{score,upvotes,downvotes,child_count}``. Older Lemmy versions send
``published`` without a zone; it is UTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider, dig
from crawlers.text import parse_timestamp

PAGE_SIZE = 50
MAX_PAGES = 40


class LemmySpider(MomentsSpider):
    """Search a Lemmy instance's posts and comments, newest first."""

    name = "lemmy"
    default_base_url = "https://lemmy.world"
    kinds: tuple[str, ...] = ("Posts", "Comments")

    async def start(self) -> AsyncIterator[Any]:
        for kind in self.kinds:
            yield self.page_request(kind, 1)

    def page_request(self, kind: str, page: int) -> Request:
        """One page of posts or comments."""
        params = {"q": self.query, "type_": kind, "sort": "New", "listing_type": "All", "limit": PAGE_SIZE}
        if page > 1:
            params["page"] = page
        return self.request(self.api_url("/api/v3/search", params), self.parse, cb_kwargs={"kind": kind, "page": page})

    def parse(self, response: Response, kind: str, page: int) -> Iterator[Any]:
        data = self.load_json(response)
        if data is None:
            return
        key = "posts" if kind == "Posts" else "comments"
        views = dig(data, key)
        if not isinstance(views, list):
            self.layout_changed(response, f"an object with a '{key}' array")
            return
        reached_stop = False
        for view in views:
            inner = dig(view, "post" if kind == "Posts" else "comment")
            if not isinstance(inner, dict) or inner.get("id") is None:
                self.ctx.drop("unexpected_layout", f"{key[:-1]} view without id at {response.url}")
                continue
            if self.past_stop(parse_timestamp(inner.get("published"))):
                reached_stop = True
            yield self.view_to_post(view, kind)
        if views and not reached_stop and page < MAX_PAGES:
            yield self.page_request(kind, page + 1)

    def view_to_post(self, view: dict[str, Any], kind: str) -> dict[str, Any]:
        """Map a PostView or CommentView to a raw post."""
        is_post = kind == "Posts"
        inner = view["post"] if is_post else view["comment"]
        creator = view.get("creator") or {}
        counts = view.get("counts") or {}
        return self.post(
            native_id=f"{'post' if is_post else 'comment'}/{inner['id']}",
            text=(inner.get("body") if is_post else inner.get("content")) or "",
            title=inner.get("name") if is_post else None,
            url=inner.get("ap_id"),
            created_at=inner.get("published"),
            author={"handle": creator.get("name"), "display_name": creator.get("display_name")},
            engagement={
                "score": counts.get("score"),
                "likes": counts.get("upvotes"),
                "replies": counts.get("comments") if is_post else counts.get("child_count"),
            },
            urls=[inner["url"]] if is_post and inner.get("url") else [],
            extra={
                "kind": "post" if is_post else "comment",
                "community": dig(view, "community", "name"),
                "upvotes": counts.get("upvotes"),
                "downvotes": counts.get("downvotes"),
                "post_title": dig(view, "post", "name") if not is_post else None,
                "creator_actor_id": creator.get("actor_id"),
            },
        )
