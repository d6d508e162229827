"""What the triage app does with flags, shared by the JSON API and the pages.

* **Actions** (:func:`perform_action`): assign, acknowledge, respond, resolve, dismiss,
  note. Each is one compare-and-set on the flag's version through
  :meth:`search.store.Store.change_flag` with the caller's ``if_version``: a caller
  who saw an older version gets :class:`~moments.errors.ConflictError` naming who
  changed the flag and when, and nothing is written. Which roles may act is
  :data:`ACTION_RULES` (a table, like :data:`triage.auth.ROUTE_RULES`); which
  statuses an action applies to is :data:`TRANSITIONS`.
* **The queue** (:func:`load_queue`): active flags ordered by priority, then by the
  time left on their nearest SLA target, with filters and counts.
* **Presence** (:func:`record_presence`, :func:`viewers`): who has a flag's page open,
  kept in the store (``presence:{flag id}`` settings) so every app process sees it.

What an action writes in the event log (``FlagEvent.note``) is plain text a person can
read in ``moments flags show``: a note's text, a dismissal's reason, and for a
response its text under ``link:`` / ``template:`` header lines
(:func:`response_note`, parsed back by :func:`parse_response_note`), so later exports
(feedback, playbook use) can read them without a schema change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from moments.accounts import USER_NAME, AppSetting, User
from moments.config import MomentsConfig
from moments.errors import MomentsError
from moments.records import (
    CLOSED_STATUSES,
    FLAG_STATUSES,
    EventAction,
    Flag,
    FlagEvent,
    FlagStatus,
    Post,
    priority_rank,
)
from search.store import ACTIVE_STATUSES, FlagChange, Store
from triage.auth import Forbidden, Permission, may
from triage.playbooks import ResponseTemplate, fill_template, get_playbook
from triage.service_levels import effective_slas, record_queue_breaches
from triage.sla import SlaState, sla_state

ActionName = Literal["assign", "acknowledge", "respond", "resolve", "dismiss", "note"]
ACTION_NAMES: tuple[ActionName, ...] = ("assign", "acknowledge", "respond", "resolve", "dismiss", "note")

#: The permission each action needs (assigning to someone else also needs ``assign_others``).
ACTION_RULES: dict[ActionName, Permission] = {
    "assign": "work",
    "acknowledge": "work",
    "respond": "work",
    "resolve": "work",
    "dismiss": "work",
    "note": "work",
}

_ACTIVE: frozenset[str] = frozenset(ACTIVE_STATUSES)
#: Per action: the statuses it applies to, and the status it moves the flag to (``None``: unchanged).
#: Closed flags take notes only: reopening is the flagging rule's (or a lead's CLI) decision.
TRANSITIONS: dict[ActionName, tuple[frozenset[str], FlagStatus | None]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged"),
    "respond": (_ACTIVE, "responded"),
    "resolve": (_ACTIVE, "resolved"),
    "dismiss": (_ACTIVE, "dismissed"),
    "assign": (_ACTIVE, None),
    "note": (frozenset(FLAG_STATUSES), None),
}

#: How the event log names each action.
EVENT_ACTIONS: dict[ActionName, EventAction] = {
    "assign": "assigned",
    "acknowledge": "status",
    "respond": "status",
    "resolve": "status",
    "dismiss": "status",
    "note": "note",
}

MAX_TEXT = 5000
TEMPLATE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"

#: How long a page view counts as "has it open".
PRESENCE_WINDOW = timedelta(minutes=2)
#: A view is written at most this often per user and flag (the page refreshes itself).
PRESENCE_WRITE_INTERVAL = timedelta(seconds=30)
#: The most flags the queue reads; more are counted as truncated.
QUEUE_LIMIT = 500
#: The entries a queue shows by default (``limit`` on ``/api/flags``, at most :data:`QUEUE_LIMIT`); its counts
#: cover every flag read. A page of 500 entries was ~0.5 MB of JSON per agent refresh.
QUEUE_PAGE = 100


class ActionInvalid(MomentsError):
    """An action that is well-formed but names something impossible (an unknown assignee or template): 422.

    Attributes:
        field: The request field at fault (``assignee``, ``template_id``).
    """

    def __init__(self, message: str, *, field: str = "assignee") -> None:
        super().__init__(message)
        self.field = field


class InvalidTransition(MomentsError):
    """The action does not apply to the flag's current status (acknowledging a resolved flag): 409.

    Attributes:
        flag: The flag as stored.
        action: The action refused.
    """

    def __init__(self, flag: Flag, action: str) -> None:
        self.flag = flag
        self.action = action
        super().__init__(f"cannot {action} flag {flag.id}: it is {flag.status}")


# ------------------------------------------------------------------------------ URLs


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL, else ``None``: only these become links on a page.

    ``javascript:``, ``data:`` and relative or malformed URLs are never linked.
    """
    if not url:
        return None
    text = url.strip()
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return text


