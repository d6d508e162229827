"""Service levels of a flag: when it must get a first response and be closed, and whether it was late.

Kept free of the web app so the scheduled job that records breaches as events (later)
computes them exactly as the queue shows them.

The clock starts at ``Flag.opened_at``. The first response is due ``first_response``
later (``MomentsConfig.slas`` per priority) and is met by the first time the flag was
``responded`` (``Flag.first_response_at``, or the earliest event that moved it to
``responded``); closing the flag unanswered stops that clock too. Resolution is due
``resolution`` after opening and is met when the flag is resolved or dismissed
(``Flag.resolved_at``, or the event that closed it). A target met late stays
breached; a target not yet met is breached once ``now`` is past it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from moments.config import SlaTarget
from moments.records import CLOSED_STATUSES, Flag, FlagEvent, Priority


@dataclass(frozen=True)
class SlaState:
    """A flag's two targets at one moment.

    Attributes:
        first_response_due: When the first response is due.
        resolution_due: When the flag must be resolved (or dismissed).
        first_response_at: When it was first responded to (``None``: not yet).
        resolved_at: When it was closed (``None``: still open).
        first_response_remaining: Seconds left for the first response (negative: overdue);
            ``None`` once a response was made.
        resolution_remaining: Seconds left to close it (negative: overdue); ``None`` once closed.
        first_response_breached: Responded late, or not yet and past due.
        resolution_breached: Closed late, or not yet and past due.
    """

    first_response_due: datetime
    resolution_due: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    first_response_remaining: float | None
    resolution_remaining: float | None
    first_response_breached: bool
    resolution_breached: bool

    @property
    def breached(self) -> bool:
        """Either target was missed."""
        return self.first_response_breached or self.resolution_breached

    @property
    def remaining(self) -> float | None:
        """Seconds to the nearest target still open (negative when overdue); ``None`` when both are met.

        This is the queue's second sort key: among flags of one priority, the one closest
        to (or furthest past) a deadline comes first.
        """
        pending = [r for r in (self.first_response_remaining, self.resolution_remaining) if r is not None]
        return min(pending) if pending else None

    @property
    def next_due(self) -> str | None:
        """Which target :attr:`remaining` counts down to: ``first_response`` or ``resolution``."""
        if self.first_response_remaining is not None and (
            self.resolution_remaining is None or self.first_response_remaining <= self.resolution_remaining
        ):
            return "first_response"
        if self.resolution_remaining is not None:
            return "resolution"
        return None


def _status_reached(events: Iterable[FlagEvent], statuses: frozenset[str]) -> datetime | None:
    """The earliest event that moved the flag into one of ``statuses``."""
    times = [
        event.at for event in events for change in event.changes if change.field == "status" and change.new in statuses
    ]
    return min(times, default=None)


def sla_state(flag: Flag, events: Iterable[FlagEvent], slas: Mapping[Priority, SlaTarget], now: datetime) -> SlaState:
    """The service-level state of ``flag`` at ``now``.

    Args:
        flag: The flag as stored.
        events: Its event log (may be empty: the flag's own ``first_response_at`` and
            ``resolved_at`` are enough; events only fill them in for flags written
            before those fields were kept).
        slas: Targets per priority (``MomentsConfig.slas``).
        now: The clock (timezone-aware).

    Raises:
        KeyError: ``slas`` has no target for the flag's priority.
    """
    target = slas[flag.priority]
    events = list(events)
    first_due = flag.opened_at + target.first_response
    resolution_due = flag.opened_at + target.resolution
    responded_at = flag.first_response_at or _status_reached(events, frozenset({"responded"}))
    resolved_at: datetime | None = None
    if flag.status in CLOSED_STATUSES:
        resolved_at = flag.resolved_at or _status_reached(events, CLOSED_STATUSES) or flag.updated_at
    # Closing a flag stops the first-response clock too: a flag dismissed unanswered in time is not late.
    first_stop = responded_at or resolved_at
    first_remaining = None if first_stop is not None else (first_due - now).total_seconds()
    resolution_remaining = None if resolved_at is not None else (resolution_due - now).total_seconds()
    return SlaState(
        first_response_due=first_due,
        resolution_due=resolution_due,
        first_response_at=responded_at,
        resolved_at=resolved_at,
        first_response_remaining=first_remaining,
        resolution_remaining=resolution_remaining,
        first_response_breached=(first_stop > first_due) if first_stop is not None else now > first_due,
        resolution_breached=(resolved_at > resolution_due) if resolved_at is not None else now > resolution_due,
    )


def format_remaining(seconds: float | None) -> str:
    """A countdown as the queue shows it: ``12m``, ``3h 05m``, ``2d 4h``, ``-7m`` when overdue, ``-`` when met."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    total = int(abs(seconds)) // 60
    days, rest = divmod(total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    return f"{sign}{minutes}m"
