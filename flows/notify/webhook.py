"""A generic JSON webhook: one signed POST per message.

The body is a contract users' scripts rely on::

    {"event": "opened" | "escalated",      # the event of the most urgent flag
     "idempotency_key": "...",             # the same on a resend: drop repeats by it
     "flag": {...},                        # the most urgent flag of the message
     "flags": [{...}, ...],                # every flag in it, most urgent first
     "count": n}

Each flag object is the flag record (``id, kind, brand, touchpoint, priority, score,
status, reasons, post_ids, opened_at``...) plus ``urls`` (its posts' addresses),
``excerpt``, ``link`` (its page in the triage app, or null) and its own ``event``.

Headers: ``Idempotency-Key``, and ``X-Moments-Signature: sha256=<hex>``, the
HMAC-SHA256 of the raw body with the secret in ``secret_env`` (none without it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from flows.notify.base import Channel, DeliveryError, Message, Notice, excerpt, flag_link, post_urls
from moments.config import WebhookChannel

SIGNATURE_HEADER = "X-Moments-Signature"


def flag_document(notice: Notice, triage_url: str | None) -> dict[str, Any]:
    """One flag as the webhook body shows it: the record, its posts' addresses, an excerpt and a link."""
    return {
        **notice.flag.model_dump(mode="json"),
        "urls": post_urls(notice),
        "excerpt": excerpt(notice),
        "link": flag_link(notice.flag, triage_url),
        "event": notice.event,
    }


def webhook_body(message: Message) -> dict[str, Any]:
    """The JSON document of the contract above."""
    flags = [flag_document(notice, message.triage_url) for notice in message.notices]
    return {
        "event": message.top.event,
        "idempotency_key": message.key,
        "flag": flags[0],
        "flags": flags,
        "count": len(flags),
    }


def sign(body: bytes, secret: str) -> str:
    """The ``X-Moments-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: timedelta) -> None:
    """POST ``body``; return on a 2xx answer, else raise :class:`DeliveryError`.

    A 5xx, 408 or 429 answer, a refused connection or a timeout is retryable; any
    other answer (the receiver rejected the request) waits for an operator. The
    reason never includes the URL, which may be a secret.
    """
    seconds = timeout.total_seconds()
    try:
        with httpx.Client(timeout=seconds, follow_redirects=False) as client:
            response = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer within {seconds:g}s", retryable=True) from None
    except httpx.TransportError as error:
        raise DeliveryError(f"connection failed ({type(error).__name__}: {error})", retryable=True) from None
    except httpx.InvalidURL:
        raise DeliveryError("invalid URL", retryable=False) from None
    if response.is_success:
        return
    detail = " ".join(response.text.split())[:200]
    status = response.status_code
    raise DeliveryError(
        f"HTTP {status}" + (f": {detail}" if detail else ""), retryable=status >= 500 or status in (408, 429)
    )


class WebhookSender(Channel):
    """A generic JSON webhook (``kind: webhook``)."""

    kind = "webhook"
    config: WebhookChannel

    def secrets(self) -> list[str]:
        # A URL may carry a token in its query or user info; the label already leaves them out.
        parts = urlsplit(self.config.url)
        found = [parts.query, parts.password or ""]
        if self.config.secret_env:
            found.append(self.env.get(self.config.secret_env, "").strip())
        return [value for value in found if value]

    def send(self, message: Message) -> None:
        body = json.dumps(webhook_body(message), ensure_ascii=False).encode()
        headers = {"Idempotency-Key": message.key}
        if self.config.secret_env:
            headers[SIGNATURE_HEADER] = sign(body, self.secret(self.config.secret_env))
        post_json(self.config.url, body, headers, self.config.timeout)
