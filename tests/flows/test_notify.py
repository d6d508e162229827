"""Notifications of flags, against real local servers: an HTTP receiver and an aiosmtpd SMTP server.

Nothing is mocked: notices go through the SQLite outbox under a private
``$MOMENTS_HOME`` and out over sockets; the receivers record what arrived, so each
test checks the bodies, headers and counts a real endpoint would see. The one
stand-in is a crash, simulated by making the outbox's ``mark_sent`` raise once.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from receivers import Receiver

from flows.notify import Notice, Outbox, channel_id, deliver, enqueue
from flows.notify.outbox import OutboxRow
from moments.cli import main
from moments.config import MomentsConfig, parse_config
from moments.records import Flag, Post

MakePost = Callable[..., Post]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TRIAGE = "https://triage.example.test"
BRANDS = [{"name": "Northwind Air"}, {"name": "Contoso"}]
WEBHOOK_SECRET = "whsec-Zq9-distinctive-7741"
SLACK_TOKEN = "xoxTOKENa81f6c"
SMTP_PASSWORD = "smtp-pw-Kd83-distinctive"


# --------------------------------------------------------------------------- receivers


class Mailbox:
    """An aiosmtpd handler that keeps every accepted mail."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            raw = envelope.original_content or b""
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1: (what it received, its port)."""
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(autouse=True)
def _private_home(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every outbox lives in this test's ``$MOMENTS_HOME``; no ambient brands.yaml is read."""
    monkeypatch.chdir(tmp_home)
    monkeypatch.delenv("MOMENTS_CONFIG", raising=False)
    return tmp_home


# --------------------------------------------------------------------------- flags and config


@pytest.fixture
def make_notice(make_post: MakePost) -> Callable[..., Notice]:
    """``make_notice(priority="P1", brand="Contoso", ...)``: a notice about a new one-post flag."""
    counter = iter(range(1, 10_000))

    def factory(
        *,
        priority: str = "P2",
        brand: str | None = "Northwind Air",
        touchpoint: str = "baggage",
        score: float = 5.0,
        event: str = "opened",
        text: str | None = None,
    ) -> Notice:
        n = next(counter)
        post = make_post(native_id=f"n{n}", brand=[brand] if brand else [], text=text or f"My bag {n} never arrived")
        flag = Flag(
            id=f"post:{post.id}",
            brand=brand,
            touchpoint=touchpoint,
            post_ids=[post.id],
            priority=priority,
            score=score,
            reasons=[f"negative ({n})", "spreading 40/h"],
            opened_at=NOW - timedelta(minutes=n),
            updated_at=NOW,
        )
        return Notice.of(flag, event, [post], NOW)  # type: ignore[arg-type]

    return factory


def _config(*channels: dict[str, Any], triage_url: str | None = TRIAGE) -> MomentsConfig:
    data: dict[str, Any] = {"brands": BRANDS, "notifications": list(channels)}
    if triage_url:
        data["triage_url"] = triage_url
    return parse_config(data)


def _all_rows() -> list[OutboxRow]:
    with Outbox() as outbox:
        return outbox.rows()


# --------------------------------------------------------------------------- 1. the webhook contract


def test_webhook_body_signature_and_headers(receiver: Receiver, make_notice: Callable[..., Notice]) -> None:
    hook = {"kind": "webhook", "url": f"{receiver.url}/hook", "secret_env": "HOOK_SECRET", "min_priority": "P3"}
    config = _config(hook)
    notice = make_notice(priority="P2", text="Lost my wheelchair at the gate, nobody answers")
    env = {"HOOK_SECRET": WEBHOOK_SECRET}

    with Outbox() as outbox:
        assert enqueue(outbox, config, [notice]) == 1
        report = deliver(outbox, config, NOW, env=env)

    assert (report.messages_sent, report.notices_sent, report.failed) == (1, 1, [])
    [request] = receiver.on("/hook")
    assert request.headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Moments-Signature"], expected)
    assert request.headers["Idempotency-Key"] == notice.key == f"{notice.flag.id}:v1"

    body = request.json()
    assert set(body) == {"event", "idempotency_key", "flag", "flags", "count"}
    assert (body["event"], body["idempotency_key"], body["count"]) == ("opened", notice.key, 1)
    assert body["flags"] == [body["flag"]]
    flag, post = body["flag"], notice.posts[0]
    assert flag["id"] == notice.flag.id
    assert (flag["kind"], flag["brand"], flag["touchpoint"]) == ("post", "Northwind Air", "baggage")
    assert (flag["priority"], flag["score"], flag["status"]) == ("P2", 5.0, "open")
    assert flag["reasons"] == notice.flag.reasons
    assert flag["post_ids"] == [post.id]
    assert flag["urls"] == [post.url]
    assert flag["excerpt"] == "Lost my wheelchair at the gate, nobody answers"
    assert flag["opened_at"] == notice.flag.opened_at.isoformat().replace("+00:00", "Z")
    assert flag["link"] == f"{TRIAGE}/flags/{notice.flag.id}"
    assert flag["event"] == "opened"