# ------------------------------------------------------------------------------ requests


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    if_version: int = Field(ge=1, description="The flag version the caller saw; a different stored version is a 409.")


class AssignAction(_Action):
    """Assign the flag (``assignee``: a user name; ``null`` unassigns). Agents may only take it for themselves."""

    action: Literal["assign"]
    assignee: str | None = Field(default=None, max_length=64)

    @field_validator("assignee")
    @classmethod
    def _user_name(cls, value: str | None) -> str | None:
        if value is not None and not USER_NAME.match(value):
            raise ValueError("not a valid user name")
        return value


class AcknowledgeAction(_Action):
    """Acknowledge an open flag (someone is on it)."""

    action: Literal["acknowledge"]


class RespondAction(_Action):
    """Log the response given to the customer: its ``text`` and/or a ``link`` to it, and the playbook template used.

    A ``template_id`` without ``text`` logs the template's text, filled in for the flag
    (the customer's handle, the touchpoint), as the flag page does when an agent picks
    a template and sends it unchanged.
    """

    action: Literal["respond"]
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    link: str | None = Field(default=None, max_length=2000)
    template_id: str | None = Field(default=None, pattern=TEMPLATE_ID)

    @field_validator("link")
    @classmethod
    def _http_link(cls, value: str | None) -> str | None:
        if value is not None and safe_url(value) is None:
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _something(self) -> RespondAction:
        if not self.text and not self.link and not self.template_id:
            raise ValueError("give the response text, a link to it, or the template_id of the playbook text used")
        return self


class ResolveAction(_Action):
    """Resolve the flag, with an optional closing note."""

    action: Literal["resolve"]
    text: str | None = Field(default=None, max_length=MAX_TEXT)


class DismissAction(_Action):
    """Dismiss the flag (not a real issue); the reason is required and kept in the event log as feedback."""

    action: Literal["dismiss"]
    reason: str = Field(min_length=1, max_length=MAX_TEXT)


class NoteAction(_Action):
    """Add a note to the event log (the flag itself is unchanged, but the version still moves)."""

    action: Literal["note"]
    text: str = Field(min_length=1, max_length=MAX_TEXT)


FlagAction = Annotated[
    AssignAction | AcknowledgeAction | RespondAction | ResolveAction | DismissAction | NoteAction,
    Field(discriminator="action"),
]


_ACTION_ADAPTER: TypeAdapter[FlagAction] = TypeAdapter(FlagAction)


def parse_form_action(form: Iterable[tuple[str, Any]]) -> FlagAction:
    """An action from a page's form fields (blank fields count as absent; the CSRF field is dropped).

    Raises:
        pydantic.ValidationError: The fields do not make a valid action.
    """
    data: dict[str, Any] = {}
    for key, value in form:
        if key == "csrf_token" or not isinstance(value, str) or not value.strip():
            continue
        data[key] = value
    return _ACTION_ADAPTER.validate_python(data)


