"""The one Moments record schema, and JSON Lines in and out.

Every stage speaks in these records:

* :class:`Post`: crawlers create it, models add its ``classification``.
* :class:`Flag`: a care-team work item (one per post, or one per burst of posts),
  with a status, an assignee, timestamps and a ``version`` for compare-and-set.
* :class:`FlagEvent`: one entry of a flag's append-only audit log.

The Elasticsearch mappings and the SQLite tables in :mod:`search` are *derived*
from these models (``search.mapping``), so a field is added here and nowhere else.

Field metadata understood by the derivation (``json_schema_extra``):

* ``{"index": "text"}``: free text, searched by ``moments search`` (ES ``text``
  with a ``keyword`` sub-field, an SQLite FTS5 column).
* ``{"index": "none"}``: stored but not indexed (ES ``enabled: false``).
* ``{"index": "scores"}``: an open ``label -> probability`` map (ES object with
  float values; taxonomies can be custom per brand).

JSONL: a bad line never stops a run. :func:`read_posts` reports it with its line
number and the reason, counts it, and skips it, so every good line still goes
through. :func:`read_objects` is the lenient reader for stages that need only a
``text`` (``moments classify`` on a user's own export).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger("moments.records")

SCHEMA_VERSION = 2

Sentiment = Literal["negative", "neutral", "positive"]
Moment = Literal["misery", "magic", "neutral"]
Priority = Literal["P1", "P2", "P3", "P4"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")
FlagKind = Literal["post", "burst"]
FlagStatus = Literal["open", "acknowledged", "responded", "resolved", "dismissed"]
FLAG_STATUSES: tuple[FlagStatus, ...] = ("open", "acknowledged", "responded", "resolved", "dismissed")
#: Statuses a person closed; a rule never reopens them without a configured margin.
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "dismissed"})


def _require_utc(value: datetime | None) -> datetime | None:
    """Reject naive datetimes and normalise aware ones to UTC.

    A naive timestamp is ambiguous (which zone?), so it is an input error, not
    something to guess about.
    """
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the only clock the schema uses)."""
    return datetime.now(UTC)


def priority_rank(priority: str) -> int:
    """``P1`` -> 1 ... ``P4`` -> 4 (lower is more urgent)."""
    return PRIORITIES.index(priority) + 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class Author(_Record):
    """Who posted it, as the source shows them."""

    handle: str | None = None
    display_name: str | None = Field(default=None, json_schema_extra={"index": "text"})
    followers: int | None = Field(default=None, ge=0)


class _Counters(_Record):
    """The engagement counters every source may expose; ``None`` means unknown, not zero."""

    likes: int | None = Field(default=None, ge=0)
    shares: int | None = Field(default=None, ge=0)
    replies: int | None = Field(default=None, ge=0)
    views: int | None = Field(default=None, ge=0)
    quotes: int | None = Field(default=None, ge=0)
    score: int | None = None

    def total(self) -> int:
        """Interactions that spread a post: likes, shares, replies and quotes (unknown counts as 0).

        Vote-based sources (Reddit, Hacker News, Lemmy) have a net ``score`` instead
        of likes; a positive score stands in for likes there.
        """
        likes_or_votes = self.likes if self.likes is not None else max(self.score or 0, 0)
        return likes_or_votes + (self.shares or 0) + (self.replies or 0) + (self.quotes or 0)


class Engagement(_Counters):
    """Engagement counters where the source exposes them, as last seen."""

    upvote_ratio: float | None = Field(default=None, ge=0, le=1)


class EngagementSnapshot(_Counters):
    """Engagement as seen at one poll; successive snapshots give velocity."""

    at: UtcDatetime


class Reshare(_Record):
    """One account that reshared the post (a Mastodon reblog, a Bluesky repost).

    Sources list who reshared but not when, so ``at`` is the poll that first saw the
    account (the crawler keeps the earliest); ``followers`` is that account's reach,
    the weight a self-exciting forecast gives its reshare (:mod:`models.forecast`).
    """

    handle: str
    followers: int | None = Field(default=None, ge=0)
    at: UtcDatetime


class Classification(_Record):
    """What the models say about a post."""

    sentiment: Sentiment
    sentiment_scores: dict[str, float] = Field(json_schema_extra={"index": "scores"})
    touchpoint: str
    touchpoint_scores: dict[str, float] = Field(json_schema_extra={"index": "scores"})
    moment: Moment
    severity: float = Field(ge=0, le=1)
    confidence: float | None = Field(default=None, ge=0, le=1)
    lang: str | None = None
    model_version: str


