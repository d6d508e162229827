"""The store queries the watch flow needs, run against SQLite and a real Elasticsearch.

Every expected result is written out (ids, counts, order, bucket keys), so a store that
agrees with the other but is wrong fails too. The SQLite half also checks that the
window queries read through an index, on new files and on files of older releases.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moments.records import Classification, Flag, Post
from search.query import QuerySyntaxError
from search.sqlite import SqliteStore
from search.store import Store

MakePost = Callable[..., Post]

T = datetime(2026, 11, 20, tzinfo=UTC)
H = timedelta(hours=1)
DATA = Path(__file__).parent / "data"

_SENTIMENT = {"misery": "negative", "magic": "positive", "neutral": "neutral"}


def _classified(moment: str, touchpoint: str = "boarding") -> Classification:
    return Classification.model_validate(
        {
            "sentiment": _SENTIMENT[moment],
            "sentiment_scores": {_SENTIMENT[moment]: 0.9},
            "touchpoint": touchpoint,
            "touchpoint_scores": {touchpoint: 0.9},
            "moment": moment,
            "severity": 0.5,
            "model_version": "test-1",
        }
    )


def _post(
    make_post: MakePost,
    name: str,
    at: datetime | None,
    moment: str | None = "misery",
    touchpoint: str = "boarding",
    brand: list[str] | None = None,
    source: str = "mastodon",
    handle: str = "@someone",
) -> Post:
    return make_post(
        source=source,
        native_id=name,
        created_at=at,
        brand=brand if brand is not None else ["northwind"],
        author={"handle": handle},
        classification=_classified(moment, touchpoint) if moment else None,
    )


# name: (created_at, moment, touchpoint, brands, source, author handle)
CORPUS: dict[str, tuple[Any, ...]] = {
    "early": (T - timedelta(milliseconds=1), "misery", "boarding", ["northwind"], "mastodon", "@jo"),
    "first": (T, "misery", "boarding", ["northwind"], "mastodon", "@jo"),
    "unsure": (T + timedelta(minutes=30), None, "", ["northwind"], "reddit", "@ann"),
    "one": (T + H, "misery", "boarding", ["northwind"], "mastodon", "@jo"),
    "both": (T + 2 * H + timedelta(minutes=5), "misery", "boarding", ["northwind", "contoso"], "reddit", "@bob"),
    "bag": (T + 2 * H + timedelta(minutes=10), "misery", "baggage", ["northwind"], "trustpilot", "@jo"),
    "twice": (T + 2 * H + timedelta(minutes=10), "misery", "boarding", ["northwind", "northwind"], "mastodon", "@cy"),
    "happy": (T + 2 * H + timedelta(minutes=20), "magic", "boarding", ["northwind"], "mastodon", "@jo"),
    "late": (T + 3 * H + timedelta(minutes=59, seconds=59, milliseconds=999), "misery", "boarding", ["contoso"],
             "reddit", "@jo"),
    "edge": (T + 4 * H, "misery", "boarding", ["northwind"], "mastodon", "@jo"),
    "nobrand": (T + 3 * H, "misery", "boarding", [], "mastodon", "@dee"),
    "undated": (None, "misery", "boarding", ["northwind"], "mastodon", "@jo"),
}  # fmt: skip


@pytest.fixture
def loaded(store: Store, make_post: MakePost) -> Store:
    posts = [
        _post(make_post, name, at, moment, touchpoint, brands, source, handle)
        for name, (at, moment, touchpoint, brands, source, handle) in CORPUS.items()
    ]
    assert store.upsert(posts).written == len(CORPUS)
    return store


def _names(posts: Iterator[Post]) -> list[str]:
    return [p.native_id for p in posts]


# --------------------------------------------------------------------------- posts


def test_get_many_returns_the_stored_ones_by_id(loaded: Store) -> None:
    wanted = ["mastodon:first", "reddit:both", "mastodon:nope", "reddit:first", "mastodon:first"]
    found = loaded.get_many(wanted)
    assert sorted(found) == ["mastodon:first", "reddit:both"]
    assert found["reddit:both"] == loaded.get("reddit:both")
    assert loaded.get_many([]) == {}
    assert loaded.get_many(iter(["mastodon:nope"])) == {}


def test_get_many_reads_past_one_chunk(store: Store, make_post: MakePost) -> None:
    posts = [make_post(native_id=f"n{n:04d}") for n in range(520)]
    store.upsert(posts)
    asked = [f"test:n{n:04d}" for n in range(0, 1040)]  # the second half is not stored
    found = store.get_many(asked)
    assert sorted(found) == [p.id for p in posts]
    assert all(found[p.id] == p for p in posts)


def test_recent_posts_window_is_newest_first_and_until_is_exclusive(loaded: Store) -> None:
    window = loaded.recent_posts(since=T, until=T + 4 * H)
    # Ties at the same instant go by id, descending: "trustpilot:bag" before "mastodon:twice".
    assert _names(window) == ["late", "nobrand", "happy", "bag", "twice", "both", "one", "unsure", "first"]
    assert _names(loaded.recent_posts(since=T + 4 * H)) == ["edge"]
    assert _names(loaded.recent_posts(since=T - H, until=T)) == ["early"]
    assert _names(loaded.recent_posts(since=T + 5 * H)) == []
    # A naive datetime is UTC.
    assert _names(loaded.recent_posts(since=datetime(2026, 11, 20, 4), limit=5)) == ["edge"]


def test_recent_posts_filters_and_limit(loaded: Store) -> None:
    assert _names(loaded.recent_posts(since=T, sentiment="negative", limit=3)) == ["edge", "late", "nobrand"]
    assert _names(loaded.recent_posts(since=T, until=T + 3 * H, sentiment="negative")) == [
        "bag",
        "twice",
        "both",
        "one",
        "first",
    ]
    assert _names(loaded.recent_posts(since=T, sentiment="positive")) == ["happy"]
    assert _names(loaded.recent_posts(since=T, sentiment="neutral")) == []
    assert _names(loaded.recent_posts(since=T, sources=["reddit"])) == ["late", "both", "unsure"]
    assert _names(loaded.recent_posts(since=T, sources=["reddit", "trustpilot"], limit=2)) == ["late", "bag"]
    assert _names(loaded.recent_posts(since=T, sources=[])) == []
    assert _names(loaded.recent_posts(since=T, brand="contoso")) == ["late", "both"]
    assert _names(loaded.recent_posts(since=T, brand="contoso", sentiment="negative", sources=["reddit"])) == [
        "late",
        "both",
    ]
    assert _names(loaded.recent_posts(since=T, limit=0)) == []
    assert _names(loaded.recent_posts(since=T, limit=1)) == ["edge"]


def test_recent_posts_pages_through_many_posts_in_order(
    store: Store, make_post: MakePost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,201 posts: several pages, with ties at one instant straddling the page boundaries.
    posts = [
        make_post(native_id=f"m{n:04d}", created_at=T + timedelta(seconds=n // 3), classification=_classified("misery"))
        for n in range(1201)
    ]
    store.upsert(posts)
    newest_first = sorted(posts, key=lambda p: (p.created_at, p.id), reverse=True)
    assert [p.id for p in store.recent_posts(since=T)] == [p.id for p in newest_first]
    assert [p.id for p in store.recent_posts(since=T, limit=777)] == [p.id for p in newest_first[:777]]
    until = T + timedelta(seconds=200)
    assert [p.id for p in store.recent_posts(since=T + timedelta(seconds=10), until=until)] == [
        p.id for p in newest_first if p.created_at is not None and T + timedelta(seconds=10) <= p.created_at < until
    ]

    # 401 buckets of a second: several pages of the composite aggregation on Elasticsearch.
    monkeypatch.setattr("search.elastic._COMPOSITE_PAGE", 150)
    seconds = store.moment_counts(since=T, until=T + H, bucket=timedelta(seconds=1))
    assert seconds == {("northwind", "boarding"): {T + timedelta(seconds=s): 3 if s < 400 else 1 for s in range(401)}}


def test_moment_counts_per_brand_touchpoint_and_hour(loaded: Store) -> None:
    counts = loaded.moment_counts(since=T, until=T + 4 * H)
    assert counts == {
        # "early" is before the window, "edge" at its exclusive end, "happy" is magic,
        # "nobrand" has no brand to count for, "undated" no time.
        ("northwind", "boarding"): {T: 1, T + H: 1, T + 2 * H: 2},  # "twice" names northwind twice: once
        ("northwind", "baggage"): {T + 2 * H: 1},
        ("contoso", "boarding"): {T + 2 * H: 1, T + 3 * H: 1},  # "both" counts for each of its brands
    }
    assert loaded.moment_counts(since=T, until=T + 4 * H, brand="contoso") == {
        ("contoso", "boarding"): {T + 2 * H: 1, T + 3 * H: 1}
    }
    assert loaded.moment_counts(since=T, until=T + 4 * H, moment="magic") == {("northwind", "boarding"): {T + 2 * H: 1}}
    assert loaded.moment_counts(since=T, until=T + 4 * H, moment="neutral") == {}
    assert loaded.moment_counts(since=T, until=T + 4 * H, brand="nobody") == {}


def test_moment_counts_buckets_are_aligned_to_the_epoch(loaded: Store) -> None:
    # A window that starts mid-bucket still keys by the bucket's start.
    assert loaded.moment_counts(since=T + 2 * H + timedelta(minutes=7), until=T + 3 * H) == {
        ("northwind", "boarding"): {T + 2 * H: 1},
        ("northwind", "baggage"): {T + 2 * H: 1},
    }
    half = timedelta(minutes=30)
    assert loaded.moment_counts(since=T + 2 * H, until=T + 4 * H, bucket=half, brand="northwind") == {
        ("northwind", "boarding"): {T + 2 * H: 2},
        ("northwind", "baggage"): {T + 2 * H: 1},
    }
    # Five-hour buckets since 1970-01-01T00:00Z: 2026-11-19T21:00Z and 2026-11-20T02:00Z start two
    # (2026-11-20T00:00Z is 498,648 hours, 3 past a multiple of 5).
    five = timedelta(hours=5)
    assert loaded.moment_counts(since=T - H, until=T + 5 * H, bucket=five) == {
        ("northwind", "boarding"): {T - 3 * H: 3, T + 2 * H: 3},
        ("northwind", "baggage"): {T + 2 * H: 1},
        ("contoso", "boarding"): {T + 2 * H: 2},
    }
    assert loaded.moment_counts(since=T - H, until=T + 5 * H, bucket=timedelta(days=1)) == {
        ("northwind", "boarding"): {T - timedelta(days=1): 1, T: 5},
        ("northwind", "baggage"): {T: 1},
        ("contoso", "boarding"): {T: 2},
    }
    for bad in (timedelta(0), timedelta(hours=-1), timedelta(microseconds=1500)):
        with pytest.raises(ValueError, match="bucket"):
            loaded.moment_counts(since=T, until=T + H, bucket=bad)


def test_count_posts_counts_a_query(loaded: Store) -> None:
    assert loaded.count_posts() == len(CORPUS)
    assert loaded.count_posts("  ") == len(CORPUS)
    assert loaded.count_posts(brand="contoso") == 2
    assert loaded.count_posts('author:"@jo" AND sentiment:negative AND created_at:>=2026-11-20T00:00:00Z') == 5
    assert loaded.count_posts("author:@jo sentiment:negative created_at:>=2026-11-20T01:00:00.000Z") == 4
    assert loaded.count_posts("author:@JO created_at:<2026-11-20T00:00:00Z") == 1  # "early"; "undated" has no date
    assert loaded.count_posts("author:@jo AND NOT created_at:>=2026-11-20") == 2  # "early" and "undated"
    assert loaded.count_posts("moment:misery touchpoint:boarding", brand="contoso") == 2
    assert loaded.count_posts("source:reddit OR source:trustpilot") == 4
    assert loaded.count_posts("pizza") == 0
    with pytest.raises(QuerySyntaxError):
        loaded.count_posts("author:")


# --------------------------------------------------------------------------- flags


def _flag(name: str, **fields: Any) -> Flag:
    values: dict[str, Any] = {
        "id": f"flag:{name}",
        "brand": "northwind",
        "touchpoint": "boarding",
        "post_ids": [f"test:{name}"],
        "priority": "P2",
        "score": 3.0,
        "opened_at": T,
        "updated_at": T,
    }
    values.update(fields)
    return Flag.model_validate(values)


@pytest.fixture
def flagged(store: Store) -> Store:
    rows = [
        # name, kind, brand, touchpoint, status, priority
        ("a", "post", "northwind", "boarding", "open", "P1"),
        ("b", "burst", "northwind", "boarding", "open", "P2"),
        ("c", "burst", "northwind", "baggage", "acknowledged", "P3"),
        ("d", "post", "contoso", "boarding", "responded", "P2"),
        ("e", "burst", "contoso", "baggage", "resolved", "P1"),
        ("f", "post", "northwind", "baggage", "dismissed", "P4"),
        ("g", "post", None, None, "open", "P4"),
    ]
    for name, kind, brand, touchpoint, status, priority in rows:
        flag = _flag(name, kind=kind, brand=brand, touchpoint=touchpoint, priority=priority)
        store.create_flag(flag.with_status(status, T), actor="test", at=T)  # type: ignore[arg-type]
    return store


def test_count_flags_filters(flagged: Store) -> None:
    assert flagged.count_flags() == 5  # open, acknowledged, responded
    assert flagged.count_flags(status=None) == 7
    assert flagged.count_flags(status=["resolved", "dismissed"]) == 2
    assert flagged.count_flags(status=[]) == 0
    assert flagged.count_flags(brand="northwind") == 3
    assert flagged.count_flags(brand="contoso", status=None) == 2
    assert flagged.count_flags(kind="burst") == 2
    assert flagged.count_flags(kind="burst", status=None) == 3
    assert flagged.count_flags(kind="post", brand="contoso") == 1
    assert flagged.count_flags(kind="burst", brand="contoso") == 0
    assert flagged.count_flags(brand="nobody") == 0


def test_list_flags_kind_and_touchpoint_filters(flagged: Store) -> None:
    def names(**kwargs: Any) -> list[str]:
        return [f.id.removeprefix("flag:") for f in flagged.list_flags(**kwargs)]

    assert names() == ["a", "b", "d", "c", "g"]
    assert names(kind="burst") == ["b", "c"]
    assert names(kind="post") == ["a", "d", "g"]
    assert names(touchpoint="baggage") == ["c"]
    assert names(touchpoint="baggage", status=None) == ["e", "c", "f"]
    assert names(kind="burst", touchpoint="baggage", status=None) == ["e", "c"]
    assert names(kind="post", touchpoint="boarding", brand="contoso") == ["d"]
    assert names(kind="burst", status=None, limit=2) == ["e", "b"]
    assert names(touchpoint="check-in") == []


def test_count_author_posts_counts_one_customers_posts_in_a_window(store: Store, make_post: MakePost) -> None:
    store.upsert(
        [
            _post(make_post, "a1", T, handle="@jo"),
            _post(make_post, "a2", T + H, handle="@jo"),
            _post(make_post, "a3", T + 2 * H, handle="@jo"),  # at `until`: excluded
            _post(make_post, "a4", T + H, handle="@jo", moment="magic"),  # positive
            _post(make_post, "a5", T + H, handle="@jo", source="reddit"),  # another platform's @jo
            _post(make_post, "a6", T + H, handle="@JO"),  # handles are exact
            _post(make_post, "a7", T + H, handle="@jo", brand=["contoso"]),
            _post(make_post, "a8", T - H, handle="@jo"),  # before the window
        ]
    )

    def count(**extra: Any) -> int:
        return store.count_author_posts(handle="@jo", source="mastodon", since=T, until=T + 2 * H, **extra)

    assert count() == 4
    assert count(sentiment="negative") == 3
    assert count(sentiment="negative", brand="contoso") == 1
    assert count(brand="northwind") == 3
    assert store.count_author_posts(handle="@jo", source="reddit", since=T, until=T + 2 * H) == 1


# --------------------------------------------------------------------------- SQLite plans


def _plans(store: SqliteStore, run: Callable[[], object]) -> list[str]:
    """The query plans of the statements ``run`` makes ``store`` execute (with their values bound)."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        run()
    finally:
        store._db.set_trace_callback(None)
    plans = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = store._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans.append(" | ".join(row[-1] for row in rows))
    assert plans, statements
    return plans