def validation_messages(exc: ValidationError) -> list[str]:
    """A validation error as short lines for a page (``reason: Field required``)."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if p not in ACTION_NAMES)
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines


# ------------------------------------------------------------------------------ response notes


_HEADERS = ("link", "template")


def response_note(text: str | None, link: str | None, template_id: str | None) -> str:
    """The event note of a response: ``link:`` and ``template:`` lines, a blank line, then the text.

    Without headers a text that would read as headers gets a leading blank line, so
    :func:`parse_response_note` always gives back what was written.
    """
    headers = [f"{name}: {value}" for name, value in (("link", link), ("template", template_id)) if value]
    body = text or ""
    if headers:
        return "\n".join(headers) + "\n\n" + body
    if _split_headers(body)[0]:
        return "\n" + body
    return body


def _split_headers(note: str) -> tuple[dict[str, str], str]:
    head, sep, rest = note.partition("\n\n")
    if not sep:
        head, rest = note, ""
    found: dict[str, str] = {}
    for line in head.split("\n"):
        name, colon, value = line.partition(": ")
        if not colon or name not in _HEADERS or name in found or not value:
            return {}, note
        found[name] = value
    return found, rest


def parse_response_note(note: str | None) -> tuple[str | None, str | None, str | None]:
    """``(text, link, template_id)`` of a note written by :func:`response_note`."""
    if not note:
        return None, None, None
    if note.startswith("\n"):
        return note[1:] or None, None, None
    headers, text = _split_headers(note)
    return text or None, headers.get("link"), headers.get("template")


# ------------------------------------------------------------------------------ actions


class ActionResult(BaseModel):
    """What an action left: the flag as stored, and the event it wrote (``null``: nothing changed)."""

    flag: Flag
    event: FlagEvent | None


def _check_assignee(store: Store, actor: User, action: AssignAction, current: Flag) -> None:
    """Agents take flags for themselves only; assigning anyone else (or taking someone else's) needs a lead."""
    if may(actor.role, "assign_others"):
        return
    own = action.assignee == actor.name and current.assignee in (None, actor.name)
    release = action.assignee is None and current.assignee == actor.name
    if not (own or release):
        raise Forbidden(f"role {actor.role} may only take a flag for themselves or release their own")


def _validate_assignee(store: Store, name: str | None) -> None:
    if name is None:
        return
    user = store.get_user(name)
    if user is None or user.disabled or not may(user.role, "work"):
        raise ActionInvalid(f"cannot assign to {name!r}: no active user of that name who works flags")


def _check_template(store: Store, flag: Flag, template_id: str | None) -> ResponseTemplate | None:
    """A response's template must be in the flag's touchpoint playbook, so the recovery rate per template is true."""
    if template_id is None:
        return None
    playbook = get_playbook(store, flag.touchpoint or "other")
    template = playbook.template(template_id)
    if template is None:
        raise ActionInvalid(
            f"no template {template_id!r} in the {playbook.touchpoint} playbook (see /playbooks)", field="template_id"
        )
    return template


def template_text(store: Store, flag: Flag, template: ResponseTemplate) -> str:
    """The template's text for this flag: ``{handle}`` is its first post's author, ``{touchpoint}`` its touchpoint."""
    first = flag.post_ids[0] if flag.post_ids else None
    post = store.get_many([first]).get(first) if first else None
    handle = post.author.handle if post else None
    return fill_template(template.text, handle=handle, touchpoint=flag.touchpoint)


def perform_action(store: Store, flag_id: str, action: FlagAction, actor: User, *, at: datetime) -> ActionResult:
    """Apply one action as ``actor``, with a compare-and-set on ``action.if_version``.

    Raises:
        Forbidden: ``actor``'s role may not do this.
        KeyError: No such flag.
        ConflictError: The flag's version is not ``action.if_version`` (nothing written).
        InvalidTransition: The action does not apply to the flag's status.
        ActionInvalid: The assignee is not a user who works flags, or the template is not in the playbook.
    """
    if not may(actor.role, ACTION_RULES[action.action]):
        raise Forbidden(f"role {actor.role} may not {action.action} flags")
    if isinstance(action, AssignAction):
        _validate_assignee(store, action.assignee)
    allowed, target = TRANSITIONS[action.action]

    def change(current: Flag) -> FlagChange | None:
        # Called only when the stored version is action.if_version (change_flag checks first).
        if current.status not in allowed:
            raise InvalidTransition(current, action.action)
        updated = current
        note: str | None = None
        if target is not None:
            updated = current.with_status(target, at)
        if isinstance(action, AssignAction):
            _check_assignee(store, actor, action, current)
            updated = current.model_copy(update={"assignee": action.assignee})
        elif isinstance(action, RespondAction):
            template = _check_template(store, current, action.template_id)
            text = action.text
            if not text and template is not None:  # the template sent as written, like the page does
                text = template_text(store, current, template)
            note = response_note(text, action.link, action.template_id)
        elif isinstance(action, DismissAction):
            note = action.reason
        elif isinstance(action, (NoteAction, ResolveAction)):
            note = action.text
        return FlagChange(updated, EVENT_ACTIONS[action.action], note)

    flag = store.change_flag(flag_id, change, actor=actor.name, if_version=action.if_version, at=at)
    event = None
    if flag.version != action.if_version:
        event = next((e for e in reversed(store.flag_events(flag_id)) if e.version == flag.version), None)
    return ActionResult(flag=flag, event=event)


# ------------------------------------------------------------------------------ presence


class Viewer(BaseModel):
    """Someone who had the flag's page open recently."""

    user: str
    seen_at: datetime


def presence_key(flag_id: str) -> str:
    """The setting holding who viewed a flag: ``presence:{id}`` (hashed when the id is too long for a key)."""
    key = f"presence:{flag_id}"
    return key if len(key) <= 200 else f"presence:sha256:{hashlib.sha256(flag_id.encode()).hexdigest()}"


def _seen(setting: AppSetting | None, since: datetime) -> dict[str, datetime]:
    seen: dict[str, datetime] = {}
    for user, value in (setting.value if setting else {}).items():
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            continue
        if when.tzinfo is not None and when > since:
            seen[user] = when
    return seen


def record_presence(store: Store, flag_id: str, user: str, *, now: datetime) -> None:
    """Note that ``user`` has the flag open (at most every :data:`PRESENCE_WRITE_INTERVAL`).

    A plain read-modify-write: two viewers at the same instant may drop each other's
    mark, which the next refresh puts back; presence is a hint, not a lock.
    """
    key = presence_key(flag_id)
    setting = store.get_setting(key)
    seen = _seen(setting, now - PRESENCE_WINDOW)
    last = seen.get(user)
    if last is not None and now - last < PRESENCE_WRITE_INTERVAL:
        return
    seen[user] = now
    value = {name: when.isoformat() for name, when in seen.items()}
    store.put_setting(AppSetting(key=key, value=value, updated_at=now, updated_by=user))


def _viewers(setting: AppSetting | None, now: datetime, exclude: str | None) -> list[Viewer]:
    seen = _seen(setting, now - PRESENCE_WINDOW)
    found = [Viewer(user=u, seen_at=t) for u, t in seen.items() if u != exclude]
    return sorted(found, key=lambda v: (-v.seen_at.timestamp(), v.user))


def viewers(store: Store, flag_id: str, *, now: datetime, exclude: str | None = None) -> list[Viewer]:
    """Who else viewed the flag within :data:`PRESENCE_WINDOW`, most recent first."""
    return _viewers(store.get_setting(presence_key(flag_id)), now, exclude)


def viewers_of(
    store: Store, flag_ids: Iterable[str], *, now: datetime, exclude: str | None = None
) -> dict[str, list[Viewer]]:
    """:func:`viewers` of many flags with one store read (``get_settings``): the queue shows each entry's."""
    keys = {flag_id: presence_key(flag_id) for flag_id in flag_ids}
    settings = store.get_settings(keys.values())
    return {flag_id: _viewers(settings.get(key), now, exclude) for flag_id, key in keys.items()}


# ------------------------------------------------------------------------------ the queue


QueueStatus = Literal["active", "all", "open", "acknowledged", "responded", "resolved", "dismissed"]


class QueueFilters(BaseModel):
    """The queue's filters (query parameters on ``/`` and ``/api/flags``); blank means any."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    brand: str | None = Field(default=None, max_length=200)
    touchpoint: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    status: QueueStatus | None = Field(default=None, description="default: active (open, acknowledged, responded)")
    assignee: str | None = Field(default=None, max_length=64)
    lang: str | None = Field(default=None, max_length=20)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def statuses(self) -> Sequence[str] | None:
        """The statuses to list (``None``: every one)."""
        if self.status in (None, "active"):
            return ACTIVE_STATUSES
        if self.status == "all":
            return None
        return (self.status,)


class QueueQuery(QueueFilters):
    """``/api/flags``'s query: the filters and how many entries to return."""

    limit: int = Field(
        default=QUEUE_PAGE, ge=1, le=QUEUE_LIMIT, description="the most entries returned; counts cover all"
    )

    def filters(self) -> QueueFilters:
        """The filters alone (what the queue echoes back)."""
        return QueueFilters.model_validate(self.model_dump(exclude={"limit"}))


class SlaView(BaseModel):
    """A flag's SLA targets as the API shows them (seconds left are negative when overdue)."""

    first_response_due: datetime
    resolution_due: datetime
    first_response_remaining_s: float | None
    resolution_remaining_s: float | None
    first_response_breached: bool
    resolution_breached: bool
    breached: bool
    remaining_s: float | None = Field(description="seconds to the nearest open target; null when both are met")
    next_due: Literal["first_response", "resolution"] | None

    @classmethod
    def of(cls, state: SlaState) -> SlaView:
        next_due = state.next_due
        return cls(
            first_response_due=state.first_response_due,
            resolution_due=state.resolution_due,
            first_response_remaining_s=state.first_response_remaining,
            resolution_remaining_s=state.resolution_remaining,
            first_response_breached=state.first_response_breached,
            resolution_breached=state.resolution_breached,
            breached=state.breached,
            remaining_s=state.remaining,
            next_due="first_response" if next_due == "first_response" else "resolution" if next_due else None,
        )


class PostSummary(BaseModel):
    """The lead post of a queued flag, short."""

    id: str
    source: str
    url: str | None
    author_handle: str | None
    author_name: str | None
    followers: int | None
    text: str
    lang: str | None


def post_lang(post: Post) -> str | None:
    """A post's language: the source's, else the classifier's."""
    return post.lang or (post.classification.lang if post.classification else None)


def _summary(post: Post, limit: int = 280) -> PostSummary:
    text = post.text if len(post.text) <= limit else post.text[: limit - 1] + "…"
    return PostSummary(
        id=post.id,
        source=post.source,
        url=post.url,
        author_handle=post.author.handle,
        author_name=post.author.display_name,
        followers=post.author.followers,
        text=text,
        lang=post_lang(post),
    )


class QueueEntry(BaseModel):
    """One flag in the queue."""

    flag: Flag
    sla: SlaView
    post: PostSummary | None = Field(description="the flag's first post (null when it is not stored)")
    post_count: int
    viewers: list[Viewer] = Field(description="others who had it open in the last 2 minutes")
    new_p1: bool = Field(description="a P1 nobody has acknowledged yet")


class QueueCounts(BaseModel):
    """Counts over the filtered queue: every flag read (up to :data:`QUEUE_LIMIT`), not only those shown."""

    open: int = Field(description="flags with status open")
    active: int = Field(description="open, acknowledged or responded")
    breached: int = Field(description="flags past an SLA target")
    shown: int = Field(description="entries returned (at most the limit)")


class QueueOptions(BaseModel):
    """The values the filters can take, from the flags read (languages: from the posts read, see load_queue)."""

    brands: list[str] = Field(default_factory=list)
    touchpoints: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    langs: list[str] = Field(default_factory=list)
    assignees: list[str] = Field(default_factory=list)


class Queue(BaseModel):
    """The queue: the first entries in order, counts of all, and whether more flags matched than are shown."""

    entries: list[QueueEntry]
    counts: QueueCounts
    truncated: bool = Field(description="more flags matched than are shown (or than the queue reads)")
    filters: QueueFilters
    options: QueueOptions
    generated_at: datetime


def queue_key(flag: Flag, state: SlaState) -> tuple[int, float, datetime, str]:
    """Queue order: priority (P1 first), then seconds left on the nearest SLA target (most overdue first)."""
    remaining = state.remaining
    return (priority_rank(flag.priority), remaining if remaining is not None else float("inf"), flag.opened_at, flag.id)


def load_queue(
    store: Store,
    config: MomentsConfig,
    filters: QueueFilters,
    *,
    now: datetime,
    viewer: str | None = None,
    record_breaches: bool = True,
    limit: int = QUEUE_PAGE,
) -> Queue:
    """The first ``limit`` entries of the queue for ``filters`` at ``now``, with counts over every flag read.

    ``viewer`` (the caller) is left out of each entry's viewers. Brand, touchpoint and status
    are filtered by the store; source, language and assignee here, on the flags read (at
    most :data:`QUEUE_LIMIT`). SLA targets are the ones in force (config with the leads'
    overrides); a missed target not yet in a flag's log is recorded there now, a bounded
    number per request (:func:`triage.service_levels.record_queue_breaches`), and the flags
    written are read again so the queue shows their current versions. Presence is one
    batched read for the entries shown (:func:`viewers_of`), and so are posts unless a
    source or language filter needs every flag's (then the language options cover them all,
    else the languages of the entries shown).
    """
    slas = effective_slas(store, config)
    flags = store.list_flags(
        status=filters.statuses(), brand=filters.brand, touchpoint=filters.touchpoint, limit=QUEUE_LIMIT
    )
    read_all = len(flags) < QUEUE_LIMIT
    if record_breaches and (written := record_queue_breaches(store, flags, slas, now)):
        changed = {breach.flag_id for breach in written}
        flags = [(store.get_flag(f.id) or f) if f.id in changed else f for f in flags]
    # Posts are read (and parsed: most of a queue's time) for every flag only when a filter needs them;
    # else for the entries shown, after sorting.
    by_post = filters.source is not None or filters.lang is not None
    posts = store.get_many({pid for flag in flags for pid in flag.post_ids}) if by_post else {}
    rows: list[tuple[tuple[int, float, datetime, str], Flag, SlaState, list[Post]]] = []
    for flag in flags:
        flag_posts = [posts[pid] for pid in flag.post_ids if pid in posts]
        if filters.assignee is not None and flag.assignee != filters.assignee:
            continue
        if filters.source is not None and not any(p.source == filters.source for p in flag_posts):
            continue
        if filters.lang is not None and not any(post_lang(p) == filters.lang for p in flag_posts):
            continue
        state = sla_state(flag, (), slas, now)
        rows.append((queue_key(flag, state), flag, state, flag_posts))
    rows.sort(key=lambda row: row[0])
    shown = rows[:limit]
    if not by_post:
        posts = store.get_many({pid for _, flag, _, _ in shown for pid in flag.post_ids})
        shown = [(key, flag, state, [posts[p] for p in flag.post_ids if p in posts]) for key, flag, state, _ in shown]
    options = QueueOptions(
        brands=sorted({f.brand for f in flags if f.brand}),
        touchpoints=sorted({f.touchpoint for f in flags if f.touchpoint}),
        # a post id is "{source}:{native id}": every flag's sources without reading its posts
        sources=sorted({pid.split(":", 1)[0] for f in flags for pid in f.post_ids}),
        langs=sorted({lang for p in posts.values() if (lang := post_lang(p))}),
        assignees=sorted({f.assignee for f in flags if f.assignee}),
    )
    seen_by = viewers_of(store, (flag.id for _, flag, _, _ in shown), now=now, exclude=viewer)
    entries = [
        QueueEntry(
            flag=flag,
            sla=SlaView.of(state),
            post=_summary(flag_posts[0]) if flag_posts else None,
            post_count=len(flag.post_ids),
            viewers=seen_by[flag.id],
            new_p1=flag.priority == "P1" and flag.status == "open",
        )
        for _, flag, state, flag_posts in shown
    ]
    counts = QueueCounts(
        open=sum(1 for _, flag, _, _ in rows if flag.status == "open"),
        active=sum(1 for _, flag, _, _ in rows if flag.status not in CLOSED_STATUSES),
        breached=sum(1 for _, _, state, _ in rows if state.breached),
        shown=len(entries),
    )
    return Queue(
        entries=entries,
        counts=counts,
        truncated=not read_all or len(rows) > len(entries),
        filters=filters,
        options=options,
        generated_at=now,
    )


# ------------------------------------------------------------------------------ one flag


class FlagDetail(BaseModel):
    """A flag with its posts (in the flag's order; missing ones left out), its event log and SLA state."""

    flag: Flag
    posts: list[Post]
    events: list[FlagEvent]
    sla: SlaView
    viewers: list[Viewer]


def load_flag_detail(
    store: Store, config: MomentsConfig, flag_id: str, *, now: datetime, viewer: str | None = None
) -> FlagDetail | None:
    """One flag with everything its page shows, or ``None`` when there is no such flag."""
    flag = store.get_flag(flag_id)
    if flag is None:
        return None
    found = store.get_many(flag.post_ids)
    events = store.flag_events(flag.id)
    return FlagDetail(
        flag=flag,
        posts=[found[pid] for pid in flag.post_ids if pid in found],
        events=events,
        sla=SlaView.of(sla_state(flag, events, effective_slas(store, config), now)),
        viewers=viewers(store, flag.id, now=now, exclude=viewer),
    )


def assignable_users(store: Store) -> list[User]:
    """Active users who work flags, for a lead's assign menu."""
    return [u for u in store.list_users() if not u.disabled and may(u.role, "work")]
