"""Which negative posts need a care agent now, how urgently, and why.

A post is flagged when the customer had a bad moment (negative sentiment or a
moment of misery) *and* it is spreading: its engagement velocity (interactions
per hour) is high. Velocity is measured between the two latest engagement
snapshots when the crawler has re-polled the post, else as all engagement so
far over the post's age when it was crawled. Both use the crawl's own clock,
never the wall clock, so re-running on the same data gives the same flags.

The rule is deliberately simple and fully explained in each flag's
``reasons``; later work adds richer signals (forecasts, reach growth).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from crawlers.schema import Flag, Post, Priority
from search.store import Store

RULE_VERSION = "velocity-v1"

# Two snapshots closer than this say more about polling jitter than about spread.
_MIN_SNAPSHOT_GAP_HOURS = 0.25
# A post seconds old with 3 likes is not "180 per hour": floor the age.
_MIN_AGE_HOURS = 0.5


@dataclass(frozen=True)
class FlagRules:
    """Thresholds of the flagging rule (configurable per deployment).

    Attributes:
        min_velocity: Interactions per hour a negative post needs to be flagged.
        min_negative_probability: Sentiment confidence needed when the moment is not misery.
        p1_score: Score at or above which a flag is P1 (drop everything).
        p2_score: Score at or above which a flag is P2.
        p3_score: Score at or above which a flag is P3; below is P4.
    """

    min_velocity: float = 20.0
    min_negative_probability: float = 0.5
    p1_score: float = 6.0
    p2_score: float = 4.0
    p3_score: float = 2.5


@dataclass(frozen=True)
class Velocity:
    """Interactions per hour, and how it was measured (for the flag's reasons)."""

    per_hour: float
    interactions: int
    hours: float
    method: str


def engagement_velocity(post: Post) -> Velocity | None:
    """Interactions per hour for ``post``, or ``None`` when it cannot be known.

    Args:
        post: A crawled post; its snapshots and ``crawled_at`` are the clock.

    Returns:
        The velocity between the two latest snapshots at least 15 minutes apart,
        else total engagement over the post's age at crawl time; ``None`` when
        the post has no creation time and no usable snapshots.
    """
    history = sorted(post.engagement_history, key=lambda s: s.at)
    latest = history[-1] if history else None
    if latest is not None:
        for earlier in reversed(history[:-1]):
            hours = (latest.at - earlier.at).total_seconds() / 3600
            if hours >= _MIN_SNAPSHOT_GAP_HOURS:
                gained = latest.total() - earlier.total()
                return Velocity(max(gained, 0) / hours, max(gained, 0), hours, "between re-polls")
    if post.created_at is None:
        return None
    observed_at = latest.at if latest is not None else post.crawled_at
    interactions = latest.total() if latest is not None else post.engagement.total()
    hours = max((observed_at - post.created_at).total_seconds() / 3600, _MIN_AGE_HOURS)
    return Velocity(interactions / hours, interactions, hours, "since posted")


def _priority(score: float, rules: FlagRules) -> Priority:
    if score >= rules.p1_score:
        return "P1"
    if score >= rules.p2_score:
        return "P2"
    if score >= rules.p3_score:
        return "P3"
    return "P4"


def evaluate(post: Post, now: datetime, rules: FlagRules | None = None) -> Flag | None:
    """The flag ``post`` deserves under ``rules``, or ``None``.

    The score multiplies how bad the moment is (severity) by how fast it spreads
    (log of velocity) and, gently, by the author's reach, so a furious post from
    a large account outranks an equally fast one from a small account.

    Args:
        post: A classified post.
        now: The flag's timestamp (the run's clock).
        rules: Thresholds to apply.
    """
    rules = rules or FlagRules()
    verdict = post.classification
    if verdict is None:
        return None
    negative_p = verdict.sentiment_scores.get("negative", 0.0)
    is_bad_moment = verdict.moment == "misery" or (
        verdict.sentiment == "negative" and negative_p >= rules.min_negative_probability
    )
    if not is_bad_moment:
        return None
    velocity = engagement_velocity(post)
    if velocity is None or velocity.per_hour < rules.min_velocity:
        return None

    followers = post.author.followers or 0
    reach_boost = 1 + 0.25 * math.log10(1 + followers)
    score = round(max(verdict.severity, 0.1) * math.log1p(velocity.per_hour) * reach_boost, 3)
    reasons = [
        f"{'moment of misery' if verdict.moment == 'misery' else 'negative'} "
        f"(negative p={negative_p:.2f}, severity {verdict.severity:.2f})",
        f"spreading at {velocity.per_hour:,.0f} interactions/hour "
        f"({velocity.interactions:,} in {velocity.hours:.1f} h, {velocity.method})",
        f"touchpoint: {verdict.touchpoint}",
    ]
    if followers:
        reasons.append(f"author reach: {followers:,} followers")
    return Flag(
        priority=_priority(score, rules),
        score=score,
        reasons=reasons,
        velocity_per_hour=round(velocity.per_hour, 2),
        flagged_at=now,
        rule_version=RULE_VERSION,
    )


def merge_flag(existing: Flag | None, fresh: Flag) -> Flag:
    """Update a stored flag with a fresh evaluation without undoing a care agent's work.

    An acknowledged, resolved or dismissed flag keeps its status and first
    flagged time; its numbers and reasons are refreshed so the queue shows the
    current spread.
    """
    if existing is None:
        return fresh
    return fresh.model_copy(update={"status": existing.status, "flagged_at": existing.flagged_at})


def flag_posts(posts: Iterable[Post], now: datetime, rules: FlagRules | None = None) -> dict[str, Flag]:
    """Evaluate many posts; returns ``{post_id: flag}`` for those that need one (merged with any stored flag)."""
    flags: dict[str, Flag] = {}
    for post in posts:
        fresh = evaluate(post, now, rules)
        if fresh is not None:
            flags[post.id] = merge_flag(post.flag, fresh)
    return flags


def apply_flags(store: Store, now: datetime, rules: FlagRules | None = None) -> dict[str, Flag]:
    """Flag every stored post that needs it and write the flags back; returns what was set."""
    flags = flag_posts(store.scan(), now, rules)
    for post_id, flag in flags.items():
        store.set_flag(post_id, flag)
    return flags
