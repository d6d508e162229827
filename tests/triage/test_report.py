"""The scorecard (``triage.scorecard``), its HTML report (``triage.report``) and ``moments report``.

A small corpus of classified posts over two weeks (the previous period and the
period) is written to a real store, SQLite always and Elasticsearch when
``MOMENTS_TEST_ES_URL`` is set, and every figure is checked against what was planted:
volumes, shares, the net score, the trend, a misery theme, the best magic posts.
The report is checked as a file: inline SVG, no script, no URL but the posts', and
hostile post text escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from moments.cli import main
from moments.records import Classification, Engagement, Post, post_id
from search import Store, open_store
from triage import svg
from triage.report import render_report, safe_url
from triage.scorecard import STOPWORDS, PeriodCounts, build_scorecard, log_likelihood, misery_themes, post_terms

PREVIOUS = datetime(2026, 3, 1, tzinfo=UTC)
SINCE = datetime(2026, 3, 8, tzinfo=UTC)
UNTIL = datetime(2026, 3, 15, tzinfo=UTC)
BRAND = "northwind"
HOSTILE_TEXT = "<script>alert(1)</script> the crew saved my day <img src=x onerror=alert(1)>"
HOSTILE_URL = "javascript:alert(1)"

# Everyday words for filler; a misery post uses each at most once, so only the planted themes stand out.
FILLER = (  # noqa: SIM905
    "gate crew seat window aisle snack blanket pilot runway boarding pass terminal lounge coffee tea jacket "
    "umbrella tablet charger headphones sandwich cookie juice magazine suitcase passport visa ticket receipt "
    "counter shuttle taxi hotel breakfast dinner lunch morning evening weekend holiday business family"
).split()


@dataclass
class Corpus:
    """The planted posts, and the ids by role, so a test can check what the scorecard picked."""

    posts: list[Post] = field(default_factory=list)
    magic_ids: set[str] = field(default_factory=set)
    post_urls: set[str] = field(default_factory=set)
    counter: int = 0

    def add(
        self,
        *,
        day: datetime,
        touchpoint: str | None,
        moment: str = "neutral",
        text: str | None = None,
        brand: str = BRAND,
        likes: int = 0,
        positive: float = 0.9,
        url: str | None = None,
        author: dict[str, Any] | None = None,
    ) -> Post:
        self.counter += 1
        n = self.counter
        created = day + timedelta(hours=n % 24, minutes=n % 60)
        sentiment = {"misery": "negative", "magic": "positive"}.get(moment, "neutral")
        scores = {"negative": 0.05, "neutral": 0.05, "positive": positive}
        if sentiment == "negative":
            scores = {"negative": 0.9, "neutral": 0.05, "positive": 0.05}
        elif sentiment == "neutral":
            scores = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}
        words = " ".join(FILLER[(n * 7 + k) % len(FILLER)] for k in range(3))
        post = Post(
            id=post_id("test", f"r{n}"),
            source="test",
            native_id=f"r{n}",
            url=url if url is not None else f"https://social.example/@u{n}/{n}",
            brand=[brand],
            author=author or {"handle": f"@u{n}", "display_name": f"User {n}"},
            text=text or f"post {n} about {words}",
            created_at=created,
            crawled_at=created + timedelta(minutes=5),
            engagement=Engagement(likes=likes),
            classification=None
            if touchpoint is None
            else Classification(
                sentiment=sentiment,  # type: ignore[arg-type]
                sentiment_scores=scores,
                touchpoint=touchpoint,
                touchpoint_scores={touchpoint: 0.9},
                moment=moment,  # type: ignore[arg-type]
                severity=0.7 if moment == "misery" else 0.1,
                confidence=0.9,
                model_version="test",
            ),
        )
        self.posts.append(post)
        if moment == "magic" and brand == BRAND and post.created_at and SINCE <= post.created_at < UNTIL:
            self.magic_ids.add(post.id)
        if post.url:
            self.post_urls.add(post.url)
        return post

    def many(self, count: int, *, start: datetime, **kwargs: Any) -> None:
        for i in range(count):
            self.add(day=start + timedelta(days=i % 7), **kwargs)


def build_corpus() -> Corpus:
    """The planted figures (brand northwind):

    =================  ==============================  ==============================
    touchpoint         period (Mar 8-15)               previous (Mar 1-8)
    =================  ==============================  ==============================
    fulfilment         40: 20 misery, 10 magic         20: 4 misery, 4 magic
    staff_interaction  20: 2 misery, 12 magic          10: 5 misery, 5 magic
    customer_support   10: 5 misery, 0 magic           none
    =================  ==============================  ==============================

    Plus 3 unclassified northwind posts in the period, and another brand's 5 misery
    posts (which a ``--brand northwind`` scorecard never counts).
    """
    c = Corpus()
    # Fulfilment, the period: 15 misery posts say "lost luggage", 4 "cold food", 1 neither.
    for i in range(15):
        c.add(
            day=SINCE + timedelta(days=i % 7),
            touchpoint="fulfilment",
            moment="misery",
            text=f"They lost luggage AGAIN and it is the {FILLER[i]} of it all, https://t.co/x{i} @northwind",
        )
    for i in range(4):
        c.add(
            day=SINCE + timedelta(days=i),
            touchpoint="fulfilment",
            moment="misery",
            text=f"Cold food on board, and the {FILLER[20 + i]} was a mess. 2 hours!",
        )
    c.add(day=SINCE, touchpoint="fulfilment", moment="misery", text="It was the worst of the worst, I am so angry")
    magic_likes = [5, 80, 0, 3, 12, 40, 1, 2, 7, 9]
    for i, likes in enumerate(magic_likes):
        c.add(
            day=SINCE + timedelta(days=i % 7),
            touchpoint="fulfilment",
            moment="magic",
            likes=likes,
            text=f"Arrived early, {FILLER[i + 5]} perfect",
        )
    c.many(9, start=SINCE, touchpoint="fulfilment", moment="neutral")
    # Two posts elsewhere mention the theme too: a theme is relative, not exclusive.
    c.add(day=SINCE, touchpoint="fulfilment", moment="neutral", text="Found my lost luggage at the counter")
    c.add(day=SINCE + timedelta(days=1), touchpoint="other", moment="neutral", text="Lost luggage insurance tips")
    # Staff interaction, the period; the hostile post is its best moment (most likes).
    c.many(2, start=SINCE, touchpoint="staff_interaction", moment="misery")
    c.add(
        day=SINCE + timedelta(days=2),
        touchpoint="staff_interaction",
        moment="magic",
        likes=500,
        text=HOSTILE_TEXT,
        url=HOSTILE_URL,
        author={"handle": '"><script>alert(2)</script>', "display_name": "<b onmouseover=alert(3)>Eve</b>"},
    )
    c.many(11, start=SINCE, touchpoint="staff_interaction", moment="magic", likes=3)
    c.many(6, start=SINCE, touchpoint="staff_interaction", moment="neutral")
    # Customer support, the period only.
    c.many(5, start=SINCE, touchpoint="customer_support", moment="misery")
    c.many(5, start=SINCE, touchpoint="customer_support", moment="neutral")
    c.many(3, start=SINCE, touchpoint=None)
    # The previous period.
    c.many(4, start=PREVIOUS, touchpoint="fulfilment", moment="misery")
    c.many(4, start=PREVIOUS, touchpoint="fulfilment", moment="magic")
    c.many(12, start=PREVIOUS, touchpoint="fulfilment", moment="neutral")
    c.many(5, start=PREVIOUS, touchpoint="staff_interaction", moment="misery")
    c.many(5, start=PREVIOUS, touchpoint="staff_interaction", moment="magic")
    # Another brand; and one post of ours after the period, which no figure may count.
    c.many(5, start=SINCE, touchpoint="fulfilment", moment="misery", brand="acme")
    c.add(day=UNTIL, touchpoint="fulfilment", moment="misery")
    return c


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus()


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def store_url(request: pytest.FixtureRequest, tmp_home: Path, corpus: Corpus) -> Iterator[str]:
    """A store holding the corpus: an SQLite file, or the test Elasticsearch under a private prefix."""
    if request.param == "sqlite":
        url = str(tmp_home / "moments.db")
        with open_store(url) as store:
            store.upsert(corpus.posts)
        yield url
        return
    from search.elastic import ElasticStore

    url = request.getfixturevalue("es_url")
    with ElasticStore(url, index_prefix=request.getfixturevalue("es_prefix"), refresh=True) as es:
        es.upsert(corpus.posts)
    yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


# ------------------------------------------------------------------------------ figures


def test_volumes_shares_net_score_and_trend_per_touchpoint(store: Store) -> None:
    card = build_scorecard(store, since=SINCE, until=UNTIL, brand=BRAND)
    rows = {row.touchpoint: row for row in card.touchpoints}
    assert list(rows) == ["fulfilment", "staff_interaction", "customer_support", "other"]  # busiest first

    fulfilment = rows["fulfilment"]
    assert (fulfilment.current.volume, fulfilment.current.misery, fulfilment.current.magic) == (40, 20, 10)
    assert fulfilment.current.misery_share == pytest.approx(0.5)
    assert fulfilment.current.magic_share == pytest.approx(0.25)
    assert fulfilment.current.net_score == pytest.approx(0.25 - 0.5)
    assert (fulfilment.previous.volume, fulfilment.previous.misery, fulfilment.previous.magic) == (20, 4, 4)
    assert fulfilment.trend.net_delta == pytest.approx(-0.25 - 0.0)
    assert fulfilment.trend.volume_delta == 20 and fulfilment.trend.volume_ratio == pytest.approx(1.0)

    staff = rows["staff_interaction"]
    assert (staff.current.volume, staff.current.misery, staff.current.magic) == (20, 2, 12)
    assert staff.current.net_score == pytest.approx(12 / 20 - 2 / 20)
    assert staff.trend.net_delta == pytest.approx(0.5 - 0.0)

    support = rows["customer_support"]
    assert support.current.net_score == pytest.approx(-0.5)
    assert support.previous.volume == 0 and support.trend.net_delta is None and support.trend.volume_ratio is None

    for row in card.touchpoints:
        assert row.current.net_score == pytest.approx(row.current.magic_share - row.current.misery_share)
    assert (card.total.volume, card.total.misery, card.total.magic) == (71, 27, 22)
    assert card.posts == 74  # 3 unclassified posts count as posts, not in any touchpoint
    assert card.previous_since == PREVIOUS and card.previous_until == SINCE
    assert card.bucket == timedelta(days=1)
    # The chart's series add up to the counts of the period, every day present.
    assert [at for at, _ in fulfilment.series["misery"]] == [SINCE + timedelta(days=d) for d in range(7)]
    assert sum(n for _, n in fulfilment.series["misery"]) == 20
    assert sum(n for _, n in fulfilment.series["magic"]) == 10

    # Without a brand, the other brand's misery counts too.
    everyone = {row.touchpoint: row for row in build_scorecard(store, since=SINCE, until=UNTIL).touchpoints}
    assert (everyone["fulfilment"].current.volume, everyone["fulfilment"].current.misery) == (45, 25)


def test_posts_of_two_brands_or_none_count_once_for_every_brand(store: Store) -> None:
    # The per-brand aggregation would count the first twice and the second not at all.
    april = datetime(2026, 4, 6, tzinfo=UTC)
    extra = Corpus(counter=1000)
    extra.add(day=april, touchpoint="fulfilment", moment="misery", brand=BRAND)
    extra.posts[-1].brand = [BRAND, "acme"]
    extra.add(day=april, touchpoint="fulfilment", moment="magic", brand=BRAND)
    extra.posts[-1].brand = []
    extra.add(day=april, touchpoint="staff_interaction", moment="magic", brand="acme")
    store.upsert(extra.posts)
    card = build_scorecard(store, since=april, until=april + timedelta(days=1))
    rows = {row.touchpoint: row.current for row in card.touchpoints}
    assert rows == {"fulfilment": PeriodCounts(2, 1, 1), "staff_interaction": PeriodCounts(1, 0, 1)}
    assert card.bucket == timedelta(hours=1) and len(card.touchpoints[0].series["misery"]) == 24
    ours = build_scorecard(store, since=april, until=april + timedelta(days=1), brand=BRAND)
    assert {row.touchpoint: row.current for row in ours.touchpoints} == {"fulfilment": PeriodCounts(1, 1, 0)}


def test_the_planted_misery_theme_comes_first_and_no_stopword_is_a_theme(store: Store) -> None:
    card = build_scorecard(store, since=SINCE, until=UNTIL, brand=BRAND)
    themes = {row.touchpoint: row.themes for row in card.touchpoints}["fulfilment"]
    terms = [t.term for t in themes]
    assert terms[0] == "lost luggage", themes
    assert themes[0].count == 15 and themes[0].reference_count == 2
    assert "cold food" in terms
    # "lost" and "luggage" alone say nothing "lost luggage" does not.
    assert "lost" not in terms and "luggage" not in terms
    for term in terms:
        assert not any(word in STOPWORDS for word in term.split()), term
        assert not re.search(r"\d|https?|t\.co|northwind", term), term
    assert all(a.g2 >= b.g2 for a, b in pairwise(themes))
    assert not card.sample.lines()  # nothing was capped


def test_best_magic_posts_are_magic_and_ranked_by_confidence_times_engagement(store: Store, corpus: Corpus) -> None:
    card = build_scorecard(store, since=SINCE, until=UNTIL, brand=BRAND, best_magic=3)
    rows = {row.touchpoint: row for row in card.touchpoints}
    best = rows["fulfilment"].best_magic
    assert [p.engagement for p in best] == [80, 40, 12]
    assert all(p.post_id in corpus.magic_ids for row in card.touchpoints for p in row.best_magic)
    assert rows["staff_interaction"].best_magic[0].url == HOSTILE_URL  # kept as data; the renderer refuses to link it
    assert rows["customer_support"].best_magic == ()


def test_log_likelihood_is_dunnings_g2() -> None:
    # A term 10 times in 1,000 target words and 10 times in 10,000 reference words.
    expected_1 = 1000 * 20 / 11000
    expected_2 = 10000 * 20 / 11000
    value = 2 * (10 * math.log(10 / expected_1) + 10 * math.log(10 / expected_2))
    assert log_likelihood(10, 10, 1000, 10000) == pytest.approx(value)
    assert log_likelihood(5, 50, 100, 1000) == pytest.approx(0.0)  # same rate: no surprise
    assert log_likelihood(0, 0, 10, 10) == 0.0
    assert post_terms("I'm SO angry: @northwind lost my bag 3 times https://x.y/z") == {
        "angry",
        "lost",
        "bag",
        "times",
        "lost bag",
        "bag times",
    }
    themes = misery_themes([{"refund"}] * 2, [{"other"}] * 10)
    assert themes == []  # under the minimum count


# ------------------------------------------------------------------------------ the report


def test_report_html_is_self_contained_and_escapes_hostile_text(store: Store, corpus: Corpus) -> None:
    html = render_report(build_scorecard(store, since=SINCE, until=UNTIL, brand=BRAND))
    assert _self_containment_problems(html, corpus) == []


def _self_containment_problems(html: str, corpus: Corpus) -> list[str]:
    """Every way ``html`` fails to be one safe, offline file (empty: none)."""
    urls = set(re.findall(r"""https?://[^\s"'<>]+""", html))
    checks = {
        "not an HTML5 document": html.startswith("<!DOCTYPE html>"),
        "fewer than two SVG charts with titles": html.count("<svg") >= 2 and "<title>" in html,
        "a <script> element": "<script" not in html.lower(),
        "no strict meta CSP": "Content-Security-Policy" in html and "default-src 'none'" in html,
        # Hostile text appears, escaped, and never as markup.
        "script text not escaped": "&lt;script&gt;alert(1)&lt;/script&gt;" in html,
        "img text not escaped": "&lt;img src=x onerror=alert(1)&gt;" in html,
        "an <img> element": "<img" not in html.lower(),
        "author name as markup": "<b onmouseover" not in html and "&lt;b onmouseover=alert(3)&gt;Eve&lt;/b&gt;" in html,
        "a javascript: link": 'href="javascript:' not in html.lower() and "javascript:alert(1)" in html,
        # The only URLs are the posts' own links.
        f"URLs other than post links: {sorted(urls - corpus.post_urls)}": bool(urls) and urls <= corpus.post_urls,
        "a non-https href": all(h.startswith("https://") for h in re.findall(r'href="([^"]*)"', html)),
        "a link without noopener": html.count('rel="noopener noreferrer"') == html.count("<a "),
        "themes or touchpoint labels missing": "lost luggage" in html and "Fulfilment and delivery" in html,
    }
    return [problem for problem, ok in checks.items() if not ok]