def test_webhook_digest_leads_with_the_most_urgent_flag(receiver: Receiver, make_notice: Callable[..., Notice]) -> None:
    config = _config({"kind": "webhook", "url": f"{receiver.url}/hook", "min_priority": "P3"}, triage_url=None)
    minor = make_notice(priority="P3", event="opened")
    urgent = make_notice(priority="P1", event="escalated", text="x " * 400)

    with Outbox() as outbox:
        enqueue(outbox, config, [minor, urgent])
        deliver(outbox, config, NOW, env={})

    [request] = receiver.requests
    body = request.json()
    assert "X-Moments-Signature" not in request.headers  # no secret_env, no signature
    assert (body["count"], body["event"]) == (2, "escalated")
    assert [f["id"] for f in body["flags"]] == [urgent.flag.id, minor.flag.id]
    assert body["flag"] == body["flags"][0]
    assert [f["event"] for f in body["flags"]] == ["escalated", "opened"]
    assert body["flag"]["link"] is None  # no triage_url configured
    assert len(body["flag"]["excerpt"]) <= 280 and body["flag"]["excerpt"].endswith("…")
    assert body["idempotency_key"] == request.headers["Idempotency-Key"]
    assert body["idempotency_key"].startswith("digest:")


# --------------------------------------------------------------------------- 2. exactly once


def test_a_notice_is_sent_once(receiver: Receiver, make_notice: Callable[..., Notice]) -> None:
    config = _config({"kind": "webhook", "url": f"{receiver.url}/hook"})
    notice = make_notice()

    with Outbox() as outbox:
        idle = deliver(outbox, config, NOW, env={})
        assert enqueue(outbox, config, [notice]) == 1
        first = deliver(outbox, config, NOW, env={})
        second = deliver(outbox, config, NOW + timedelta(minutes=1), env={})
        assert enqueue(outbox, config, [notice]) == 0
        assert enqueue(outbox, config, [Notice.of(notice.flag, "opened", notice.posts, NOW)]) == 0
        third = deliver(outbox, config, NOW + timedelta(hours=2), env={})

    assert (idle.messages_sent, idle.failed, idle.waiting) == (0, [], [])
    assert len(receiver.requests) == 1
    assert (first.messages_sent, first.notices_sent) == (1, 1)
    assert (second.messages_sent, second.waiting, second.failed) == (0, [], [])
    assert third.messages_sent == 0
    [row] = _all_rows()
    assert row.sent_at == NOW and row.attempts == 1 and row.last_error is None

    # A new version of the flag (escalated) is a new notice.
    escalated = notice.flag.model_copy(update={"priority": "P1", "version": 2})
    with Outbox() as outbox:
        assert enqueue(outbox, config, [Notice.of(escalated, "escalated", notice.posts, NOW)]) == 1


# --------------------------------------------------------------------------- 3. filters


