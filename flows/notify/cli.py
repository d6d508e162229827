"""``moments notify``: the notification outbox's status, delivery now, and a test message."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from dataclasses import asdict
from typing import Any

from flows.notify import Outbox, channel_id, deliver
from flows.notify.base import DeliveryError, Message, Notice, describe, open_channel
from flows.notify.delivery import send_safely
from moments import settings
from moments.cli import Commands
from moments.config import MomentsConfig, load_config
from moments.records import Flag, Post, utc_now

DESCRIPTION = """\
New and escalated flags are queued in the outbox ($MOMENTS_HOME/outbox.sqlite) for
every channel under `notifications` in brands.yaml that wants them (min_priority,
brands), and delivered: one message per channel and brand, flags of one brand
within a channel's cooldown together in one message (a P1 never waits). A failed
delivery is kept and retried with backoff (30s doubling, at most 1h).

Secrets (the Slack webhook URL, the webhook signing secret, the SMTP password) are
read from the environment variables the config names, when a message is sent.

Without an action, shows the status (like `moments notify status`).

examples:
  moments notify status --json
  moments notify send --config brands.yaml
  moments notify test --config brands.yaml     # one test message to every channel

exit status: 0 done; 1 a channel failed; 2 bad usage or config.
"""


def _config_or_none(args: argparse.Namespace) -> MomentsConfig | None:
    """The config when one is given or the default file exists (status works without one)."""
    path = settings.config_path(args.config)
    return load_config(path) if args.config is not None or path.is_file() else None


def _cmd_status(args: argparse.Namespace) -> int:
    config = _config_or_none(args)
    configured = {channel_id(channel): describe(channel) for channel in (config.notifications if config else [])}
    with Outbox() as outbox:
        counts = {row.channel_id: row for row in outbox.counts()}
        path = outbox.path
    channels: list[dict[str, Any]] = []
    for cid in [*configured, *(cid for cid in counts if cid not in configured)]:
        row = counts.get(cid)
        channels.append(
            {
                "id": cid,
                "channel": configured.get(cid, f"{cid} (no longer configured)"),
                "pending": row.pending if row else 0,
                "failed": row.failed if row else 0,
                "sent": row.sent if row else 0,
                "last_error": row.last_error if row else None,
                "next_retry_at": row.next_retry_at.isoformat() if row and row.next_retry_at else None,
            }
        )
    if args.json:
        print(json.dumps({"outbox": str(path), "channels": channels}, indent=2))
        return 0
    print(f"outbox {path}")
    if not channels:
        print("no channels configured and nothing queued")
    for channel in channels:
        tally = f"{channel['pending']} pending, {channel['failed']} failed, {channel['sent']} sent"
        line = f"  {channel['channel']}: {tally}"
        if channel["last_error"]:
            line += f"; last error: {channel['last_error']} (next try {channel['next_retry_at']})"
        print(line)
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    config = load_config(settings.config_path(args.config))
    with Outbox() as outbox:
        report = deliver(outbox, config, utc_now())
    if args.json:
        print(json.dumps(asdict(report), indent=2, default=lambda moment: moment.isoformat()))
    else:
        print(f"notify: {report.summary()}")
        for failure in report.failed:
            retry = failure.retry_at.isoformat()
            print(f"  failed: {failure.channel}: {failure.reason} ({failure.notices} notices; next try {retry})")
        for held in report.waiting:
            about = f"{held.notices} about {held.brand or '(no brand)'}"
            print(f"  waiting: {held.channel}: {about} ({held.reason} until {held.until.isoformat()})")
    return 1 if report.failed else 0


def sample_notice(config: MomentsConfig) -> Notice:
    """A made-up flag, marked as a test everywhere it shows, to check that a channel is set up."""
    now = utc_now()
    brand = config.brands[0].name if config.brands else "Moments"
    post = Post(
        id="moments:notify-test",
        source="moments",
        native_id="notify-test",
        brand=[brand],
        text="This is a test message from `moments notify test`: the channel is set up.",
        crawled_at=now,
    )
    flag = Flag(
        id="test:notify",
        brand=brand,
        touchpoint="test",
        post_ids=[post.id],
        priority="P1",
        score=0,
        reasons=["test message from moments notify test"],
        opened_at=now,
        updated_at=now,
    )
    return Notice.of(flag, "opened", [post], now)


def _cmd_test(args: argparse.Namespace) -> int:
    config = load_config(settings.config_path(args.config))
    if not config.notifications:
        print("notify: no channels under `notifications` in the config")
        return 0
    notice = sample_notice(config)
    failed = 0
    for config_channel in config.notifications:
        channel = open_channel(config_channel, os.environ)
        key = f"test:{uuid.uuid4().hex[:12]}"
        message = Message(channel_id(config_channel), notice.flag.brand, [notice], key, config.triage_url)
        try:
            send_safely(channel, message)
        except DeliveryError as error:
            failed += 1
            print(f"  {channel.label}: failed: {error.reason}")
        else:
            print(f"  {channel.label}: ok")
    return 1 if failed else 0


def register(commands: Commands) -> None:
    """Add ``notify`` (``status``, ``send``, ``test``) to the ``moments`` parser."""
    notify = commands.add(
        "notify",
        help="notifications of new and escalated flags: status, send, test",
        description=DESCRIPTION,
        handler=_cmd_status,
        options=("config", "json"),
    )
    actions = commands.group(notify, dest="notify_action")
    actions.add(
        "status",
        help="pending, failed and sent notices per channel",
        description="Counts of the outbox's rows per channel, with the last error of a failing one.\n\n"
        "example:\n  moments notify status --json",
        handler=_cmd_status,
        options=("config", "json"),
    )
    actions.add(
        "send",
        help="deliver the due notices now",
        description="Deliver every due notice now (what a scheduled run does), and report what\n"
        "was sent, what failed and what waits for a cooldown or a retry.\n\n"
        "example:\n  moments notify send --config brands.yaml",
        handler=_cmd_send,
        options=("config", "json"),
    )
    actions.add(
        "test",
        help="send one test message to every channel",
        description="Send a made-up P1 flag, marked as a test, straight to every configured channel\n"
        "(not through the outbox), to check URLs, secrets and SMTP settings.\n\n"
        "example:\n  MOMENTS_SLACK_WEBHOOK=https://hooks.slack.com/... moments notify test --config brands.yaml",
        handler=_cmd_test,
        options=("config",),
    )
