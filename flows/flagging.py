"""Which negative posts need a care agent now, how urgently, and why.

A post is flagged when the customer had a bad moment (negative sentiment or a
moment of misery) *and* either it is spreading (engagement velocity, interactions
per hour, at least ``min_velocity``) or it names a safety, health or vulnerability
concern (``vulnerability_terms``): a hurt customer needs an answer before the
post spreads.

**The score is a sum of points a care lead can read back** (``Assessment.points``):

* *need*, the customer's situation:
  ``severity`` (up to 3, times the touchpoint's configured criticality),
  ``vulnerable`` (+1.5 for a safety/health/vulnerability word),
  ``repeat`` (+0.75 per earlier complaint by the same customer within
  ``repeat_window``, up to +1.5) and ``waiting`` (up to +1 after a day without
  an answer);
* *reach*, how far the moment is spreading:
  ``spread`` (up to 3: the velocity's percentile among recent posts of the same
  source and brand, since 50 reposts mean more on Mastodon than on Reddit),
  ``accelerating`` (+0.5 when the latest interval is 25% faster than the one
  before), ``followers`` (0.25 per decade of followers, capped at
  ``reach_cap``) and ``forecast`` (up to 2 as the virality forecast's ``p_viral``
  rises from 0.5 to 1: :mod:`models.forecast`, the chance of reaching the
  source's ``viral_threshold`` within ``forecast_horizon``).

The forecast is how a flag escalates *before* the counts do: a post whose early
reshares come from well-followed accounts, fast, gets its forecast points (and a
reason such as "forecast 3,800 reposts in 24 h (80% range 2,100–6,000; p_viral
0.82)") while its velocity is still modest. It never opens a flag below
``min_velocity`` (the brand's floor); it raises the ones above it.

``reach_cap`` may not exceed the narrowest gap between priority thresholds
(:class:`moments.config.FlagRules` checks it), so the author's follower count alone
can move a flag at most one priority level: need comes before reach.

Velocity is measured between the two latest engagement snapshots when the crawler
has re-polled the post, else as all engagement so far over the post's age when it
was crawled. Both use the crawl's own clock; only ``waiting`` uses the run's clock
(``now``), so re-running on the same data at the same time gives the same flags.

A flag is a record of its own (:class:`moments.records.Flag`), one per post (or one
per burst, see :mod:`flows.bursts`). A re-evaluation never opens a second one: it
escalates the open flag (a higher priority), refreshes its figures, or leaves it
alone when nothing changed, each change a compare-and-set with an event in the
flag's log. A flag a person resolved or dismissed is reopened only when the score
has grown by the configured ``reopen_margin``, and the event says so.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from models.engagement import Velocity, engagement_velocity
from models.forecast import Forecast, forecast_post
from models.unsure import touchpoint_alternative
from moments.config import FlagRules
from moments.errors import ConflictError
from moments.records import Flag, FlagKind, Post, Priority, post_flag_id, priority_rank
from search.store import FlagChange, Store

RULE_VERSION = "virality-v3"

# Fewer recent posts than this make a percentile meaningless: use a wider baseline.
_MIN_BASELINE = 20
# Without any baseline, this velocity counts as the top of the scale (percentile 1.0).
_FALLBACK_TOP_VELOCITY = 500.0
# How many velocities a baseline keeps per source and brand (evenly thinned beyond).
_BASELINE_SAMPLE = 2000
# Consistency constant: 1.4826 * MAD estimates the standard deviation of normal data.
_MAD_TO_SIGMA = 1.4826

# Points (see the module docstring).
SEVERITY_POINTS = 3.0
SPREAD_POINTS = 3.0
VULNERABLE_POINTS = 1.5
REPEAT_POINTS = 0.75
REPEAT_POINTS_MAX = 1.5
WAITING_POINTS_MAX = 1.0
WAITING_FULL_HOURS = 24.0
ACCELERATION_POINTS = 0.5
ACCELERATION_RATIO = 1.25
FOLLOWER_POINTS_PER_DECADE = 0.25
FORECAST_POINTS = 2.0
#: ``p_viral`` below this adds nothing: a forecast must call virality more likely than not.
FORECAST_FROM = 0.5


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class Standing:
    """Where a velocity stands among recent posts of its source (and brand)."""

    percentile: float
    robust_z: float | None
    scope: str


@dataclass
class VelocityBaselines:
    """Recent velocities per source and brand: what "fast" means on each platform.

    Built from the posts of the last days (:meth:`build`), saved as JSON by the
    nightly flow (:meth:`save`) and read by every watch tick (:meth:`load`), so a
    tick never scans the store to normalise a score.
    """

    samples: dict[str, list[float]] = field(default_factory=dict)
    computed_at: datetime | None = None

    @staticmethod
    def key(source: str, brand: str | None) -> str:
        return f"{source}|{brand or ''}"

    @classmethod
    def build(cls, posts: Iterable[Post], computed_at: datetime) -> VelocityBaselines:
        """Baselines from ``posts`` (for each source+brand and for each source overall)."""
        raw: dict[str, list[float]] = {}
        for post in posts:
            velocity = engagement_velocity(post)
            if velocity is None:
                continue
            for brand in [*(post.brand or []), None]:
                raw.setdefault(cls.key(post.source, brand), []).append(round(velocity.per_hour, 3))
        samples = {}
        for key, values in raw.items():
            values.sort()
            if len(values) > _BASELINE_SAMPLE:  # keep the shape of the distribution, not every value
                step = len(values) / _BASELINE_SAMPLE
                values = [values[int(i * step)] for i in range(_BASELINE_SAMPLE)]
            samples[key] = values
        return cls(samples, computed_at)

    def standing(self, source: str, brand: str | None, per_hour: float) -> Standing:
        """The percentile (0-1) and robust z-score of ``per_hour`` on this source and brand.

        Falls back to the source across brands when the brand has fewer than 20
        recent posts there, and to a fixed log scale when the source has none.
        """
        for key, scope in ((self.key(source, brand), "brand"), (self.key(source, None), "source")):
            values = self.samples.get(key) or []
            if len(values) >= _MIN_BASELINE:
                below = bisect.bisect_left(values, per_hour)
                equal = bisect.bisect_right(values, per_hour) - below
                percentile = (below + 0.5 * equal) / len(values)
                logs = [math.log1p(v) for v in values]
                median = statistics.median(logs)
                mad = statistics.median(abs(x - median) for x in logs)
                sigma = _MAD_TO_SIGMA * mad
                z = (math.log1p(per_hour) - median) / sigma if sigma > 0 else None
                return Standing(round(percentile, 4), None if z is None else round(z, 2), scope)
        percentile = min(math.log1p(per_hour) / math.log1p(_FALLBACK_TOP_VELOCITY), 1.0)
        return Standing(round(percentile, 4), None, "none")

    def save(self, path: Path) -> None:
        """Write atomically (a watch tick may be reading it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        body = {"computed_at": self.computed_at.isoformat() if self.computed_at else None, "samples": self.samples}
        partial.write_text(json.dumps(body), encoding="utf-8")
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> VelocityBaselines | None:
        """The saved baselines, or ``None`` when there are none (or they cannot be read)."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            computed = datetime.fromisoformat(body["computed_at"]) if body.get("computed_at") else None
            return cls({k: [float(v) for v in vs] for k, vs in body["samples"].items()}, computed)
        except (OSError, ValueError, KeyError, TypeError):
            return None


#: How long a baseline is trusted before a watch tick rebuilds it.
BASELINE_MAX_AGE = timedelta(hours=36)
#: How many days of posts a baseline is built from.
BASELINE_DAYS = 7


def refresh_baselines(store: Store, now: datetime, path: Path, *, force: bool = False) -> VelocityBaselines:
    """The baselines at ``path``, rebuilt from the last 7 days of posts when missing, stale or ``force``."""
    current = None if force else VelocityBaselines.load(path)
    if current is not None and current.computed_at is not None and now - current.computed_at < BASELINE_MAX_AGE:
        return current
    built = VelocityBaselines.build(store.recent_posts(since=now - timedelta(days=BASELINE_DAYS), until=now), now)
    built.save(path)
    return built


# --------------------------------------------------------------------------- the rule


@lru_cache(maxsize=64)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for term in terms:
        term = term.strip().casefold()
        if not term:
            continue
        stem = re.escape(term.rstrip("*")).replace(r"\ ", r"\s+")
        parts.append(stem + (r"\w*" if term.endswith("*") else "") + r"\b")
    return re.compile(r"(?<!\w)(" + "|".join(parts) + ")", re.IGNORECASE) if parts else None


def vulnerability_words(text: str, terms: Sequence[str]) -> list[str]:
    """The vulnerability terms found in ``text`` (as written there, first occurrence each)."""
    pattern = _term_pattern(tuple(terms))
    if pattern is None:
        return []
    found: list[str] = []
    for match in pattern.finditer(text):
        word = match.group(1).casefold()
        if word not in found:
            found.append(word)
    return found


def _priority(score: float, rules: FlagRules) -> Priority:
    if score >= rules.p1_score:
        return "P1"
    if score >= rules.p2_score:
        return "P2"
    if score >= rules.p3_score:
        return "P3"
    return "P4"


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def _compact(n: float) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{n:,.0f}"


_SOURCE_NAMES = {"hackernews": "Hacker News", "appstore": "App Store", "jsonld": "review page", "rss": "RSS"}


@dataclass(frozen=True)
class Assessment:
    """What the rule says about one post (or a burst): how urgent, how bad, and why."""

    post_id: str
    brand: str | None
    touchpoint: str | None
    priority: Priority
    score: float
    reasons: list[str]
    velocity_per_hour: float | None
    points: dict[str, float] = field(default_factory=dict)
    kind: FlagKind = "post"
    flag_id: str | None = None
    post_ids: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """The id of the flag this assessment opens or updates."""
        return self.flag_id or post_flag_id(self.post_id)


@dataclass(frozen=True)
class Context:
    """What the rule knows beyond the post itself.

    Attributes:
        baselines: Recent velocities per source and brand (``None``: fixed log scale).
        prior_complaints: Earlier negative posts by the same customer about the same
            brand within ``repeat_window`` (looked up in the store by :func:`apply_flags`).
    """

    baselines: VelocityBaselines | None = None
    prior_complaints: int = 0


def evaluate(
    post: Post, now: datetime, rules: FlagRules | None = None, context: Context | None = None
) -> Assessment | None:
    """The flag ``post`` deserves under ``rules``, or ``None``.

    Args:
        post: A classified post.
        now: The evaluation time (the run's clock): how long the customer has waited.
        rules: Weights and thresholds to apply.
        context: Baselines and the customer's earlier complaints.
    """
    rules = rules or FlagRules()
    context = context or Context()
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
    per_hour = velocity.per_hour if velocity is not None else 0.0
    vulnerable = vulnerability_words(f"{post.title or ''} {post.text}", rules.vulnerability_terms)
    # The forecast raises a flag's priority; it does not open one below the configured
    # min_velocity: that floor is the brand's own call on what is worth an agent's time.
    if per_hour < rules.min_velocity and not vulnerable:
        return None

    brand = post.brand[0] if post.brand else None
    criticality = rules.criticality(verdict.touchpoint)
    followers = post.author.followers or 0
    baselines = context.baselines or VelocityBaselines()
    standing = baselines.standing(post.source, brand, per_hour)
    accelerating = (
        velocity is not None
        and velocity.previous_per_hour is not None
        and velocity.per_hour >= ACCELERATION_RATIO * max(velocity.previous_per_hour, 1.0)
    )
    waited_hours = max((now - post.created_at).total_seconds() / 3600, 0.0) if post.created_at else 0.0
    predicted: Forecast | None = forecast_post(
        post, threshold=rules.viral_threshold_for(post.source), horizon=rules.forecast_horizon
    )
    if predicted is not None and predicted.method == "none":
        predicted = None
    points = {
        "severity": SEVERITY_POINTS * max(verdict.severity, 0.1) * criticality,
        "vulnerable": VULNERABLE_POINTS if vulnerable else 0.0,
        "repeat": min(REPEAT_POINTS * context.prior_complaints, REPEAT_POINTS_MAX),
        "waiting": WAITING_POINTS_MAX * min(waited_hours / WAITING_FULL_HOURS, 1.0),
        "spread": SPREAD_POINTS * standing.percentile,
        "accelerating": ACCELERATION_POINTS if accelerating else 0.0,
        "followers": min(FOLLOWER_POINTS_PER_DECADE * math.log10(1 + followers), rules.reach_cap),
        "forecast": FORECAST_POINTS * max(0.0, (predicted.p_viral - FORECAST_FROM) / (1 - FORECAST_FROM))
        if predicted is not None
        else 0.0,
    }
    points = {name: round(value, 3) for name, value in points.items()}
    score = round(sum(points.values()), 3)
    need = points["severity"] + points["vulnerable"] + points["repeat"] + points["waiting"]

    source_name = _SOURCE_NAMES.get(post.source, post.source.capitalize())
    reasons = [
        f"{'moment of misery' if verdict.moment == 'misery' else 'negative'} "
        f"(negative p={negative_p:.2f}, severity {verdict.severity:.2f})",
    ]
    if velocity is not None:
        spread = f"{velocity.per_hour:,.0f} interactions/h ({velocity.interactions:,} in {velocity.hours:.1f} h, "
        spread += f"{velocity.method})"
        if standing.robust_z is not None:
            whose = "this brand's" if standing.scope == "brand" else "the"
            spread += (
                f", {standing.robust_z:+.1f}σ vs {whose} {source_name} baseline (p{standing.percentile * 100:.0f})"
            )
        elif standing.scope != "none":
            spread += f", p{standing.percentile * 100:.0f} of recent {source_name} posts"
        else:
            spread += f", no {source_name} baseline yet"
        reasons.append(spread)
    if predicted is not None:
        reasons.append(predicted.describe())
    if accelerating and velocity is not None and velocity.previous_per_hour is not None:
        reasons.append(f"accelerating ({velocity.previous_per_hour:,.0f}/h -> {velocity.per_hour:,.0f}/h)")
    if followers:
        capped = " (capped)" if points["followers"] >= rules.reach_cap > 0 else ""
        reasons.append(f"author reach {_compact(followers)}{capped}")
    tp = f"touchpoint {verdict.touchpoint}"
    alternative = touchpoint_alternative(verdict)
    if alternative is not None:
        # Close call: the agent sees both, so a wrong guess costs a glance, not a misroute.
        tp += f" {alternative.top_score:.2f} or {alternative.touchpoint} {alternative.score:.2f} (unsure)"
    if criticality != 1.0:
        tp += f" ({'critical' if criticality > 1 else 'low criticality'}, x{criticality:g})"
    reasons.append(tp)
    if vulnerable:
        reasons.append(f"safety/vulnerability: {', '.join(repr(w) for w in vulnerable[:3])}")
    if context.prior_complaints:
        days = rules.repeat_window.total_seconds() / 86400
        window = f"{days:g} d" if days >= 1 else f"{rules.repeat_window.total_seconds() / 3600:g} h"
        reasons.append(f"{_ordinal(context.prior_complaints + 1)} complaint from this customer in {window}")
    if waited_hours >= 1:
        reasons.append(f"waiting {waited_hours:.1f} h since posted")
    reasons.append(f"score {score:.2f} = need {need:.2f} + reach {score - need:.2f}")
    return Assessment(
        post_id=post.id,
        brand=brand,
        touchpoint=verdict.touchpoint,
        priority=_priority(score, rules),
        score=score,
        reasons=reasons,
        velocity_per_hour=round(per_hour, 2) if velocity is not None else None,
        points=points,
    )


def new_flag(assessment: Assessment, now: datetime) -> Flag:
    """A version-1 flag for a post (or burst) the rule flags for the first time."""
    return Flag(
        id=assessment.id,
        kind=assessment.kind,
        brand=assessment.brand,
        touchpoint=assessment.touchpoint,
        post_ids=list(assessment.post_ids or (assessment.post_id,)),
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
      the figures and reasons are refreshed (``updated``) when they moved. A
      burst's list of posts only grows.
    * Resolved or dismissed by a person: left alone, unless the score grew by the
      reopen margin, in which case it is reopened at the new priority (``reopened``).
    """
    figures: dict[str, object] = {
        "score": assessment.score,
        "reasons": assessment.reasons,
        "velocity_per_hour": assessment.velocity_per_hour,
        "rule_version": RULE_VERSION,
    }
    if assessment.post_ids:
        figures["post_ids"] = list(dict.fromkeys([*current.post_ids, *assessment.post_ids]))
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
    if not _material(current, updated):
        return None
    return FlagChange(updated, "updated")


#: A refreshed score or velocity is worth an event only when it moved this much; otherwise the
#: log of a post re-polled every tick for three days would be hundreds of "waiting 0.1 h more".
MATERIAL_SCORE_CHANGE = 0.25
MATERIAL_VELOCITY_CHANGE = 0.25


def _material(current: Flag, updated: Flag) -> bool:
    if updated.post_ids != current.post_ids or updated.rule_version != current.rule_version:
        return True
    if abs(updated.score - current.score) >= MATERIAL_SCORE_CHANGE:
        return True
    old, new = current.velocity_per_hour or 0.0, updated.velocity_per_hour or 0.0
    return abs(new - old) >= MATERIAL_VELOCITY_CHANGE * max(old, 1.0)


@dataclass
class FlagRunReport:
    """What one flagging pass did.

    ``alerts`` holds the flags as stored after each change a person must hear about
    (opened, escalated or reopened), with that action, for the notifications.
    """

    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    alerts: list[tuple[str, Flag]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.opened) + len(self.escalated) + len(self.reopened) + len(self.updated)

    def merge(self, other: FlagRunReport) -> None:
        """Add another pass's figures to these (post flags and burst flags of one run)."""
        self.opened += other.opened
        self.escalated += other.escalated
        self.reopened += other.reopened
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.alerts += other.alerts

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


def prior_complaints(store: Store, post: Post, window: timedelta) -> int:
    """Earlier negative posts by the same author about the same brand within ``window`` (0 if unknown)."""
    handle = post.author.handle
    if not handle or post.created_at is None or not post.brand:
        return 0
    return store.count_author_posts(
        handle=handle,
        source=post.source,
        since=post.created_at - window,
        until=post.created_at,
        sentiment="negative",
        brand=post.brand[0],
    )


def apply_assessment(
    store: Store, assessment: Assessment, rules: FlagRules, now: datetime, report: FlagRunReport
) -> None:
    """Open the assessment's flag, or reassess the stored one; record what happened in ``report``."""
    actor = f"rule:{RULE_VERSION}"
    flag_id = assessment.id
    if store.get_flag(flag_id) is None:
        try:
            created = store.create_flag(new_flag(assessment, now), actor=actor, at=now)
            report.opened.append(flag_id)
            report.alerts.append(("opened", created))
            return
        except ConflictError:
            pass  # another run opened it a moment ago: reassess that one
    reassessment = _Reassessment(assessment, rules)
    stored = store.change_flag(flag_id, reassessment, actor=actor, at=now)
    if reassessment.action is None:
        report.unchanged += 1
        return
    {"escalated": report.escalated, "reopened": report.reopened}.get(reassessment.action, report.updated).append(
        flag_id
    )
    if reassessment.action in ("escalated", "reopened"):
        report.alerts.append((reassessment.action, stored))


def apply_flags(
    store: Store,
    now: datetime,
    rules: FlagRules | RulesFor | None = None,
    *,
    posts: Iterable[Post] | None = None,
    baselines: VelocityBaselines | None = None,
) -> FlagRunReport:
    """Evaluate posts and open, escalate, update or reopen their flags in ``store``.

    Args:
        store: Where the posts and flags live.
        now: The run's clock (the opening time of new flags, the time of events).
        rules: One :class:`FlagRules`, or a function from brand to rules
            (``MomentsConfig.rules_for``); default thresholds when ``None``.
        posts: The posts to evaluate (default: every stored post). The watch flow
            passes only the new and changed ones, so its cost does not grow with the store.
        baselines: Recent velocities per source and brand for the spread percentile.

    Returns:
        Which flags changed, and how. Re-running on the same data changes nothing.
    """
    rules_for = _rules_lookup(rules)
    report = FlagRunReport()
    for post in posts if posts is not None else store.scan():
        brand = post.brand[0] if post.brand else None
        brand_rules = rules_for(brand)
        # The cheap checks first: the store lookup of earlier complaints only for candidates.
        candidate = evaluate(post, now, brand_rules, Context(baselines))
        if candidate is None:
            continue
        prior = prior_complaints(store, post, brand_rules.repeat_window)
        assessment = evaluate(post, now, brand_rules, Context(baselines, prior)) if prior else candidate
        assert assessment is not None
        apply_assessment(store, assessment, brand_rules, now, report)
    return report


__all__ = [
    "RULE_VERSION",
    "Assessment",
    "Context",
    "FlagRunReport",
    "Velocity",
    "VelocityBaselines",
    "apply_assessment",
    "apply_flags",
    "engagement_velocity",
    "evaluate",
    "new_flag",
    "prior_complaints",
    "reassess",
    "refresh_baselines",
    "vulnerability_words",
]
