"""One corpus, one table of queries, both stores: the same posts, and the right ones.

Every query's expected set is written out here, so a store that agrees with the other
but is wrong fails too. The Elasticsearch half needs ``MOMENTS_TEST_ES_URL`` and skips
(fails under ``CI=true``) without it.
"""

from __future__ import annotations

import contextlib
import os
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from moments.records import Flag, Post, post_flag_id
from search.mapping import index_names
from search.query import MAX_DEPTH, QuerySyntaxError
from search.store import Store

MakePost = Callable[..., Post]

_MOMENT_SENTIMENT = {"misery": "negative", "magic": "positive", "neutral": "neutral"}


def _at(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=UTC)


# name: (text, title, display name, handle, brands, source, lang, touchpoint, moment, created_at)
CORPUS: dict[str, tuple[Any, ...]] = {
    "delay1": ("Two hour delay at the gate, no announcement.", None, "Ann Walker", "@ann", ["northwind"],
               "mastodon", "en", "boarding", "misery", _at(1, 8)),
    "delay2": ("Delay after delay. DELAY!", "Delayed again", "Bob Stone", "@bob", ["northwind"],
               "reddit", "en", "boarding", "misery", _at(1, 12)),
    "lostbag": ("Nobody can tell me where it is.", "Lost bag at Heathrow", "Cara Lee", "@cara", ["northwind"],
                "trustpilot", "en", "baggage", "misery", _at(2, 9, 30)),
    "baglost": ("My bag was not lost, just late, says the desk.", None, "Dan Fox", "@dan", ["northwind"],
                "mastodon", "en", "baggage", "neutral", _at(2, 12)),
    "refund": ("The refund came three weeks late.", None, "Eve Park", "@eve", ["contoso"],
               "reddit", "en", "payments", "misery", _at(2, 23, 59, 59, 999000)),
    "refundfast": ("Refunded within a day, impressive!", None, "Finn Moss", "@finn", ["contoso"],
                   "trustpilot", "en", "payments", "magic", _at(3)),
    "harriet": ("Just landed.", None, "Harriet Tubular", "@harriet", ["northwind"],
                "bluesky", "en", None, None, _at(3, 10)),
    "checkin": ("Online check-in failed twice", None, "Ivy Chen", "@ivy", ["northwind"],
                "mastodon", "en", "check-in", "misery", _at(3, 11)),
    "checking": ("Checking in was smooth and quick", None, "Jon Bell", "@jon", ["northwind"],
                 "reddit", "en", "check-in", "magic", _at(3, 14)),
    "german": ("Verspätung am Flughafen Zürich", None, "Klaus Meier", "@klaus", ["northwind"],
               "mastodon", "de", "boarding", "misery", _at(4, 9)),
    "french": ("Service à bord excellent, merci", None, "Léa Martin", "@lea", ["contoso"],
               "mastodon", "fr", "onboard", "magic", _at(4, 10)),
    "crew": ("Lovely crew and smooth boarding.", "Great flight", "Mia Ross", "@mia", ["northwind", "contoso"],
             "bluesky", "en", "onboard", "magic", _at(4, 11)),
    "undated": ("Seat was broken, no refund offered", None, "Ned Hill", "@ned", ["northwind"],
                "reddit", None, "onboard", "misery", None),
    "nwair": ("Northwind Air lost my luggage", None, "Olga Novak", "@Olga", ["Northwind Air"],
              "trustpilot", "en", "baggage", "misery", _at(5, 8)),
    "across": ("bag tag number please", "Where is my lost", "Pia Quinn", "@pia", ["northwind"],
               "mastodon", "en", "baggage", "neutral", _at(5, 9)),
    "namephrase": ("Harriet was super helpful", None, "Rae Tubular", "@rae", ["northwind"],
                   "reddit", "en", "onboard", "magic", _at(5, 10)),
    "punct": ("WiFi??? Didn't work!!! (again) [NEAR] ^caret col:umn", None, "Sam Ortiz", "@sam", ["contoso"],
              "bluesky", "en", "onboard", "misery", _at(5, 11)),
    "near": ("The hotel is near the airport", None, "Tom Reed", "@tom", ["contoso"],
             "trustpilot", "en", "hotel", "neutral", _at(5, 12)),
    "zoe": ("Great service", None, "Zoë Ångström", "@zoe", ["northwind"],
            "mastodon", "en", "onboard", "magic", _at(1, 9)),
    "emoji": ("Best crew ever 🙂", None, "Uma Diaz", "@uma", ["contoso"],
              "bluesky", "en", "onboard", "magic", _at(2, 15)),
    "lowercase": ("to be or not to be, and so on", None, "Vic Hale", "@vic", ["contoso"],
                  "reddit", "en", None, None, _at(2, 16)),
    "titlerefund": ("Customer service ignored my emails.", "Refund denied", "Wes Lin", "@wes", ["contoso"],
                    "trustpilot", "en", "payments", "misery", _at(3, 16)),
    "handle": ("Smooth trip", None, "Xena Ward", "@delayfan", ["northwind"],
               "bluesky", "en", "onboard", "neutral", _at(4, 12)),
    "url": ("See https://example.com/delay for details", None, "Yan Ho", "@yan", ["northwind"],
            "reddit", "en", "boarding", "neutral", _at(4, 13)),
    "flagged": ("Terrible service", None, "Zed Cole", "@zed", ["northwind"],
                "reddit", "en", "onboard", "misery", _at(1, 18)),
    "lounge": ("Lounge was closed", None, "Amy Ng", "@amy", ["contoso"],
               "mastodon", "en", "Lounge", "neutral", _at(3, 20)),
    "smalldelay": ("Small delay but fine", None, "Ben Ash", "@ben", ["northwind"],
                   "mastodon", "en", None, None, _at(4, 20)),
    "submilli": ("Gate change announced", None, "Cy Dunn", "@cy", ["northwind"],
                 "mastodon", "en", "boarding", "neutral", _at(1, 12, 0, 0, 500)),
}  # fmt: skip