def test_min_priority_and_brands_choose_the_channels(receiver: Receiver, make_notice: Callable[..., Notice]) -> None:
    everyone = {"kind": "webhook", "url": f"{receiver.url}/all", "min_priority": "P2"}
    northwind_p1 = {"kind": "webhook", "url": f"{receiver.url}/nw", "min_priority": "P1", "brands": ["northwind AIR"]}
    config = _config(everyone, northwind_p1)
    nw_p1, nw_p2, nw_p3 = (make_notice(priority=p) for p in ("P1", "P2", "P3"))
    contoso_p1 = make_notice(priority="P1", brand="Contoso")
    brandless_p1 = make_notice(priority="P1", brand=None)

    with Outbox() as outbox:
        added = enqueue(outbox, config, [nw_p1, nw_p2, nw_p3, contoso_p1, brandless_p1])
        report = deliver(outbox, config, NOW, env={})

    # everyone: P1 and P2 of every brand (4); northwind_p1: the Northwind P1 only (1).
    assert added == 5
    by_channel = {c.url.rsplit("/", 1)[1]: channel_id(c) for c in config.notifications}  # type: ignore[union-attr]
    assert {row.key for row in _all_rows() if row.channel_id == by_channel["all"]} == {
        nw_p1.key,
        nw_p2.key,
        contoso_p1.key,
        brandless_p1.key,
    }
    # One message per brand: Northwind (2 flags), Contoso, and the flag without a brand.
    sent = sorted(([f["id"] for f in r.json()["flags"]] for r in receiver.on("/all")), key=len)
    assert sent[-1] == [nw_p1.flag.id, nw_p2.flag.id]
    assert sorted(sent[:2]) == sorted([[contoso_p1.flag.id], [brandless_p1.flag.id]])
    assert [r.json()["flag"]["id"] for r in receiver.on("/nw")] == [nw_p1.flag.id]
    assert (report.messages_sent, report.notices_sent) == (4, 5)


def test_channel_id_is_stable_across_reordering_and_tuning(receiver: Receiver) -> None:
    hook = {"kind": "webhook", "url": f"{receiver.url}/hook"}
    slack = {"kind": "slack", "webhook_url_env": "MOMENTS_SLACK_WEBHOOK"}
    mail = {"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": 2525, "to": ["a@example.org"]}
    one = [channel_id(c) for c in _config(hook, slack, mail).notifications]
    tuned = {**slack, "min_priority": "P1", "cooldown": "1h"}
    other = [channel_id(c) for c in _config(mail, tuned, hook).notifications]
    assert sorted(one) == sorted(other)
    assert [i.split("-")[0] for i in one] == ["webhook", "slack", "email"]
    assert len(set(one)) == 3


# --------------------------------------------------------------------------- 4. cooldown and digests


def test_slack_cooldown_digest_and_p1_bypass(
    receiver: Receiver, make_notice: Callable[..., Notice], monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = {"kind": "slack", "webhook_url_env": "MOMENTS_SLACK_WEBHOOK", "min_priority": "P3", "cooldown": "10m"}
    config = _config(slack)
    env = {"MOMENTS_SLACK_WEBHOOK": f"{receiver.url}/services/T01/B02/{SLACK_TOKEN}"}
    burst = [make_notice(priority="P2", score=5 + i / 100) for i in range(50)]

    with Outbox() as outbox:
        assert enqueue(outbox, config, burst) == 50
        first = deliver(outbox, config, NOW, env=env)
    assert (first.messages_sent, first.notices_sent) == (1, 50)
    [digest] = receiver.requests
    assert digest.path == f"/services/T01/B02/{SLACK_TOKEN}"
    body = digest.json()
    assert body["text"] == "[Moments P2] Northwind Air: 50 flags (baggage)"
    blocks = body["blocks"]
    assert len(blocks) == 22 <= 50
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "P2 · Northwind Air · 50 flags", "emoji": True},
    }
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 20
    top = max(burst, key=lambda n: n.flag.score)
    assert top.posts[0].text in sections[0]["text"]["text"]
    assert f"<{top.posts[0].url}|View post>" in sections[0]["text"]["text"]
    assert f"<{TRIAGE}/flags/{top.flag.id}|Open in Moments>" in sections[0]["text"]["text"]
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "and 30 more"}]}

    # Within the cooldown a P3 waits ...
    later = make_notice(priority="P3", touchpoint="checkin")
    with Outbox() as outbox:
        enqueue(outbox, config, [later])
        waiting = deliver(outbox, config, NOW + timedelta(minutes=1), env=env)
    assert waiting.messages_sent == 0 and len(receiver.requests) == 1
    [held] = waiting.waiting
    assert (held.reason, held.notices, held.until) == ("cooldown", 1, NOW + timedelta(minutes=10))
    assert held.channel == "slack (MOMENTS_SLACK_WEBHOOK)"

    # ... but a P1 goes at once, alone.
    urgent = make_notice(priority="P1", touchpoint="safety", text="Stranded with my baby at the gate")
    with Outbox() as outbox:
        enqueue(outbox, config, [urgent])
        bypass = deliver(outbox, config, NOW + timedelta(minutes=2), env=env)
    assert (bypass.messages_sent, bypass.notices_sent, bypass.notices_waiting) == (1, 1, 1)
    single = receiver.requests[1].json()
    assert single["text"] == "[Moments P1] Northwind Air: 1 flag (safety)"
    assert single["blocks"][0]["text"]["text"] == "P1 · Northwind Air · safety"
    assert single["blocks"][1] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": ">Stranded with my baby at the gate"},
    }
    assert single["blocks"][2]["elements"][0]["text"] == "*Reasons:* " + "; ".join(urgent.flag.reasons)
    assert single["blocks"][3]["text"]["text"] == (
        f"<{urgent.posts[0].url}|View post> · <{TRIAGE}/flags/{urgent.flag.id}|Open in Moments>"
    )

    # After the cooldown (10 min from the P1's message) the P3 goes.
    with Outbox() as outbox:
        still = deliver(outbox, config, NOW + timedelta(minutes=11), env=env)
        after = deliver(outbox, config, NOW + timedelta(minutes=13), env=env)
    assert still.messages_sent == 0
    assert (after.messages_sent, after.notices_sent, after.waiting) == (1, 1, [])
    assert len(receiver.requests) == 3
    assert receiver.requests[2].json()["text"] == "[Moments P3] Northwind Air: 1 flag (checkin)"


