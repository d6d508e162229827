"""Item pipelines: raw platform fields in, validated :class:`Post` JSONL out.

Spiders yield plain dicts close to the platform's own fields (see
:class:`crawlers.spiders.base.MomentsSpider.post`); the pipelines, in order:

1. :class:`CleanPipeline` (100): HTML to text, URLs and mentions as fields,
   language, UTC timestamps, the crawl clock; validates into a ``Post``.
2. :class:`BrandPipeline` (200): with a config, keeps posts about a brand and
   sets ``brand``; without one, ``brand`` is ``[query]``. Posts fetched by id
   are never dropped here (see the class).
3. :class:`DuplicatePipeline` (300): marks near-duplicate reposts.
4. :class:`IncrementalPipeline` (400): skips posts seen by an earlier run,
   re-polls recent ones (engagement snapshot appended), moves the cursor. A
   crawl by id only re-polls: one snapshot per poll time, cursor untouched,
   and the resharers the spider listed merged with those of earlier polls.
5. :class:`JsonlWriterPipeline` (900): one JSON line per post.

A post that cannot be made valid is dropped with a counted reason; the crawl
goes on.
"""

from __future__ import annotations

import contextlib
import sys
from collections import OrderedDict, defaultdict, deque
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError
from scrapy.exceptions import DropItem

from crawlers.state import REPOLL_HOURS, add_snapshot, merge_reshares
from crawlers.text import (
    bottom_k,
    detect_language,
    extract_mentions,
    extract_urls,
    html_to_text,
    parse_timestamp,
    shingle_hashes,
    shingle_key,
)
from moments.records import Post, post_id

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

    from crawlers.context import RunContext

_SNAPSHOT_FIELDS = ("likes", "shares", "replies", "views", "quotes", "score")


class _Pipeline:
    """Base: every pipeline reaches the run context through its crawler's spider."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    @property
    def ctx(self) -> RunContext:
        spider = self.crawler.spider
        assert spider is not None
        ctx: RunContext = spider.ctx  # type: ignore[attr-defined]
        return ctx

    def drop(self, reason: str, detail: str = "") -> DropItem:
        """Count the drop and build the exception to raise."""
        self.ctx.drop(reason, detail)
        return DropItem(f"{reason}: {detail}" if detail else reason, log_level="DEBUG")


_EXACT = 2**53  # ints up to this size survive a float round trip unchanged


def _int(value: Any) -> int | None:
    """Counters arrive as ints, strings or garbage; garbage is unknown, not zero."""
    if type(value) is int and -_EXACT <= value <= _EXACT:
        return value  # what int(float(value)) gives, without the round trip
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _reshares(raw: Any, at: datetime) -> list[dict[str, Any]]:
    """A spider's resharers (``handle``, ``followers``) as ``Reshare`` dicts seen at ``at``."""
    out = []
    for entry in raw if isinstance(raw, list) else []:
        handle = entry.get("handle") if isinstance(entry, dict) else None
        if handle is None or not str(handle).strip():
            continue
        followers = _int(entry.get("followers"))
        out.append({"handle": str(handle).strip(), "followers": followers if (followers or 0) >= 0 else None, "at": at})
    return out


