"""The durable outbox: notices wait in SQLite until each channel has them.

One row per (channel, notice key), ``UNIQUE``: enqueueing the same flag change twice
is a no-op, and a notice is delivered to each channel once. A row's life:

1. added, due at once (``next_attempt_at`` unset);
2. *claimed* by :meth:`Outbox.claim_due`: given the ``message_id`` of the message it
   goes out in and a lease (``next_attempt_at`` = now + lease), committed before the
   send, so a second process skips it;
3. ``sent_at`` set on success, or ``last_error``, ``attempts + 1`` and a backoff on
   failure; the ``message_id`` stays either way.

A process that dies between sending and marking leaves a claimed row whose lease runs
out; the next claim resends it in a message with the same ``message_id``, which is the
idempotency key the receiver sees. So a crash costs at most one repeat, and the repeat
can be recognised.

The file is in WAL mode and every claim is a ``BEGIN IMMEDIATE`` transaction, so two
processes (``moments notify send`` and a scheduled flow) may deliver at once.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal

from flows.notify.base import Notice
from moments import settings
from moments.records import utc_now

#: The first retry waits this long; each further one twice as long ...
FIRST_RETRY = timedelta(seconds=30)
#: ... up to this; an error that needs an operator (a missing variable, a 4xx) waits this at once.
LAST_RETRY = timedelta(hours=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    key TEXT NOT NULL,
    brand TEXT,
    priority TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    message_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    sent_at TEXT,
    UNIQUE (channel_id, key)
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (channel_id, sent_at);
CREATE INDEX IF NOT EXISTS outbox_last_sent ON outbox (channel_id, brand, sent_at);
"""


def _stamp(moment: datetime) -> str:
    # Fixed width and UTC, so SQLite compares stamps as text in time order.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(stamp: str | None) -> datetime | None:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if stamp else None


def retry_delay(attempts: int, *, retryable: bool = True) -> timedelta:
    """How long a row waits after its ``attempts``-th failure: 30 s doubling, at most 1 h."""
    if not retryable:
        return LAST_RETRY
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LAST_RETRY)


def message_key(channel_id: str, keys: Iterable[str]) -> str:
    """The idempotency key of a message: the notice's own key, or a hash of every key in a digest.

    Derived, not random, so the message a crashed process claimed is recognisable.
    """
    ordered = sorted(keys)
    if len(ordered) == 1:
        return ordered[0]
    digest = hashlib.sha256("\n".join([channel_id, *ordered]).encode()).hexdigest()[:32]
    return f"digest:{digest}"


@dataclass(frozen=True)
class OutboxRow:
    """One notice for one channel, as stored."""

    id: int
    channel_id: str
    key: str
    brand: str | None
    priority: str
    event: str
    payload: str
    created_at: datetime
    message_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None

    @classmethod
    def from_db(cls, row: sqlite3.Row) -> OutboxRow:
        return cls(
            id=row["id"],
            channel_id=row["channel_id"],
            key=row["key"],
            brand=row["brand"],
            priority=row["priority"],
            event=row["event"],
            payload=row["payload"],
            created_at=_moment(row["created_at"]) or utc_now(),
            message_id=row["message_id"],
            attempts=row["attempts"],
            next_attempt_at=_moment(row["next_attempt_at"]),
            last_error=row["last_error"],
            sent_at=_moment(row["sent_at"]),
        )

    def notice(self) -> Notice:
        return Notice.from_payload(json.loads(self.payload))


@dataclass(frozen=True)
class Batch:
    """Claimed rows that go out as one message (``message_id`` is its idempotency key)."""

    message_id: str
    brand: str | None
    rows: list[OutboxRow]
    #: Claimed before by an attempt that never reported back: sent again, same key.
    resend: bool = False

    def notices(self) -> list[Notice]:
        return [row.notice() for row in self.rows]


@dataclass(frozen=True)
class Waiting:
    """Rows of one brand that are not due yet, and why."""

    brand: str | None
    reason: Literal["cooldown", "backoff"]
    notices: int
    until: datetime


@dataclass
class Claim:
    """What :meth:`Outbox.claim_due` found for one channel: what to send now, what waits."""

    batches: list[Batch] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


@dataclass(frozen=True)
class ChannelCounts:
    """A channel's rows for ``moments notify status``.

    ``failed`` rows are unsent rows whose last attempt failed; they are retried at
    ``next_retry_at``. ``pending`` rows have not been tried (or are being sent).
    """

    channel_id: str
    pending: int
    failed: int
    sent: int
    last_error: str | None
    next_retry_at: datetime | None


