"""Email over SMTP: a plain-text body with an HTML alternative, one mail per message.

The ``Message-ID`` is derived from the idempotency key, so a resend after a crash
carries the same id and mail clients show it once. Delivery counts once the server
accepted the mail (``250`` after ``DATA``): :mod:`smtplib` raises otherwise.
"""

from __future__ import annotations

import hashlib
import html
import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage

from flows.notify.base import Channel, DeliveryError, Message, Notice, excerpt, flag_link, headline, post_urls
from moments.config import EmailChannel

log = logging.getLogger("flows.notify")

#: How long to wait on the SMTP server (the config has no timeout for email).
SMTP_TIMEOUT = timedelta(seconds=30)


def message_id(message: Message, sender: str) -> str:
    """A ``Message-ID`` that depends only on the idempotency key (and the sender's domain)."""
    digest = hashlib.sha256(message.key.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<moments.{digest}@{domain}>"


def _flag_lines(notice: Notice, triage_url: str | None) -> list[str]:
    flag = notice.flag
    lines = [f"{flag.priority} · {flag.touchpoint or 'no touchpoint'} · {notice.event} · score {flag.score:.1f}"]
    if text := excerpt(notice):
        lines.append(f'"{text}"')
    lines.append("Reasons: " + ("; ".join(flag.reasons) or "none given"))
    lines += [f"Post: {url}" for url in post_urls(notice)]
    if link := flag_link(flag, triage_url):
        lines.append(f"Open in Moments: {link}")
    return lines


def text_body(message: Message) -> str:
    """The plain-text body: every flag, most urgent first."""
    parts = [headline(message), ""]
    for notice in message.notices:
        parts += [*_flag_lines(notice, message.triage_url), ""]
    return "\n".join(parts)


def html_body(message: Message) -> str:
    """The HTML alternative: the same content, with the links clickable."""
    items = []
    for notice in message.notices:
        flag = notice.flag
        title = html.escape(f"{flag.priority} · {flag.touchpoint or 'no touchpoint'}")
        rows = [f"<strong>{title}</strong> · {html.escape(notice.event)} · score {flag.score:.1f}"]
        if text := excerpt(notice):
            rows.append(f"<blockquote>{html.escape(text)}</blockquote>")
        rows.append("Reasons: " + html.escape("; ".join(flag.reasons) or "none given"))
        links = [f'<a href="{html.escape(url)}">View post</a>' for url in post_urls(notice)]
        if link := flag_link(flag, message.triage_url):
            links.append(f'<a href="{html.escape(link)}">Open in Moments</a>')
        if links:
            rows.append(" · ".join(links))
        items.append("<li>" + "<br>".join(rows) + "</li>")
    return f"<html><body><h2>{html.escape(headline(message))}</h2><ul>{''.join(items)}</ul></body></html>"


class EmailSender(Channel):
    """Email over SMTP (``kind: email``), with STARTTLS and login when configured."""

    kind = "email"
    config: EmailChannel

    @property
    def send_timeout(self) -> timedelta:
        return SMTP_TIMEOUT

    def secrets(self) -> list[str]:
        name = self.config.password_env
        password = self.env.get(name, "").strip() if name else ""
        return [password] if password else []

    def compose(self, message: Message) -> EmailMessage:
        """The mail: subject from :func:`headline`, plain text and HTML, ids from the idempotency key."""
        mail = EmailMessage()
        mail["Subject"] = headline(message)
        mail["From"] = self.config.sender
        mail["To"] = ", ".join(self.config.to)
        mail["Message-ID"] = message_id(message, self.config.sender)
        mail["X-Moments-Idempotency-Key"] = message.key
        mail.set_content(text_body(message))
        mail.add_alternative(html_body(message), subtype="html")
        return mail

    def send(self, message: Message) -> None:
        config = self.config
        # Read before connecting: a missing variable is an operator's to fix, not the server's.
        username = self.secret(config.username_env) if config.username_env else None
        password = self.secret(config.password_env) if config.password_env else None
        mail = self.compose(message)
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=SMTP_TIMEOUT.total_seconds()) as smtp:
                if config.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if username is not None:
                    smtp.login(username, password or "")
                refused = smtp.send_message(mail, from_addr=config.sender, to_addrs=config.to)
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryError(f"SMTP login refused ({error.smtp_code})", retryable=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("SMTP server refused every recipient", retryable=False) from None
        except smtplib.SMTPResponseException as error:
            raw = error.smtp_error
            detail = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            reason = f"SMTP {error.smtp_code}: {' '.join(detail.split())}"[:200]
            raise DeliveryError(reason, retryable=error.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP failed ({type(error).__name__}: {error})"[:200], retryable=True) from None
        if refused:
            # The server took the mail for the others; those it refused need an operator, not a resend.
            log.warning("%s: the server refused %s", self.label, ", ".join(sorted(refused)))