class CleanPipeline(_Pipeline):
    """Turn a spider's raw dict into a validated :class:`Post`."""

    def process_item(self, item: Any) -> Any:
        if isinstance(item, Post):
            return item
        self.ctx.parsed += 1
        try:
            return self._clean(item)
        except DropItem:
            raise
        except Exception as exc:
            # A record we did not foresee must cost one item, not the crawl.
            raise self.drop("unparseable", f"{type(exc).__name__}: {exc}") from exc

    def _clean(self, item: Any) -> Post:
        ctx = self.ctx
        native_id = str(item.get("native_id") or "").strip()
        if not native_id:
            raise self.drop("missing_id", repr(item.get("url")))
        raw_text = item.get("text") or ""
        if not isinstance(raw_text, str):
            raise self.drop("bad_text", native_id)
        text, hrefs = html_to_text(raw_text) if item.get("html", False) else (raw_text.strip(), [])
        title = item.get("title")
        if isinstance(title, str):
            title = html_to_text(title)[0] or None
        if not text and not title:
            raise self.drop("empty_text", native_id)
        if not text:
            # A link post is all title; downstream stages read ``text``.
            text = title
        raw_created = item.get("created_at")
        created_at = parse_timestamp(raw_created)
        if raw_created and created_at is None:
            ctx.drop("partial_bad_timestamp", f"{native_id}: {raw_created!r}")
        if ctx.since is not None and created_at is not None and created_at < ctx.since:
            raise self.drop("before_since")
        source = item.get("source") or ctx.source
        raw_engagement = item.get("engagement") or {}
        engagement: dict[str, Any] = {k: _int(v) for k, v in raw_engagement.items() if k != "upvote_ratio"}
        for key in ("likes", "shares", "replies", "views", "quotes"):
            if engagement.get(key) is not None and engagement[key] < 0:
                engagement[key] = None
        if raw_engagement.get("upvote_ratio") is not None:
            with contextlib.suppress(TypeError, ValueError):
                engagement["upvote_ratio"] = min(1.0, max(0.0, float(raw_engagement["upvote_ratio"])))
        author = dict(item.get("author") or {})
        for key in ("handle", "display_name"):
            if author.get(key) is not None:
                author[key] = str(author[key])
        if "followers" in author:
            followers = _int(author["followers"])
            author["followers"] = followers if followers is None or followers >= 0 else None
        lang = item.get("lang") or None
        if isinstance(lang, str):
            lang = lang.split("-")[0].lower() or None
        body_for_lang = f"{title}. {text}" if title and title != text else text
        if lang is None:
            lang = detect_language(body_for_lang)
        rating = item.get("rating")
        try:
            rating = float(rating) if rating not in (None, "") else None
        except (TypeError, ValueError):
            rating = None
        try:
            # One validation of the whole record, nested author and engagement included
            # (building Author and Engagement first would validate three times).
            post = Post.model_validate(
                {
                    "id": post_id(source, native_id),
                    "source": source,
                    "native_id": native_id,
                    "url": item.get("url") or None,
                    "brand": [],
                    "author": author,
                    "text": text,
                    "title": title or None,
                    "lang": lang,
                    "rating": rating,
                    "created_at": created_at,
                    "crawled_at": ctx.now,
                    "engagement": engagement,
                    "reshares": _reshares(item.get("reshares"), ctx.now),
                    "urls": extract_urls(body_for_lang, [*(item.get("urls") or []), *hrefs]),
                    "mentions": extract_mentions(text, item.get("mentions") or []),
                    "duplicate_of": item.get("duplicate_of") or None,
                    "extra": item.get("extra") or {},
                }
            )
        except (ValidationError, TypeError) as exc:
            reason = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": ("record",), "msg": str(exc)}
            where = ".".join(str(p) for p in reason["loc"])
            raise self.drop("invalid", f"{native_id}: {where}: {reason['msg']}") from exc
        return post


class BrandPipeline(_Pipeline):
    """Keep posts about a configured brand; without a config every post is about the query.

    A crawl by id re-polls posts that are already stored because they were
    about a brand when first crawled, so the text match only sets ``brand``
    and never drops one: its text may have been edited, the brand rules may
    have changed, or it came from a source a brand owns (``match: all``) and
    the crawl by id has no ``--query`` to tell which. Such a post keeps
    ``brand = []`` (without ``--query`` and without a config, too): the
    caller keeps the brands it stored.
    """

    def process_item(self, post: Post) -> Post:
        ctx = self.ctx
        if ctx.matcher is None:
            post.brand = [ctx.query] if ctx.query or not ctx.by_id else []
            return post
        text = f"{post.title or ''}\n{post.text}"
        brands = ctx.matcher.match(text, mentions=post.mentions, author=post.author.handle)
        brands = list(dict.fromkeys([*ctx.owner_brands, *brands]))
        if not brands and not ctx.by_id:
            raise self.drop("no_brand_match")
        post.brand = brands
        return post