ALL = frozenset(CORPUS)
DELAY = frozenset({"delay1", "delay2", "url", "smalldelay"})
REFUND = frozenset({"refund", "undated", "titlerefund"})
CONTOSO = frozenset(name for name, row in CORPUS.items() if "contoso" in row[4])
MASTODON = frozenset(name for name, row in CORPUS.items() if row[5] == "mastodon")
ONBOARD = frozenset(name for name, row in CORPUS.items() if row[7] == "onboard")
NOV_1 = frozenset({"delay1", "delay2", "zoe", "flagged", "submilli"})
NOV_2 = frozenset({"lostbag", "baglost", "refund", "emoji", "lowercase"})
NOV_3 = frozenset({"refundfast", "harriet", "checkin", "checking", "titlerefund", "lounge"})
NOV_4 = frozenset({"german", "french", "crew", "handle", "url", "smalldelay"})
NOV_5 = frozenset({"nwair", "across", "namephrase", "punct", "near"})


def _deep(depth: int) -> str:
    """``refund`` under ``depth`` levels of ``pizza OR ( ... NOT pizza)``: OR, AND and NOT at every level."""
    query = "refund"
    for _ in range(depth):
        query = f"pizza OR ({query} NOT pizza)"
    return query


#: (query, the posts it must find)
QUERIES: list[tuple[str, frozenset[str]]] = [
    # words: whole words, any case, in text, title or author name
    ("delay", DELAY),
    ("DELAY", DELAY),
    ("DeLaY!", DELAY),
    ("delay,", DELAY),
    ("delayed", frozenset({"delay2"})),
    ("pizza", frozenset()),
    ("boarding", frozenset({"crew"})),  # the text, not the touchpoint
    ("harriet", frozenset({"harriet", "namephrase"})),
    ("tubular", frozenset({"harriet", "namephrase"})),  # only in author names
    ("zebrafish", frozenset()),  # only in a flag's reasons: flags are not post text
    ("delayfan", frozenset()),  # only in a handle: handles are not free text
    ("smooth", frozenset({"checking", "crew", "handle"})),
    # NOT alone: every post except
    ("NOT delay", ALL - DELAY),
    ("NOT NOT delay", DELAY),
    ("NOT (delay OR refund OR touchpoint:onboard)", ALL - DELAY - REFUND - ONBOARD),
    # phrases stay inside one field
    ('"lost bag"', frozenset({"lostbag"})),
    ("lost bag", frozenset({"lostbag", "baglost", "across"})),
    ("lost AND bag", frozenset({"lostbag", "baglost", "across"})),
    ("lost OR bag", frozenset({"lostbag", "baglost", "across", "nwair"})),
    ('"where is my lost bag"', frozenset()),  # title then text: across fields, no match
    ('"harriet tubular"', frozenset({"harriet"})),
    ('"smooth boarding"', frozenset({"crew"})),
    ('"checking in"', frozenset({"checking"})),
    ('"not to be"', frozenset({"lowercase"})),
    # prefixes
    ("refu*", REFUND | {"refundfast"}),
    ("check*", frozenset({"checkin", "checking"})),
    ("delay*", DELAY),
    ("DELA*", DELAY),
    ("check-i*", frozenset({"checkin"})),
    ("title:refu*", frozenset({"titlerefund"})),
    # AND / OR / NOT and parentheses
    ("refund", REFUND),
    ("refund AND late", frozenset({"refund"})),
    ("refund OR heathrow", REFUND | {"lostbag"}),
    ("refund NOT touchpoint:payments", frozenset({"undated"})),
    ("delay OR NOT source:mastodon", DELAY | (ALL - MASTODON)),
    (
        "((refund OR delay) AND (brand:contoso OR lang:de)) NOT created_at:2026-11-02",
        frozenset({"titlerefund"}),
    ),
    (_deep(MAX_DEPTH), REFUND),
    # free text in one field
    ("title:lost", frozenset({"lostbag", "across"})),
    ("text:lost", frozenset({"baglost", "nwair"})),
    ('text:"lost bag"', frozenset()),
    ('title:"lost bag"', frozenset({"lostbag"})),
    ("author.display_name:harriet", frozenset({"harriet"})),
    ("title:(refund OR great)", frozenset({"titlerefund", "crew"})),
    ("text:crew", frozenset({"crew", "emoji"})),
    # field values: exact, any case
    ("touchpoint:baggage", frozenset({"lostbag", "baglost", "nwair", "across"})),
    ("touchpoint:BAGGAGE", frozenset({"lostbag", "baglost", "nwair", "across"})),
    ("touchpoint:lounge", frozenset({"lounge"})),
    ("touchpoint:check-in", frozenset({"checkin", "checking"})),
    ("touchpoint:check*", frozenset({"checkin", "checking"})),
    ("touchpoint:bag", frozenset()),  # exact, not a word inside the value
    (
        "touchpoint:(baggage OR payments)",
        frozenset({"lostbag", "baglost", "nwair", "across", "refund", "refundfast", "titlerefund"}),
    ),
    ("NOT touchpoint:boarding", ALL - {"delay1", "delay2", "german", "url", "submilli"}),
    ("sentiment:positive", frozenset({"refundfast", "checking", "french", "crew", "namephrase", "zoe", "emoji"})),
    ("moment:misery source:reddit", frozenset({"delay2", "refund", "undated", "flagged"})),
    ("source:trustpilot OR lang:de", frozenset({"lostbag", "refundfast", "german", "nwair", "near", "titlerefund"})),
    ("NOT lang:en", frozenset({"german", "french", "undated"})),
    ("brand:contoso", CONTOSO),
    ("brand:CONTOSO NOT brand:northwind", CONTOSO - {"crew"}),
    ('brand:"Northwind Air"', frozenset({"nwair"})),
    ('brand:"northwind air"', frozenset({"nwair"})),
    ("brand:northwind*", ALL - (CONTOSO - {"crew"})),
    ("author:@olga", frozenset({"nwair"})),
    ("author:@delayfan", frozenset({"handle"})),
    ("author:@del*", frozenset({"handle"})),
    # dates: a day, a second, a millisecond; posts without a date only under NOT
    ("created_at:2026-11-01", NOV_1),
    ("created_at:2026-11-02", NOV_2),
    ("created_at:>=2026-11-05", NOV_5),
    ("created_at:>2026-11-04", NOV_5),
    ("created_at:<2026-11-02", NOV_1),
    ("created_at:<=2026-11-01", NOV_1),
    ("created_at:<2026-11-03", NOV_1 | NOV_2),  # 23:59:59.999 on the 2nd is in
    ("created_at:>2026-11-02", NOV_3 | NOV_4 | NOV_5),  # 00:00:00 on the 3rd is in
    ("created_at:<2026-11-01T12:00:00Z", frozenset({"delay1", "zoe"})),
    ("created_at:<=2026-11-01T12:00:00Z", frozenset({"delay1", "zoe", "delay2", "submilli"})),
    ("created_at:2026-11-01T12:00:00Z", frozenset({"delay2", "submilli"})),
    ("created_at:2026-11-01T12:00:00.000Z", frozenset({"delay2", "submilli"})),  # to the millisecond
    ("created_at:>2026-11-01T12:00:00.000Z", ALL - {"delay1", "zoe", "delay2", "submilli", "undated"}),
    ("created_at:2026-11-01T13:00+01:00", frozenset({"delay2", "submilli"})),
    ("created_at:(>=2026-11-03 AND <2026-11-04) sentiment:negative", frozenset({"checkin", "titlerefund"})),
    ("NOT created_at:<2026-11-05", NOV_5 | {"undated"}),
    ("created_at:<=9999-12-31", ALL - {"undated"}),
    # punctuation, hostile syntax, case, unicode
    ("check-in", frozenset({"checkin"})),
    ("NEAR", frozenset({"punct", "near"})),
    ("NEAR(hotel airport)", frozenset({"near"})),
    ("^caret", frozenset({"punct"})),
    ('"col:umn"', frozenset({"punct"})),
    ("didn't", frozenset({"punct"})),
    ("wifi", frozenset({"punct"})),
    ("(again)", frozenset({"delay2", "punct"})),
    ('"example.com"', frozenset({"url"})),
    ("or", frozenset({"lowercase"})),
    ("not", frozenset({"baglost", "lowercase"})),
    ('"AND"', frozenset({"checking", "crew", "lowercase"})),
    ("ÅNGSTRÖM", frozenset({"zoe"})),
    ("zoë", frozenset({"zoe"})),
    ("zürich", frozenset({"german"})),
    ("🙂", frozenset({"emoji"})),
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The corpus in one store of each backend, loaded once for the whole table."""
    home = tmp_path_factory.mktemp("parity")
    if request.param == "sqlite":
        from search.sqlite import SqliteStore

        with SqliteStore(home / "moments.db") as sqlite_store:
            _load(sqlite_store)
            yield sqlite_store
        return
    from search.elastic import ElasticStore

    # As the es_url fixture does, but once per module: a private index prefix, deleted afterwards.
    url = os.environ.get("MOMENTS_TEST_ES_URL", "").strip().rstrip("/")
    if not url:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Elasticsearch tests need MOMENTS_TEST_ES_URL (see tests/conftest.py)", pytrace=False)
        pytest.skip("Elasticsearch tests need MOMENTS_TEST_ES_URL (run `make test`)")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        with ElasticStore(url, index_prefix=prefix, refresh=True, backoff=0.05, spool_dir=home / "spool") as es:
            _load(es)
            yield es
    finally:
        indices = ",".join(index_names(prefix, kind)[0] for kind in ("posts", "flags"))
        request_ = urllib.request.Request(f"{url}/{indices}?ignore_unavailable=true", method="DELETE")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request_, timeout=30).close()


def _posts() -> list[Post]:
    posts = []
    for name, (text, title, display, handle, brands, source, lang, touchpoint, moment, created) in CORPUS.items():
        fields: dict[str, Any] = {
            "id": f"{source}:{name}",
            "source": source,
            "native_id": name,
            "brand": brands,
            "author": {"handle": handle, "display_name": display},
            "text": text,
            "title": title,
            "lang": lang,
            "created_at": created,
            "crawled_at": datetime(2026, 11, 6, tzinfo=UTC),
        }
        if touchpoint is not None:
            fields["classification"] = {
                "sentiment": _MOMENT_SENTIMENT[moment],
                "sentiment_scores": {_MOMENT_SENTIMENT[moment]: 0.9},
                "touchpoint": touchpoint,
                "touchpoint_scores": {touchpoint: 0.9},
                "moment": moment,
                "severity": 0.5,
                "model_version": "test-1",
            }
        posts.append(Post.model_validate(fields))
    return posts


def _load(store: Store) -> None:
    posts = _posts()
    assert store.upsert(posts).written == len(CORPUS)
    flagged = next(p for p in posts if p.native_id == "flagged")
    opened = datetime(2026, 11, 6, tzinfo=UTC)
    flag = Flag(
        id=post_flag_id(flagged.id),
        brand="northwind",
        post_ids=[flagged.id],
        priority="P1",
        score=9.0,
        reasons=["zebrafish velocity spike"],
        opened_at=opened,
        updated_at=opened,
    )
    store.create_flag(flag, actor="test")


def _names(posts: list[Post]) -> list[str]:
    return [post.native_id for post in posts]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[query for query, _ in QUERIES])
def test_query_finds_exactly(corpus: Store, query: str, expected: frozenset[str]) -> None:
    assert expected <= ALL, "the table names a post that is not in the corpus"
    found = _names(corpus.search(query, limit=1000))
    assert len(found) == len(set(found)), "a post came back twice"
    assert set(found) == expected, f"extra: {sorted(set(found) - expected)}, missing: {sorted(expected - set(found))}"
    assert corpus.count_posts(query) == len(expected), "the store counts differently from what it finds"


def test_the_table_covers_the_language() -> None:
    assert len(QUERIES) >= 40
    text = " ".join(query for query, _ in QUERIES)
    for piece in (" AND ", " OR ", "NOT ", "(", '"', "*", "touchpoint:", "sentiment:", "moment:", "source:", "lang:"):
        assert piece in text, piece
    for piece in ("brand:", "author:", "text:", "title:", "created_at:>=", "created_at:<", "created_at:>", "<="):
        assert piece in text, piece


#: Where the two tokenizers (Elasticsearch ``standard``, FTS5 ``unicode61``) still differ:
#: (query, found on SQLite, found on Elasticsearch). Closing a gap means changing an
#: analyzer (an index change), not the query language; this table then changes with it.
KNOWN_DIFFERENCES: list[tuple[str, frozenset[str], frozenset[str]]] = [
    ("zurich", frozenset({"german"}), frozenset()),  # FTS5 folds diacritics, ES does not
    ("verspatung", frozenset({"german"}), frozenset()),
    ('"didn t"', frozenset({"punct"}), frozenset()),  # ES keeps "didn't" one token, FTS5 splits it
]


@pytest.mark.parametrize(
    ("query", "on_sqlite", "on_elasticsearch"), KNOWN_DIFFERENCES, ids=[q for q, *_ in KNOWN_DIFFERENCES]
)
def test_known_tokenizer_differences(
    corpus: Store, query: str, on_sqlite: frozenset[str], on_elasticsearch: frozenset[str]
) -> None:
    expected = on_elasticsearch if type(corpus).__name__ == "ElasticStore" else on_sqlite
    assert set(_names(corpus.search(query, limit=1000))) == expected


def test_brand_option_and_limit_apply_on_top(corpus: Store) -> None:
    assert set(_names(corpus.search("NOT delay", brand="contoso", limit=1000))) == CONTOSO
    assert set(_names(corpus.search("brand:northwind", brand="contoso", limit=1000))) == {"crew"}
    assert len(corpus.search("NOT delay", limit=3)) == 3


def test_text_ranks_and_ids_break_ties(corpus: Store) -> None:
    # Filters and NOT do not rank: they come back in id order, the same on both stores.
    assert _names(corpus.search("touchpoint:baggage", limit=1000)) == ["across", "baglost", "lostbag", "nwair"]
    # Posts matching the words come before posts that only matched through NOT.
    found = _names(corpus.search("delay OR NOT source:mastodon", limit=1000))
    assert set(found[: len(DELAY)]) == DELAY
    rest = [f"{CORPUS[name][5]}:{name}" for name in found[len(DELAY) :]]
    assert rest == sorted(rest)
    # The post saying "delay" most, in the shortest text, ranks first.
    assert _names(corpus.search("delay", limit=1)) == ["delay2"]


def test_a_syntax_error_is_the_same_on_both(corpus: Store) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        corpus.search("refund AND )")
    assert caught.value.column == 12


def test_the_table_s_groups_match_the_corpus() -> None:
    posts = _posts()
    assert len(posts) == len(CORPUS) >= 28
    by_day: dict[int, set[str]] = {}
    for post in posts:
        if post.created_at is not None:
            by_day.setdefault(post.created_at.day, set()).add(post.native_id)
    assert [by_day[day] for day in range(1, 6)] == [NOV_1, NOV_2, NOV_3, NOV_4, NOV_5]
    undated = ALL - (NOV_1 | NOV_2 | NOV_3 | NOV_4 | NOV_5)
    assert undated == {"undated"}


# ------------------------------------------------------------------------------ periods, orders and paging

#: A sample of the table, each run again with a period and in every order, searched and streamed.
PERIOD_QUERIES = ["delay", "NOT delay", "refu*", "touchpoint:baggage", "moment:misery source:reddit", "lost OR bag"]
#: Both bounds fall on a post (delay2 and submilli at 12:00 on the 1st are in; url at 13:00 on the 4th is out).
PERIOD = (datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 4, 13, tzinfo=UTC))


def test_the_period_cuts_the_sample() -> None:
    since, until = PERIOD
    for query in PERIOD_QUERIES:
        expected = dict(QUERIES)[query]
        inside = {name for name in expected if _between(name, since, until)}
        assert inside and inside != expected, query  # some in, some out: the bounds are tested


def _created(name: str) -> datetime | None:
    created: datetime | None = CORPUS[name][9]
    return created


def _between(name: str, since: datetime, until: datetime | None = None) -> bool:
    """Whether the post was created in ``[since, until)`` (to the millisecond, as both stores compare)."""
    at = _created(name)
    if at is None:
        return False
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return since <= at and (until is None or at < until)


@pytest.mark.parametrize("sort", ["relevance", "recent", "engagement"])
@pytest.mark.parametrize("query", PERIOD_QUERIES)
def test_since_until_sort_and_streaming_find_the_same_posts(corpus: Store, query: str, sort: str) -> None:
    expected = dict(QUERIES)[query]
    since, until = PERIOD
    in_period = {name for name in expected if _between(name, since, until)}
    found = _names(corpus.search(query, limit=1000, since=since, until=until, sort=sort))
    assert len(found) == len(set(found)) and set(found) == in_period
    streamed = _names(list(corpus.iter_search(query, since=since, until=until, sort=sort, page_size=2)))
    assert streamed == found, "a stream in pages of 2 differs from one search"
    assert set(_names(corpus.search(query, limit=1000, since=since, sort=sort))) == {
        name for name in expected if _between(name, since)
    }
    if sort == "recent":
        # Newest first, undated last, ties by id: one order, the same on both stores.
        key = {name: (-(_created(name) or datetime.min.replace(tzinfo=UTC)).timestamp(), name) for name in found}
        assert found == sorted(found, key=lambda name: (key[name][0], f"{CORPUS[name][5]}:{name}"))


def test_every_post_streams_once_in_pages(corpus: Store) -> None:
    for sort in ("relevance", "recent", "engagement"):
        streamed = _names(list(corpus.iter_search(None, sort=sort, page_size=3)))
        assert len(streamed) == len(set(streamed)) == len(CORPUS), sort
        assert streamed == _names(corpus.search(None, sort=sort, limit=1000)), sort
