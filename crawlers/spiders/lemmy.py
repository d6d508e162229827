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

By id: a native id is ``post/N`` or ``comment/N`` (a bare ``N`` is a post).
``GET /api/v3/post?id=N`` returns ``{"post_view": PostView, ...}`` and
``GET /api/v3/comment?id=N`` ``{"comment_view": CommentView, ...}``. Not
found is a 404, or on older versions a 400 with ``{"error":
"couldnt_find_post"}`` (or ``_comment``); those, and views marked
``deleted`` or ``removed``, are gone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider, dig
from crawlers.text import parse_timestamp

PAGE_SIZE = 50
MAX_PAGES = 40
_NOT_FOUND_ERRORS = ("couldnt_find_post", "couldnt_find_comment", "couldnt_find_object", "not_found", "deleted")


class LemmySpider(MomentsSpider):
    """Search a Lemmy instance's posts and comments, newest first."""

    name = "lemmy"
    default_base_url = "https://lemmy.world"
    kinds: tuple[str, ...] = ("Posts", "Comments")

    async def start(self) -> AsyncIterator[Any]:
        if self.ids is not None:
            for request in self.id_requests(self.ids):
                yield request
            return
        for kind in self.kinds:
            yield self.page_request(kind, 1)

    def id_requests(self, ids: list[str]) -> Iterator[Request]:
        """One ``GET /api/v3/post?id=N`` (or ``/comment``) per id."""
        for native_id in ids:
            what, _, number = native_id.rpartition("/")
            what = what or "post"
            if what not in ("post", "comment") or not number.isdigit():
                self.bad_id(native_id, "post/N or comment/N")
                continue
            yield self.id_request(
                self.api_url(f"/api/v3/{what}", {"id": number}),
                self.parse_view,
                extra_statuses=(400,),
                cb_kwargs={"native_id": f"{what}/{number}", "kind": "Posts" if what == "post" else "Comments"},
            )

    def parse_view(self, response: Response, native_id: str, kind: str) -> Iterator[Any]:
        """A post or comment fetched by id."""
        if self.is_gone(response):
            self.gone(native_id, f"HTTP {response.status}")
            return
        if response.status == 400:
            try:
                error = dig(json.loads(response.body), "error")
            except ValueError:
                error = None
            if error in _NOT_FOUND_ERRORS:
                self.gone(native_id, str(error))
            else:
                self.ctx.error(f"HTTP 400 from {response.url}: {error or response.body[:200]!r}")
            return
        data = self.load_json(response)
        if data is None:
            return
        key = "post_view" if kind == "Posts" else "comment_view"
        view = dig(data, key)
        inner = dig(view, "post" if kind == "Posts" else "comment")
        if not isinstance(inner, dict) or inner.get("id") is None:
            self.layout_changed(response, f"an object with {key}.{key.split('_')[0]}.id")
            return
        if inner.get("deleted") or inner.get("removed"):
            self.gone(native_id, "deleted or removed")
            return
        yield self.view_to_post(view, kind)

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