def test_moments_report_writes_one_file(store_url: str, corpus: Corpus, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "reports" / "out.html"
    status = main(
        [
            "report",
            "--store",
            store_url,
            "--since",
            "2026-03-08",
            "--until",
            "2026-03-15",
            "--brand",
            BRAND,
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert printed.out.splitlines()[0] == str(out)
    assert "74 posts, 71 classified" in printed.out
    assert [p.name for p in out.parent.iterdir()] == ["out.html"]  # no temporary file left behind
    assert _self_containment_problems(out.read_text(encoding="utf-8"), corpus) == []

    # Relative times count back from --as-of (the default --until).
    again = tmp_path / "relative.html"
    status = main(
        [
            "report",
            "--store",
            store_url,
            "--since",
            "7d",
            "--as-of",
            "2026-03-15T00:00Z",
            "--brand",
            BRAND,
            "-o",
            str(again),
        ]
    )
    assert status == 0 and "74 posts" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("last tuesday", "2026-03-15", "--since 'last tuesday' is not a date"),
        ("2026-03-08", "2026-13-01", "--until '2026-13-01' is not a date"),
        ("2026-03-15", "2026-03-08", "must be before --until"),
        ("2026-03-08", "2026-03-08", "must be before --until"),
    ],
)
def test_bad_dates_exit_2(tmp_home: Path, tmp_path: Path, capsys: Any, since: str, until: str, message: str) -> None:
    out = tmp_path / "out.html"
    status = main(["report", "--since", since, "--until", until, "-o", str(out)])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------ the pieces


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://mastodon.social/@a/1", True),
        ("http://example.com/x?y=1&z=2", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("//evil.example/x", False),
        ("/relative", False),
        ("https://", False),
        (None, False),
    ],
)
def test_only_http_urls_are_linked(url: str | None, linked: bool) -> None:
    assert (safe_url(url) is not None) is linked


def test_charts_escape_names_and_handle_empty_data() -> None:
    at = datetime(2026, 3, 8, tzinfo=UTC)
    line = svg.line_chart({"<b>x</b>": [(at, 1), (at + timedelta(days=1), 3)]}, title="a <title> & more")
    assert line.startswith("<svg") and 'role="img"' in line and "aria-label=" in line
    assert "<b>" not in line and "&lt;b&gt;x&lt;/b&gt;" in line and "a &lt;title&gt; &amp; more" in line
    bars = svg.bar_chart([("worse", -40.0), ("better", 25.0)], title="net")
    assert bars.count("<rect") == 2 and "-40" in bars
    assert "No data" in svg.line_chart({}, title="nothing")
    chart = svg.engagement_chart(
        [(at, 10), (at + timedelta(hours=1), 40)], (120.0, 80.0, 200.0, at + timedelta(hours=6))
    )
    assert "<polygon" in chart and "stroke-dasharray" in chart and "forecast range" in chart
    assert "<polygon" not in svg.engagement_chart([(at, 10)], None)
