"""``Store.aggregate``: every scorecard aggregation, on a fixed corpus, on both stores.

Each expected result is counted here in plain Python from the corpus table (an oracle
that shares no code with the stores' SQL and Elasticsearch aggregations), and the
standout terms are also written out by hand. One more test loads the corpus into both
stores at once and asserts the whole results are identical.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moments.errors import UsageError
from moments.records import Post
from search.aggregations import (
    AGGREGATIONS,
    DAY,
    HOUR,
    STOPWORDS,
    WEEK,
    TermCount,
    choose_interval,
    g2_2x2,
    iso,
    log_likelihood,
    standout_terms_result,
)
from search.query import QuerySyntaxError
from search.store import Store

SINCE = datetime(2026, 11, 10, tzinfo=UTC)
UNTIL = datetime(2026, 11, 12, tzinfo=UTC)
_SENTIMENT = {"misery": "negative", "magic": "positive", "neutral": "neutral"}

# name: (text, source, lang, handle, followers, touchpoint, moment, hours after SINCE (negative: previous period))
CORPUS: dict[str, tuple[Any, ...]] = {
    "b1": ("suitcase lost at the carousel, flight was fine", "reddit", "en", "@ann", 120, "baggage", "misery", 1.5),
    "b2": ("my suitcase never reached the carousel", "reddit", "en", "@bob", 40, "baggage", "misery", 1.75),
    "b3": ("suitcase damaged, tag torn off", "mastodon", "en", "@ann", 150, "baggage", "misery", 3),
    "b4": ("carousel broken and suitcase missing, airport chaos", "trustpilot", "fr", "@cy", None, "baggage",
           "misery", 7),
    "b5": ("lost suitcase again, tag useless", "mastodon", "en", "@dee", 10, "baggage", "misery", 26),
    "b6": ("waited at carousel for hours, tag scanned wrong", "mastodon", None, None, None, "baggage", "misery", 30),
    "b7": ("suitcase arrived on time", "reddit", "en", "@eve", 5, "baggage", "neutral", 31),
    "b8": ("airport shuttle to the hotel", "reddit", "en", "@eve", 5, "baggage", "neutral", 33),
    "g1": ("gate changed twice, queue endless", "mastodon", "en", "@bob", 45, "boarding", "misery", 2),
    "g2": ("queue at the gate for an hour", "reddit", "en", "@ann", 130, "boarding", "misery", 2.25),
    "g3": ("gate agent rude, queue chaos", "trustpilot", "fr", "@fay", 7, "boarding", "misery", 12),
    "g4": ("boarding queue chaos at gate", "mastodon", "en", "@gus", 0, "boarding", "misery", 40),
    "g5": ("gate closed early", "mastodon", "de", "@hal", 3, "boarding", "misery", 47.9),
    "g6": ("smooth boarding, friendly gate staff", "reddit", "en", "@big", 50_000, "boarding", "magic", 5),
    "p1": ("refund refused", "trustpilot", "en", "@ivy", 20, "payments", "misery", 8),
    "p2": ("refund delayed for weeks", "trustpilot", "en", "@jon", 20, "payments", "misery", 9),
    "p3": ("refund never came, card charged twice", "reddit", "en", "@ann", 110, "payments", "misery", 10),
    "p4": ("card payment worked", "reddit", "en", "@kim", 900, "payments", "neutral", 11),
    "o1": ("crew lovely, flight smooth", "mastodon", "en", "@big", 52_000, "onboard", "magic", 13),
    "o2": ("crew kind", "mastodon", "fr", "@mid", 900, "onboard", "magic", 14),
    "o3": ("flight crew great", "reddit", "en", "@mid", 900, "onboard", "magic", 20),
    "u1": ("airport wifi is fine", "reddit", "en", "@ann", 125, None, None, 21),
    # the previous period
    "x1": ("suitcase late again", "reddit", "en", "@ann", 100, "baggage", "misery", -3),
    "x2": ("bag delivered to my door, wonderful", "reddit", "en", "@lou", 30, "baggage", "magic", -20),
    "x3": ("gate was calm", "mastodon", "en", "@max", 2, "boarding", "neutral", -30),
    "x4": ("gate staff fine", "mastodon", "en", "@max", 2, "boarding", "neutral", -47),
    # outside both periods
    "old": ("suitcase suitcase", "reddit", "en", "@ann", 99, "baggage", "misery", -24 * 30),
}  # fmt: skip


def _created(name: str) -> datetime:
    return SINCE + timedelta(hours=CORPUS[name][7])


def _posts() -> list[Post]:
    posts = []
    for name, (text, source, lang, handle, followers, touchpoint, moment, _) in CORPUS.items():
        fields: dict[str, Any] = {
            "id": f"{source}:{name}",
            "source": source,
            "native_id": name,
            "brand": ["contoso"] if name in ("p1", "p2", "o2") else ["northwind"],
            "author": {"handle": handle, "followers": followers},
            "text": text,
            "lang": lang,
            "created_at": _created(name),
            "crawled_at": UNTIL,
        }
        if touchpoint is not None:
            fields["classification"] = {
                "sentiment": _SENTIMENT[moment],
                "sentiment_scores": {_SENTIMENT[moment]: 0.9},
                "touchpoint": touchpoint,
                "touchpoint_scores": {touchpoint: 0.9},
                "moment": moment,
                "severity": 0.5,
                "model_version": "test-1",
            }
        posts.append(Post.model_validate(fields))
    return posts


def _in(name: str, since: datetime | None = SINCE, until: datetime | None = UNTIL) -> bool:
    at = _created(name)
    return (since is None or at >= since) and (until is None or at < until)


@pytest.fixture
def loaded(store: Store) -> Store:
    store.upsert(_posts())
    return store


# ------------------------------------------------------------------------------ the oracle


def _expected_timeline(since: datetime, until: datetime, width: timedelta) -> list[dict[str, Any]]:
    counts: Counter[tuple[datetime, str, str]] = Counter()
    for name, row in CORPUS.items():
        if row[5] is None or not _in(name, since, until):
            continue
        at = _created(name)
        start = datetime(at.year, at.month, at.day, at.hour if width == timedelta(hours=1) else 0, tzinfo=UTC)
        if width == timedelta(weeks=1):
            start -= timedelta(days=start.weekday())  # Monday
        counts[(start, row[5], row[6])] += 1
    return [{"start": iso(s), "touchpoint": t, "moment": m, "count": n} for (s, t, m), n in sorted(counts.items())]


def _moments(since: datetime, until: datetime) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for name, row in CORPUS.items():
        if row[5] is not None and _in(name, since, until):
            found.setdefault(row[5], Counter())[row[6]] += 1
    return found


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _expected_standout(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    background = [name for name in CORPUS if _in(name, since, until)]
    in_background = Counter(word for name in background for word in _words(CORPUS[name][0]))
    misery: dict[str, list[str]] = {}
    for name in background:
        if CORPUS[name][6] == "misery":
            misery.setdefault(CORPUS[name][5], []).append(name)
    candidates = {
        touchpoint: [
            TermCount(word, n, in_background[word])
            for word, n in Counter(w for name in names for w in _words(CORPUS[name][0])).items()
        ]
        for touchpoint, names in misery.items()
    }
    return standout_terms_result(candidates, {t: len(n) for t, n in misery.items()}, len(background))


# ------------------------------------------------------------------------------ each aggregation


def test_timeline_counts_touchpoint_by_moment_per_hour(loaded: Store) -> None:
    result = loaded.aggregate("timeline", since=SINCE, until=UNTIL)
    assert result["interval"] == "hour" and result["since"] == "2026-11-10T00:00:00.000Z"
    assert result["buckets"] == _expected_timeline(SINCE, UNTIL, timedelta(hours=1))
    assert {"start": "2026-11-10T01:00:00.000Z", "touchpoint": "baggage", "moment": "misery", "count": 2} in result[
        "buckets"
    ]  # b1 at 01:30 and b2 at 01:45 share the hour


def test_timeline_interval_follows_the_period(loaded: Store) -> None:
    week_ago = UNTIL - timedelta(days=10)
    daily = loaded.aggregate("timeline", since=week_ago, until=UNTIL)
    assert daily["interval"] == "day"
    assert daily["buckets"] == _expected_timeline(week_ago, UNTIL, timedelta(days=1))
    long_ago = UNTIL - timedelta(days=120)
    weekly = loaded.aggregate("timeline", since=long_ago, until=UNTIL)
    assert weekly["interval"] == "week"
    assert weekly["buckets"] == _expected_timeline(long_ago, UNTIL, timedelta(weeks=1))
    starts = {datetime.fromisoformat(b["start"]) for b in weekly["buckets"]}
    assert len(starts) >= 3 and all(s.weekday() == 0 and s.hour == 0 for s in starts)


def test_choose_interval_boundaries() -> None:
    assert choose_interval(SINCE, SINCE + timedelta(days=3)) == HOUR
    assert choose_interval(SINCE, SINCE + timedelta(days=3, milliseconds=1)) == DAY
    assert choose_interval(SINCE, SINCE + timedelta(days=90)) == DAY
    assert choose_interval(SINCE, SINCE + timedelta(days=91)) == WEEK
    monday = datetime(2026, 11, 9, tzinfo=UTC)
    millis = int((monday + timedelta(days=6, hours=23) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    assert WEEK.start(millis) == int((monday - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    assert WEEK.start(-1) < 0  # before the epoch too


def test_moment_share_beside_the_previous_period(loaded: Store) -> None:
    result = loaded.aggregate("moment_share", since=SINCE, until=UNTIL)
    assert (result["previous_since"], result["previous_until"]) == ("2026-11-08T00:00:00.000Z", iso(SINCE))
    current, previous = _moments(SINCE, UNTIL), _moments(SINCE - (UNTIL - SINCE), SINCE)
    rows = {row["touchpoint"]: row for row in result["touchpoints"]}
    assert set(rows) == set(current) | set(previous)
    for touchpoint, row in rows.items():
        for label, counts in (("current", current), ("previous", previous)):
            moments = counts.get(touchpoint, Counter())
            volume = sum(moments.values())
            assert row[label]["volume"] == volume
            assert row[label]["misery"] == moments["misery"] and row[label]["magic"] == moments["magic"]
            assert math.isclose(row[label]["misery_share"], moments["misery"] / volume if volume else 0, abs_tol=1e-6)
    assert [row["touchpoint"] for row in result["touchpoints"]] == ["baggage", "boarding", "payments", "onboard"]
    assert rows["baggage"]["current"]["misery_share"] == 0.75 and rows["baggage"]["previous"]["magic_share"] == 0.5
    assert result["total"]["current"]["volume"] == 21 and result["total"]["previous"]["volume"] == 4


def test_moment_share_defaults_to_the_last_seven_days(loaded: Store) -> None:
    result = loaded.aggregate("moment_share", until=UNTIL)
    assert result["since"] == iso(UNTIL - timedelta(days=7))
    assert result["total"]["current"]["volume"] == 25  # both periods above fall in the week
    with pytest.raises(UsageError, match="must start before"):
        loaded.aggregate("moment_share", since=UNTIL, until=SINCE)


def test_top_authors_by_reach_and_by_complaints(loaded: Store) -> None:
    result = loaded.aggregate("top_authors", since=SINCE, until=UNTIL)
    assert result["by_reach"][:4] == [
        {"handle": "@big", "followers": 52_000, "posts": 2},  # the most followers on any of their posts
        {"handle": "@mid", "followers": 900, "posts": 2},  # as many followers as @kim: more posts first
        {"handle": "@kim", "followers": 900, "posts": 1},
        {"handle": "@ann", "followers": 150, "posts": 5},
    ]
    assert result["by_complaints"][:3] == [
        {"handle": "@ann", "complaints": 4, "followers": 150},
        {"handle": "@bob", "complaints": 2, "followers": 45},
        {"handle": "@cy", "complaints": 1, "followers": None},
    ]
    assert len(result["by_reach"]) == 10 and len(result["by_complaints"]) == 9  # at most ten, and nine complained
    assert all(row["handle"] for row in result["by_complaints"])  # b6 has no handle: no author


def test_volume_per_source_and_language(loaded: Store) -> None:
    result = loaded.aggregate("volume", query="NOT pizza")
    counts = Counter((row[1], row[2]) for row in CORPUS.values())
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1] or ""))
    assert result["buckets"] == [{"source": s, "lang": lang, "posts": n} for (s, lang), n in expected]
    assert result["total"] == len(CORPUS)
    assert {"source": "mastodon", "lang": None, "posts": 1} in result["buckets"]


def test_standout_terms_per_touchpoint(loaded: Store) -> None:
    result = loaded.aggregate("standout_terms", since=SINCE, until=UNTIL)
    top = {touchpoint: [t["term"] for t in terms[:3]] for touchpoint, terms in result["touchpoints"].items()}
    assert top == {"baggage": ["carousel", "suitcase", "tag"], "boarding": ["gate", "queue"], "payments": ["refund"]}
    assert result["misery_posts"] == {"baggage": 6, "boarding": 5, "payments": 3}
    assert result["background_posts"] == 22
    suitcase = result["touchpoints"]["baggage"][1]  # below "carousel", which only misery posts say
    assert (suitcase["misery_posts"], suitcase["background_posts"]) == (5, 6)  # b7 says it too, without misery
    assert result == _expected_standout(SINCE, UNTIL)
    assert not any(t["term"] in STOPWORDS for terms in result["touchpoints"].values() for t in terms)


def test_filters_apply_to_every_aggregation(loaded: Store) -> None:
    contoso = loaded.aggregate("volume", brand="contoso")
    assert contoso["total"] == 3
    refunds = loaded.aggregate("standout_terms", query="refund OR suitcase", since=SINCE, until=UNTIL)
    assert refunds["background_posts"] == 3 + 6 and refunds["misery_posts"] == {"baggage": 5, "payments": 3}
    assert refunds == _expected_standout_for({"b1", "b2", "b3", "b4", "b5", "b7", "p1", "p2", "p3"})
    french = loaded.aggregate("timeline", query="lang:fr", since=SINCE, until=UNTIL)
    assert sum(b["count"] for b in french["buckets"]) == 3


def _expected_standout_for(names: set[str]) -> dict[str, Any]:
    in_background = Counter(w for name in names for w in _words(CORPUS[name][0]))
    misery: dict[str, list[str]] = {}
    for name in sorted(names):
        if CORPUS[name][6] == "misery":
            misery.setdefault(CORPUS[name][5], []).append(name)
    candidates = {
        t: [TermCount(w, n, in_background[w]) for w, n in Counter(w for x in ns for w in _words(CORPUS[x][0])).items()]
        for t, ns in misery.items()
    }
    return standout_terms_result(candidates, {t: len(n) for t, n in misery.items()}, len(names))


def test_unknown_names_and_bad_queries_are_usage_errors(loaded: Store) -> None:
    with pytest.raises(UsageError) as caught:
        loaded.aggregate("sentiment_cloud")
    assert all(name in str(caught.value) for name in AGGREGATIONS)
    with pytest.raises(QuerySyntaxError):
        loaded.aggregate("volume", query="refund AND")


# ------------------------------------------------------------------------------ the two stores agree


@pytest.fixture
def both(tmp_home: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Store, Store]]:
    from search.elastic import ElasticStore
    from search.sqlite import SqliteStore

    es_url = request.getfixturevalue("es_url")
    with (
        SqliteStore(tmp_home / "agg.db") as sqlite_store,
        ElasticStore(es_url, index_prefix=request.getfixturevalue("es_prefix"), refresh=True) as es_store,
    ):
        for store in (sqlite_store, es_store):
            store.upsert(_posts())
        yield sqlite_store, es_store


@pytest.mark.elasticsearch
def test_both_stores_give_identical_results(both: tuple[Store, Store]) -> None:
    sqlite_store, es_store = both
    filters: list[dict[str, Any]] = [
        {"since": SINCE, "until": UNTIL},
        {"since": SINCE - timedelta(days=40), "until": UNTIL},
        {"until": UNTIL},  # a week back for the period ones; "now" would differ between the two calls
        {"query": "NOT source:reddit", "brand": "northwind", "since": SINCE, "until": UNTIL},
    ]
    for name in AGGREGATIONS:
        for given in filters:
            assert sqlite_store.aggregate(name, **given) == es_store.aggregate(name, **given), (name, given)


def test_g2_2x2_is_twice_n_times_mutual_information() -> None:
    a, b, c, d = 5, 1, 6, 16
    n = c + d
    cells = [(a, a + b, c), (b, a + b, d), (c - a, n - a - b, c), (d - b, n - a - b, d)]
    mutual_information = sum(o / n * math.log(o * n / (row * col)) for o, row, col in cells if o)
    assert math.isclose(g2_2x2(a, b, c, d), 2 * n * mutual_information)
    assert g2_2x2(0, 0, 5, 5) == 0.0 and g2_2x2(3, 0, 3, 0) == 0.0
    assert g2_2x2(5, 1, 6, 16) > g2_2x2(4, 1, 6, 16) > g2_2x2(3, 3, 6, 16)
    # The corpus-comparison G² the scorecard uses lives here too (moved down from triage).
    assert math.isclose(log_likelihood(10, 5, 100, 200), 2 * (10 * math.log(10 / 5) + 5 * math.log(5 / 10)))