class Post(_Record):
    """One public post or review about a brand."""

    id: str
    source: str
    native_id: str
    url: str | None = None
    brand: list[str] = Field(default_factory=list)
    author: Author = Field(default_factory=Author)
    text: str = Field(json_schema_extra={"index": "text"})
    title: str | None = Field(default=None, json_schema_extra={"index": "text"})
    lang: str | None = None
    rating: float | None = Field(default=None, ge=0)
    created_at: UtcDatetime | None = None
    crawled_at: UtcDatetime
    engagement: Engagement = Field(default_factory=Engagement)
    engagement_history: list[EngagementSnapshot] = Field(default_factory=list)
    #: Who reshared the post, for sources that list them (posts under watch only).
    reshares: list[Reshare] = Field(default_factory=list, json_schema_extra={"index": "none"})
    urls: list[str] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list)
    duplicate_of: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"index": "none"})
    classification: Classification | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_flag(cls, data: Any) -> Any:
        # Schema 1 kept the care team's flag inside the post. Flags are records of their
        # own now (the stores migrate them on open); a post file from schema 1 still reads.
        if isinstance(data, dict) and "flag" in data:
            data = {k: v for k, v in data.items() if k != "flag"}
        return data

    @field_validator("brand", mode="before")
    @classmethod
    def _brand_as_list(cls, value: object) -> object:
        # A single brand is the common case in hand-written imports.
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("text")
    @classmethod
    def _text_is_text(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _id_matches_source(self) -> Post:
        expected = post_id(self.source, self.native_id)
        if self.id != expected:
            raise ValueError(f"id must be '{{source}}:{{native_id}}' = {expected!r}, got {self.id!r}")
        return self

    def to_json(self) -> str:
        """One JSONL line (timestamps in ISO 8601 UTC, unknowns as null)."""
        return self.model_dump_json()


def post_id(source: str, native_id: str) -> str:
    """The stable identity of a post: ``{source}:{native_id}``."""
    return f"{source}:{native_id}"


class Flag(_Record):
    """A care-team work item: a negative post that is spreading, or a burst of them.

    A post has at most one flag, whose id is :func:`post_flag_id` of the post: a
    re-evaluation updates (escalates) that flag and never opens a second one.
    Every change goes through a store's compare-and-set on ``version`` and writes a
    :class:`FlagEvent`, so two writers never silently overwrite each other.
    """

    id: str
    kind: FlagKind = "post"
    brand: str | None = None
    touchpoint: str | None = None
    post_ids: list[str] = Field(min_length=1)
    priority: Priority
    score: float = Field(ge=0)
    reasons: list[str] = Field(default_factory=list)
    velocity_per_hour: float | None = Field(default=None, ge=0)
    rule_version: str | None = None
    status: FlagStatus = "open"
    assignee: str | None = None
    opened_at: UtcDatetime
    first_response_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None
    updated_at: UtcDatetime
    version: int = Field(default=1, ge=1)

    @property
    def is_closed(self) -> bool:
        """Resolved or dismissed by a person."""
        return self.status in CLOSED_STATUSES

    def with_status(self, status: FlagStatus, at: datetime) -> Flag:
        """This flag moved to ``status`` at ``at``, with the lifecycle timestamps kept right.

        ``first_response_at`` is set the first time the flag is ``responded`` (the
        customer got an answer); ``resolved_at`` when it is resolved or dismissed, and
        cleared when it is reopened.
        """
        update: dict[str, Any] = {"status": status}
        if status == "responded" and self.first_response_at is None:
            update["first_response_at"] = at
        if status in CLOSED_STATUSES:
            update["resolved_at"] = self.resolved_at if self.is_closed and self.resolved_at else at
        else:
            update["resolved_at"] = None
        return self.model_copy(update=update)


def post_flag_id(post_id: str) -> str:
    """The id of the one flag a post can have: ``post:{post id}``."""
    return f"post:{post_id}"


class FieldChange(_Record):
    """One field of a flag before and after a change (values as they read, JSON for lists)."""

    field: str
    old: str | None = None
    new: str | None = None


#: What an event records: the rule opening, updating, escalating or reopening a flag;
#: a person changing status, assignee or adding a note; a store migration; a missed SLA target.
EventAction = Literal[
    "opened", "updated", "escalated", "reopened", "status", "assigned", "note", "migrated", "changed", "sla_breached"
]


class FlagEvent(_Record):
    """One entry of a flag's audit log: who did what, when, what changed, and why.

    The log is append-only: a store adds events and never edits or deletes them.
    ``version`` is the flag version the change produced (1 for the opening), so the
    log reads in order and each entry matches one compare-and-set.
    """

    flag_id: str
    version: int = Field(ge=1)
    at: UtcDatetime
    actor: str
    action: EventAction
    changes: list[FieldChange] = Field(default_factory=list)
    note: str | None = None


def render_value(value: Any) -> str | None:
    """A field value as an event shows it: ``None`` stays null, lists and maps are JSON."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def diff_flags(old: Flag | None, new: Flag, *, ignore: Iterable[str] = ("version", "updated_at")) -> list[FieldChange]:
    """The fields that differ between two versions of a flag (all set fields when ``old`` is None)."""
    skip = set(ignore)
    changes: list[FieldChange] = []
    for name in Flag.model_fields:
        if name in skip:
            continue
        before = getattr(old, name) if old is not None else None
        after = getattr(new, name)
        if before != after:
            changes.append(FieldChange(field=name, old=render_value(before), new=render_value(after)))
    return changes


# --------------------------------------------------------------------------- JSON Lines


@dataclass
class ReadReport:
    """What a reader kept and what it dropped, with why (line number, reason)."""

    read: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.read - len(self.dropped)

    def drop(self, number: int, reason: str, source_name: str) -> None:
        self.dropped.append((number, reason))
        log.warning("%s line %d dropped: %s", source_name, number, reason)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    if err["type"] == "json_invalid":
        return f"not valid JSON ({err['msg']})"
    where = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{where}: {err['msg']}"


def read_posts(lines: Iterable[str], report: ReadReport | None = None, *, source_name: str = "input") -> Iterator[Post]:
    """Parse JSONL lines into posts, skipping (and logging) malformed ones.

    Args:
        lines: An iterable of JSONL lines, for example an open file.
        report: Collects counts and the reason for each dropped line.
        source_name: How the input is named in log messages.

    Yields:
        Every line that is a valid :class:`Post`, in order.
    """
    report = report if report is not None else ReadReport()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.read += 1
        try:
            yield Post.model_validate_json(line)
        except ValidationError as exc:
            report.drop(number, _first_error(exc), source_name)


def read_posts_file(path: Path, report: ReadReport | None = None) -> Iterator[Post]:
    """:func:`read_posts` over a file path."""
    with path.open(encoding="utf-8") as handle:
        yield from read_posts(handle, report, source_name=str(path))


def read_objects(
    lines: Iterable[str], report: ReadReport | None = None, *, source_name: str = "input", require_text: bool = True
) -> Iterator[dict[str, Any]]:
    """Parse JSONL lines into JSON objects, keeping every field as it is.

    The lenient reader: a line is kept when it is a JSON object with a non-empty
    string ``text`` (unless ``require_text`` is false); anything else is dropped
    with its line number and the reason.
    """
    report = report if report is not None else ReadReport()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.read += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            report.drop(number, f"not valid JSON ({exc.msg} at column {exc.colno})", source_name)
            continue
        if not isinstance(value, dict):
            report.drop(number, f"expected a JSON object, got {type(value).__name__}", source_name)
            continue
        if require_text:
            text = value.get("text")
            if not isinstance(text, str) or not text.strip():
                reason = "text: missing" if "text" not in value else "text: must be a non-empty string"
                report.drop(number, reason, source_name)
                continue
        yield value


def write_posts(posts: Iterable[Post], out: IO[str]) -> int:
    """Write posts as JSONL, one per line; returns how many were written."""
    count = 0
    for post in posts:
        out.write(post.to_json())
        out.write("\n")
        count += 1
    out.flush()
    return count


def write_objects(objects: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write JSON objects as JSONL, one per line; returns how many were written."""
    count = 0
    for value in objects:
        out.write(json.dumps(value, ensure_ascii=False))
        out.write("\n")
        count += 1
    out.flush()
    return count


def dumps(record: BaseModel) -> str:
    """A record as a pretty JSON document (for humans, not for files)."""
    return json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False)
