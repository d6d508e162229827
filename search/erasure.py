"""Erasing one author (GDPR): ``moments search erase --author HANDLE [--source S]``.

What goes:

* the author's **posts** (handle matched without case, with or without a leading ``@``;
  on one source with ``--source``, else on every source);
* the **flags** that point at any of those posts, *deleted with their event logs*. A
  flag's reasons quote the post ("safety/vulnerability: 'words'", "author reach 12k",
  "3rd complaint from this customer") and every event repeats the changed values, so
  blanking fields would still leave the words in the log. A burst flag that also lists
  other posts goes too: the burst rule opens it again from the remaining posts on its
  next run if they still make a burst. This is the one place the append-only event
  log is cut, on purpose and audited;
* the **engagement snapshots** of those posts (the ``snapshots`` table / indices);
* the author's lines in the **spool** (``$MOMENTS_HOME/spool``, set-aside ``.rejected``
  files included) and in the **dead-letter** files (``$MOMENTS_HOME/dead-letters``).

What stays: an **audit event** that holds no personal data: no handle, not even
hashed (a hash of a public handle is reversed by hashing handles), only the counts per
kind, the source, the time and who ran it. It is an app setting keyed
``audit:erasure:<time>:<random>`` (:class:`moments.accounts.AppSetting`), where the
triage app keeps its own records, so it lives and is backed up with the store.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moments import settings
from moments.accounts import AppSetting
from moments.errors import UsageError
from moments.records import utc_now
from search.deadletter import dead_letter_dir, remove_lines
from search.store import ErasureReport, Store

log = logging.getLogger("moments.search.erasure")

#: Prefix of the audit events' setting keys.
AUDIT_PREFIX = "audit:erasure:"


def handle_variants(handle: str) -> set[str]:
    """The spellings of one handle that name the same author: lower case, with and without a leading ``@``."""
    bare = handle.strip().lstrip("@").lower()
    if not bare:
        raise UsageError("--author needs a handle, e.g. --author @jo")
    return {bare, f"@{bare}"}


def _is_author(post: Any, variants: set[str], source: str | None) -> bool:
    """Whether a stored post (JSON) is by the author: exact handle (any case, ``@`` or not), on ``source``."""
    if not isinstance(post, dict):
        return False
    author = post.get("author")
    handle = author.get("handle") if isinstance(author, dict) else None
    if not isinstance(handle, str) or handle.lower() not in variants:
        return False
    return source is None or post.get("source") == source


@dataclass(frozen=True)
class FullErasureReport:
    """Everything :func:`erase_author` removed, per kind, and the key of its audit event."""

    store: ErasureReport
    spool_lines: int = 0
    dead_letters: int = 0
    files: list[Path] = field(default_factory=list)
    audit_key: str = ""

    def counts(self) -> dict[str, int]:
        return {**self.store.counts(), "spool_lines": self.spool_lines, "dead_letters": self.dead_letters}

    def __str__(self) -> str:
        c = self.counts()
        return (
            f"erased {c['posts']} posts, {c['flags']} flags (with their event logs), {c['snapshots']} engagement "
            f"snapshots, {c['spool_lines']} spooled posts and {c['dead_letters']} dead letters"
        )


def _files(store: Store) -> list[Path]:
    """The spool and dead-letter files a copy of a post may sit in, for this store and this ``$MOMENTS_HOME``."""
    directories = {dead_letter_dir(), settings.spool_dir(), store.dead_letters.path.parent}
    spool = getattr(store, "spool_dir", None)
    if isinstance(spool, Path):
        directories.add(spool)
    found: list[Path] = []
    for directory in sorted(directories):
        if directory.is_dir():
            for pattern in ("*.jsonl", "*.rejected", "*.replaying", "*.partial"):
                found.extend(sorted(directory.glob(pattern)))
    return found


def _clean_files(paths: Iterable[Path], variants: set[str], source: str | None) -> tuple[int, int, list[Path]]:
    """Remove the author's lines from spool files (one post a line) and dead-letter files (``{"post": ...}``)."""
    spooled = letters = 0
    touched: list[Path] = []

    def drop(value: dict[str, Any]) -> bool:
        return _is_author(value, variants, source) or _is_author(value.get("post"), variants, source)

    for path in paths:
        removed = remove_lines(path, drop)
        if not removed:
            continue
        touched.append(path)
        if path.parent.name == dead_letter_dir().name:
            letters += removed
        else:
            spooled += removed
    return spooled, letters, touched


def erase_author(
    store: Store, handle: str, *, source: str | None = None, actor: str | None = None
) -> FullErasureReport:
    """Erase an author everywhere Moments keeps a copy, and record an audit event without personal data.

    Args:
        store: The store to erase from.
        handle: The author's handle (``@jo`` or ``jo``; any case).
        source: Only this source's posts (``mastodon``, ...); ``None``: every source.
        actor: Who asked (default: the operating-system user), for the audit event.
    """
    variants = handle_variants(handle)
    removed = store.erase_author(handle, source)
    spooled, letters, touched = _clean_files(_files(store), variants, source)
    at = utc_now()
    key = f"{AUDIT_PREFIX}{at.strftime('%Y%m%dT%H%M%S%fZ')}:{uuid.uuid4().hex[:8]}"
    report = FullErasureReport(store=removed, spool_lines=spooled, dead_letters=letters, files=touched, audit_key=key)
    who = actor or _operator()
    store.put_setting(
        AppSetting(
            key=key,
            value={"action": "erase-author", "source": source, "removed": report.counts(), "actor": who},
            updated_at=at,
            updated_by=who,
        )
    )
    log.info("erasure %s: %s", key, json.dumps(report.counts()))
    return report


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_erase(args: argparse.Namespace) -> int:
    """``moments search erase --author HANDLE [--source S]``: erase and print what went, per kind."""
    from search.backends import open_store

    if not args.author:
        raise UsageError("moments search erase needs --author HANDLE")
    handle_variants(args.author)  # a blank handle is bad input, found before a store is opened
    with open_store(args.store) as store:
        report = erase_author(store, args.author, source=args.source, actor=args.actor)
        location = store.location
    print(f"{report} from {location}; audit event {report.audit_key} (no personal data)")
    return 0


def configure_erase(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--author", metavar="HANDLE", required=True, help="the author's handle (@jo or jo, any case)")
    parser.add_argument("--source", metavar="S", help="only this source's posts (default: every source)")
    parser.add_argument("--actor", help="who asks for the erasure, for the audit event (default: your user name)")


ERASE_DESCRIPTION = """\
Erase one author (a GDPR erasure request): their posts, the flags that point at
them (deleted with their event logs, which quote the posts), their engagement
snapshots, and their lines in the spool and dead-letter files under $MOMENTS_HOME.
Prints what went, per kind. An audit event records the counts, the source, the
time and who ran it, and never the handle.

examples:
  moments search erase --author @jo
  moments search erase --author jo --source mastodon --store http://127.0.0.1:9200
"""
