"""``brands.yaml``: one validated model of the whole configuration.

Shape (``crawlers/brands.example.yaml`` is a complete, commented example)::

    contact_url: https://example.org/moments-contact   # goes in the crawler's User-Agent
    credentials:                       # per source; ${ENV} is read from the environment
      mastodon: {token: "${MASTODON_TOKEN}"}
    import:                            # column mapping for `moments crawl import`
      format: csv
      columns: {native_id: id, text: body}
    flag_rules:                        # the flagging rule's thresholds (every brand)
      min_velocity: 20                 # interactions/hour a negative post needs
      reopen_margin: 0.2               # reopen a resolved flag only at +20% score
    notifications:                     # where new and escalated flags are sent
      - {kind: webhook, url: "http://127.0.0.1:8099/hook", secret_env: MOMENTS_WEBHOOK_SECRET, min_priority: P2}
      - {kind: slack, webhook_url_env: MOMENTS_SLACK_WEBHOOK, min_priority: P1}
      - {kind: email, smtp_host: 127.0.0.1, smtp_port: 8025, to: ["care@example.org"], min_priority: P2}
    slas:                              # first response and resolution per priority
      P1: {first_response: 15m, resolution: 4h}
    schedules:                         # when `moments serve` runs the flows
      watch: {interval: 10m}
      nightly: {cron: "0 2 * * *", timezone: Europe/London}
    retention:
      posts: 365d
    brands:
      - name: Northwind Air
        names: ["Northwind Air", Northwind]
        handles: ["@northwindair"]
        keywords: ['"lost bag" AND northwind']
        exclude: ['"northwind traders"']
        taxonomy:                      # custom touchpoints, scored zero-shot
          mode: extend
          touchpoints:
            - {id: loyalty, description: "miles, points, status", examples: ["my miles never posted"]}
        flag_rules: {min_velocity: 10} # this brand's overrides of the global rules
        watch_interval: 5m             # this brand's watch tick (default: schedules.watch)
        sources:
          - {source: mastodon, query: northwindair, base_url: https://mastodon.social}

Every key is checked: an unknown key, a key written twice, a bad value or entries
that contradict each other (two brands of one name, a brand's ``flag_rules`` out of
order with the global ones, a channel naming an unknown brand) is one
:class:`ConfigError` naming the file, the line and the key, e.g.
``brands.yaml:14: brands[0].sources[1].source: unknown source 'twitter' ...``.
Durations are written ``90s``, ``15m``, ``4h`` or ``7d`` (a bare number is seconds);
``model_dump(mode="json")`` writes them the same way, so a dumped config loads again.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from moments.errors import UsageError
from moments.records import PRIORITIES, Priority

# Sources whose posts are about the brand that lists them (reviews of its app or pages).
OWNED_SOURCES = ("appstore", "jsonld")
SOURCES = ("mastodon", "bluesky", "reddit", "hackernews", "lemmy", "appstore", "jsonld", "rss", "import")
#: Sources with fast-moving conversation, polled by the watch flow; the rest are nightly.
FAST_SOURCES = ("mastodon", "bluesky", "reddit", "hackernews", "lemmy")


class ConfigError(UsageError):
    """The configuration file is missing, unreadable or invalid (exit 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- value types

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``90s``, ``15m``, ``4h``, ``7d``, ``2w`` or a number of seconds, as a positive timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as 15m, 4h or 7d")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2] or "s"]
    else:
        raise ValueError(f"expected a duration such as 15m, 4h or 7d, got {value!r}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """``value`` as :func:`parse_duration` reads it (``15m``, ``4h``, ``7d``), so a dumped config loads again."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str, when_used="json")
]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"must be an http(s):// URL, got {value!r}")
    return value


