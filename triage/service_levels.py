"""SLA targets as leads set them in the app, and SLA breaches as events in each flag's log.

**Targets.** ``brands.yaml`` gives the first-response and resolution targets per priority
(``MomentsConfig.slas``). A lead may override them in the app; the overrides live in the
store (the ``slas`` :class:`~moments.accounts.AppSetting`), so every app process and the
scheduled breach check use the same ones. :func:`effective_slas` is config overlaid with
the stored overrides; an override is removed by saving the priority back to its config
value ("reset" on the page). Saves are compare-and-set on the table's ``revision``
(read-compare-write, as for playbooks: :class:`triage.playbooks.StaleRevision`).

**Breaches.** :func:`record_breaches` appends one event per flag and missed target
(``first_response`` or ``resolution``) when it first sees the miss, and never again for
that flag and target: it re-reads the log before writing and writes with the flag's
version as compare-and-set, so concurrent runs (two app processes serving the queue, a
scheduled job) cannot both write it. The event's actor is :data:`BREACH_ACTOR`, its
note ``sla_breached: <target> ...``; its action is ``sla_breached``. Like any event it moves the flag's version, so
a page opened before the breach gets "changed by sla at T, reload" on its next action.

The queue calls it for the flags it reads (:func:`record_queue_breaches`), cheaply: only a
flag whose clock says a target is missed, and which this process has not yet seen settled
(recorded, or met by its log), is examined, at most :data:`QUEUE_BREACH_BUDGET` per request
and never by two requests at once; the rest wait for the next refresh. The
``moments triage breaches`` command runs it over every active flag, for a schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moments.accounts import AppSetting
from moments.config import MomentsConfig, SlaTarget, format_duration
from moments.errors import ConflictError
from moments.records import PRIORITIES, EventAction, Flag, FlagEvent, Priority
from search.store import ACTIVE_STATUSES, FlagChange, Store
from triage.playbooks import StaleRevision
from triage.sla import SlaState, sla_state

#: The setting holding the lead's SLA overrides.
SLA_SETTING = "slas"
#: Who writes breach events (not a valid user name, so no person can pose as it).
BREACH_ACTOR = "system:sla"
BreachTarget = Literal["first_response", "resolution"]
TARGETS: tuple[BreachTarget, ...] = ("first_response", "resolution")
#: The event action of a breach.
BREACH_ACTION: EventAction = "sla_breached"
_NOTE_PREFIX = "sla_breached: "
#: The most flags one run checks (the queue's own limit is lower).
MAX_FLAGS = 20_000
#: The most flags one queue request examines for new breaches (each costs a flag read, a log read and
#: maybe a write); a queue request stays fast when many flags go late at once, the rest are examined on
#: the next refresh or by the scheduled ``moments triage breaches``.
QUEUE_BREACH_BUDGET = 20


# ------------------------------------------------------------------------------ targets


class SlaTable(BaseModel):
    """The SLA targets in force, per priority, and which of them a lead overrode in the app."""

    slas: dict[Priority, SlaTarget]
    overridden: list[Priority] = Field(description="priorities whose targets come from the store, not the config")
    revision: int = Field(ge=0, description="0: never saved in the app")
    updated_at: datetime | None = None
    updated_by: str | None = None


class SlaEdit(BaseModel):
    """A lead's edit (``PUT /api/slas``): targets per priority (``15m``, ``4h``, ``7d``); absent ones use config."""

    model_config = ConfigDict(extra="forbid")

    slas: dict[Priority, SlaTarget] = Field(
        description="the overrides; a priority left out, or equal to its config value, follows the config"
    )
    if_revision: int = Field(ge=0, description="the revision the editor read")


def _stored(store: Store) -> tuple[dict[Priority, SlaTarget], AppSetting | None, int]:
    setting = store.get_setting(SLA_SETTING)
    if setting is None:
        return {}, None, 0
    overrides: dict[Priority, SlaTarget] = {}
    for priority, target in dict(setting.value.get("slas", {})).items():
        if priority not in PRIORITIES:
            continue
        try:
            overrides[cast(Priority, priority)] = SlaTarget.model_validate(target)
        except ValidationError:
            continue  # an unreadable override counts as none: the config's target applies
    return overrides, setting, int(setting.value.get("revision", 1))