# --------------------------------------------------------------------------- 5. email


def test_email_through_a_real_smtp_server(mailbox: tuple[Mailbox, int], make_notice: Callable[..., Notice]) -> None:
    box, port = mailbox
    mail = {
        "kind": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "to": ["care@northwind.example", "lead@northwind.example"],
        "sender": "moments@northwind.example",
        "min_priority": "P3",
    }
    config = _config(mail)
    notices = [
        make_notice(priority="P1", touchpoint="fulfilment", score=8, text="Order 123 never came & no refund <sigh>"),
        make_notice(priority="P2", touchpoint="baggage"),
        make_notice(priority="P3", touchpoint="checkin"),
    ]

    with Outbox() as outbox:
        enqueue(outbox, config, notices)
        report = deliver(outbox, config, NOW, env={})

    assert (report.messages_sent, report.notices_sent, report.failed) == (1, 3, [])
    [envelope] = box.envelopes
    assert envelope.mail_from == "moments@northwind.example"
    assert envelope.rcpt_tos == ["care@northwind.example", "lead@northwind.example"]
    [message] = box.messages()
    assert message["Subject"] == "[Moments P1] Northwind Air: 3 flags (fulfilment, baggage, checkin)"
    assert message["To"] == "care@northwind.example, lead@northwind.example"
    [row] = {r.message_id for r in _all_rows()}
    assert row is not None and row.startswith("digest:")
    assert message["Message-ID"] == f"<moments.{hashlib.sha256(row.encode()).hexdigest()[:32]}@northwind.example>"
    assert message["X-Moments-Idempotency-Key"] == row

    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text, markup = plain.get_content(), html.get_content()
    assert '"Order 123 never came & no refund <sigh>"' in text
    assert "Reasons: " + "; ".join(notices[0].flag.reasons) in text
    assert f"Open in Moments: {TRIAGE}/flags/{notices[0].flag.id}" in text
    assert text.index("fulfilment") < text.index("baggage") < text.index("checkin")
    assert "Order 123 never came &amp; no refund &lt;sigh&gt;" in markup
    assert f'<a href="{notices[1].posts[0].url}">View post</a>' in markup