def _env_name(value: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise ValueError(f"must be the name of an environment variable (letters, digits, _), got {value!r}")
    return value


def _email_address(value: str) -> str:
    if not re.match(r"^[^@\s<>,;]+@[^@\s<>,;]+$", value):
        raise ValueError(f"not an email address: {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
EnvName = Annotated[str, AfterValidator(_env_name)]
EmailAddress = Annotated[str, AfterValidator(_email_address)]


def _at(loc: tuple[int | str, ...], message: str) -> PydanticCustomError:
    """An error about the entry at ``loc`` below the model that raises it (for checks across entries)."""
    return PydanticCustomError("config_check", "{message}", {"message": message, "at": loc})


# --------------------------------------------------------------------------- crawling


class SourceConfig(_Model):
    """One crawl job of a brand: which source, what to ask it, and where it lives."""

    source: str
    query: str
    base_url: str | None = None
    country: str = "us"
    since: str | None = None
    # "text": keep posts whose text matches a brand (social sources); "all": every
    # post is about this brand (its own app's reviews, its review pages).
    match: Literal["text", "all"] | None = None

    @property
    def match_mode(self) -> str:
        """``match``, defaulting to ``all`` for appstore and jsonld and ``text`` elsewhere."""
        return self.match or ("all" if self.source in OWNED_SOURCES else "text")

    @property
    def is_fast(self) -> bool:
        """Polled by the watch flow (conversation sources), not only nightly."""
        return self.source in FAST_SOURCES

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in SOURCES:
            raise ValueError(f"unknown source {value!r}; expected one of {', '.join(SOURCES)}")
        return value


class ImportConfig(_Model):
    """How to read a file exported by another tool."""

    format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    source: str = "import"
    delimiter: str = ","


# --------------------------------------------------------------------------- classification


class TouchpointConfig(_Model):
    """One label of a brand's touchpoint taxonomy."""

    id: str
    label: str | None = None
    description: str = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9_\-]*$", value):
            raise ValueError(f"must be lowercase letters, digits, _ or - (such as loyalty_program), got {value!r}")
        return value


class TaxonomyConfig(_Model):
    """A brand's touchpoints: ``replace`` the default taxonomy or ``extend`` it."""

    mode: Literal["replace", "extend"] = "extend"
    touchpoints: list[TouchpointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> TaxonomyConfig:
        seen: dict[str, int] = {}
        for i, tp in enumerate(self.touchpoints):
            if tp.id in seen:
                raise _at(("touchpoints", i, "id"), f"touchpoint id {tp.id!r} repeats touchpoints[{seen[tp.id]}]")
            seen[tp.id] = i
        return self

    def as_mapping(self) -> dict[str, Any]:
        """The plain mapping ``models.Taxonomy.from_config`` takes."""
        return self.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------- flagging


#: Words that say a customer may be hurt, unsafe or vulnerable: a post with one is
#: flagged even before it spreads, and ranks higher (``flag_rules.vulnerability_terms``).
#: A trailing ``*`` matches any ending (``injur*``: injured, injury).
DEFAULT_VULNERABILITY_TERMS: tuple[str, ...] = (
    "wheelchair", "disabled", "disability", "medical", "medication", "medicine", "insulin", "allerg*",
    "injur*", "hurt", "unsafe", "safety", "emergency", "ambulance", "hospital", "pregnan*", "my child",
    "my baby", "my daughter", "my son", "elderly", "panic attack", "harass*", "assault*", "discriminat*",
    "stranded", "scam*", "fraud*", "suicid*",
)  # fmt: skip


class FlagRules(_Model):
    """How the flagging rule scores and ranks posts; set under ``flag_rules`` (and per brand).

    The score is a sum of points (see ``flows.flagging``): *need* (severity times the
    touchpoint's criticality, vulnerability words, repeat complaints, time waited) and
    *reach* (spread percentile within source and brand, acceleration, and the author's
    followers, capped at ``reach_cap``).

    Attributes:
        min_velocity: Interactions per hour a negative post needs to be flagged
            (a post with a vulnerability word needs none).
        min_negative_probability: Sentiment confidence needed when the moment is not misery.
        p1_score: Score at or above which a flag is P1 (drop everything).
        p2_score: Score at or above which a flag is P2.
        p3_score: Score at or above which a flag is P3; below is P4.
        reopen_margin: A flag a person resolved or dismissed is reopened by the rule
            only when the new score is at least ``(1 + reopen_margin)`` times the score
            it had when closed (0.5: half as bad again). The event log says so.
        reach_cap: The most points the author's follower count can add. It must not
            exceed the narrowest gap between priority thresholds, so that follower count
            alone never moves a flag more than one priority level.
        touchpoint_criticality: Multiplier of the severity points per touchpoint
            (default 1.0; 1.5 for a touchpoint where a failure hurts most).
        vulnerability_terms: Words or phrases (``*`` suffix: any ending) marking safety,
            health or vulnerability.
        repeat_window: How far back an earlier complaint by the same customer counts.
        viral_threshold: Reposts (or interactions, where a source has no repost count)
            within ``forecast_horizon`` that make a post viral: the virality forecast's
            ``p_viral`` is the chance of reaching it.
        viral_thresholds: Per source, replacing ``viral_threshold`` (50 reposts are a lot
            on Mastodon, little on Reddit); merged key by key with a brand's.
        forecast_horizon: How far after posting the forecast looks.
    """

    min_velocity: float = Field(default=20.0, ge=0)
    min_negative_probability: float = Field(default=0.5, ge=0, le=1)
    p1_score: float = Field(default=7.0, ge=0)
    p2_score: float = Field(default=5.0, ge=0)
    p3_score: float = Field(default=3.0, ge=0)
    reopen_margin: float = Field(default=0.2, ge=0)
    reach_cap: float = Field(default=1.0, ge=0)
    touchpoint_criticality: dict[str, float] = Field(default_factory=dict)
    vulnerability_terms: list[str] = Field(default_factory=lambda: list(DEFAULT_VULNERABILITY_TERMS))
    repeat_window: Duration = timedelta(days=7)
    viral_threshold: float = Field(default=500.0, gt=0)
    viral_thresholds: dict[str, float] = Field(default_factory=dict)
    forecast_horizon: Duration = timedelta(hours=24)

    @model_validator(mode="after")
    def _ordered(self) -> FlagRules:
        if not self.p1_score >= self.p2_score >= self.p3_score:
            raise ValueError("priority thresholds must satisfy p1_score >= p2_score >= p3_score")
        gap = min(self.p1_score - self.p2_score, self.p2_score - self.p3_score)
        if self.reach_cap > gap:
            raise ValueError(
                f"reach_cap {self.reach_cap:g} is wider than the narrowest gap between priority thresholds "
                f"({gap:g}): follower count alone could move a flag two levels"
            )
        for touchpoint, weight in self.touchpoint_criticality.items():
            if not 0 <= weight <= 3:
                raise ValueError(f"touchpoint_criticality.{touchpoint}: must be between 0 and 3, got {weight:g}")
        for source, threshold in self.viral_thresholds.items():
            if threshold <= 0:
                raise ValueError(f"viral_thresholds.{source}: must be above 0, got {threshold:g}")
        if self.forecast_horizon <= timedelta(0):
            raise ValueError("forecast_horizon must be positive")
        return self

    def merged(self, overrides: FlagRuleOverrides | None) -> FlagRules:
        """These rules with a brand's overrides applied (criticality maps are merged key by key)."""
        if overrides is None:
            return self
        changed = overrides.model_dump(exclude_none=True)
        for key in ("touchpoint_criticality", "viral_thresholds"):
            if key in changed:
                changed[key] = {**getattr(self, key), **changed[key]}
        return FlagRules.model_validate({**self.model_dump(), **changed})

    def criticality(self, touchpoint: str | None) -> float:
        """The severity multiplier of ``touchpoint`` (1.0 when not configured)."""
        return self.touchpoint_criticality.get(touchpoint or "", 1.0)

    def viral_threshold_for(self, source: str) -> float:
        """The count that makes a post from ``source`` viral (for ``p_viral``)."""
        return self.viral_thresholds.get(source, self.viral_threshold)


class FlagRuleOverrides(_Model):
    """A brand's changes to the global :class:`FlagRules` (unset keys inherit)."""

    min_velocity: float | None = Field(default=None, ge=0)
    min_negative_probability: float | None = Field(default=None, ge=0, le=1)
    p1_score: float | None = Field(default=None, ge=0)
    p2_score: float | None = Field(default=None, ge=0)
    p3_score: float | None = Field(default=None, ge=0)
    reopen_margin: float | None = Field(default=None, ge=0)
    reach_cap: float | None = Field(default=None, ge=0)
    touchpoint_criticality: dict[str, float] | None = None
    vulnerability_terms: list[str] | None = None
    repeat_window: Duration | None = None
    viral_threshold: float | None = Field(default=None, gt=0)
    viral_thresholds: dict[str, float] | None = None
    forecast_horizon: Duration | None = None


class BurstRules(_Model):
    """When a rise in misery posts about one brand and touchpoint becomes a ``burst`` flag.

    The last ``window`` is compared with the same hours of each of the past
    ``baseline_days`` days (daily seasonality: 9 pm is compared with 9 pm), with a
    robust z-score (median and MAD).

    Attributes:
        window: The span whose misery posts are counted (1h).
        baseline_days: How many earlier days give the baseline (7).
        min_count: Fewest misery posts in the window for a burst (5).
        min_z: Robust z-score at or above which it is a burst (3.0).
    """

    window: Duration = timedelta(hours=1)
    baseline_days: int = Field(default=7, ge=1, le=56)
    min_count: int = Field(default=5, ge=1)
    min_z: float = Field(default=3.0, gt=0)


class WatchSettings(_Model):
    """What the watch flow polls each tick.

    Attributes:
        repoll_window: Negative posts younger than this get their engagement re-polled.
        repoll_limit: The most posts re-polled per source per tick (newest first).
    """

    repoll_window: Duration = timedelta(hours=72)
    repoll_limit: int = Field(default=500, ge=0)


# --------------------------------------------------------------------------- notifications


class _Channel(_Model):
    min_priority: Priority = "P2"
    #: Only flags of these brands (default: every brand).
    brands: list[str] | None = None
    #: After a message about a brand, later flags of that brand wait this long and then go
    #: out together as one message (a P1 never waits). ``null``: every flag at once.
    cooldown: Duration | None = timedelta(minutes=10)


class WebhookChannel(_Channel):
    """A generic JSON webhook, signed with HMAC-SHA256 in ``X-Moments-Signature``."""

    kind: Literal["webhook"]
    url: HttpUrl
    # Machines take one event per request; they rate-limit themselves.
    cooldown: Duration | None = None
    secret_env: EnvName | None = None
    timeout: Duration = timedelta(seconds=10)


class SlackChannel(_Channel):
    """A Slack incoming webhook (Block Kit message); its URL is a secret, read from the environment."""

    kind: Literal["slack"]
    webhook_url_env: EnvName
    timeout: Duration = timedelta(seconds=10)


class EmailChannel(_Channel):
    """Email over SMTP."""

    kind: Literal["email"]
    smtp_host: str
    smtp_port: int = Field(default=25, ge=1, le=65535)
    to: list[EmailAddress] = Field(min_length=1)
    sender: EmailAddress = "moments@localhost"
    starttls: bool = False
    username_env: EnvName | None = None
    password_env: EnvName | None = None


CHANNEL_KINDS = ("webhook", "slack", "email")
NotificationChannel = Annotated[WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="kind")]


# --------------------------------------------------------------------------- care team


class SlaTarget(_Model):
    """How fast a flag of one priority must be answered and closed."""

    first_response: Duration
    resolution: Duration

    @field_validator("resolution")
    @classmethod
    def _response_first(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        first_response = info.data.get("first_response")
        if first_response is not None and value < first_response:
            shorter = f"{format_duration(value)} < {format_duration(first_response)}"
            raise ValueError(f"must not be shorter than first_response ({shorter})")
        return value


def _default_slas() -> dict[Priority, SlaTarget]:
    # Industry norms for public social care: minutes for a crisis, within the day otherwise.
    hours = {"P1": (0.25, 4), "P2": (1, 24), "P3": (4, 72), "P4": (24, 168)}
    return {
        p: SlaTarget(first_response=timedelta(hours=fr), resolution=timedelta(hours=res))  # type: ignore[misc]
        for p, (fr, res) in hours.items()
    }


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for lowest, lowest + 1, ...)
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)


