"""Bursts: many moments of misery about one touchpoint at once, against the brand's own rhythm.

One angry post may not spread; thirty customers stuck at the same gate are a
story even when none of them goes viral. For each brand and touchpoint, the
misery posts of the last ``window`` (an hour by default) are counted and compared
with the same hours of each of the past ``baseline_days`` days, so 9 pm is
compared with 9 pm (daily seasonality; a plain "last hour against the last 12
hours" fires every morning when customers wake up). The comparison is a robust
z-score: ``(count - median) / (1.4826 * MAD)`` of the baseline counts, with the
scale floored at ``sqrt(median)`` (Poisson noise), so a flat, quiet baseline does
not make three posts look like a crisis. A burst needs at least ``min_count``
posts and ``min_z``.

A burst becomes one flag of kind ``burst`` that links the posts that drove it. While
it is active, a continuing burst updates and escalates that flag; it never opens a
second one. Counting is done by the store (:meth:`search.store.Store.moment_counts`),
one small aggregation per baseline day, so detection costs the same whatever the
store holds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from flows.flagging import Assessment, FlagRunReport, apply_assessment
from moments.config import BurstRules, FlagRules
from moments.records import Priority
from search.store import Store

_MAD_TO_SIGMA = 1.4826
#: The most posts a burst flag links (the newest ones); the count is in its reasons.
MAX_LINKED_POSTS = 50


@dataclass(frozen=True)
class Burst:
    """A brand's touchpoint with far more misery than usual in the window ending at ``until``."""

    brand: str
    touchpoint: str
    count: int
    baseline: list[int]
    median: float
    z: float
    since: datetime
    until: datetime


def robust_z(count: int, baseline: list[int]) -> tuple[float, float]:
    """``(z, median)`` of ``count`` against ``baseline`` counts (median/MAD, Poisson-floored scale)."""
    median = statistics.median(baseline) if baseline else 0.0
    mad = statistics.median(abs(b - median) for b in baseline) if baseline else 0.0
    scale = max(_MAD_TO_SIGMA * mad, math.sqrt(max(median, 1.0)))
    return (count - median) / scale, median


def _window_counts(store: Store, since: datetime, until: datetime, window: timedelta) -> dict[tuple[str, str], int]:
    # Buckets only group; summing every bucket of [since, until) gives its exact count.
    counts = store.moment_counts(since=since, until=until, moment="misery", bucket=window)
    return {key: sum(buckets.values()) for key, buckets in counts.items()}


def detect_bursts(store: Store, now: datetime, rules: BurstRules) -> list[Burst]:
    """Every brand × touchpoint whose misery in ``[now - window, now)`` is a burst, largest first."""
    window = rules.window
    current = _window_counts(store, now - window, now, window)
    candidates = {key: n for key, n in current.items() if n >= rules.min_count}
    if not candidates:
        return []
    history: dict[tuple[str, str], list[int]] = {key: [] for key in candidates}
    for day in range(1, rules.baseline_days + 1):
        end = now - timedelta(days=day)
        counts = _window_counts(store, end - window, end, window)
        for key in candidates:
            history[key].append(counts.get(key, 0))
    bursts = []
    for (brand, touchpoint), count in candidates.items():
        z, median = robust_z(count, history[(brand, touchpoint)])
        if z >= rules.min_z:
            bursts.append(
                Burst(brand, touchpoint, count, history[(brand, touchpoint)], median, round(z, 2), now - window, now)
            )
    return sorted(bursts, key=lambda b: (-b.z, b.brand, b.touchpoint))


def burst_priority(burst: Burst, rules: BurstRules) -> Priority:
    """P1 for twice the z threshold and four times the minimum count; P2 for 1.5× z; else P3."""
    if burst.z >= 2 * rules.min_z and burst.count >= 4 * rules.min_count:
        return "P1"
    if burst.z >= 1.5 * rules.min_z:
        return "P2"
    return "P3"


def _window_words(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{window.total_seconds() / 60:g} min"


def burst_assessment(store: Store, burst: Burst, rules: BurstRules) -> Assessment | None:
    """The flag a burst deserves: its posts, priority and reasons in plain words (``None``: no posts to link)."""
    posts = [
        post
        for post in store.recent_posts(since=burst.since, until=burst.until, brand=burst.brand)
        if post.classification is not None
        and post.classification.moment == "misery"
        and post.classification.touchpoint == burst.touchpoint
    ][:MAX_LINKED_POSTS]
    post_ids = tuple(p.id for p in posts)
    if not post_ids:
        return None
    days = len(burst.baseline)
    reasons = [
        f"burst: {burst.count} misery posts about {burst.touchpoint} in the last {_window_words(rules.window)}, "
        f"{burst.z:.1f}σ above the same hours on the past {days} days (median {burst.median:g})",
        f"baseline counts, newest day first: {', '.join(str(n) for n in burst.baseline)}",
    ]
    if len(posts) < burst.count:
        reasons.append(f"links the newest {len(posts)} of {burst.count} posts")
    return Assessment(
        post_id=post_ids[0],
        brand=burst.brand,
        touchpoint=burst.touchpoint,
        priority=burst_priority(burst, rules),
        score=round(max(burst.z, 0.0), 3),
        reasons=reasons,
        velocity_per_hour=round(burst.count / (rules.window.total_seconds() / 3600), 2),
        points={"z": burst.z, "count": float(burst.count)},
        kind="burst",
        flag_id=_burst_flag_id(store, burst),
        post_ids=post_ids,
    )


def _burst_flag_id(store: Store, burst: Burst) -> str:
    """The flag of this burst if it is continuing, else a new id stamped with the window's start.

    A burst continues while its flag is active, or was changed within the last two
    windows (a person closed it, yet the misery goes on: the reopen margin decides).
    """
    flags = store.list_flags(status=None, kind="burst", brand=burst.brand, touchpoint=burst.touchpoint, limit=50)
    recent = burst.until - 2 * (burst.until - burst.since)
    continuing = [f for f in flags if not f.is_closed or f.updated_at >= recent]
    if continuing:
        return max(continuing, key=lambda f: f.updated_at).id
    return f"burst:{burst.brand}:{burst.touchpoint}:{burst.since:%Y%m%dT%H%MZ}"


def apply_bursts(
    store: Store, now: datetime, rules: BurstRules, flag_rules: FlagRules | None = None
) -> tuple[list[Burst], FlagRunReport]:
    """Detect bursts at ``now`` and open or escalate their flags."""
    report = FlagRunReport()
    bursts = detect_bursts(store, now, rules)
    for burst in bursts:
        assessment = burst_assessment(store, burst, rules)
        if assessment is not None:
            apply_assessment(store, assessment, flag_rules or FlagRules(), now, report)
    return bursts, report