class DuplicatePipeline(_Pipeline):
    """Mark near-duplicate reposts: same text once links, mentions and "RT" are gone.

    The first post seen with a text is the original; later ones get
    ``duplicate_of`` pointing at it. Exact copies are found among every post
    of the run; near copies (word-pair Jaccard >= 0.8) among the last
    :attr:`WINDOW` originals, since reposts follow their original closely and
    keeping every post's shingles would grow memory with the crawl. Texts
    under five words are never marked ("thank you!" is not a repost).
    """

    MIN_WORDS = 5
    THRESHOLD = 0.8
    WINDOW = 5000
    # Candidates per sketch value: an unbounded bucket makes the check quadratic.
    BUCKET = 16

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.exact: dict[int, str] = {}
        # Shingles as hashes of word pairs (see shingle_hashes): cheaper to build and compare.
        self.recent: OrderedDict[str, set[int]] = OrderedDict()
        self.bands: dict[int, deque[str]] = defaultdict(lambda: deque(maxlen=self.BUCKET))

    def process_item(self, post: Post) -> Post:
        if post.duplicate_of:
            return post
        key = shingle_key(post.text)
        if key.count(" ") + 1 < self.MIN_WORDS:
            return post
        digest = hash(key)
        original = self.exact.get(digest)
        if original is None:
            grams = shingle_hashes(key)
            bands = bottom_k(grams)
            original = self._near(post.id, grams, bands)
            if original is None:
                self.exact[digest] = post.id
                recent = self.recent
                recent[post.id] = grams
                if len(recent) > self.WINDOW:
                    recent.popitem(last=False)
                for band in bands:
                    self.bands[band].append(post.id)
        if original is not None and original != post.id:
            post.duplicate_of = original
        return post

    def _near(self, post_id: str, grams: set[int], bands: list[int]) -> str | None:
        size = len(grams)
        threshold = self.THRESHOLD
        # Sets whose sizes differ by more than the threshold cannot be that similar.
        low, high = threshold * size, size / threshold
        recent = self.recent
        buckets = self.bands
        checked: set[str] = {post_id}
        for band in bands:
            bucket = buckets.get(band)
            if not bucket:
                continue
            for candidate_id in bucket:
                if candidate_id in checked:
                    continue
                checked.add(candidate_id)
                candidate = recent.get(candidate_id)
                if candidate is None or not low <= len(candidate) <= high:
                    continue
                common = len(grams & candidate)
                # jaccard(grams, candidate), without building the union.
                if common / (size + len(candidate) - common) >= threshold:
                    return candidate_id
        return None


def _snapshot(post: Post, at: str | None = None) -> dict[str, Any]:
    engagement = post.engagement
    snap = {k: getattr(engagement, k) for k in _SNAPSHOT_FIELDS}
    snap["at"] = at if at is not None else post.crawled_at.isoformat()
    return snap