def check_cron(line: str) -> str:
    """``line`` if it is a 5-field cron line (``*``, numbers, names, ranges, lists, ``/steps``).

    Raises:
        ValueError: Not 5 fields, or a field out of range or not cron syntax.
    """
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {line!r}")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            span, slash, step = item.partition("/")
            ok = not slash or (step.isdigit() and int(step) > 0)
            if span != "*":
                words = [w.lower() for w in span.split("-", 1)]
                values = [low + names.index(w) if w in names else int(w) if w.isdigit() else -1 for w in words]
                ok = ok and all(low <= v <= high for v in values) and values == sorted(values)
            if not ok:
                allowed = f"*, {low}-{high}, lists, /steps"
                raise ValueError(f"bad {name} field {text!r} in cron {line!r} (allowed: {allowed})")
    return line


class Schedule(_Model):
    """When a flow runs: every ``interval``, or on a ``cron`` line in a ``timezone``."""

    interval: Duration | None = None
    cron: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give interval or cron, not both")
        if self.interval is None and self.cron is None:
            raise ValueError("give interval (such as 10m) or cron (such as '0 2 * * *')")
        return self

    @field_validator("cron")
    @classmethod
    def _cron_line(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from None
        return value


class Schedules(_Model):
    """The unattended flows' schedules."""

    watch: Schedule = Field(default_factory=lambda: Schedule(interval=timedelta(minutes=10)))
    nightly: Schedule = Field(default_factory=lambda: Schedule(cron="0 2 * * *"))


class Retention(_Model):
    """How long data is kept (unset: forever)."""

    posts: Duration | None = None
    flags: Duration | None = None
    snapshots: Duration | None = None


# --------------------------------------------------------------------------- brands


class BrandConfig(_Model):
    """A brand to watch: how it is named, what to crawl, and its own rules."""

    name: str = Field(min_length=1)
    names: list[str] = Field(default_factory=list)
    handles: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)
    taxonomy: TaxonomyConfig | None = None
    flag_rules: FlagRuleOverrides | None = None
    watch_interval: Duration | None = None