def _index_names(db: Path) -> set[str]:
    raw = sqlite3.connect(db)
    try:
        return {
            row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        }
    finally:
        raw.close()


def _assert_windows_use_indexes(store: SqliteStore, make_post: MakePost) -> None:
    store.upsert(
        make_post(native_id=f"w{n}", created_at=T + timedelta(minutes=n), classification=_classified("misery"))
        for n in range(1100)
    )
    # Past the first page too: the later pages start at the last post read, not at ``until``.
    plans = _plans(store, lambda: list(store.recent_posts(since=T, until=T + 30 * H)))
    assert len(plans) == 3
    assert all(plan.startswith("SEARCH posts USING INDEX posts_created_at_id (created_at>? AND") for plan in plans)
    assert "(created_at,id)<(?,?)" in plans[1]
    assert not any("TEMP B-TREE" in plan for plan in plans)  # the index gives the order

    plans = _plans(store, lambda: list(store.recent_posts(since=T, sentiment="negative", brand="x", limit=5)))
    assert plans[0].startswith(
        "SEARCH posts USING INDEX posts_sentiment_created_at (classification_sentiment=? AND created_at>?"
    )
    assert "TEMP B-TREE" not in plans[0]

    (plan,) = _plans(store, lambda: store.moment_counts(since=T, until=T + H))
    assert "USING INDEX posts_moment_created_at (classification_moment=? AND created_at>? AND created_at<?)" in plan

    (plan,) = _plans(store, lambda: store.count_posts("author:x AND created_at:>=2026-11-20T01:00:00Z"))
    assert "USING INDEX posts_created_at_id (created_at>?)" in plan

    index = "INDEX posts_author_created_at (author_handle=? AND source=? AND created_at>? AND created_at<?)"
    count = lambda: store.count_author_posts(handle="@x", source="mastodon", since=T, until=T + H)  # noqa: E731
    (plan,) = _plans(store, count)
    assert f"USING COVERING {index}" in plan
    # With a sentiment and a brand too (as the flagging rule asks): still one author's posts, not the window's.
    count = lambda: store.count_author_posts(  # noqa: E731
        handle="@x", source="mastodon", since=T, until=T + H, sentiment="negative", brand="b"
    )
    (plan,) = _plans(store, count)
    assert plan.startswith(f"SEARCH posts USING {index}")


