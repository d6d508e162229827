"""Tell the care team about new and escalated flags: webhook, Slack and email.

The flagging flow turns each flag change into a :class:`Notice` and :func:`enqueue`\\ s
it in the durable :class:`Outbox`; :func:`deliver` (``moments notify send``, or a
scheduled flow) sends what is due, one message per channel and brand, once per
channel (a crash between sending and recording costs at most one repeat, with the
same idempotency key)::

    with Outbox() as outbox:
        enqueue(outbox, config, [Notice.of(flag, "opened", posts, now)])
        report = deliver(outbox, config, now)

Each integration (:mod:`.webhook`, :mod:`.slack`, :mod:`.email`) is one module with
one :class:`~flows.notify.base.Channel` subclass.
"""

from __future__ import annotations

# Imported for their side effect: each integration registers its channel ``kind``.
from flows.notify import email, slack, webhook  # noqa: F401
from flows.notify.base import Notice, channel_id
from flows.notify.delivery import DeliveryReport, deliver, enqueue
from flows.notify.outbox import Outbox

__all__ = ["DeliveryReport", "Notice", "Outbox", "channel_id", "deliver", "enqueue"]
