"""How a post's engagement moves: velocity, and a clean count series for forecasting.

These helpers read only a post's own engagement snapshots, so the flagging rule
(:mod:`flows.flagging`) and the virality forecaster (:mod:`models.forecast`) share
them without ``models`` importing ``flows``.

* :func:`engagement_velocity`: interactions per hour, now and before (acceleration).
* :func:`count_series`: the snapshots as ``(seconds since posted, count)``, sorted,
  de-duplicated and cleaned of clock skew, ready for the count-based forecast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from moments.records import EngagementSnapshot, Post

# Two snapshots closer than this say more about polling jitter than about spread.
MIN_SNAPSHOT_GAP_HOURS = 0.25
# A post seconds old with 3 likes is not "180 per hour": floor the age.
MIN_AGE_HOURS = 0.5


@dataclass(frozen=True)
class Velocity:
    """Interactions per hour, and how it was measured (for the flag's reasons)."""

    per_hour: float
    interactions: int
    hours: float
    method: str
    #: The interval before the latest one, when there are three snapshots (for acceleration).
    previous_per_hour: float | None = None


def _rate_between(later: EngagementSnapshot, earlier: EngagementSnapshot) -> tuple[float, int, float] | None:
    hours = (later.at - earlier.at).total_seconds() / 3600
    if hours < MIN_SNAPSHOT_GAP_HOURS:
        return None
    gained = max(later.total() - earlier.total(), 0)
    return gained / hours, gained, hours


def engagement_velocity(post: Post) -> Velocity | None:
    """Interactions per hour for ``post``, or ``None`` when it cannot be known.

    Two readings, and the higher one wins: the rate between the two latest snapshots
    at least 15 minutes apart (what is happening now), and all engagement over the
    post's age (what the first crawl saw). The second keeps a post that spread fast
    and then paused on the radar: a tick that could not run (the store was down)
    must not let the re-poll after it decide the moment never happened.

    Args:
        post: A crawled post; its snapshots and ``crawled_at`` are the clock.

    Returns:
        The velocity, with the interval before the latest one when there is one (for
        acceleration); ``None`` when the post has no creation time and no usable
        snapshots.
    """
    history = sorted(post.engagement_history, key=lambda s: s.at)
    latest = history[-1] if history else None
    recent: Velocity | None = None
    if latest is not None:
        for i in range(len(history) - 2, -1, -1):
            rate = _rate_between(latest, history[i])
            if rate is None:
                continue
            previous = None
            for j in range(i - 1, -1, -1):
                before = _rate_between(history[i], history[j])
                if before is not None:
                    previous = before[0]
                    break
            recent = Velocity(rate[0], rate[1], rate[2], "between re-polls", previous)
            break
    if post.created_at is None:
        return recent
    observed_at = latest.at if latest is not None else post.crawled_at
    interactions = latest.total() if latest is not None else post.engagement.total()
    hours = max((observed_at - post.created_at).total_seconds() / 3600, MIN_AGE_HOURS)
    overall = Velocity(interactions / hours, interactions, hours, "since posted")
    if recent is not None and recent.per_hour >= overall.per_hour:
        return recent
    return overall if recent is None else replace(overall, previous_per_hour=None)


def count_series(
    snapshots: Sequence[EngagementSnapshot],
    posted_at: datetime,
    now: datetime,
    count: Callable[[EngagementSnapshot], int] | None = None,
) -> list[tuple[float, int]]:
    """``(seconds since posted, count)`` per snapshot, cleaned for a forecast.

    * Sorted by time; two snapshots at the same time keep the later-listed one.
    * Clock skew: a snapshot stamped before the post (a crawler clock behind the
      platform's) is moved to the posting time; one stamped after ``now`` is dropped
      (it has not happened yet on the run's clock).
    * Deletions: a count that goes down is kept as it is (the latest count is the
      truth); the forecaster takes increments clipped at zero.

    Args:
        snapshots: The post's engagement history, in any order.
        posted_at: When the post was created (time 0).
        now: The run's clock.
        count: What to count per snapshot (default: shares when any snapshot has
            them, else all interactions).
    """
    if count is None:
        has_shares = any(s.shares is not None for s in snapshots)
        count = (lambda s: s.shares or 0) if has_shares else (lambda s: s.total())
    by_time: dict[float, int] = {}
    horizon = (now - posted_at).total_seconds()
    for snap in snapshots:
        age = (snap.at - posted_at).total_seconds()
        if age > horizon:
            continue
        by_time[max(age, 0.0)] = count(snap)
    return sorted(by_time.items())


__all__ = ["MIN_AGE_HOURS", "MIN_SNAPSHOT_GAP_HOURS", "Velocity", "count_series", "engagement_velocity"]