def test_email_logs_in_with_credentials_from_the_environment(make_notice: Callable[..., Notice]) -> None:
    box, port, logins = Mailbox(), _free_port(), []

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        logins.append((data.login, data.password))
        # handled=False: the server answers a refusal itself (535).
        return AuthResult(success=data.password == SMTP_PASSWORD.encode(), handled=False)

    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    mail = {
        "kind": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "to": ["care@example.org"],
        "username_env": "SMTP_USER",
        "password_env": "SMTP_PASSWORD",
    }
    config = _config(mail)
    controller.start()
    try:
        with Outbox() as outbox:
            enqueue(outbox, config, [make_notice()])
            refused = deliver(outbox, config, NOW, env={"SMTP_USER": "moments", "SMTP_PASSWORD": "wrong"})
            accepted = deliver(
                outbox, config, NOW + timedelta(hours=1), env={"SMTP_USER": "moments", "SMTP_PASSWORD": SMTP_PASSWORD}
            )
    finally:
        controller.stop()

    assert [failure.reason for failure in refused.failed] == ["SMTP login refused (535)"]
    assert accepted.messages_sent == 1 and len(box.envelopes) == 1
    # smtplib tries each mechanism the server offers before it gives up.
    assert logins[-1] == (b"moments", SMTP_PASSWORD.encode())
    assert set(logins[:-1]) == {(b"moments", b"wrong")}


# --------------------------------------------------------------------------- 6, 7. failures


def test_a_failing_endpoint_is_retried_with_backoff_then_sent_once(
    receiver: Receiver, make_notice: Callable[..., Notice]
) -> None:
    config = _config({"kind": "webhook", "url": f"{receiver.url}/hook"})
    notice = make_notice()
    receiver.status = 500

    with Outbox() as outbox:
        enqueue(outbox, config, [notice])
        failed = deliver(outbox, config, NOW, env={})
        [row] = outbox.rows()
        assert (row.sent_at, row.attempts, row.last_error) == (None, 1, "HTTP 500: ok")
        assert row.next_attempt_at == NOW + timedelta(seconds=30)

        backing_off = deliver(outbox, config, NOW + timedelta(seconds=10), env={})
        again = deliver(outbox, config, NOW + timedelta(seconds=31), env={})
        [row] = outbox.rows()
        assert row.next_attempt_at == NOW + timedelta(seconds=91)  # 30 s, then 60 s

        receiver.status = 200
        early = deliver(outbox, config, NOW + timedelta(seconds=60), env={})
        recovered = deliver(outbox, config, NOW + timedelta(seconds=92), env={})
        done = deliver(outbox, config, NOW + timedelta(hours=3), env={})

    [failure] = failed.failed
    assert (failure.channel, failure.reason, failure.notices) == (f"webhook {receiver.url}/hook", "HTTP 500: ok", 1)
    assert [h.reason for h in backing_off.waiting] == ["backoff"] and backing_off.messages_sent == 0
    assert again.failed and early.messages_sent == 0
    assert (recovered.messages_sent, recovered.failed) == (1, [])
    assert done.messages_sent == 0
    assert len(receiver.requests) == 3  # two failures, one success
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {notice.key}
    [row] = _all_rows()
    assert row.sent_at == NOW + timedelta(seconds=92) and row.last_error is None


def test_a_dead_channel_does_not_hold_up_the_others(receiver: Receiver, make_notice: Callable[..., Notice]) -> None:
    closed = _free_port()
    dead_hook = {"kind": "webhook", "url": f"http://127.0.0.1:{closed}/hook", "timeout": "2s"}
    dead_mail = {"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": closed, "to": ["care@example.org"]}
    missing = {"kind": "slack", "webhook_url_env": "MOMENTS_UNSET_SLACK_URL"}
    live = {"kind": "webhook", "url": f"{receiver.url}/live"}
    config = _config(dead_hook, dead_mail, missing, live)

    with Outbox() as outbox:
        assert enqueue(outbox, config, [make_notice()]) == 4
        report = deliver(outbox, config, NOW, env={})

    assert (report.messages_sent, len(receiver.on("/live"))) == (1, 1)
    reasons = {failure.channel: failure.reason for failure in report.failed}
    assert reasons[f"webhook http://127.0.0.1:{closed}/hook"].startswith("connection failed (ConnectError")
    assert reasons[f"email smtp 127.0.0.1:{closed}"].startswith("SMTP failed (ConnectionRefusedError")
    # Not retryable soon: it needs an operator, so it waits the longest backoff.
    assert reasons["slack (MOMENTS_UNSET_SLACK_URL)"] == "environment variable MOMENTS_UNSET_SLACK_URL is not set"
    retry = {failure.channel: failure.retry_at for failure in report.failed}
    assert retry["slack (MOMENTS_UNSET_SLACK_URL)"] == NOW + timedelta(hours=1)
    assert retry[f"email smtp 127.0.0.1:{closed}"] == NOW + timedelta(seconds=30)


