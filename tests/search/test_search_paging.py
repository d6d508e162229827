"""Sorting, periods and deep paging of ``Store.search`` / ``Store.iter_search``, on both stores.

A stream must hand out every post that matched when it started exactly once, in the
order a one-shot search gives, however many posts are written while it runs (a point in
time on Elasticsearch, keyset pages or a snapshot of the ranked ids on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from moments.errors import UsageError
from moments.records import Post
from search.store import Store

MakePost = Callable[..., Post]

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ORIGINALS = 130
PAGE = 50


def _corpus(make_post: MakePost, count: int, *, start: int = 0, tag: str = "orig") -> list[Post]:
    """Posts saying "delay" a varying number of times (so bm25 differs), with varied times and engagement.

    Every seventh post has no date, and several share a time or an engagement total, so
    the id tiebreaker and the place of undated posts are exercised.
    """
    posts = []
    for i in range(start, start + count):
        words = " ".join(["delay"] * (1 + i % 4))
        posts.append(
            make_post(
                native_id=f"{tag}{i:04d}",
                text=f"{words} at gate {i % 9} filler words {'x' * (i % 5)}",
                created_at=None if i % 7 == 0 else T0 + timedelta(minutes=i % 40),
                engagement={"likes": (i * 7) % 23, "shares": i % 3} if i % 5 else {"score": (i % 11) - 3},
            )
        )
    return posts


CASES: list[tuple[str, str | None]] = [
    ("relevance", "delay"),  # ranked by bm25 (moves as posts are added)
    ("relevance", "NOT pizza"),  # nothing to rank: id order
    ("recent", "delay"),
    ("engagement", None),  # no query: every post
]


@pytest.mark.parametrize(("sort", "query"), CASES, ids=[f"{s}-{q or 'all'}" for s, q in CASES])
def test_a_stream_is_stable_while_posts_are_written(
    store: Store, make_post: MakePost, sort: str, query: str | None
) -> None:
    store.upsert(_corpus(make_post, ORIGINALS))
    expected = [p.id for p in store.search(query, sort=sort, limit=1000)]
    assert len(expected) == ORIGINALS

    seen: list[str] = []
    written = 0
    for post in store.iter_search(query, sort=sort, page_size=PAGE):
        seen.append(post.id)
        if len(seen) in (1, PAGE - 1, PAGE + 7, 2 * PAGE + 3):
            # New posts that sort before, among and after the ones read so far.
            store.upsert(_corpus(make_post, 15, start=written, tag="new"))
            written += 15

    assert len(seen) == len(set(seen)), "a post came twice"
    originals = [post_id for post_id in seen if ":orig" in post_id]
    assert originals == expected, "an original post is missing or out of order"
    assert written == 60 and store.count() == ORIGINALS + written


def test_search_and_stream_agree_on_every_order(store: Store, make_post: MakePost) -> None:
    store.upsert(_corpus(make_post, 40))
    for sort, query in CASES:
        once = [p.id for p in store.search(query, sort=sort, limit=100)]
        assert [p.id for p in store.iter_search(query, sort=sort, page_size=7)] == once, sort
        assert [p.id for p in store.search(query, sort=sort, limit=5)] == once[:5], sort


def test_recent_is_newest_first_undated_last_then_id(store: Store, make_post: MakePost) -> None:
    at = T0 + timedelta(hours=1)
    posts = [
        make_post(native_id="b", created_at=at),
        make_post(native_id="a", created_at=at),  # the same millisecond: id decides
        make_post(native_id="c", created_at=at + timedelta(microseconds=400)),  # still the same millisecond
        make_post(native_id="new", created_at=at + timedelta(seconds=1)),
        make_post(native_id="old", created_at=at - timedelta(days=400)),
        make_post(native_id="undated2", created_at=None),
        make_post(native_id="undated1", created_at=None),
    ]
    store.upsert(posts)
    order = [p.native_id for p in store.search(None, sort="recent", limit=10)]
    assert order == ["new", "a", "b", "c", "old", "undated1", "undated2"]


def test_engagement_order_is_the_documented_total_then_id(store: Store, make_post: MakePost) -> None:
    counters: dict[str, dict[str, Any]] = {
        "likes": {"likes": 10},
        "all": {"likes": 1, "shares": 2, "replies": 3, "quotes": 4, "views": 1000},  # views never count
        "votes": {"score": 12},  # no likes: a positive score stands in for them
        "votes_and_likes": {"likes": 2, "score": 50},  # likes known: the score is ignored
        "negative": {"score": -5, "shares": 1},
        "nothing": {},
        "tie_b": {"likes": 10},
    }
    store.upsert(make_post(native_id=name, engagement=values) for name, values in counters.items())
    totals = {p.native_id: p.engagement.total() for p in store.search(None, limit=10)}
    expected = sorted(totals, key=lambda name: (-totals[name], f"test:{name}"))
    assert expected == ["votes", "all", "likes", "tie_b", "votes_and_likes", "negative", "nothing"]
    assert [p.native_id for p in store.search(None, sort="engagement", limit=10)] == expected
    assert [p.native_id for p in store.iter_search(None, sort="engagement", page_size=2)] == expected


def test_since_and_until_bound_created_at_on_every_read(store: Store, make_post: MakePost) -> None:
    times = {
        "before": T0 - timedelta(milliseconds=1),
        "first": T0,
        "inside": T0 + timedelta(hours=5),
        "last": T0 + timedelta(days=1) - timedelta(milliseconds=1),
        "until": T0 + timedelta(days=1),
        "undated": None,
    }
    store.upsert(make_post(native_id=name, text="refund please", created_at=at) for name, at in times.items())
    window = {"since": T0, "until": T0 + timedelta(days=1)}
    inside = {"first", "inside", "last"}
    assert {p.native_id for p in store.search("refund", limit=10, **window)} == inside
    assert {p.native_id for p in store.iter_search("refund", page_size=2, **window)} == inside
    assert {p.native_id for p in store.search(None, limit=10, since=T0)} == inside | {"until"}
    assert {p.native_id for p in store.search("NOT pizza", limit=10, until=T0)} == {"before"}
    # A bound finer than a millisecond is cut to it, as Elasticsearch stores dates.
    assert {p.native_id for p in store.search(None, limit=10, since=T0 + timedelta(microseconds=900))} >= {"first"}


def test_bad_sort_and_page_size_are_refused(store: Store) -> None:
    with pytest.raises(UsageError, match="relevance, recent, engagement"):
        store.search("delay", sort="loudest")
    with pytest.raises(UsageError, match="unknown sort"):
        next(store.iter_search("delay", sort="loudest"))
    with pytest.raises(ValueError, match="page_size"):
        next(store.iter_search("delay", page_size=0))


@pytest.mark.elasticsearch
def test_elasticsearch_streams_past_the_10000_hit_window(es_url: str, es_prefix: str, make_post: MakePost) -> None:
    from elasticsearch import Elasticsearch, helpers

    from search.elastic import ElasticStore

    total = 10_500
    with ElasticStore(es_url, index_prefix=es_prefix, refresh=True) as store:
        client = Elasticsearch(es_url, request_timeout=60)
        try:
            actions = (
                {
                    "_index": store.alias,
                    "_id": f"test:t{i:05d}",
                    "_source": make_post(
                        native_id=f"t{i:05d}", text="tiny", created_at=T0 + timedelta(seconds=i % 5000), author={}
                    ).model_dump(mode="json"),
                }
                for i in range(total)
            )
            helpers.bulk(client, actions, chunk_size=2000, refresh=False)
            client.indices.refresh(index=store.alias)
        finally:
            client.close()
        assert store.count() == total
        streamed = [p.id for p in store.iter_search("tiny", sort="recent", page_size=4000)]
        assert len(streamed) == total == len(set(streamed))
        times = [int(i[-5:]) % 5000 for i in streamed]
        assert times == sorted(times, reverse=True)
        # A limit past the window pages the same way.
        assert [p.id for p in store.search("tiny", sort="recent", limit=total)] == streamed
