"""Which negative posts need a care agent now, how urgently, and why.

A post is flagged when the customer had a bad moment (negative sentiment or a
moment of misery) *and* it is spreading: its engagement velocity (interactions
per hour) is high. Velocity is measured between the two latest engagement
snapshots when the crawler has re-polled the post, else as all engagement so
far over the post's age when it was crawled. Both use the crawl's own clock,
never the wall clock, so re-running on the same data gives the same flags.

A flag is a record of its own (:class:`moments.records.Flag`), one per post. A
re-evaluation never opens a second one: it escalates the open flag (a higher
priority), refreshes its figures, or leaves it alone when nothing changed, each
change a compare-and-set with an event in the flag's log. A flag a person resolved
or dismissed is reopened only when the score has grown by the configured
``reopen_margin``, and the event says so. The thresholds come from ``flag_rules``
in brands.yaml (:class:`moments.config.FlagRules`, with per-brand overrides).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from moments.config import FlagRules
from moments.errors import ConflictError
from moments.records import Flag, Post, Priority, post_flag_id, priority_rank
from search.store import FlagChange, Store

RULE_VERSION = "velocity-v1"

# Two snapshots closer than this say more about polling jitter than about spread.
_MIN_SNAPSHOT_GAP_HOURS = 0.25
# A post seconds old with 3 likes is not "180 per hour": floor the age.
_MIN_AGE_HOURS = 0.5


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


@dataclass(frozen=True)
class Assessment:
    """What the rule says about one post: how urgent, how bad, and why."""

    post_id: str
    brand: str | None
    touchpoint: str | None
    priority: Priority
    score: float
    reasons: list[str]
    velocity_per_hour: float


def evaluate(post: Post, now: datetime, rules: FlagRules | None = None) -> Assessment | None:
    """The flag ``post`` deserves under ``rules``, or ``None``.

    The score multiplies how bad the moment is (severity) by how fast it spreads
    (log of velocity) and, gently, by the author's reach, so a furious post from
    a large account outranks an equally fast one from a small account.

    Args:
        post: A classified post.
        now: The evaluation time (the run's clock); kept for rules that age flags.
        rules: Thresholds to apply.
    """
    del now  # the velocity uses the crawl's own clock; later rules weigh waiting time
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
    return Assessment(
        post_id=post.id,
        brand=post.brand[0] if post.brand else None,
        touchpoint=verdict.touchpoint,
        priority=_priority(score, rules),
        score=score,
        reasons=reasons,
        velocity_per_hour=round(velocity.per_hour, 2),
    )


def new_flag(assessment: Assessment, now: datetime) -> Flag:
    """A version-1 flag for a post the rule flags for the first time."""
    return Flag(
        id=post_flag_id(assessment.post_id),
        kind="post",
        brand=assessment.brand,
        touchpoint=assessment.touchpoint,
        post_ids=[assessment.post_id],
        priority=assessment.priority,
        score=assessment.score,
        reasons=assessment.reasons,
        velocity_per_hour=assessment.velocity_per_hour,
        rule_version=RULE_VERSION,
        opened_at=now,
        updated_at=now,
    )


def reassess(current: Flag, assessment: Assessment, rules: FlagRules) -> FlagChange | None:
    """How a stored flag changes under a fresh assessment (``None``: it does not).

    * Open, acknowledged or responded: the priority only ever rises (``escalated``);
      the figures and reasons are refreshed (``updated``) when they moved.
    * Resolved or dismissed by a person: left alone, unless the score grew by the
      reopen margin, in which case it is reopened at the new priority (``reopened``).
    """
    figures = {
        "score": assessment.score,
        "reasons": assessment.reasons,
        "velocity_per_hour": assessment.velocity_per_hour,
        "rule_version": RULE_VERSION,
    }
    if current.is_closed:
        threshold = current.score * (1 + rules.reopen_margin)
        if assessment.score < threshold or assessment.score <= current.score:
            return None
        reopened = current.with_status("open", current.updated_at).model_copy(
            update={**figures, "priority": assessment.priority}
        )
        note = (
            f"reopened: score {current.score:g} -> {assessment.score:g}, at least {rules.reopen_margin:.0%} above "
            f"the score when it was {current.status} (threshold {threshold:g})"
        )
        return FlagChange(reopened, "reopened", note)
    priority = min(current.priority, assessment.priority, key=priority_rank)
    updated = current.model_copy(update={**figures, "priority": priority})
    if priority != current.priority:
        return FlagChange(updated, "escalated", f"priority {current.priority} -> {priority}")
    if updated.model_dump(exclude={"version", "updated_at"}) == current.model_dump(exclude={"version", "updated_at"}):
        return None
    return FlagChange(updated, "updated")


@dataclass
class FlagRunReport:
    """What one flagging pass did."""

    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return len(self.opened) + len(self.escalated) + len(self.reopened) + len(self.updated)

    def summary(self) -> str:
        return (
            f"{len(self.opened)} opened, {len(self.escalated)} escalated, {len(self.reopened)} reopened, "
            f"{len(self.updated)} updated, {self.unchanged} unchanged"
        )


class _Reassessment:
    """A change function for :meth:`Store.change_flag` that remembers what it decided.

    It may run more than once (a lost compare-and-set is retried on the newer
    version); the last decision is the one that was stored.
    """

    def __init__(self, assessment: Assessment, rules: FlagRules) -> None:
        self.assessment = assessment
        self.rules = rules
        self.action: str | None = None

    def __call__(self, current: Flag) -> FlagChange | None:
        decided = reassess(current, self.assessment, self.rules)
        self.action = decided.action if decided else None
        return decided


RulesFor = Callable[[str | None], FlagRules]


def _rules_lookup(rules: FlagRules | RulesFor | None) -> RulesFor:
    if rules is None:
        default = FlagRules()
        return lambda _brand: default
    if isinstance(rules, FlagRules):
        fixed = rules
        return lambda _brand: fixed
    return rules


def apply_flags(
    store: Store,
    now: datetime,
    rules: FlagRules | RulesFor | None = None,
    *,
    posts: Iterable[Post] | None = None,
) -> FlagRunReport:
    """Evaluate posts and open, escalate, update or reopen their flags in ``store``.

    Args:
        store: Where the posts and flags live.
        now: The run's clock (the opening time of new flags, the time of events).
        rules: One :class:`FlagRules`, or a function from brand to rules
            (``MomentsConfig.rules_for``); default thresholds when ``None``.
        posts: The posts to evaluate (default: every stored post).

    Returns:
        Which flags changed, and how. Re-running on the same data changes nothing.
    """
    rules_for = _rules_lookup(rules)
    actor = f"rule:{RULE_VERSION}"
    report = FlagRunReport()
    for post in posts if posts is not None else store.scan():
        brand = post.brand[0] if post.brand else None
        brand_rules = rules_for(brand)
        assessment = evaluate(post, now, brand_rules)
        if assessment is None:
            continue
        flag_id = post_flag_id(post.id)
        if store.get_flag(flag_id) is None:
            try:
                store.create_flag(new_flag(assessment, now), actor=actor, at=now)
                report.opened.append(flag_id)
                continue
            except ConflictError:
                pass  # another run opened it a moment ago: reassess that one
        reassessment = _Reassessment(assessment, brand_rules)
        store.change_flag(flag_id, reassessment, actor=actor, at=now)
        if reassessment.action is None:
            report.unchanged += 1
        else:
            {"escalated": report.escalated, "reopened": report.reopened}.get(
                reassessment.action, report.updated
            ).append(flag_id)
    return report