def test_sqlite_window_queries_read_through_indexes(tmp_path: Path, make_post: MakePost) -> None:
    with SqliteStore(tmp_path / "moments.db") as store:
        _assert_windows_use_indexes(store, make_post)


def test_a_store_of_the_previous_release_gets_the_indexes_on_open(tmp_path: Path, make_post: MakePost) -> None:
    db = tmp_path / "moments.db"
    with SqliteStore(db) as store:
        store.upsert([make_post(native_id="old", created_at=T)])
    # As the release before these queries left a file: one index on created_at alone.
    raw = sqlite3.connect(db)
    for name in ("posts_created_at_id", "posts_sentiment_created_at", "posts_moment_created_at"):
        raw.execute(f"DROP INDEX {name}")
    raw.execute('CREATE INDEX posts_created_at ON posts("created_at")')
    raw.commit()
    raw.close()
    before = _index_names(db)
    assert "posts_created_at" in before and "posts_created_at_id" not in before

    with SqliteStore(db) as store:
        indexes = _index_names(db)
        assert {"posts_created_at_id", "posts_sentiment_created_at", "posts_moment_created_at"} <= indexes
        assert "posts_created_at" not in indexes  # replaced by posts_created_at_id
        assert _names(store.recent_posts(since=T)) == ["old"]
        _assert_windows_use_indexes(store, make_post)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    raw.close()


def test_a_store_of_the_first_release_gets_the_indexes_on_open(tmp_path: Path, make_post: MakePost) -> None:
    db = tmp_path / "moments.db"
    shutil.copy(DATA / "schema1-store.db", db)
    assert "posts_created_at_id" not in _index_names(db)
    with SqliteStore(db) as store:
        assert {"posts_created_at_id", "posts_sentiment_created_at", "posts_moment_created_at"} <= _index_names(db)
        stored = store.count()
        assert len(list(store.recent_posts(since=datetime(1970, 1, 1, tzinfo=UTC)))) == store.count_posts(
            "created_at:>=1970-01-01"
        )
        assert stored == 81
        _assert_windows_use_indexes(store, make_post)
