"""Queue flag notices for the configured channels, and deliver what is due.

:func:`enqueue` writes one outbox row per channel that wants the notice; it is cheap
and idempotent, so the flagging flow can call it on every change. :func:`deliver`
sends what is due, one message per channel and brand, and never raises for a channel
that is down: the failure is recorded, retried with backoff, and reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flows.notify.base import (
    Channel,
    ChannelConfig,
    DeliveryError,
    Message,
    Notice,
    channel_id,
    open_channel,
    redact,
    redacted_logs,
)
from flows.notify.outbox import Outbox
from moments.config import MomentsConfig
from moments.records import priority_rank

log = logging.getLogger("flows.notify")

#: A claim outlives the send it guards by this much (see the outbox's lease).
LEASE_MARGIN = timedelta(minutes=1)


def admits(channel: ChannelConfig, notice: Notice) -> bool:
    """Whether a channel wants a notice: urgent enough, and about one of its brands."""
    if priority_rank(notice.flag.priority) > priority_rank(channel.min_priority):
        return False
    if channel.brands is None:
        return True
    brand = (notice.flag.brand or "").casefold()
    return any(brand == wanted.casefold() for wanted in channel.brands)


def enqueue(outbox: Outbox, config: MomentsConfig, notices: Iterable[Notice]) -> int:
    """Queue each notice for every channel that admits it; a notice queued before is skipped.

    Returns:
        How many outbox rows were added.
    """
    wanted = list(notices)
    return sum(
        outbox.add(channel_id(channel), [notice for notice in wanted if admits(channel, notice)])
        for channel in config.notifications
    )


@dataclass(frozen=True)
class Failure:
    """A message a channel did not take: which channel (named without secrets) and why."""

    channel: str
    reason: str
    notices: int
    retry_at: datetime


@dataclass(frozen=True)
class Held:
    """Notices that are not due yet: in a channel's cooldown for a brand, or backing off after a failure."""

    channel: str
    brand: str | None
    reason: str
    notices: int
    until: datetime


@dataclass
class DeliveryReport:
    """What one :func:`deliver` did."""

    messages_sent: int = 0
    notices_sent: int = 0
    failed: list[Failure] = field(default_factory=list)
    waiting: list[Held] = field(default_factory=list)

    @property
    def notices_waiting(self) -> int:
        return sum(held.notices for held in self.waiting)

    def summary(self) -> str:
        """One line for a log or a terminal."""
        text = f"{self.messages_sent} messages sent ({self.notices_sent} notices)"
        if self.failed:
            text += f", {len(self.failed)} failed"
        if self.waiting:
            text += f", {self.notices_waiting} notices waiting"
        return text


def deliver(
    outbox: Outbox, config: MomentsConfig, now: datetime, *, env: Mapping[str, str] = os.environ
) -> DeliveryReport:
    """Send every due notice: per channel, one message per brand.

    A failing channel (an error status, a refused connection, a timeout, a missing
    secret) is recorded on its rows, which are retried after a backoff; it neither
    raises nor holds up the other channels.

    Args:
        outbox: Where the notices wait.
        config: The channels (``notifications``) and the triage app's address.
        now: The clock for due times, cooldowns and backoffs.
        env: Where the secrets named in the config are read, at send time.
    """
    report = DeliveryReport()
    for config_channel in config.notifications:
        channel = open_channel(config_channel, env)
        cid = channel_id(config_channel)
        claim = outbox.claim_due(
            cid, now, cooldown=config_channel.cooldown, lease=channel.send_timeout * 2 + LEASE_MARGIN
        )
        report.waiting += [
            Held(channel.label, held.brand, held.reason, held.notices, held.until) for held in claim.waiting
        ]
        for batch in claim.batches:
            message = Message(cid, batch.brand, batch.notices(), batch.message_id, config.triage_url)
            if batch.resend:
                log.info("%s: sending %s again (an earlier attempt did not succeed)", channel.label, batch.message_id)
            try:
                send_safely(channel, message)
            except DeliveryError as error:
                retry_at = outbox.mark_failed(cid, batch.message_id, now, error.reason, retryable=error.retryable)
                report.failed.append(Failure(channel.label, error.reason, len(batch.rows), retry_at))
                log.warning(
                    "%s: %d notices not delivered (%s); next try at %s",
                    channel.label,
                    len(batch.rows),
                    error.reason,
                    retry_at.isoformat(),
                )
                continue
            outbox.mark_sent(cid, batch.message_id, now)
            report.messages_sent += 1
            report.notices_sent += len(batch.rows)
            log.info("%s: sent %d notices about %s", channel.label, len(batch.rows), message.brand_name)
    return report


def send_safely(channel: Channel, message: Message) -> None:
    """Call the channel's ``send``, turning any failure into a :class:`DeliveryError` without secrets.

    The HTTP libraries' own log lines are scrubbed too while it runs.
    """
    secrets = channel.secrets()
    try:
        with redacted_logs(secrets):
            channel.send(message)
    except DeliveryError as error:
        raise DeliveryError(redact(error.reason, secrets), retryable=error.retryable) from None
    except Exception as error:  # a bug in one channel must not stop the others
        reason = redact(f"{type(error).__name__}: {error}", secrets)
        raise DeliveryError(reason, retryable=True) from None