class Outbox:
    """The outbox file (default ``$MOMENTS_HOME/outbox.sqlite``); use it as a context manager."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else settings.outbox_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write below says where its transaction starts and ends.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once, so two processes never plan from the same snapshot."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, channel_id: str, notices: Iterable[Notice]) -> int:
        """Queue ``notices`` for a channel; a notice already queued for it is left alone.

        Returns:
            How many rows were added.
        """
        now = _stamp(utc_now())
        rows = [
            (
                channel_id,
                notice.key,
                notice.flag.brand,
                notice.flag.priority,
                notice.event,
                json.dumps(notice.to_payload(), ensure_ascii=False),
                now,
            )
            for notice in notices
        ]
        with self._immediate() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (channel_id, key, brand, priority, event, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def rows(self, channel_id: str | None = None) -> list[OutboxRow]:
        """Every row (of one channel), oldest first."""
        if channel_id is None:
            found = self._db.execute("SELECT * FROM outbox ORDER BY id")
        else:
            found = self._db.execute("SELECT * FROM outbox WHERE channel_id = ? ORDER BY id", (channel_id,))
        return [OutboxRow.from_db(row) for row in found]

    def claim_due(self, channel_id: str, now: datetime, *, cooldown: timedelta | None, lease: timedelta) -> Claim:
        """Claim the rows of one channel that may go now, grouped into messages.

        * Rows an earlier attempt claimed (crashed, or failed and now due again) go
          out again as the message they were in, with the same ``message_id``.
        * The other due rows go out as one message per brand, unless the channel sent
          a message about that brand less than ``cooldown`` ago: then they wait until
          the cooldown ends, except P1 rows, which never wait.

        Claimed rows get their ``message_id`` and a lease (``next_attempt_at`` =
        ``now + lease``) in one committed transaction, before anything is sent.
        """
        claim = Claim()
        with self._immediate() as db:
            unsent = [
                OutboxRow.from_db(row)
                for row in db.execute(
                    "SELECT * FROM outbox WHERE channel_id = ? AND sent_at IS NULL ORDER BY id", (channel_id,)
                )
            ]
            due = [row for row in unsent if row.next_attempt_at is None or row.next_attempt_at <= now]
            due_ids = {row.id for row in due}
            claim.waiting += _backing_off([row for row in unsent if row.id not in due_ids])

            claimed: dict[str, list[OutboxRow]] = {}
            for row in due:
                if row.message_id is not None:
                    claimed.setdefault(row.message_id, []).append(row)
            for message_id, rows in claimed.items():
                claim.batches.append(Batch(message_id, rows[0].brand, rows, resend=True))

            fresh: dict[str | None, list[OutboxRow]] = {}
            for row in due:
                if row.message_id is None:
                    fresh.setdefault(row.brand, []).append(row)
            for brand, rows in fresh.items():
                cooling_until = self._cooldown_end(channel_id, brand, cooldown)
                going = rows
                if cooling_until is not None and now < cooling_until:
                    going = [row for row in rows if row.priority == "P1"]
                    if len(going) < len(rows):
                        claim.waiting.append(Waiting(brand, "cooldown", len(rows) - len(going), cooling_until))
                if going:
                    message_id = message_key(channel_id, (row.key for row in going))
                    db.executemany(
                        "UPDATE outbox SET message_id = ? WHERE id = ?", [(message_id, row.id) for row in going]
                    )
                    claim.batches.append(Batch(message_id, brand, going))

            until = _stamp(now + lease)
            db.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                [(until, row.id) for batch in claim.batches for row in batch.rows],
            )
        return claim

    def _cooldown_end(self, channel_id: str, brand: str | None, cooldown: timedelta | None) -> datetime | None:
        """When the cooldown after the channel's last message about ``brand`` ends (``None``: no cooldown)."""
        if cooldown is None:
            return None
        (last,) = self._db.execute(
            "SELECT MAX(sent_at) FROM outbox WHERE channel_id = ? AND brand IS ? AND sent_at IS NOT NULL",
            (channel_id, brand),
        ).fetchone()
        last_sent = _moment(last)
        return last_sent + cooldown if last_sent is not None else None

    def mark_sent(self, channel_id: str, message_id: str, now: datetime) -> int:
        """Record that the message went out (the receiver accepted it); returns the rows marked."""
        with self._immediate() as db:
            cursor = db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL"
                " WHERE channel_id = ? AND message_id = ? AND sent_at IS NULL",
                (_stamp(now), channel_id, message_id),
            )
            return cursor.rowcount

    def mark_failed(self, channel_id: str, message_id: str, now: datetime, error: str, *, retryable: bool) -> datetime:
        """Record a failed attempt (the rows keep their message id); returns when they are tried again."""
        with self._immediate() as db:
            (attempts,) = db.execute(
                "SELECT COALESCE(MAX(attempts), 0) FROM outbox WHERE channel_id = ? AND message_id = ?",
                (channel_id, message_id),
            ).fetchone()
            retry_at = now + retry_delay(attempts + 1, retryable=retryable)
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE channel_id = ? AND message_id = ? AND sent_at IS NULL",
                (error, _stamp(retry_at), channel_id, message_id),
            )
        return retry_at

    def counts(self) -> list[ChannelCounts]:
        """Pending, failed and sent rows of every channel that has any, with its latest error."""
        result = []
        for row in self._db.execute(
            """
            SELECT channel_id,
                   SUM(sent_at IS NULL AND last_error IS NULL) AS pending,
                   SUM(sent_at IS NULL AND last_error IS NOT NULL) AS failed,
                   SUM(sent_at IS NOT NULL) AS sent,
                   MIN(CASE WHEN sent_at IS NULL AND last_error IS NOT NULL THEN next_attempt_at END) AS next_retry
            FROM outbox GROUP BY channel_id ORDER BY channel_id
            """
        ):
            last_error = self._db.execute(
                "SELECT last_error FROM outbox WHERE channel_id = ? AND sent_at IS NULL AND last_error IS NOT NULL"
                " ORDER BY next_attempt_at DESC LIMIT 1",
                (row["channel_id"],),
            ).fetchone()
            result.append(
                ChannelCounts(
                    channel_id=row["channel_id"],
                    pending=row["pending"],
                    failed=row["failed"],
                    sent=row["sent"],
                    last_error=last_error[0] if last_error else None,
                    next_retry_at=_moment(row["next_retry"]),
                )
            )
        return result


def _backing_off(rows: list[OutboxRow]) -> list[Waiting]:
    """Rows not due yet (after a failure, or claimed and being sent), one entry per brand."""
    by_brand: dict[str | None, list[OutboxRow]] = {}
    for row in rows:
        by_brand.setdefault(row.brand, []).append(row)
    return [
        Waiting(brand, "backoff", len(group), min(row.next_attempt_at for row in group if row.next_attempt_at))
        for brand, group in by_brand.items()
    ]