def sla_table(store: Store, config: MomentsConfig) -> SlaTable:
    """The targets in force: config, overlaid with the overrides stored by leads."""
    overrides, setting, revision = _stored(store)
    return SlaTable(
        slas={**config.slas, **overrides},
        overridden=[p for p in PRIORITIES if p in overrides],
        revision=revision,
        updated_at=setting.updated_at if setting else None,
        updated_by=setting.updated_by if setting else None,
    )


def effective_slas(store: Store, config: MomentsConfig) -> dict[Priority, SlaTarget]:
    """The SLA targets per priority in force now (what the queue counts down to)."""
    return sla_table(store, config).slas


def save_slas(store: Store, config: MomentsConfig, edit: SlaEdit, *, by: str, at: datetime) -> SlaTable:
    """Store a lead's targets; a priority equal to its config value is not kept as an override.

    Raises:
        StaleRevision: Someone saved the table since the editor read it (nothing written).
    """
    current = sla_table(store, config)
    if current.revision != edit.if_revision:
        raise StaleRevision(
            "the SLA targets", edit.if_revision, current.revision, current.updated_by, current.updated_at
        )
    overrides = {p: t for p, t in edit.slas.items() if config.slas.get(p) != t}
    value: dict[str, Any] = {
        "revision": current.revision + 1,
        "slas": {p: t.model_dump(mode="json") for p, t in sorted(overrides.items())},
    }
    store.put_setting(AppSetting(key=SLA_SETTING, value=value, updated_at=at, updated_by=by))
    return sla_table(store, config)


def describe_target(target: SlaTarget) -> dict[str, str]:
    """A target as a page shows and edits it: ``{"first_response": "15m", "resolution": "4h"}``."""
    return {"first_response": format_duration(target.first_response), "resolution": format_duration(target.resolution)}


# ------------------------------------------------------------------------------ breaches


@dataclass(frozen=True)
class Breach:
    """A breach event written: which flag, which target, when it was due."""

    flag_id: str
    target: BreachTarget
    due: datetime
    priority: Priority


def breach_note(target: BreachTarget, state: SlaState, flag: Flag, slas: Mapping[Priority, SlaTarget]) -> str:
    """The event note: ``sla_breached: first_response (P1 target 15m, due 2026-03-01 12:15 UTC)``."""
    limit = slas[flag.priority].first_response if target == "first_response" else slas[flag.priority].resolution
    due = state.first_response_due if target == "first_response" else state.resolution_due
    return f"{_NOTE_PREFIX}{target} ({flag.priority} target {format_duration(limit)}, due {due:%Y-%m-%d %H:%M} UTC)"


def breach_target(event: FlagEvent) -> BreachTarget | None:
    """The target a breach event records, or ``None`` when the event is no breach."""
    if event.actor != BREACH_ACTOR or not event.note or not event.note.startswith(_NOTE_PREFIX):
        return None
    word = event.note[len(_NOTE_PREFIX) :].split(" ", 1)[0]
    return cast(BreachTarget, word) if word in TARGETS else None


def recorded_breaches(events: Iterable[FlagEvent]) -> set[BreachTarget]:
    """The targets a flag's log already has breach events for."""
    return {target for event in events if (target := breach_target(event)) is not None}


def _missed(state: SlaState) -> list[BreachTarget]:
    found: list[BreachTarget] = []
    if state.first_response_breached:
        found.append("first_response")
    if state.resolution_breached:
        found.append("resolution")
    return found


#: Targets this process has seen settled, by (store, flag, opening, target): recorded as a breach, or a
#: first response in time that only the log shows (flags older than ``first_response_at``). The log is
#: append-only and a response is never taken back, so the queue need not read that flag's log again.
_KNOWN: set[tuple[str, str, str, str]] = set()
#: Flags a queue request of this process is examining now, so concurrent requests do not repeat the work.
_EXAMINING: set[tuple[str, str, str, str]] = set()
_EXAMINING_LOCK = threading.Lock()


def _met(state: SlaState) -> list[BreachTarget]:
    """The targets met for good: a first response in time (closing is not: a reopen clears ``resolved_at``)."""
    responded = state.first_response_at is not None and not state.first_response_breached
    return ["first_response"] if responded else []


def _known_key(store: Store, flag: Flag, target: str) -> tuple[str, str, str, str]:
    return (f"{store.location} {getattr(store, 'flags_alias', '')}", flag.id, flag.opened_at.isoformat(), target)


def _append_breach(note: str) -> Callable[[Flag], FlagChange]:
    def change(current: Flag) -> FlagChange:
        return FlagChange(current, BREACH_ACTION, note)

    return change