class MomentsConfig(_Model):
    """The whole ``brands.yaml``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    contact_url: str | None = None
    #: The triage app's public address: notifications link each flag to ``{triage_url}/flags/{id}``.
    triage_url: HttpUrl | None = None
    credentials: dict[str, dict[str, str]] = Field(default_factory=dict)
    import_: ImportConfig = Field(default_factory=ImportConfig, alias="import")
    flag_rules: FlagRules = Field(default_factory=FlagRules)
    bursts: BurstRules = Field(default_factory=BurstRules)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    notifications: list[NotificationChannel] = Field(default_factory=list)
    slas: dict[Priority, SlaTarget] = Field(default_factory=_default_slas)
    schedules: Schedules = Field(default_factory=Schedules)
    retention: Retention = Field(default_factory=Retention)
    brands: list[BrandConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> MomentsConfig:
        # Checks across entries; each names the entry at fault (see _at).
        seen: dict[str, int] = {}
        for i, brand in enumerate(self.brands):
            key = brand.name.casefold()
            if key in seen:
                message = f"brand {brand.name!r} repeats brands[{seen[key]}] (names ignore case)"
                raise _at(("brands", i, "name"), message)
            seen[key] = i
            try:
                self.flag_rules.merged(brand.flag_rules)
            except ValidationError as exc:
                message = _readable(exc.errors()[0])
                raise _at(("brands", i, "flag_rules"), f"{message} (with the global flag_rules)") from None
        for i, channel in enumerate(self.notifications):
            for j, name in enumerate(channel.brands or []):
                if name.casefold() not in seen:
                    known = ", ".join(b.name for b in self.brands) or "none"
                    raise _at(("notifications", i, "brands", j), f"unknown brand {name!r}; brands: {known}")
        return self

    @field_validator("slas")
    @classmethod
    def _every_priority(cls, value: dict[Priority, SlaTarget]) -> dict[Priority, SlaTarget]:
        # Unlisted priorities keep the defaults, so a config may set only P1.
        return {**_default_slas(), **value}

    def credentials_for(self, source: str) -> dict[str, str]:
        """Credentials of one source (empty when none are configured)."""
        return {k: v for k, v in self.credentials.get(source, {}).items() if v}

    def brand(self, name: str) -> BrandConfig | None:
        """The brand called ``name`` (case-insensitive), or ``None``."""
        wanted = name.casefold()
        return next((b for b in self.brands if b.name.casefold() == wanted), None)

    def rules_for(self, brand: str | None) -> FlagRules:
        """The flag rules for one brand: the global rules with its overrides."""
        config = self.brand(brand) if brand else None
        return self.flag_rules.merged(config.flag_rules if config else None)

    def taxonomy_for(self, brand: str | None) -> TaxonomyConfig | None:
        """A brand's custom taxonomy, or ``None`` for the default one."""
        config = self.brand(brand) if brand else None
        return config.taxonomy if config else None


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any) -> Any:
    # Secrets stay out of the file: ${NAME} is read from the environment.
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- errors with lines


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entries = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if str(part) not in entries:
                break  # a missing key: report its parent
            key, node = entries[str(part)]
            # A bad key is reported on its own line; a bad value on the value's.
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
        if isinstance(node, yaml.ScalarNode):
            line = node.start_mark.line + 1
    return line