def test_a_slow_endpoint_times_out_without_holding_delivery(
    receiver: Receiver, make_notice: Callable[..., Notice]
) -> None:
    config = _config({"kind": "webhook", "url": f"{receiver.url}/slow", "timeout": "1s"})
    receiver.delay = 4

    with Outbox() as outbox:
        enqueue(outbox, config, [make_notice()])
        started = time.monotonic()
        report = deliver(outbox, config, NOW, env={})
        elapsed = time.monotonic() - started
        [row] = outbox.rows()

    assert elapsed < 3
    assert [failure.reason for failure in report.failed] == ["no answer within 1s"]
    assert (row.sent_at, row.attempts, row.last_error) == (None, 1, "no answer within 1s")


# --------------------------------------------------------------------------- 8. a crash between send and mark


def test_a_crash_after_sending_resends_once_with_the_same_key(
    receiver: Receiver, make_notice: Callable[..., Notice], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config({"kind": "webhook", "url": f"{receiver.url}/hook"})
    notices = [make_notice(), make_notice(priority="P1")]
    real_mark_sent = Outbox.mark_sent
    crashes = iter([True])

    def crash_once(self: Outbox, channel: str, message_id: str, now: datetime) -> int:
        if next(crashes, False):
            raise RuntimeError("process killed before it recorded the send")
        return real_mark_sent(self, channel, message_id, now)

    monkeypatch.setattr(Outbox, "mark_sent", crash_once)
    with Outbox() as outbox:
        enqueue(outbox, config, notices)
        with pytest.raises(RuntimeError, match="process killed"):
            deliver(outbox, config, NOW, env={})

    [claimed] = {row.message_id for row in _all_rows()}
    assert claimed is not None and all(row.sent_at is None for row in _all_rows())

    # A second process at once: the claim's lease says the first may still be sending.
    with Outbox() as outbox:
        meanwhile = deliver(outbox, config, NOW + timedelta(seconds=5), env={})
    assert meanwhile.messages_sent == 0 and len(receiver.requests) == 1

    # After the lease, the message is resent as it was, and recorded this time.
    with Outbox() as outbox:
        resent = deliver(outbox, config, NOW + timedelta(minutes=5), env={})
        final = deliver(outbox, config, NOW + timedelta(hours=2), env={})
    assert (resent.messages_sent, resent.notices_sent, final.messages_sent) == (1, 2, 0)
    first, second = receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == claimed
    assert first.json() == second.json()
    assert all(row.sent_at == NOW + timedelta(minutes=5) for row in _all_rows())


def test_two_processes_never_claim_the_same_rows(make_notice: Callable[..., Notice]) -> None:
    config = _config({"kind": "webhook", "url": "http://127.0.0.1:9/hook"})
    [channel] = config.notifications
    with Outbox() as first, Outbox() as second:
        enqueue(first, config, [make_notice(), make_notice()])
        mine = first.claim_due(channel_id(channel), NOW, cooldown=None, lease=timedelta(minutes=1))
        theirs = second.claim_due(channel_id(channel), NOW, cooldown=None, lease=timedelta(minutes=1))
    assert [len(batch.rows) for batch in mine.batches] == [2]
    assert theirs.batches == [] and [(w.reason, w.notices) for w in theirs.waiting] == [("backoff", 2)]


# --------------------------------------------------------------------------- 9. secrets


def test_secrets_never_appear_in_logs_reports_or_status(
    receiver: Receiver,
    make_notice: Callable[..., Notice],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_home: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # whatever level an earlier test left it at
    slack_url = f"{receiver.url}/services/T01/B02/{SLACK_TOKEN}"
    channels: list[dict[str, Any]] = [
        {"kind": "webhook", "url": f"{receiver.url}/hook?token={SLACK_TOKEN}x", "secret_env": "HOOK_SECRET"},
        {"kind": "slack", "webhook_url_env": "MOMENTS_SLACK_WEBHOOK", "min_priority": "P3"},
        {
            "kind": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": _free_port(),
            "to": ["care@example.org"],
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
        },
    ]
    config = _config(*channels)
    env = {
        "HOOK_SECRET": WEBHOOK_SECRET,
        "MOMENTS_SLACK_WEBHOOK": slack_url,
        "SMTP_USER": "moments",
        "SMTP_PASSWORD": SMTP_PASSWORD,
    }
    receiver.status, receiver.echo_path = 500, True  # the error page repeats the secret path

    with Outbox() as outbox:
        enqueue(outbox, config, [make_notice(priority="P1")])
        report = deliver(outbox, config, NOW, env=env)
        receiver.status = 200
        later = deliver(outbox, config, NOW + timedelta(minutes=5), env=env)
    config_file = tmp_home / "brands.yaml"
    config_file.write_text(yaml.safe_dump({"brands": BRANDS, "notifications": channels}))
    capsys.readouterr()
    assert main(["notify", "status", "--config", str(config_file)]) == 0
    assert main(["notify", "status", "--json", "--config", str(config_file)]) == 0
    status = capsys.readouterr().out

    assert len(report.failed) == 3 and later.messages_sent == 2
    assert "slack (MOMENTS_SLACK_WEBHOOK)" in status and f"webhook {receiver.url}/hook" in status
    reasons = {failure.channel: failure.reason for failure in report.failed}
    assert reasons["slack (MOMENTS_SLACK_WEBHOOK)"] == "HTTP 500: error at /***"  # the echoed path, scrubbed
    assert reasons[f"webhook {receiver.url}/hook"] == "HTTP 500: error at /hook?***"
    assert "SMTP failed (ConnectionRefusedError" in status
    stored = "\n".join(str(row.last_error) for row in _all_rows())
    with sqlite3.connect(tmp_home / "outbox.sqlite") as db:
        dumped = "\n".join(db.iterdump())
    for secret in (WEBHOOK_SECRET, SLACK_TOKEN, SMTP_PASSWORD, slack_url):
        for where, text in [("logs", caplog.text), ("report", repr(report) + repr(later)), ("status", status)]:
            assert secret not in text, f"{secret!r} leaked into the {where}"
        assert secret not in stored and secret not in dumped
    assert "HTTP Request: POST" in caplog.text  # httpx did log the requests, scrubbed


# --------------------------------------------------------------------------- 10. the command line


def test_notify_cli_status_send_and_test(
    receiver: Receiver,
    make_notice: Callable[..., Notice],
    capsys: pytest.CaptureFixture[str],
    tmp_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = {"kind": "webhook", "url": f"{receiver.url}/good"}
    bad = {"kind": "webhook", "url": f"http://127.0.0.1:{_free_port()}/down", "timeout": "2s"}
    config_file = tmp_home / "brands.yaml"
    config_file.write_text(yaml.safe_dump({"brands": BRANDS, "notifications": [good, bad]}))
    config = _config(good, bad, triage_url=None)
    good_id, bad_id = (channel_id(c) for c in config.notifications)

    with Outbox() as outbox:
        enqueue(outbox, config, [make_notice()])
    capsys.readouterr()
    assert main(["notify", "send", "--config", str(config_file)]) == 1  # one channel failed
    sent = capsys.readouterr().out
    assert sent.startswith("notify: 1 messages sent (1 notices), 1 failed")
    with Outbox() as outbox:
        enqueue(outbox, config, [make_notice(priority="P1")])

    assert main(["notify", "status", "--json", "--config", str(config_file)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["outbox"] == str(tmp_home / "outbox.sqlite")
    counts = {c["id"]: (c["pending"], c["failed"], c["sent"]) for c in status["channels"]}
    assert counts == {good_id: (1, 0, 1), bad_id: (1, 1, 0)}
    [down] = [c for c in status["channels"] if c["id"] == bad_id]
    assert down["channel"] == bad["url"].replace("http", "webhook http", 1)
    assert down["last_error"].startswith("connection failed")

    monkeypatch.setenv("MOMENTS_CONFIG", str(config_file))
    assert main(["notify"]) == 0  # the status, as text
    assert f"webhook {receiver.url}/good: 1 pending, 0 failed, 1 sent" in capsys.readouterr().out

    assert main(["notify", "test"]) == 1
    tested = capsys.readouterr().out
    assert f"webhook {receiver.url}/good: ok" in tested and "/down: failed: connection failed" in tested
    test_body = receiver.on("/good")[-1].json()
    assert (test_body["flag"]["id"], test_body["flag"]["touchpoint"]) == ("test:notify", "test")
    with Outbox() as outbox:
        assert len(outbox.rows()) == 4  # the test message bypasses the outbox
