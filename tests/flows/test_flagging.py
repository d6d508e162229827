"""The flagging rule: negative and spreading gets flagged, with priority and reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.flagging import engagement_velocity, evaluate, new_flag, reassess
from moments.config import FlagRules
from moments.records import Author, Classification, Engagement, EngagementSnapshot, Post

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def _classification(sentiment: str = "negative", moment: str = "misery", negative: float = 0.9) -> Classification:
    rest = (1 - negative) / 2
    return Classification(
        sentiment=sentiment,
        sentiment_scores={"negative": negative, "neutral": rest, "positive": rest},
        touchpoint="fulfilment",
        touchpoint_scores={"fulfilment": 0.8, "other": 0.2},
        moment=moment,
        severity=0.8,
        model_version="test",
    )


def _post(
    native_id: str = "1",
    *,
    likes: int = 0,
    shares: int = 0,
    age_hours: float | None = 2.0,
    followers: int = 100,
    classification: Classification | None = None,
    history: list[EngagementSnapshot] | None = None,
) -> Post:
    return Post(
        id=f"mastodon:{native_id}",
        source="mastodon",
        native_id=native_id,
        text="My flight was cancelled and nobody told me",
        author=Author(handle="@a", followers=followers),
        created_at=None if age_hours is None else NOW - timedelta(hours=age_hours),
        crawled_at=NOW,
        engagement=Engagement(likes=likes, shares=shares),
        engagement_history=history or [],
        classification=classification if classification is not None else _classification(),
    )


def test_velocity_since_posted_uses_crawl_clock_not_wall_clock() -> None:
    velocity = engagement_velocity(_post(likes=300, shares=100, age_hours=4))
    assert velocity is not None
    assert velocity.per_hour == pytest.approx(100.0)
    assert velocity.method == "since posted"


def test_velocity_between_repolls_measures_recent_growth() -> None:
    history = [
        EngagementSnapshot(at=NOW - timedelta(hours=2), likes=100),
        EngagementSnapshot(at=NOW - timedelta(hours=1), likes=400),
        EngagementSnapshot(at=NOW, likes=1000),
    ]
    velocity = engagement_velocity(_post(likes=1000, age_hours=30, history=history))
    assert velocity is not None
    assert velocity.per_hour == pytest.approx(600.0)
    assert velocity.method == "between re-polls"


def test_snapshots_at_the_same_instant_fall_back_to_age() -> None:
    # A replayed corpus re-polled at the same clock gives duplicate snapshot times.
    history = [EngagementSnapshot(at=NOW, likes=200), EngagementSnapshot(at=NOW, likes=200)]
    velocity = engagement_velocity(_post(likes=200, age_hours=2, history=history))
    assert velocity is not None
    assert velocity.per_hour == pytest.approx(100.0)


def test_unknown_creation_time_gives_no_velocity_and_no_flag() -> None:
    post = _post(likes=5000, age_hours=None)
    assert engagement_velocity(post) is None
    assert evaluate(post, NOW) is None


def test_negative_and_spreading_is_flagged_with_reasons() -> None:
    flag = evaluate(_post(likes=2000, shares=500, age_hours=3, followers=50_000), NOW)
    assert flag is not None
    assert flag.post_id == "mastodon:1" and flag.touchpoint == "fulfilment"
    assert flag.priority in {"P1", "P2"}
    assert flag.velocity_per_hour == pytest.approx(2500 / 3, rel=1e-3)
    joined = " ".join(flag.reasons)
    assert "misery" in joined and "833 interactions/h" in joined and "author reach 50k (capped)" in joined
    assert flag.points["followers"] == FlagRules().reach_cap
    assert flag.reasons[-1].startswith(f"score {flag.score:.2f} = need ")


def test_slow_negative_post_is_not_flagged() -> None:
    assert evaluate(_post(likes=10, age_hours=10), NOW) is None


def test_positive_viral_post_is_not_flagged() -> None:
    happy = _classification(sentiment="positive", moment="magic", negative=0.02)
    assert evaluate(_post(likes=5000, age_hours=1, classification=happy), NOW) is None


def test_unclassified_post_is_not_flagged() -> None:
    post = _post(likes=5000).model_copy(update={"classification": None})
    assert evaluate(post, NOW) is None


def test_bigger_reach_and_speed_rank_higher() -> None:
    small = evaluate(_post(likes=100, age_hours=2, followers=10), NOW)
    big = evaluate(_post(likes=5000, age_hours=2, followers=200_000), NOW)
    assert small is not None and big is not None
    assert big.score > small.score
    assert big.priority < small.priority or big.priority == "P1"


def test_thresholds_are_configurable() -> None:
    strict = FlagRules(min_velocity=10_000)
    assert evaluate(_post(likes=2000, age_hours=1), NOW, strict) is None


def test_reassessing_an_agents_flag_keeps_their_work_and_only_raises_priority() -> None:
    earlier = NOW - timedelta(hours=5)
    quiet = evaluate(_post(likes=60, age_hours=1), earlier, FlagRules(min_velocity=1))
    assert quiet is not None
    acknowledged = new_flag(quiet, earlier).with_status("acknowledged", earlier).model_copy(update={"assignee": "dana"})

    critical = FlagRules(touchpoint_criticality={"fulfilment": 1.5})
    fresh = evaluate(_post(likes=30_000, age_hours=1, followers=90_000), NOW, critical)
    assert fresh is not None and fresh.priority == "P1" != acknowledged.priority
    change = reassess(acknowledged, fresh, FlagRules())
    assert change is not None and change.action == "escalated"
    assert change.flag.status == "acknowledged" and change.flag.assignee == "dana"
    assert change.flag.opened_at == earlier and change.flag.score == fresh.score
    assert change.note == f"priority {acknowledged.priority} -> P1"

    # A weaker reading later never lowers the priority, and the same reading changes nothing.
    weaker = reassess(change.flag, quiet, FlagRules())
    assert weaker is not None and weaker.action == "updated" and weaker.flag.priority == "P1"
    assert reassess(change.flag, fresh, FlagRules()) is None


def test_a_closed_flag_reopens_only_past_the_configured_margin() -> None:
    first = evaluate(_post(likes=300, age_hours=1), NOW)
    assert first is not None
    resolved = new_flag(first, NOW).with_status("resolved", NOW)
    assert resolved.resolved_at == NOW
    hotter = evaluate(_post(likes=3000, age_hours=1), NOW)
    assert hotter is not None and hotter.score > first.score

    assert reassess(resolved, hotter, FlagRules(reopen_margin=10.0)) is None
    change = reassess(resolved, hotter, FlagRules(reopen_margin=0.03))
    assert change is not None and change.action == "reopened"
    assert change.flag.status == "open" and change.flag.resolved_at is None
    assert change.note is not None and "3%" in change.note


def test_an_unsure_touchpoint_shows_both_candidates_in_the_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Top two touchpoints within the model's unsure margin: the flag names both, with their scores."""
    artifacts = tmp_path
    (artifacts / "manifest.json").write_text(json.dumps({"touchpoint": {"unsure_margin": 0.2}}), encoding="utf-8")
    monkeypatch.setenv("MOMENTS_ARTIFACTS", str(artifacts))
    close = _classification().model_copy(
        update={"touchpoint_scores": {"fulfilment": 0.41, "waiting_queues": 0.37, "other": 0.22}}
    )
    clear = _classification()
    unsure = evaluate(_post(likes=2000, shares=500, classification=close), NOW)
    sure = evaluate(_post(likes=2000, shares=500, classification=clear), NOW)
    assert unsure is not None and sure is not None
    assert "touchpoint fulfilment 0.41 or waiting_queues 0.37 (unsure)" in unsure.reasons
    assert "touchpoint fulfilment" in sure.reasons
