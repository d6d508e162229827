"""Team metrics for leads: how fast flags are answered and closed, SLA hit rates, and the recovery rate.

Over the flags *opened* in a period (``[since, until)``):

* **Time to first response**: opening to the first time the flag was ``responded``;
  **time to resolve**: opening to ``resolved`` (dismissed flags are not real issues and
  are left out). Each as count, median and p90 (linear interpolation between ranks,
  as ``numpy.percentile`` does), overall, per priority and per agent. An agent's first
  response is the flag's first response made by them; their resolves, the flags they resolved.
* **SLA hit rate** per target: of the flags whose target is decided (met, or missed),
  the share met; a target still running and not yet missed is not counted. The targets
  are the ones in force now (config with the leads' overrides, :mod:`triage.service_levels`).
* **Recovery rate**: of the *resolved* flags whose lead post has an author handle, the
  share whose author posted again about the flag's brand, with neutral or positive
  sentiment, within :data:`RECOVERY_WINDOW` after the resolution (up to now). This is
  the service recovery paradox measured rather than assumed. It is broken down by the
  playbook template of the last response logged before the flag was resolved
  (``null``: a response without a template, or none). The store counts the later
  posts through its (author, time) index (:meth:`search.store.Store.count_author_posts`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from moments.config import MomentsConfig, SlaTarget
from moments.records import PRIORITIES, Flag, FlagEvent, Post, Priority
from search.store import Store
from triage.actions import parse_response_note
from triage.service_levels import BREACH_ACTOR, effective_slas
from triage.sla import sla_state

#: How long after a resolution a customer's next neutral or positive post counts as recovered.
RECOVERY_WINDOW = timedelta(days=30)
#: The most flags one computation reads.
MAX_FLAGS = 20_000
#: Sentiments that count as a recovered customer.
RECOVERED_SENTIMENTS = ("neutral", "positive")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation between ranks; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Durations(BaseModel):
    """Durations in seconds: how many, their median and 90th percentile."""

    count: int
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Durations:
        return cls(count=len(seconds), median_s=percentile(seconds, 50), p90_s=percentile(seconds, 90))


class HitRate(BaseModel):
    """SLA targets met among those decided."""

    met: int
    decided: int
    rate: float | None = Field(description="met / decided; null when none is decided")

    @classmethod
    def of(cls, met: int, decided: int) -> HitRate:
        return cls(met=met, decided=decided, rate=met / decided if decided else None)


class GroupMetrics(BaseModel):
    """The metrics of one group of flags (all, one priority, one agent)."""

    flags: int = Field(description="flags in the group")
    first_response: Durations
    resolve: Durations
    first_response_sla: HitRate
    resolution_sla: HitRate


class TemplateRecovery(BaseModel):
    """The recovery rate of the flags whose last response used one template."""

    template_id: str | None = Field(description="null: no template was used")
    resolved: int = Field(description="resolved flags with this template")
    measurable: int = Field(description="of those, with an author handle to look up")
    recovered: int
    rate: float | None = Field(description="recovered / measurable")


class Recovery(BaseModel):
    """The recovery rate, overall and per template."""

    window_days: float
    resolved: int
    measurable: int
    recovered: int
    rate: float | None
    by_template: list[TemplateRecovery]


class TeamMetrics(BaseModel):
    """Team metrics over the flags opened in ``[since, until)``."""

    since: datetime
    until: datetime
    generated_at: datetime
    flags: int
    overall: GroupMetrics
    by_priority: dict[str, GroupMetrics]
    by_agent: dict[str, GroupMetrics]
    recovery: Recovery
    truncated: bool = Field(description="more flags matched than were read")


class _Group:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.first_response: list[float] = []
        self.resolve: list[float] = []
        self.first_met = 0
        self.first_decided = 0
        self.resolution_met = 0
        self.resolution_decided = 0

    def result(self) -> GroupMetrics:
        return GroupMetrics(
            flags=len(self.flags),
            first_response=Durations.of(self.first_response),
            resolve=Durations.of(self.resolve),
            first_response_sla=HitRate.of(self.first_met, self.first_decided),
            resolution_sla=HitRate.of(self.resolution_met, self.resolution_decided),
        )


def _first_status_event(events: Iterable[FlagEvent], statuses: set[str]) -> FlagEvent | None:
    for event in events:
        if any(c.field == "status" and c.new in statuses for c in event.changes):
            return event
    return None


def is_response(event: FlagEvent) -> bool:
    """Whether an event logged a response: a move to ``responded``, or a status event on an already responded flag."""
    statuses = [c.new for c in event.changes if c.field == "status"]
    return event.action == "status" and (statuses == ["responded"] or (not statuses and bool(event.note)))


def last_template(events: Sequence[FlagEvent], before: datetime | None = None) -> str | None:
    """The template of the last response logged (at or before ``before``); ``None``: it had none, or no response."""
    for event in reversed(events):
        if (before is None or event.at <= before) and is_response(event):
            return parse_response_note(event.note)[2]
    return None


def recovered(store: Store, flag: Flag, post: Post, resolved_at: datetime, now: datetime) -> bool:
    """Whether the lead post's author posted about the flag's brand with neutral or positive sentiment later."""
    handle = post.author.handle
    if not handle:
        return False
    until = min(resolved_at + RECOVERY_WINDOW, now)
    if until <= resolved_at:
        return False
    return any(
        store.count_author_posts(
            handle=handle, source=post.source, since=resolved_at, until=until, sentiment=sentiment, brand=flag.brand
        )
        > 0
        for sentiment in RECOVERED_SENTIMENTS
    )


def team_metrics(
    store: Store, config: MomentsConfig, *, since: datetime, until: datetime, now: datetime
) -> TeamMetrics:
    """Team metrics over the flags opened in ``[since, until)``, as of ``now``."""
    slas: Mapping[Priority, SlaTarget] = effective_slas(store, config)
    listed = store.list_flags(status=None, limit=MAX_FLAGS)
    flags = [f for f in listed if since <= f.opened_at < until and f.priority in slas]
    overall = _Group()
    by_priority: dict[str, _Group] = defaultdict(_Group)
    by_agent: dict[str, _Group] = defaultdict(_Group)
    resolved_flags: list[tuple[Flag, datetime, str | None]] = []
    for flag in flags:
        events = store.flag_events(flag.id)
        state = sla_state(flag, events, slas, now)
        groups = [overall, by_priority[flag.priority]]
        for group in groups:
            group.flags.add(flag.id)
        responded = _first_status_event(events, {"responded"})
        resolved = _first_status_event(reversed(events), {"resolved"}) if flag.status == "resolved" else None
        responder = responded.actor if responded is not None and responded.actor != BREACH_ACTOR else None
        resolver = resolved.actor if resolved is not None else None
        if state.first_response_at is not None:
            seconds = (state.first_response_at - flag.opened_at).total_seconds()
            for group in [*groups, *([by_agent[responder]] if responder else [])]:
                group.first_response.append(seconds)
                group.flags.add(flag.id)
        first_decided = state.first_response_remaining is None or state.first_response_breached
        if first_decided:
            for group in [*groups, *([by_agent[responder]] if responder else [])]:
                group.first_decided += 1
                group.first_met += not state.first_response_breached
        resolution_decided = state.resolution_remaining is None or state.resolution_breached
        if resolution_decided:
            closer = resolver if flag.status == "resolved" else None
            for group in [*groups, *([by_agent[closer]] if closer else [])]:
                group.resolution_decided += 1
                group.resolution_met += not state.resolution_breached
        if flag.status == "resolved" and state.resolved_at is not None:
            seconds = (state.resolved_at - flag.opened_at).total_seconds()
            for group in [*groups, *([by_agent[resolver]] if resolver else [])]:
                group.resolve.append(seconds)
                group.flags.add(flag.id)
            resolved_flags.append((flag, state.resolved_at, last_template(events, state.resolved_at)))
    return TeamMetrics(
        since=since,
        until=until,
        generated_at=now,
        flags=len(flags),
        overall=overall.result(),
        by_priority={p: by_priority[p].result() for p in PRIORITIES if p in by_priority},
        by_agent={name: group.result() for name, group in sorted(by_agent.items())},
        recovery=_recovery(store, resolved_flags, now),
        truncated=len(listed) >= MAX_FLAGS,
    )


def _recovery(store: Store, resolved: list[tuple[Flag, datetime, str | None]], now: datetime) -> Recovery:
    posts = store.get_many({flag.post_ids[0] for flag, _, _ in resolved})
    counts: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0])  # resolved, measurable, recovered
    for flag, resolved_at, template in resolved:
        row = counts[template]
        row[0] += 1
        post = posts.get(flag.post_ids[0])
        if post is None or not post.author.handle:
            continue
        row[1] += 1
        row[2] += recovered(store, flag, post, resolved_at, now)
    by_template = [
        TemplateRecovery(
            template_id=template,
            resolved=row[0],
            measurable=row[1],
            recovered=row[2],
            rate=row[2] / row[1] if row[1] else None,
        )
        for template, row in sorted(counts.items(), key=lambda item: (item[0] is None, item[0] or ""))
    ]
    total = [sum(row[i] for row in counts.values()) for i in range(3)]
    return Recovery(
        window_days=RECOVERY_WINDOW.total_seconds() / 86400,
        resolved=total[0],
        measurable=total[1],
        recovered=total[2],
        rate=total[2] / total[1] if total[1] else None,
        by_template=by_template,
    )


def format_seconds(seconds: float | None) -> str:
    """A duration for the metrics page: ``45s``, ``12m``, ``3.5h``, ``2.1d``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def format_rate(rate: float | None) -> str:
    """A share as a percentage (``83%``), ``-`` for none."""
    return "-" if rate is None else f"{rate * 100:.0f}%"
