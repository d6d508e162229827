"""Bluesky: posts matching search terms.

API (https://docs.bsky.app/docs/api/app-bsky-feed-search-posts,
https://docs.bsky.app/docs/api/app-bsky-actor-get-profiles):

* ``GET /xrpc/app.bsky.feed.searchPosts?q=...&sort=latest&limit=100[&since=ISO][&cursor=C]``
  returns ``{"cursor": "...", "hitsTotal": N, "posts": [PostView]}``.
* ``GET /xrpc/app.bsky.actor.getProfiles?actors=did1&actors=did2...`` (at most
  25 actors) returns ``{"profiles": [ProfileViewDetailed]}`` with
  ``followersCount``: posts of a page wait for their authors' profiles.
* By id (https://docs.bsky.app/docs/api/app-bsky-feed-get-posts):
  ``GET /xrpc/app.bsky.feed.getPosts?uris=at://...&uris=...`` (at most 25
  URIs) returns ``{"posts": [PostView]}``; deleted or unknown posts are
  simply absent. A post's native id is its ``at://`` URI, so ids map 1:1.
* Resharers, by id only (https://docs.bsky.app/docs/api/app-bsky-feed-get-reposted-by):
  ``GET /xrpc/app.bsky.feed.getRepostedBy?uri=AT_URI&limit=100[&cursor=C]``
  returns ``{"cursor": "...", "repostedBy": [ProfileView]}`` (``did``,
  ``handle``, no follower count), then ``getProfiles`` (25 a request) gives
  the reposters' ``followersCount``. Asked for only when ``repostCount`` > 0,
  at most :data:`~crawlers.spiders.base.MAX_RESHARE_PAGES` pages a post; the
  post is yielded after them, with ``reshares`` filled.
* With an app password configured (``credentials.bluesky.identifier`` and
  ``app_password``), ``POST /xrpc/com.atproto.server.createSession`` first and
  send ``Authorization: Bearer <accessJwt>``; against the real service both go
  to the PDS (``https://bsky.social``, or ``credentials.bluesky.service``).

PostView fields used: ``uri``, ``cid``, ``author.{did,handle,displayName}``,
``record.{text,createdAt,langs,facets}``, ``likeCount``, ``repostCount``,
``replyCount``, ``quoteCount``, ``indexedAt``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy import Request
from scrapy.http import Response

from crawlers.spiders.base import MAX_RESHARE_PAGES, MomentsSpider, batches, dig
from crawlers.text import parse_timestamp

PAGE_SIZE = 100
#: Reposters per ``getRepostedBy`` page (the API's maximum).
RESHARE_PAGE_SIZE = 100
PDS_BASE_URL = "https://bsky.social"
PROFILES_BATCH = 25
POSTS_BATCH = 25


class BlueskySpider(MomentsSpider):
    """Search Bluesky posts through the AppView XRPC API."""

    name = "bluesky"
    default_base_url = "https://public.api.bsky.app"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        creds = self.ctx.config.credentials_for("bluesky") if self.ctx.config else {}
        self.identifier = creds.get("identifier")
        self.app_password = creds.get("app_password")
        if self.identifier and self.app_password and self.base_url.rstrip("/") == self.default_base_url:
            # Sessions live on the user's PDS; bsky.social proxies the AppView calls.
            self.base_url = (creds.get("service") or PDS_BASE_URL).rstrip("/") + "/"
        self.headers: dict[str, str] = {}
        self.followers: dict[str, int | None] = {}

    async def start(self) -> AsyncIterator[Any]:
        if self.identifier and self.app_password:
            body = json.dumps({"identifier": self.identifier, "password": self.app_password})
            yield self.request(
                self.api_url("/xrpc/com.atproto.server.createSession"),
                self.parse_session,
                method="POST",
                body=body,
                headers={"Content-Type": "application/json"},
                dont_filter=True,
            )
        else:
            for request in self.first_requests():
                yield request

    def parse_session(self, response: Response) -> Iterator[Any]:
        data = self.load_json(response)
        token = dig(data, "accessJwt")
        if token:
            self.headers = {"Authorization": f"Bearer {token}"}
        else:
            self.ctx.error("bluesky login gave no accessJwt; searching anonymously")
        yield from self.first_requests()

    def first_requests(self) -> Iterator[Request]:
        """The first search page, or (a crawl by id) the ``getPosts`` batches."""
        if self.ids is None:
            yield self.search_request(None)
            return
        uris = []
        for native_id in self.ids:
            if native_id.startswith("at://"):
                uris.append(native_id)
            else:
                self.bad_id(native_id, "an at:// URI")
        for batch in batches(uris, POSTS_BATCH):
            yield self.request(
                self.api_url("/xrpc/app.bsky.feed.getPosts", {"uris": batch}),
                self.parse_posts,
                headers=self.headers,
                cb_kwargs={"uris": batch},
            )

    def parse_posts(self, response: Response, uris: list[str]) -> Iterator[Any]:
        """A ``getPosts`` answer: the posts found, and a drop ``gone`` for each URI missing."""
        _, views = self._post_views(response)
        if views is None:
            return
        found = {str(v["uri"]) for v in views}
        for uri in uris:
            if uri not in found:
                self.gone(uri, "not in the getPosts answer")
        yield from self.with_followers(views, None)

    def search_request(self, cursor: str | None) -> Request:
        """One page of ``searchPosts``."""
        stop = self.ctx.stop_at
        params = {
            "q": self.query,
            "sort": "latest",
            "limit": PAGE_SIZE,
            "since": stop.strftime("%Y-%m-%dT%H:%M:%S.000Z") if stop else None,
            "cursor": cursor,
        }
        return self.request(self.api_url("/xrpc/app.bsky.feed.searchPosts", params), self.parse, headers=self.headers)

    def _post_views(self, response: Response) -> tuple[Any, list[dict[str, Any]] | None]:
        """The JSON body and its ``posts`` views that have a URI (``None``: not a posts answer, counted)."""
        data = self.load_json(response)
        if data is None:
            return None, None
        posts = dig(data, "posts")
        if not isinstance(posts, list):
            self.layout_changed(response, "an object with a 'posts' array")
            return data, None
        views = [p for p in posts if isinstance(p, dict) and p.get("uri")]
        if len(views) < len(posts):
            self.ctx.drop("unexpected_layout", f"{len(posts) - len(views)} post views without uri at {response.url}")
        return data, views

    def parse(self, response: Response) -> Iterator[Any]:
        data, views = self._post_views(response)
        if views is None:
            return
        cursor = dig(data, "cursor")
        reached_stop = any(self.past_stop(parse_timestamp(dig(p, "record", "createdAt"))) for p in views)
        next_page = self.search_request(str(cursor)) if cursor and views and not reached_stop else None
        yield from self.with_followers(views, next_page)

    def with_followers(self, views: list[dict[str, Any]], next_page: Request | None) -> Iterator[Any]:
        """Ask for unknown authors' profiles (25 a request); the posts follow once they answer.

        The next search page is only asked for after the profiles, so an
        author on two pages is looked up once and results are deterministic.
        """
        missing = list(dict.fromkeys(d for v in views if (d := dig(v, "author", "did")) and d not in self.followers))
        if not missing:
            yield from (self.view_to_post(v) for v in views)
            if next_page is not None:
                yield next_page
            return
        batches = [missing[i : i + PROFILES_BATCH] for i in range(0, len(missing), PROFILES_BATCH)]
        # The page's posts and the next page ride on the last batch; earlier ones only fill the cache.
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            yield self.request(
                self.api_url("/xrpc/app.bsky.actor.getProfiles", {"actors": batch}),
                self.parse_profiles,
                headers=self.headers,
                errback=self.profiles_failed,
                cb_kwargs={"views": views if last else [], "next_page": next_page if last else None},
                dont_filter=True,
            )

    def parse_profiles(
        self, response: Response, views: list[dict[str, Any]], next_page: Request | None
    ) -> Iterator[Any]:
        data = self.load_json(response)
        for profile in dig(data, "profiles", default=[]) or []:
            if isinstance(profile, dict) and profile.get("did"):
                self.followers[profile["did"]] = profile.get("followersCount")
        yield from self._release(views, next_page)

    def profiles_failed(self, failure: Any) -> Iterator[Any]:
        # Followers are nice to have: without profiles the posts still go out.
        self.on_error(failure)
        request = getattr(failure, "request", None)
        kwargs = request.cb_kwargs if request is not None else {}
        yield from self._release(kwargs.get("views", []), kwargs.get("next_page"))

    def _release(self, views: list[dict[str, Any]], next_page: Request | None) -> Iterator[Any]:
        for view in views:
            did = dig(view, "author", "did")
            if did:
                self.followers.setdefault(did, None)  # asked once, even when the profile was missing
            post = self.view_to_post(view)
            count = self.wants_reshares(str(post["native_id"]), view.get("repostCount"))
            if count is None:
                yield post
            else:
                yield self.reposted_by_request(post=post, count=count, reshares=[], page=1, cursor=None)
        if next_page is not None:
            yield next_page

    # Resharers (crawl by id) ----------------------------------------------------

    def reposted_by_request(
        self, *, post: dict[str, Any], count: int, reshares: list[dict[str, Any]], page: int, cursor: str | None
    ) -> Request:
        """One page of a post's reposters; the post rides along until its resharers are read."""
        params = {"uri": post["native_id"], "limit": RESHARE_PAGE_SIZE, "cursor": cursor}
        return self.request(
            self.api_url("/xrpc/app.bsky.feed.getRepostedBy", params),
            self.parse_reposted_by,
            headers=self.headers,
            errback=self.reshares_failed,
            cb_kwargs={"post": post, "count": count, "reshares": reshares, "page": page},
            dont_filter=True,  # a filtered request would take the post with it
        )

    def parse_reposted_by(
        self, response: Response, post: dict[str, Any], count: int, reshares: list[dict[str, Any]], page: int
    ) -> Iterator[Any]:
        """A ``getRepostedBy`` page: its reposters, then the next page or their profiles."""
        data = self.reshare_json(response)
        reposters = dig(data, "repostedBy")
        if not isinstance(reposters, list):
            yield self.reshares_incomplete(post, reshares, "no 'repostedBy' array", response.url)
            return
        reshares = reshares + [
            # The handle is what Reshare keeps; the did finds the follower count.
            {"handle": profile.get("handle") or did, "followers": self.followers.get(did), "did": did}
            for profile in reposters
            if isinstance(profile, dict) and (did := profile.get("did"))
        ]
        cursor = dig(data, "cursor")
        if cursor and reposters and page < MAX_RESHARE_PAGES:
            yield self.reposted_by_request(post=post, count=count, reshares=reshares, page=page + 1, cursor=cursor)
            return
        yield from self._reshare_profiles(post, count, reshares)

    def _reshare_profiles(self, post: dict[str, Any], count: int, reshares: list[dict[str, Any]]) -> Iterator[Any]:
        """Ask for the next 25 reposters without a known follower count, or send the post."""
        missing = list(dict.fromkeys(r["did"] for r in reshares if r["did"] not in self.followers))
        if not missing:
            for reshare in reshares:
                reshare["followers"] = self.followers.get(reshare["did"])
            yield self.with_reshares(post, reshares, count)
            return
        # One batch at a time: the post goes out after the last one.
        yield self.request(
            self.api_url("/xrpc/app.bsky.actor.getProfiles", {"actors": missing[:PROFILES_BATCH]}),
            self.parse_reshare_profiles,
            headers=self.headers,
            errback=self.reshares_failed,
            cb_kwargs={"post": post, "count": count, "reshares": reshares, "asked": missing[:PROFILES_BATCH]},
            dont_filter=True,
        )

    def parse_reshare_profiles(
        self, response: Response, post: dict[str, Any], count: int, reshares: list[dict[str, Any]], asked: list[str]
    ) -> Iterator[Any]:
        data = self.reshare_json(response)
        for profile in dig(data, "profiles", default=[]) or []:
            if isinstance(profile, dict) and profile.get("did"):
                self.followers[profile["did"]] = profile.get("followersCount")
        for did in asked:
            self.followers.setdefault(did, None)  # asked once, even when the profile was missing
        yield from self._reshare_profiles(post, count, reshares)

    def view_to_post(self, view: dict[str, Any]) -> dict[str, Any]:
        """Map one ``PostView`` to a raw post."""
        record = view.get("record") or {}
        author = view.get("author") or {}
        uri = str(view["uri"])
        rkey = uri.rsplit("/", 1)[-1]
        handle = author.get("handle")
        facets = record.get("facets") or []
        links, mentions = [], []
        for facet in facets:
            for feature in dig(facet, "features", default=[]) or []:
                kind = dig(feature, "$type", default="")
                if kind.endswith("#link") and feature.get("uri"):
                    links.append(feature["uri"])
                elif kind.endswith("#mention") and feature.get("did"):
                    mentions.append(feature["did"])
        langs = record.get("langs") or []
        return self.post(
            native_id=uri,
            text=record.get("text") or "",
            url=f"https://bsky.app/profile/{handle or author.get('did')}/post/{rkey}",
            created_at=record.get("createdAt") or view.get("indexedAt"),
            author={
                "handle": handle,
                "display_name": author.get("displayName") or None,
                "followers": self.followers.get(author.get("did", "")),
            },
            engagement={
                "likes": view.get("likeCount"),
                "shares": view.get("repostCount"),
                "replies": view.get("replyCount"),
                "quotes": view.get("quoteCount"),
            },
            lang=langs[0] if langs else None,
            urls=links,
            mentions=[],
            extra={"cid": view.get("cid"), "did": author.get("did"), "mentioned_dids": mentions or None},
        )