class IncrementalPipeline(_Pipeline):
    """Only new posts, plus recent ones re-polled with an engagement snapshot each time.

    In a crawl by id every post is a re-poll: none is dropped as
    ``already_seen``, the cursor does not move, and the post's snapshots in
    ``state.recent`` (those of the search crawl of ``--query``, when given)
    get one more, one per poll time (see :func:`crawlers.state.add_snapshot`).

    Resharers (crawl by id, sources that list them): the spider's are stamped
    with this poll's time (``crawled_at``) and merged into the ones
    ``state.recent`` keeps from earlier polls, the first time an account was
    seen kept (:func:`crawlers.state.merge_reshares`); the post carries the
    merged list, also when this poll did not list them (count unchanged, or
    the listing failed). A search crawl makes no resharer request, but a post
    whose entry has resharers carries them, and keeps them in the state.

    The state is changed in memory only; :class:`crawlers.health.HealthExtension`
    saves it (atomically) when the spider closes. Saving mid-run would be wrong,
    not just slow: pages come newest first, so the cursor jumps to the newest
    post at once, and a crash after such a save would make the next run skip
    the older posts this run never reached.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        # Per-run constants, worked out once (the run clock does not move within a run).
        self._now: datetime | None = None
        self._horizon: datetime | None = None
        self._now_iso = ""

    def process_item(self, post: Post) -> Post:
        ctx = self.ctx
        if ctx.by_id:
            return self._repoll(post)
        state = ctx.state
        if self._now is not ctx.now:
            self._now = ctx.now
            self._horizon = ctx.now - timedelta(hours=REPOLL_HOURS)
            self._now_iso = ctx.now.isoformat()
        horizon = self._horizon
        assert horizon is not None
        created_at = post.created_at
        in_window = created_at is None or created_at >= horizon
        known = state.recent.get(post.id) if in_window else None
        cursor = ctx.start_cursor
        if known is None and cursor is not None and created_at is not None and created_at <= cursor:
            raise self.drop("already_seen")
        history: list[Any] = list(known.get("snapshots", [])) if known else []
        # One snapshot per poll time: replaying the same as-of twice must not double it.
        crawled_at = post.crawled_at
        snap = _snapshot(post, self._now_iso if crawled_at == self._now else crawled_at.isoformat())
        if not history or history[-1].get("at") != snap["at"]:
            history = add_snapshot(history, snap)
        # One validation of the whole list (validate_assignment turns the dicts into snapshots).
        post.engagement_history = history
        if known is not None:
            ctx.repolled += 1
            if known.get("reshares"):
                listed: list[Any] = merge_reshares(known["reshares"], None)  # by an earlier crawl by id
                post.reshares = listed
        if in_window:
            created = created_at.isoformat() if created_at else self._now_iso
            # Other keys (resharers of a crawl by id) stay.
            state.recent[post.id] = {**(known or {}), "created_at": created, "snapshots": history}
        state.advance(created_at)
        return post

    def _repoll(self, post: Post) -> Post:
        """A post fetched by id: append this poll's snapshot, never drop, keep the cursor."""
        ctx = self.ctx
        state = ctx.state
        known = state.recent.get(post.id)
        # Dicts: validate_assignment turns them into snapshots.
        history: list[Any] = add_snapshot(list(known.get("snapshots", [])) if known else [], _snapshot(post))
        post.engagement_history = history
        if known is not None:
            ctx.repolled += 1
        created = post.created_at.isoformat() if post.created_at else ctx.now.isoformat()
        # Kept for the next poll; pruned like any other once out of the re-poll window.
        entry: dict[str, Any] = {**(known or {}), "created_at": created, "snapshots": history}
        seen = [{"handle": r.handle, "followers": r.followers, "at": r.at.isoformat()} for r in post.reshares]
        reshares: list[Any] = merge_reshares(entry.get("reshares"), seen)
        if reshares or "reshares" in entry:
            entry["reshares"] = reshares
        listed: dict[str, int] = getattr(self.crawler.spider, "reshares_listed", {})
        if post.native_id in listed:
            entry["reshares_count"] = listed[post.native_id]  # the next poll skips the listing at this count
        post.reshares = reshares  # validate_assignment makes them Reshares
        state.recent[post.id] = entry
        ctx.polled.add(post.id)
        return post


class JsonlWriterPipeline(_Pipeline):
    """Write each post as one JSON line to the output file (stdout when there is none)."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.handle: IO[str] | None = None
        self.own_handle = False

    def open_spider(self) -> None:
        output = self.ctx.output
        if output is None:
            self.handle = sys.stdout
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            self.handle = output.open("w", encoding="utf-8")
            self.own_handle = True

    def process_item(self, post: Post) -> Post:
        assert self.handle is not None
        self.handle.write(post.to_json() + "\n")
        self.ctx.items += 1
        return post

    def close_spider(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            if self.own_handle:
                self.handle.close()
