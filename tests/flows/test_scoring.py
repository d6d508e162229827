"""Flagging v2: need before reach, spread normalised per source and brand, bursts against the brand's rhythm."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.bursts import apply_bursts, detect_bursts, robust_z
from flows.flagging import VelocityBaselines, apply_flags, evaluate, vulnerability_words
from moments.config import BurstRules, ConfigError, FlagRules, parse_config
from moments.records import PRIORITIES, Author, Classification, Engagement, EngagementSnapshot, Post, priority_rank
from search import Store, open_store

NOW = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)


def _verdict(severity: float = 0.8, touchpoint: str = "fulfilment", moment: str = "misery") -> Classification:
    return Classification(
        sentiment="negative" if moment == "misery" else "positive",
        sentiment_scores={"negative": 0.9, "neutral": 0.05, "positive": 0.05},
        touchpoint=touchpoint,
        touchpoint_scores={touchpoint: 1.0},
        moment=moment,
        severity=severity,
        model_version="test",
    )


_ids = itertools.count(1)


def _post(
    *,
    source: str = "mastodon",
    likes: int = 100,
    age_hours: float = 1.0,
    followers: int = 0,
    severity: float = 0.8,
    text: str = "Northwind lost my bag and nobody answers",
    handle: str | None = None,
    brand: str = "Northwind Air",
    touchpoint: str = "fulfilment",
    moment: str = "misery",
    created_at: datetime | None = None,
    history: list[EngagementSnapshot] | None = None,
) -> Post:
    native = str(next(_ids))
    created = created_at or NOW - timedelta(hours=age_hours)
    return Post(
        id=f"{source}:{native}",
        source=source,
        native_id=native,
        brand=[brand],
        text=text,
        author=Author(handle=handle or f"@user{native}", followers=followers),
        created_at=created,
        crawled_at=max(created, NOW - timedelta(minutes=1)),
        engagement=Engagement(likes=likes),
        engagement_history=history or [],
        classification=_verdict(severity, touchpoint, moment),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "moments.db")) as opened:
        yield opened


# --------------------------------------------------------------------------- need before reach


def test_follower_count_alone_moves_a_flag_at_most_one_priority_level() -> None:
    rules = FlagRules(min_velocity=0)
    moved = 0
    for severity, likes, age in itertools.product((0.1, 0.4, 0.7, 1.0), (1, 30, 300, 3000, 30000), (0.5, 2, 12)):
        nobody = evaluate(_post(likes=likes, age_hours=age, severity=severity, followers=0), NOW, rules)
        celebrity = evaluate(_post(likes=likes, age_hours=age, severity=severity, followers=10**9), NOW, rules)
        assert nobody is not None and celebrity is not None
        levels = priority_rank(nobody.priority) - priority_rank(celebrity.priority)
        assert 0 <= levels <= 1, (severity, likes, age, nobody.priority, celebrity.priority)
        moved += levels
    assert moved > 0  # reach does count, just never more than one level


def test_a_reach_cap_wider_than_a_priority_band_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"reach_cap 2\.5 is wider than the narrowest gap"):
        parse_config({"flag_rules": {"reach_cap": 2.5}})
    assert parse_config({"flag_rules": {"reach_cap": 2.0}}).flag_rules.reach_cap == 2.0


def test_a_vulnerable_customer_is_flagged_before_the_post_spreads_and_outranks_reach() -> None:
    quiet_text = "Northwind broke my wheelchair and I am stuck at the gate"
    vulnerable = evaluate(_post(likes=0, age_hours=1, text=quiet_text), NOW)
    assert vulnerable is not None and "safety/vulnerability: 'wheelchair'" in vulnerable.reasons
    assert evaluate(_post(likes=0, age_hours=1), NOW) is None  # the same, without the word: not spreading
    # At the same spread, a hurt customer outranks a complaint from a million followers.
    hurt = evaluate(_post(likes=25, age_hours=1, text=quiet_text), NOW)
    famous = evaluate(_post(likes=25, age_hours=1, followers=2_000_000), NOW)
    assert hurt is not None and famous is not None and hurt.score > famous.score


def test_vulnerability_terms_match_words_phrases_and_prefixes_only() -> None:
    terms = ["wheelchair", "injur*", "my child", "hurt"]
    assert vulnerability_words("My CHILD was Injured; wheelchair gone", terms) == ["my child", "injured", "wheelchair"]
    assert vulnerability_words("hurtful pricing", terms) == []  # no prefix without a *


def test_touchpoint_criticality_and_waiting_raise_need() -> None:
    rules = FlagRules(touchpoint_criticality={"fulfilment": 1.5})
    post = _post(likes=200, age_hours=1)
    plain = evaluate(post, NOW)
    critical = evaluate(post, NOW, rules)
    later = evaluate(post, NOW + timedelta(hours=11))
    assert plain is not None and critical is not None and later is not None
    assert critical.points["severity"] == pytest.approx(1.5 * plain.points["severity"])
    assert "touchpoint fulfilment (critical, x1.5)" in critical.reasons
    assert later.points["waiting"] == pytest.approx(0.5) and later.score > plain.score
    assert "waiting 12.0 h since posted" in later.reasons


def test_acceleration_is_seen_in_the_snapshots() -> None:
    snaps = [
        EngagementSnapshot(at=NOW - timedelta(hours=2), likes=0),
        EngagementSnapshot(at=NOW - timedelta(hours=1), likes=30),
        EngagementSnapshot(at=NOW, likes=130),
    ]
    steady = [EngagementSnapshot(at=s.at, likes=n) for s, n in zip(snaps, (0, 100, 200), strict=True)]
    faster = evaluate(_post(likes=130, age_hours=3, history=snaps), NOW)
    even = evaluate(_post(likes=200, age_hours=3, history=steady), NOW)
    assert faster is not None and even is not None
    assert faster.points["accelerating"] == 0.5 and even.points["accelerating"] == 0
    assert "accelerating (30/h -> 100/h)" in faster.reasons


def test_spread_is_normalised_per_source_and_brand() -> None:
    # 60 interactions/h is a lot on this brand's Mastodon, routine on its Reddit.
    posts = [_post(source="mastodon", likes=n, age_hours=1) for n in range(1, 41)]
    posts += [_post(source="reddit", likes=100 + 20 * n, age_hours=1) for n in range(40)]
    baselines = VelocityBaselines.build(posts, NOW)
    on_mastodon = evaluate(_post(source="mastodon", likes=60), NOW, context=_context(baselines))
    on_reddit = evaluate(_post(source="reddit", likes=60), NOW, context=_context(baselines))
    assert on_mastodon is not None and on_reddit is not None
    assert on_mastodon.points["spread"] == pytest.approx(3.0) and on_reddit.points["spread"] == 0
    spread_reason = on_mastodon.reasons[1]
    assert "σ vs this brand's Mastodon baseline (p100)" in spread_reason
    # A brand with too few posts on a source falls back to the source across brands.
    other = evaluate(_post(source="mastodon", likes=60, brand="Contoso"), NOW, context=_context(baselines))
    assert other is not None and "vs the Mastodon baseline" in other.reasons[1]


def _context(baselines: VelocityBaselines):  # type: ignore[no-untyped-def]
    from flows.flagging import Context

    return Context(baselines)


def test_baselines_survive_a_save_and_load(tmp_path: Path) -> None:
    baselines = VelocityBaselines.build([_post(likes=n) for n in range(30)], NOW)
    baselines.save(tmp_path / "b.json")
    loaded = VelocityBaselines.load(tmp_path / "b.json")
    assert loaded == baselines
    assert VelocityBaselines.load(tmp_path / "missing.json") is None


def test_repeat_complaints_from_one_customer_are_counted_from_the_store(store: Store) -> None:
    earlier = [
        _post(handle="@jo", likes=0, created_at=NOW - timedelta(days=d), text="Northwind still has my bag")
        for d in (1, 3)
    ]
    too_old = _post(handle="@jo", likes=0, created_at=NOW - timedelta(days=30))
    someone_else = _post(handle="@kim", likes=0, created_at=NOW - timedelta(days=1))
    latest = _post(handle="@jo", likes=300, age_hours=1)
    store.upsert([*earlier, too_old, someone_else, latest])
    report = apply_flags(store, NOW, FlagRules(), posts=[latest])
    flag = store.get_flag(f"post:{latest.id}")
    assert report.opened == [f"post:{latest.id}"] and flag is not None
    assert "third complaint from this customer in 7 d" in flag.reasons
    alone = evaluate(latest, NOW)
    assert alone is not None and flag.score == pytest.approx(alone.score + 1.5)


def test_every_priority_is_reachable_with_default_rules() -> None:
    seen = set()
    grid = itertools.product((0.1, 0.5, 1.0), (25, 300, 30000), (0, 10**6), (0, 30))
    for severity, likes, followers, hours_later in grid:
        text = "Northwind hurt my child" if severity == 1.0 else "Northwind lost my bag"
        post = _post(likes=likes, severity=severity, followers=followers, text=text)
        result = evaluate(post, NOW + timedelta(hours=hours_later))
        if result is not None:
            seen.add(result.priority)
    assert seen == set(PRIORITIES)


# --------------------------------------------------------------------------- bursts


def test_robust_z_uses_median_and_mad_with_a_poisson_floor() -> None:
    z, median = robust_z(12, [2, 6, 3, 8, 4, 2, 5])
    assert median == 4 and z == pytest.approx((12 - 4) / (1.4826 * 2))
    quiet, _ = robust_z(12, [2, 3, 2, 4, 3, 2, 3])  # MAD 1 is below Poisson noise: sqrt(3)
    assert quiet == pytest.approx(9 / 3**0.5)
    flat, _ = robust_z(3, [0, 0, 0, 0, 0, 0, 0])  # a flat, quiet baseline: scale floored at 1
    assert flat == pytest.approx(3.0)


def _misery_at(when: datetime, n: int, touchpoint: str = "fulfilment", brand: str = "Northwind Air") -> list[Post]:
    return [
        _post(created_at=when + timedelta(minutes=i), likes=0, touchpoint=touchpoint, brand=brand) for i in range(n)
    ]


def test_a_burst_opens_one_flag_and_a_continuing_burst_escalates_it(store: Store) -> None:
    rules = BurstRules(min_count=5, min_z=3.0)
    history = [p for day in range(1, 8) for p in _misery_at(NOW - timedelta(days=day, minutes=50), 2)]
    store.upsert(history + _misery_at(NOW - timedelta(minutes=50), 9))
    bursts, report = apply_bursts(store, NOW, rules)
    assert [(b.brand, b.touchpoint, b.count) for b in bursts] == [("Northwind Air", "fulfilment", 9)]
    assert len(report.opened) == 1 and report.opened[0].startswith("burst:Northwind Air:fulfilment:")
    flag = store.get_flag(report.opened[0])
    assert flag is not None and flag.kind == "burst" and len(flag.post_ids) == 9 and flag.priority == "P2"
    # (9 - 2) / sqrt(2): the MAD of a flat baseline is 0, so the Poisson floor sets the scale.
    assert flag.reasons[0] == (
        "burst: 9 misery posts about fulfilment in the last 1 h, "
        "5.0σ above the same hours on the past 7 days (median 2)"
    )

    store.upsert(_misery_at(NOW - timedelta(minutes=9), 20))
    later = NOW + timedelta(minutes=10)
    bursts, report = apply_bursts(store, later, rules)
    assert report.opened == [] and report.escalated == [flag.id]
    escalated = store.get_flag(flag.id)
    # 9 + 19 new ones: the 20th was posted at 21:10, the end of the window (excluded).
    assert escalated is not None and escalated.priority == "P1" and len(escalated.post_ids) == 28
    assert store.count_flags(kind="burst") == 1


def test_daily_seasonality_is_not_a_burst(store: Store) -> None:
    # Every evening at 20:00-21:00 there are ~10 misery posts: tonight's 11 are normal.
    rules = BurstRules(min_count=5, min_z=3.0)
    history = [p for day in range(1, 8) for p in _misery_at(NOW - timedelta(days=day, minutes=55), 9 + day % 3)]
    store.upsert(history + _misery_at(NOW - timedelta(minutes=55), 11))
    assert detect_bursts(store, NOW, rules) == []
    # ... while a plain "last hour against the previous 12" would have fired:
    twelve_before = sum(1 for p in history if NOW - timedelta(hours=13) <= p.created_at < NOW - timedelta(hours=1))  # type: ignore[operator]
    assert twelve_before == 0


def test_too_few_posts_are_never_a_burst(store: Store) -> None:
    store.upsert(_misery_at(NOW - timedelta(minutes=30), 4))
    assert detect_bursts(store, NOW, BurstRules(min_count=5)) == []
