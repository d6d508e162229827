"""What every notification channel shares: the notice, the message, the channel contract.

A :class:`Notice` says one thing about one flag (it was opened, or escalated). The
outbox keeps notices per channel until they are delivered; :func:`flows.notify.deliver`
groups the due ones into one :class:`Message` per brand and hands it to a
:class:`Channel`. Each integration (``webhook``, ``slack``, ``email``) is one module
with one ``Channel`` subclass; it renders the message its own way with the helpers
here, so a flag reads the same everywhere.

Secrets (the Slack URL, the webhook's signing secret, the SMTP password) are read
from the environment only when a message is sent, and a channel is always named by
:func:`describe`, which shows none of them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from moments.config import EmailChannel, NotificationChannel, SlackChannel, WebhookChannel
from moments.records import Flag, Post, priority_rank

NoticeEvent = Literal["opened", "escalated"]

#: How much of a post a notification quotes (a tweet's worth).
EXCERPT_CHARS = 280
#: Stands in for a secret wherever a text could have shown it.
REDACTED = "***"


@dataclass(frozen=True)
class Notice:
    """What to say about one change of one flag.

    Attributes:
        key: The idempotency key, ``{flag id}:v{version}``: one notice per flag version,
            so enqueueing the same change twice adds nothing.
        event: ``opened`` (a new flag) or ``escalated`` (a higher priority).
        flag: The flag as it is after the change.
        posts: The flag's posts, for the excerpt and the links (may be empty).
        at: When the change happened.
    """

    key: str
    event: NoticeEvent
    flag: Flag
    posts: list[Post]
    at: datetime

    @classmethod
    def of(cls, flag: Flag, event: NoticeEvent, posts: Sequence[Post], at: datetime) -> Notice:
        """The notice of ``flag`` at its current version (the key is derived, never made up)."""
        return cls(key=f"{flag.id}:v{flag.version}", event=event, flag=flag, posts=list(posts), at=at)

    def to_payload(self) -> dict[str, Any]:
        """The notice as JSON-ready data, as the outbox stores it."""
        return {
            "key": self.key,
            "event": self.event,
            "at": self.at.isoformat(),
            "flag": self.flag.model_dump(mode="json"),
            "posts": [post.model_dump(mode="json") for post in self.posts],
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Notice:
        """The notice :meth:`to_payload` wrote."""
        return cls(
            key=data["key"],
            event=data["event"],
            flag=Flag.model_validate(data["flag"]),
            posts=[Post.model_validate(post) for post in data["posts"]],
            at=datetime.fromisoformat(data["at"]),
        )


def urgency(notice: Notice) -> tuple[int, float, datetime]:
    """Sort key, most urgent first: priority, then the higher score, then the older flag."""
    return priority_rank(notice.flag.priority), -notice.flag.score, notice.flag.opened_at


@dataclass(frozen=True)
class Message:
    """One delivery to one channel: every due notice about one brand, most urgent first.

    Attributes:
        channel_id: The channel it goes to (:func:`channel_id`).
        brand: The brand every notice is about (``None`` for flags without one).
        notices: One or more notices, sorted by :func:`urgency`.
        key: The idempotency key; a resend after a crash carries the same key, so the
            receiver can drop the repeat.
        triage_url: The triage app's address, for links to the flags (``None``: no links).
    """

    channel_id: str
    brand: str | None
    notices: list[Notice]
    key: str
    triage_url: str | None = None

    def __post_init__(self) -> None:
        if not self.notices:
            raise ValueError("a message needs at least one notice")
        object.__setattr__(self, "notices", sorted(self.notices, key=urgency))

    @property
    def top(self) -> Notice:
        """The most urgent notice: it leads the message."""
        return self.notices[0]

    @property
    def brand_name(self) -> str:
        return self.brand or "(no brand)"


class DeliveryError(Exception):
    """A channel could not deliver a message.

    Attributes:
        reason: What went wrong, one line, without secrets.
        retryable: Whether trying again later may work (a 500, a timeout); a missing
            environment variable or a rejected request waits for an operator instead.
    """

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


ChannelConfig = WebhookChannel | SlackChannel | EmailChannel


class Channel:
    """One configured destination: render a :class:`Message` and send it, or raise :class:`DeliveryError`.

    Subclasses set ``kind`` (the ``kind`` of their config) and are found by it in
    :func:`open_channel`.
    """

    kind: ClassVar[str]
    _by_kind: ClassVar[dict[str, type[Channel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Channel._by_kind[cls.kind] = cls

    def __init__(self, config: ChannelConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.env = env

    @property
    def label(self) -> str:
        """How logs and reports name the channel (no secret in it)."""
        return describe(self.config)

    @property
    def send_timeout(self) -> timedelta:
        """The longest one send may take; a claim outlives it (see the outbox's lease)."""
        timeout = getattr(self.config, "timeout", None)
        return timeout if isinstance(timeout, timedelta) else timedelta(seconds=30)

    def secret(self, name: str) -> str:
        """The value of environment variable ``name``, read at send time.

        Raises:
            DeliveryError: Not retryable: the variable is unset or blank.
        """
        value = (self.env.get(name) or "").strip()
        if not value:
            raise DeliveryError(f"environment variable {name} is not set", retryable=False)
        return value

    def secrets(self) -> list[str]:
        """Every secret this channel may send with, to scrub from any text that could show it."""
        return []

    def send(self, message: Message) -> None:
        """Deliver ``message``; return only when the receiver accepted it."""
        raise NotImplementedError


def open_channel(config: ChannelConfig, env: Mapping[str, str]) -> Channel:
    """The channel object for one ``notifications`` entry of the config."""
    return Channel._by_kind[config.kind](config, env)


def channel_id(config: NotificationChannel) -> str:
    """A channel's stable id: its kind and a short hash of where it delivers.

    Only the destination counts (not the filters or the cooldown), so reordering the
    config or tuning a channel keeps its outbox rows; a new destination is a new channel.
    """
    if isinstance(config, WebhookChannel):
        where = [config.url]
    elif isinstance(config, SlackChannel):
        where = [config.webhook_url_env]
    else:
        where = [config.smtp_host, str(config.smtp_port), *sorted(address.lower() for address in config.to)]
    digest = hashlib.sha256("\n".join(where).encode()).hexdigest()[:10]
    return f"{config.kind}-{digest}"


def describe(config: NotificationChannel) -> str:
    """A channel as an operator recognises it, with nothing secret in it.

    ``slack (MOMENTS_SLACK_WEBHOOK)``, ``webhook http://host:8099/hook`` (no user info,
    no query string: either may hold a token), ``email smtp host:25``.
    """
    if isinstance(config, WebhookChannel):
        parts = urlsplit(config.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"webhook {parts.scheme}://{host}{port}{parts.path}"
    if isinstance(config, SlackChannel):
        return f"slack ({config.webhook_url_env})"
    return f"email smtp {config.smtp_host}:{config.smtp_port}"


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@contextmanager
def redacted_logs(secrets: Sequence[str], loggers: Sequence[str] = ("httpx", "httpcore")) -> Iterator[None]:
    """Scrub ``secrets`` from what the HTTP libraries log while a message is sent.

    httpx logs every request's full URL at INFO, and a Slack webhook URL is a secret.
    """
    if not any(secrets):
        yield
        return
    scrubber = _RedactingFilter(secrets)
    targets = [logging.getLogger(name) for name in loggers]
    for target in targets:
        target.addFilter(scrubber)
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(scrubber)


# --------------------------------------------------------------------------- rendering for people


_SPACE = re.compile(r"\s+")


def excerpt(notice: Notice, limit: int = EXCERPT_CHARS) -> str | None:
    """The start of the flag's first post, on one line, cut at a word (``None`` without posts)."""
    if not notice.posts:
        return None
    text = _SPACE.sub(" ", notice.posts[0].text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + "…"


def post_urls(notice: Notice) -> list[str]:
    """The public addresses of the flag's posts (posts without one are left out)."""
    return [post.url for post in notice.posts if post.url]


def flag_link(flag: Flag, triage_url: str | None) -> str | None:
    """``{triage_url}/flags/{flag id}``, or ``None`` when no triage app is configured."""
    return f"{triage_url.rstrip('/')}/flags/{flag.id}" if triage_url else None


def touchpoints(message: Message, limit: int = 3) -> str:
    """The message's touchpoints, most urgent first, e.g. ``fulfilment, baggage, ...``."""
    seen = list(dict.fromkeys(n.flag.touchpoint for n in message.notices if n.flag.touchpoint))
    return ", ".join(seen[:limit]) + (", ..." if len(seen) > limit else "")


def headline(message: Message) -> str:
    """One line for a subject or a preview: ``[Moments P1] Northwind Air: 3 flags (fulfilment, ...)``."""
    count = len(message.notices)
    flags = f"{count} flag" if count == 1 else f"{count} flags"
    if count == 1 and message.top.event == "escalated":
        flags += " escalated"
    where = touchpoints(message)
    return f"[Moments {message.top.flag.priority}] {message.brand_name}: {flags}" + (f" ({where})" if where else "")
