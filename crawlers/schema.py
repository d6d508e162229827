"""The one Moments record schema.

Every stage speaks in :class:`Post`: crawlers create it, models add
``classification``, flows add ``flag``. The Elasticsearch mapping and the
SQLite tables in :mod:`search` are *derived* from these models (see
``search.mapping``), so a field is added here and nowhere else.

Field metadata understood by the derivation (``json_schema_extra``):

* ``{"index": "text"}``: full-text searched (ES ``text`` with a ``keyword``
  sub-field, SQLite FTS5 column).
* ``{"index": "none"}``: stored but not indexed (ES ``enabled: false``).
* ``{"index": "scores"}``: an open ``label -> probability`` map (ES object with
  float values; taxonomies can be custom per brand).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

Sentiment = Literal["negative", "neutral", "positive"]
Moment = Literal["misery", "magic", "neutral"]
Priority = Literal["P1", "P2", "P3", "P4"]
FlagStatus = Literal["open", "acknowledged", "resolved", "dismissed"]


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


class Flag(_Record):
    """A care-team work item: a negative post that is spreading."""

    status: FlagStatus = "open"
    priority: Priority
    score: float = Field(ge=0)
    reasons: list[str] = Field(json_schema_extra={"index": "text"})
    velocity_per_hour: float = Field(ge=0)
    flagged_at: UtcDatetime
    rule_version: str


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
    urls: list[str] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list)
    duplicate_of: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"index": "none"})
    classification: Classification | None = None
    flag: Flag | None = None

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
