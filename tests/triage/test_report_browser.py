"""The HTML report in a real Chromium: hostile post text stays text, nothing runs, nothing loads.

``test_report.py`` checks the report as a file; here it is opened as a manager opens a
mailed report (a ``file://`` URL) in Debian's Chromium, with classified posts whose
text, author, URL and touchpoint are script injections. Whatever escaping or the
Content-Security-Policy may miss, a browser would run: the test watches for the
effects (``window.__xss``, a dialog, a console error, a page error, a request) and
checks the hostile strings are shown as plain text beside rendered SVG charts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser import browser_fixture, file_url, watch

from moments.records import Classification, Engagement, Post, post_id
from search import open_store
from triage.report import render_report
from triage.scorecard import build_scorecard

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

browser = browser_fixture()

SINCE = datetime(2026, 3, 8, tzinfo=UTC)
UNTIL = datetime(2026, 3, 15, tzinfo=UTC)
BRAND = "northwind"
SCRIPT_TEXT = "<script>window.__xss=1</script>"
IMG_TEXT = '<img src=x onerror="window.__xss=2">'
JS_URL = "javascript:window.__xss=3"
SVG_AUTHOR = '<svg onload="window.__xss=4"></svg>'
# A brand's own touchpoint id is shown as its label (and named in the charts): hostile too.
HOSTILE_TOUCHPOINT = "<iframe src=javascript:alert(5)>"


class _Posts:
    def __init__(self) -> None:
        self.posts: list[Post] = []

    def add(
        self,
        *,
        at: datetime,
        touchpoint: str,
        moment: str,
        text: str,
        url: str | None = None,
        author: dict[str, Any] | None = None,
        likes: int = 0,
    ) -> None:
        n = len(self.posts) + 1
        sentiment = {"misery": "negative", "magic": "positive"}.get(moment, "neutral")
        scores = {"negative": 0.1, "neutral": 0.1, "positive": 0.1} | {sentiment: 0.8}
        self.posts.append(
            Post(
                id=post_id("test", f"b{n}"),
                source="test",
                native_id=f"b{n}",
                url=url if url is not None else f"https://social.example/@u{n}/{n}",
                brand=[BRAND],
                author=author or {"handle": f"@u{n}", "display_name": f"User {n}"},
                text=text,
                created_at=at,
                crawled_at=at + timedelta(minutes=5),
                engagement=Engagement(likes=likes),
                classification=Classification(
                    sentiment=sentiment,
                    sentiment_scores=scores,
                    touchpoint=touchpoint,
                    touchpoint_scores={touchpoint: 0.9},
                    moment=moment,
                    severity=0.7 if moment == "misery" else 0.1,
                    confidence=0.9,
                    model_version="test",
                ),
            )
        )


def _corpus() -> list[Post]:
    posts = _Posts()
    for day in range(14):  # the previous week and the reported one
        at = SINCE - timedelta(days=7) + timedelta(days=day, hours=9 + day % 5)
        posts.add(at=at, touchpoint="fulfilment", moment="misery", text=f"parcel lost again, courier never came {day}")
        posts.add(at=at + timedelta(hours=1), touchpoint="fulfilment", moment="neutral", text=f"parcel update {day}")
        posts.add(at=at + timedelta(hours=2), touchpoint="staff_interaction", moment="magic", text=f"lovely crew {day}")
        if day % 2:
            posts.add(at=at + timedelta(hours=3), touchpoint="customer_support", moment="misery", text=f"on hold {day}")
    at = SINCE + timedelta(days=2, hours=10)
    posts.add(at=at, touchpoint="staff_interaction", moment="magic", text=SCRIPT_TEXT, likes=50)
    posts.add(at=at + timedelta(hours=1), touchpoint="staff_interaction", moment="magic", text=IMG_TEXT, likes=40)
    posts.add(
        at=at + timedelta(hours=2),
        touchpoint="staff_interaction",
        moment="magic",
        text="the crew found my lost passport, thank you",
        url=JS_URL,
        author={"handle": "@fan", "display_name": SVG_AUTHOR},
        likes=30,
    )
    posts.add(at=at + timedelta(hours=3), touchpoint=HOSTILE_TOUCHPOINT, moment="magic", text="odd touchpoint", likes=1)
    posts.add(at=at + timedelta(hours=4), touchpoint=HOSTILE_TOUCHPOINT, moment="misery", text="odd and sad")
    return posts.posts


@pytest.fixture
def report(tmp_home: Path, tmp_path: Path) -> Path:
    """The report of the week as a file, from a real SQLite store holding the corpus."""
    with open_store(str(tmp_path / "moments.db")) as store:
        store.upsert(_corpus())
        scorecard = build_scorecard(store, since=SINCE, until=UNTIL, brand=BRAND)
    path = tmp_path / "report.html"
    path.write_text(render_report(scorecard), encoding="utf-8")
    return path


def test_report_in_chromium_runs_nothing_loads_nothing_and_shows_hostile_text(
    browser: Browser, report: Path, tmp_path: Path
) -> None:
    url = file_url(report)
    page = browser.new_page()
    try:
        events = watch(page)
        response = page.goto(url, wait_until="load")
        assert response is None or response.ok
        page.wait_for_timeout(200)  # a late onerror / onload would have fired by now

        # Nothing ran: no marker, no dialog, no error, not even a CSP violation (nothing tried to run).
        assert page.evaluate("() => typeof window.__xss") == "undefined"
        assert events.dialogs == []
        assert events.errors == []
        assert events.console_of("error", "warning") == []
        assert page.locator("script, iframe, object, embed").count() == 0
        assert page.locator("img").count() == 0
        assert page.locator("[onload], [onerror]").count() == 0

        # Nothing loaded but the file itself.
        assert events.requests == [url]

        # The hostile strings are there, as text a manager can read.
        text = page.locator("body").inner_text()
        for hostile in (SCRIPT_TEXT, IMG_TEXT, JS_URL, SVG_AUTHOR, HOSTILE_TOUCHPOINT):
            assert hostile in text, hostile
        assert page.get_by_text(SCRIPT_TEXT).first.is_visible()
        assert page.get_by_text(IMG_TEXT).first.is_visible()
        # ... and the javascript: URL is shown, never linked; every link goes to a post over http(s).
        hrefs = page.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs, "the normal posts are linked"
        assert all(href.startswith("https://social.example/") for href in hrefs), hrefs
        assert page.locator("a[href^='https']").first.get_attribute("rel") == "noopener noreferrer"

        # The charts render: inline SVG with a real size on screen.
        charts = page.locator("svg")
        assert charts.count() >= 1
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50, box
        assert page.locator("svg *").count() > 10  # bars, lines, axes, labels

        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > 10_000
        assert events.requests == [url]  # still nothing else, after scrolling the whole page
    finally:
        page.close()
