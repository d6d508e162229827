"""Slack: a Block Kit message to an incoming webhook, whose URL is a secret from the environment.

One flag reads as a header (priority, brand, touchpoint), the post's excerpt, its
reasons and links to the post and to the flag. A digest (a cooldown's worth of
flags about one brand) lists each flag as one section, at most :data:`DIGEST_FLAGS`
of them and then "and N more", well inside Slack's 50 blocks a message.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from flows.notify.base import Channel, Message, Notice, excerpt, flag_link, headline, post_urls
from flows.notify.webhook import post_json
from moments.config import SlackChannel

#: Flags a digest lists one by one; the rest are counted.
DIGEST_FLAGS = 20
#: Slack cuts a header's text here.
HEADER_CHARS = 150


def _escape(text: str) -> str:
    """Text as Slack mrkdwn shows it literally (``&``, ``<`` and ``>`` are markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label}>"


def _links(notice: Notice, triage_url: str | None) -> str:
    links = [_link(url, "View post") for url in post_urls(notice)[:3]]
    if link := flag_link(notice.flag, triage_url):
        links.append(_link(link, "Open in Moments"))
    return " · ".join(links)


def _quote(notice: Notice, limit: int) -> str:
    text = excerpt(notice, limit)
    return f">{_escape(text)}" if text else "_no post text_"


def _facts(notice: Notice) -> str:
    flag = notice.flag
    facts = [f"score {flag.score:.1f}", f"{notice.event}", f"opened {flag.opened_at:%Y-%m-%d %H:%M} UTC"]
    if flag.kind == "burst":
        facts.insert(0, f"burst of {len(flag.post_ids)} posts")
    return " · ".join(facts)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:HEADER_CHARS], "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def single_blocks(message: Message) -> list[dict[str, Any]]:
    """The blocks of a message about one flag."""
    notice = message.top
    flag = notice.flag
    title = f"{flag.priority} · {message.brand_name} · {flag.touchpoint or 'no touchpoint'}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(title + (" (escalated)" if notice.event == "escalated" else ""))},
        {"type": "section", "text": _mrkdwn(_quote(notice, 280))},
        {
            "type": "context",
            "elements": [
                _mrkdwn("*Reasons:* " + (_escape("; ".join(flag.reasons)) or "none given")),
                _mrkdwn(_facts(notice)),
            ],
        },
    ]
    if links := _links(notice, message.triage_url):
        blocks.append({"type": "section", "text": _mrkdwn(links)})
    return blocks


def digest_blocks(message: Message) -> list[dict[str, Any]]:
    """The blocks of a message about several flags: one section each, up to :data:`DIGEST_FLAGS`."""
    count = len(message.notices)
    title = f"{message.top.flag.priority} · {message.brand_name} · {count} flags"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(title)}]
    for notice in message.notices[:DIGEST_FLAGS]:
        flag = notice.flag
        lines = [
            f"*{flag.priority} · {_escape(flag.touchpoint or 'no touchpoint')}* · {_facts(notice)}",
            _quote(notice, 150),
            "_" + (_escape("; ".join(flag.reasons)) or "no reasons given") + "_",
        ]
        if links := _links(notice, message.triage_url):
            lines.append(links)
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines))})
    if count > DIGEST_FLAGS:
        blocks.append({"type": "context", "elements": [_mrkdwn(f"and {count - DIGEST_FLAGS} more")]})
    return blocks


def slack_body(message: Message) -> dict[str, Any]:
    """The incoming-webhook payload: Block Kit blocks and a plain ``text`` for notifications and old clients."""
    blocks = single_blocks(message) if len(message.notices) == 1 else digest_blocks(message)
    return {"text": headline(message), "blocks": blocks}


class SlackSender(Channel):
    """A Slack incoming webhook (``kind: slack``)."""

    kind = "slack"
    config: SlackChannel

    def secrets(self) -> list[str]:
        # The whole URL is the credential, and its path alone (services/T../B../token) as well,
        # should a server echo the path back in an error.
        url = self.env.get(self.config.webhook_url_env, "").strip()
        if not url:
            return []
        parts = urlsplit(url)
        return [url, parts.path.lstrip("/"), parts.query]

    def send(self, message: Message) -> None:
        url = self.secret(self.config.webhook_url_env)
        body = json.dumps(slack_body(message), ensure_ascii=False).encode()
        post_json(url, body, {}, self.config.timeout)
