"""The virality forecast in the flags: a flag escalates when the forecast crosses a threshold, before the counts do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.flagging import RULE_VERSION, apply_flags, evaluate
from flows.tasks import merge_stored
from moments.config import FlagRules
from moments.records import Author, Classification, Engagement, EngagementSnapshot, Post, Reshare
from search import Store, open_store

POSTED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RULES = FlagRules(viral_thresholds={"mastodon": 200})


def _post(minutes: float, reshares: list[Reshare], *, likes: int = 30) -> Post:
    """A complaint ``minutes`` old, re-polled every 10 minutes: modest counts, and who reshared it."""
    seen_at = POSTED + timedelta(minutes=minutes)
    shares = len(reshares)
    history = [
        EngagementSnapshot(
            at=POSTED + timedelta(minutes=m),
            likes=likes,
            shares=sum(r.at <= POSTED + timedelta(minutes=m) for r in reshares),
        )
        for m in range(10, int(minutes) + 1, 10)
    ]
    return Post(
        id="mastodon:900",
        source="mastodon",
        native_id="900",
        brand=["Northwind Air"],
        text="Northwind Air cancelled my flight and the desk sent me away",
        author=Author(handle="@ana", followers=2_000),
        created_at=POSTED,
        crawled_at=seen_at,
        engagement=Engagement(likes=likes, shares=shares),
        engagement_history=history,
        reshares=reshares,
        classification=Classification(
            sentiment="negative",
            sentiment_scores={"negative": 0.92, "neutral": 0.05, "positive": 0.03},
            touchpoint="fulfilment",
            touchpoint_scores={"fulfilment": 0.9},
            moment="misery",
            severity=0.7,
            model_version="test",
        ),
    )


def _reshares(count: int, start_minute: float, every_seconds: float, followers: int) -> list[Reshare]:
    start = POSTED + timedelta(minutes=start_minute)
    return [
        Reshare(handle=f"@r{start_minute:g}-{i}", followers=followers, at=start + timedelta(seconds=every_seconds * i))
        for i in range(1, count + 1)
    ]


SLOW = _reshares(10, 0, 180, 300)  # ten reshares over the first half hour
FAST = _reshares(60, 30, 10, 1_000)  # then sixty in ten minutes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "moments.db")) as opened:
        yield opened


def test_a_flag_escalates_when_the_forecast_crosses_a_threshold_before_the_counts_do(store: Store) -> None:
    early = _post(30, SLOW)
    store.upsert([early])
    first = apply_flags(store, early.crawled_at, RULES, posts=[early])
    assert first.opened == ["post:mastodon:900"]
    opened = store.get_flag("post:mastodon:900")
    assert opened is not None and opened.rule_version == RULE_VERSION
    assert any(reason.startswith("forecast ") for reason in opened.reasons)

    later = _post(40, SLOW + FAST)
    store.upsert([later])
    assessment = evaluate(later, later.crawled_at, RULES)
    assert assessment is not None
    forecast_reason = next(r for r in assessment.reasons if r.startswith("forecast "))
    assert " reposts in 24 h (80% range " in forecast_reason and "p_viral" in forecast_reason
    assert assessment.points["forecast"] > 0
    # The counts alone (the score without the forecast's points) stay in the old band: the forecast lifts it.
    threshold = {"P1": RULES.p1_score, "P2": RULES.p2_score, "P3": RULES.p3_score}[assessment.priority]
    assert assessment.score - assessment.points["forecast"] < threshold <= assessment.score

    second = apply_flags(store, later.crawled_at, RULES, posts=[later])
    assert second.escalated == ["post:mastodon:900"]
    escalated = store.get_flag("post:mastodon:900")
    assert escalated is not None and escalated.priority == assessment.priority != opened.priority
    assert store.flag_events("post:mastodon:900")[-1].action == "escalated"


def test_a_forecast_raises_a_flag_but_never_opens_one_below_the_brands_velocity_floor() -> None:
    post = _post(40, SLOW + FAST)
    assessment = evaluate(post, post.crawled_at, RULES)
    assert assessment is not None and assessment.points["forecast"] > 0
    strict = RULES.model_copy(update={"min_velocity": 10_000.0})
    assert evaluate(post, post.crawled_at, strict) is None


def test_a_recrawl_without_resharers_keeps_the_stored_ones_with_their_first_seen_time() -> None:
    stored = _post(30, SLOW)
    recrawled = _post(40, [])
    newer = [Reshare(handle=SLOW[0].handle, followers=999, at=POSTED + timedelta(minutes=40)), *_reshares(1, 39, 1, 50)]
    merged, changed = merge_stored(recrawled, stored)
    assert [r.handle for r in merged.reshares] == [r.handle for r in SLOW]
    merged, changed = merge_stored(_post(40, newer), stored)
    assert changed
    first = next(r for r in merged.reshares if r.handle == SLOW[0].handle)
    assert first.at == SLOW[0].at and first.followers == SLOW[0].followers
    assert len(merged.reshares) == len(SLOW) + 1
