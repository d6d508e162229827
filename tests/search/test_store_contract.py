"""The one contract every store backend honours, run against SQLite and a real Elasticsearch.

The Elasticsearch half needs ``MOMENTS_TEST_ES_URL`` (``make test`` provides it)
and skips, or fails under ``CI=true``, without it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from moments.records import Classification, Post
from search.query import QuerySyntaxError
from search.store import Store, TouchpointCount

MakePost = Callable[..., Post]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _classification(touchpoint: str, moment: str) -> Classification:
    sentiment = {"misery": "negative", "magic": "positive", "neutral": "neutral"}[moment]
    return Classification.model_validate(
        {
            "sentiment": sentiment,
            "sentiment_scores": {"negative": 0.1, "neutral": 0.2, "positive": 0.7},
            "touchpoint": touchpoint,
            "touchpoint_scores": {touchpoint: 0.9, "other": 0.1},
            "moment": moment,
            "severity": 0.5,
            "model_version": "test-1",
        }
    )


def test_upsert_get_round_trip_is_exact_and_utc(store: Store, make_post: MakePost) -> None:
    post = make_post(
        title="Stuck at the gate",
        text="Three hours at the gate and no word from anyone.",
        brand=["northwind", "skyteam"],
        lang="en",
        rating=1.5,
        # A non-UTC input: the schema normalises it and both stores must hand back UTC.
        created_at=datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        engagement={"likes": 40, "shares": 12, "replies": 3, "upvote_ratio": 0.25},
        engagement_history=[{"at": T0, "likes": 1}, {"at": T0 + timedelta(hours=1), "likes": 40, "shares": 12}],
        urls=["https://example.test/a"],
        mentions=["@northwind"],
        extra={"raw": {"nested": [1, 2, {"deep": True}]}, "any.key": "kept"},
        classification=_classification("boarding", "misery"),
    )
    result = store.upsert([post])

    assert result.written == 1 and result.spooled == 0
    got = store.get(post.id)
    assert got == post
    assert got is not None and got.created_at is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert got.engagement_history[1].at.utcoffset() == timedelta(0)
    assert store.get("test:does-not-exist") is None


def test_reupsert_is_idempotent(store: Store, make_post: MakePost) -> None:
    posts = [make_post() for _ in range(3)]
    store.upsert(posts)
    again = store.upsert(posts)

    assert again.written == 3
    assert store.count() == 3

    changed = posts[0].model_copy(update={"text": "edited text"})
    store.upsert([changed])
    assert store.count() == 3
    stored = store.get(changed.id)
    assert stored is not None and stored.text == "edited text"


def test_search_finds_matches_and_only_matches(store: Store, make_post: MakePost) -> None:
    delay_heavy = make_post(native_id="delay-heavy", text="Delay, delay, delay. Another delay on the morning flight.")
    delay_light = make_post(
        native_id="delay-light",
        text="The crew was friendly and the seats were fine although there was a small delay at the end of it all.",
    )
    lost_bag = make_post(native_id="lost-bag", title="Lost bag at Heathrow", text="Nobody can tell me where it is.")
    bag_lost = make_post(native_id="bag-lost", text="My bag was not lost, just late, says the desk.")
    refund = make_post(native_id="refund", text="The refund came three weeks late.")
    author = make_post(native_id="by-author", text="Just landed.", author={"display_name": "Harriet Tubular"})
    unrelated = make_post(native_id="unrelated", text="Lovely crew and smooth boarding.")
    store.upsert([delay_heavy, delay_light, lost_bag, bag_lost, refund, author, unrelated])

    def ids(query: str, **kwargs: object) -> list[str]:
        return [p.native_id for p in store.search(query, **kwargs)]  # type: ignore[arg-type]

    assert ids("delay") == ["delay-heavy", "delay-light"]  # bm25: more mentions, shorter text first
    assert ids("DELAY") == ["delay-heavy", "delay-light"]
    assert ids("pizza") == []
    assert ids('"lost bag"') == ["lost-bag"]  # a phrase, not both words anywhere
    assert set(ids("lost bag")) == {"lost-bag", "bag-lost"}
    assert ids("refund AND late") == ["refund"]
    assert set(ids("refund OR heathrow")) == {"refund", "lost-bag"}
    assert ids("tubular") == ["by-author"]
    assert ids("delay", limit=1) == ["delay-heavy"]
    assert ids("refu*") == ["refund"]
    # Malformed syntax is an error naming the column (1-based), the same on every store; never a guess.
    for broken, column in (
        ('"lost bag', 1),
        ("delay)", 6),
        ("((delay", 2),
        ("title:", 6),
        ("AND", 1),
        ("*", 1),
        ('"', 1),
        ("", 1),
        ("   ", 1),
    ):
        with pytest.raises(QuerySyntaxError) as error:
            store.search(broken)
        assert error.value.column == column, (broken, str(error.value))
        assert f"at column {column}:" in str(error.value)


def test_brand_filter(store: Store, make_post: MakePost) -> None:
    ours = make_post(native_id="ours", brand=["northwind"], text="baggage delay at the carousel")
    both = make_post(native_id="both", brand=["northwind", "contoso"], text="baggage delay again")
    theirs = make_post(native_id="theirs", brand=["contoso"], text="baggage delay for them too")
    store.upsert([ours, both, theirs])

    assert {p.native_id for p in store.search("delay", brand="northwind")} == {"ours", "both"}
    assert {p.native_id for p in store.search("delay", brand="contoso")} == {"both", "theirs"}
    assert store.search("delay", brand="nobody") == []
    assert {p.native_id for p in store.scan(brand="contoso")} == {"both", "theirs"}


def test_scan_all_and_since(store: Store, make_post: MakePost) -> None:
    old = make_post(native_id="old", created_at=T0 - timedelta(days=2))
    edge = make_post(native_id="edge", created_at=T0)
    new = make_post(native_id="new", created_at=T0 + timedelta(seconds=1))
    undated = make_post(native_id="undated", created_at=None)
    store.upsert([old, edge, new, undated])

    everything = list(store.scan())
    assert sorted(p.native_id for p in everything) == ["edge", "new", "old", "undated"]
    assert all(isinstance(p, Post) for p in everything)
    assert sorted(p.native_id for p in store.scan(since=T0)) == ["edge", "new"]
    # The same instant written in another zone selects the same posts.
    assert sorted(p.native_id for p in store.scan(since=T0.astimezone(timezone(timedelta(hours=-5))))) == [
        "edge",
        "new",
    ]
    assert list(store.scan(since=T0 + timedelta(days=1))) == []


def test_touchpoint_summary_counts(store: Store, make_post: MakePost) -> None:
    cases = [
        ("boarding", "misery", "northwind"),
        ("boarding", "misery", "northwind"),
        ("boarding", "magic", "contoso"),
        ("boarding", "neutral", "northwind"),
        ("baggage", "misery", "northwind"),
        ("baggage", "magic", "northwind"),
        ("check-in", "magic", "contoso"),
    ]
    store.upsert(
        make_post(brand=[brand], classification=_classification(touchpoint, moment))
        for touchpoint, moment, brand in cases
    )
    store.upsert([make_post(text="not classified yet")])

    assert store.touchpoint_summary() == [
        TouchpointCount("boarding", magic=1, misery=2, neutral=1),
        TouchpointCount("baggage", magic=1, misery=1, neutral=0),
        TouchpointCount("check-in", magic=1, misery=0, neutral=0),
    ]
    assert store.touchpoint_summary(brand="contoso") == [
        TouchpointCount("boarding", magic=1, misery=0, neutral=0),
        TouchpointCount("check-in", magic=1, misery=0, neutral=0),
    ]
    assert store.touchpoint_summary()[0].total == 4