def record_flag_breaches(
    store: Store, flag_id: str, slas: Mapping[Priority, SlaTarget], now: datetime, *, attempts: int = 5
) -> list[Breach]:
    """Append a breach event for each target ``flag_id`` has missed and its log does not record yet.

    Reads the flag, then its log, then writes with the flag's version as compare-and-set;
    a lost race (anyone changed the flag meanwhile) reads again, so the event is written once.
    """
    written: list[Breach] = []
    for _ in range(attempts):
        flag = store.get_flag(flag_id)
        if flag is None or flag.priority not in slas:
            return written
        events = store.flag_events(flag_id)
        state = sla_state(flag, events, slas, now)
        done = recorded_breaches(events)
        for target in (*done, *_met(state)):
            _KNOWN.add(_known_key(store, flag, target))
        pending = [target for target in _missed(state) if target not in done]
        if not pending:
            return written
        target = pending[0]
        note = breach_note(target, state, flag, slas)
        seen = flag.version
        try:
            store.change_flag(flag_id, _append_breach(note), actor=BREACH_ACTOR, if_version=seen, at=now)
        except ConflictError:
            continue  # someone changed it: read the log again before deciding
        except KeyError:
            return written
        _KNOWN.add(_known_key(store, flag, target))
        due = state.first_response_due if target == "first_response" else state.resolution_due
        written.append(Breach(flag_id=flag_id, target=target, due=due, priority=flag.priority))
        if len(pending) == 1:
            return written  # nothing else was missing: no need to read the flag and its log again
    return written


def record_breaches_for(
    store: Store, flags: Iterable[Flag], slas: Mapping[Priority, SlaTarget], now: datetime
) -> list[Breach]:
    """Record the breaches of ``flags`` (as read: only those missing a target are looked at again)."""
    written: list[Breach] = []
    for flag in unsettled_breaches(store, flags, slas, now):
        written.extend(record_flag_breaches(store, flag.id, slas, now))
    return written


def unsettled_breaches(
    store: Store, flags: Iterable[Flag], slas: Mapping[Priority, SlaTarget], now: datetime
) -> list[Flag]:
    """The flags whose clock (the flag alone, no store read) says a target is missed that this process
    has not seen settled: the only ones whose log is worth reading."""
    found: list[Flag] = []
    for flag in flags:
        if flag.priority not in slas:
            continue
        missed = _missed(sla_state(flag, (), slas, now))
        if any(_known_key(store, flag, target) not in _KNOWN for target in missed):
            found.append(flag)
    return found


def record_queue_breaches(
    store: Store,
    flags: Iterable[Flag],
    slas: Mapping[Priority, SlaTarget],
    now: datetime,
    *,
    budget: int = QUEUE_BREACH_BUDGET,
) -> list[Breach]:
    """What the queue runs on the flags it read: :func:`record_breaches_for`, bounded for a request.

    At most ``budget`` unsettled flags are examined (in the order given: the queue's, most urgent
    first), and a flag another request of this process is examining is skipped; either way it is
    examined on a later call. The once-only guarantee is :func:`record_flag_breaches`'s, unchanged.
    """
    written: list[Breach] = []
    examined = 0
    for flag in unsettled_breaches(store, flags, slas, now):
        if examined >= budget:
            break
        key = _known_key(store, flag, "")
        with _EXAMINING_LOCK:
            if key in _EXAMINING:
                continue
            _EXAMINING.add(key)
        try:
            written.extend(record_flag_breaches(store, flag.id, slas, now))
        finally:
            with _EXAMINING_LOCK:
                _EXAMINING.discard(key)
        examined += 1
    return written


def record_breaches(
    store: Store,
    now: datetime,
    *,
    config: MomentsConfig | None = None,
    statuses: Sequence[str] | None = ACTIVE_STATUSES,
    brand: str | None = None,
) -> list[Breach]:
    """Record every missed SLA target of the flags with ``statuses`` (default: active) as an event, once.

    Args:
        store: The store.
        now: The clock (timezone-aware).
        config: For the SLA targets (overlaid with the leads' overrides); default: the built-in defaults.
        statuses: Which flags to check; ``None``: every flag (a flag closed late gets its resolution breach).
        brand: Only this brand's flags.

    Returns:
        The breach events written by this run (empty when every breach was recorded already).
    """
    slas = effective_slas(store, config or MomentsConfig())
    flags = store.list_flags(status=statuses, brand=brand, limit=MAX_FLAGS)
    return record_breaches_for(store, flags, slas, now)