def _reported_loc(error: Any) -> tuple[int | str, ...]:
    """Where an error is, as the user wrote it."""
    loc = tuple(p for p in error["loc"] if p != "[key]")  # a bad dict key: report the key itself
    if loc[:1] == ("notifications",) and len(loc) > 2 and loc[2] in CHANNEL_KINDS:
        loc = loc[:2] + loc[3:]  # tagged unions add the tag ('webhook'); users never wrote it
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += ("kind",)
    return loc + tuple((error.get("ctx") or {}).get("at", ()))


def _readable(error: Any) -> str:
    """An error message for an operator: no pydantic jargon, the bad value when it is short."""
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {error['ctx']['tag']!r}; expected one of {', '.join(CHANNEL_KINDS)}"
    if kind == "union_tag_not_found":
        return f"required key missing (one of {', '.join(CHANNEL_KINDS)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
        if isinstance(given, (str, int, float, bool)) and len(repr(given)) <= 60:
            message += f", got {given!r}"
    return message


def _duplicate_key(node: yaml.Node, loc: tuple[int | str, ...] = ()) -> tuple[tuple[int | str, ...], int, int] | None:
    """The first key written twice in one mapping (YAML keeps the last silently): (loc, line, first line)."""
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in lines:
                    return (*loc, key.value), key.start_mark.line + 1, lines[key.value]
                lines[key.value] = key.start_mark.line + 1
            if found := _duplicate_key(value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?")):
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if found := _duplicate_key(item, (*loc, i)):
                return found
    return None


def parse_config(data: Any, *, source: str = "config", root: yaml.Node | None = None) -> MomentsConfig:
    """Validate an already-parsed YAML document into a :class:`MomentsConfig`.

    Args:
        data: The parsed document.
        source: How the file is named in errors.
        root: The document's YAML node tree, to name the line of an error.

    Raises:
        ConfigError: One line naming the file, the line and the key.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = f"{source}:{root.start_mark.line + 1}" if root is not None else source
        raise ConfigError(f"{where}: the config must be a mapping with a 'brands' list, not a {type(data).__name__}")
    try:
        return MomentsConfig.model_validate(_expand_env(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = _reported_loc(error)
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line else source
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {_dotted(loc)}: {_readable(error)}{more}") from None


def load_config(path: str | Path) -> MomentsConfig:
    """Read and validate ``brands.yaml``.

    Args:
        path: The YAML file.

    Returns:
        The typed configuration; ``config.brands[*].sources`` lists the crawl jobs.

    Raises:
        ConfigError: The file is missing, not YAML, or does not fit the shape above,
            as one line naming the file, the line and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            # One parse: the node tree names lines, and the document is built from it.
            root = loader.get_single_node()
            if root is not None and (duplicate := _duplicate_key(root)):
                loc, line, first = duplicate
                raise ConfigError(f"{path}:{line}: {_dotted(loc)}: duplicate key (first on line {first})")
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    return parse_config(data, source=str(path), root=root)


__all__ = [
    "CHANNEL_KINDS",
    "DEFAULT_VULNERABILITY_TERMS",
    "FAST_SOURCES",
    "OWNED_SOURCES",
    "PRIORITIES",
    "SOURCES",
    "BrandConfig",
    "BurstRules",
    "ConfigError",
    "EmailChannel",
    "FlagRuleOverrides",
    "FlagRules",
    "ImportConfig",
    "MomentsConfig",
    "NotificationChannel",
    "Retention",
    "Schedule",
    "Schedules",
    "SlaTarget",
    "SlackChannel",
    "SourceConfig",
    "TaxonomyConfig",
    "TouchpointConfig",
    "WatchSettings",
    "WebhookChannel",
    "check_cron",
    "format_duration",
    "load_config",
    "parse_duration",
]
