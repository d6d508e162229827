"""The store interface every backend implements.

Two backends sit behind :class:`Store`: the embedded default (SQLite + FTS5,
:mod:`search.sqlite`) and Elasticsearch (:mod:`search.elastic`); :func:`search.open_store`
chooses one. One contract test suite (``tests/search/test_store_contract.py``) runs
against both.

A store holds two kinds of record:

* **posts**, upserted idempotently by id;
* **flags**, the care team's work items, each with an append-only event log. Every
  flag change is a compare-and-set on ``Flag.version``: a writer that read an older
  version gets a :class:`~moments.errors.ConflictError`, never a silent overwrite.
  :meth:`Store.change_flag` wraps the read-change-write loop (and retries it for
  writers, like the flagging rule, whose change still makes sense on a newer version).

Beside them, the triage app's **accounts** (:mod:`moments.accounts`): users, API
tokens, login sessions, settings, and the login-failure counters that rate-limit
logins. Every write is visible to every other process on the same store as soon as
it returns (SQLite transactions; Elasticsearch realtime GETs by id and refreshed
writes for what is listed), so two app processes on one store agree.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from moments.accounts import ApiToken, AppSetting, Session, User
from moments.errors import ConflictError, UsageError, WorkFailed
from moments.records import (
    EventAction,
    Flag,
    FlagEvent,
    Post,
    diff_flags,
    utc_now,
)
from search.deadletter import DeadLetterFile

#: The statuses of a flag someone still has to work.
ACTIVE_STATUSES: tuple[str, ...] = ("open", "acknowledged", "responded")


class StoreError(WorkFailed):
    """A store could not be reached or refused an operation; the message is one readable line (exit 1)."""


class RecordExists(UsageError):
    """A record with this key is stored already, and the write was not an explicit update (exit 2).

    Attributes:
        kind: What kind of record (``user``, ``token``, ``session``).
        key: Its key (a user name, a token id).
    """

    def __init__(self, kind: str, key: str, hint: str = "") -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} exists already" + (f"; {hint}" if hint else ""))


#: Failures kept per login-failure key, at most: far above any limit, so an attack cannot grow one without bound.
MAX_LOGIN_FAILURES_KEPT = 1000


def failures_within(failures: Iterable[datetime], at: datetime, window: timedelta) -> list[datetime]:
    """The failures that count at ``at``: those in ``(at - window, at]``, oldest first, at most the last
    :data:`MAX_LOGIN_FAILURES_KEPT`. Shared by the backends so they count identically."""
    start = at - window
    kept = sorted(f for f in failures if start < f <= at)
    return kept[-MAX_LOGIN_FAILURES_KEPT:]


@dataclass(frozen=True)
class IndexResult:
    """The outcome of :meth:`Store.upsert`: every post given is counted once, so none vanishes silently.

    Attributes:
        written: Posts stored now (``indexed + updated``).
        spooled: Posts kept in the spool because the store was unavailable (written by a later upsert).
        indexed: Posts the store did not hold before.
        updated: Posts that replaced a stored version of themselves.
        rejected: Posts the server refused (a mapping error, say), kept in ``dead_letter``.
        retried: Document writes sent again after the server said it was busy (HTTP 429).
        dead_letter: The dead-letter file the rejected posts went to (``None`` when none were rejected).
    """

    written: int
    spooled: int = 0
    indexed: int = 0
    updated: int = 0
    rejected: int = 0
    retried: int = 0
    dead_letter: Path | None = None


@dataclass(frozen=True)
class ErasureReport:
    """What :meth:`Store.erase_author` removed from the store, per kind of record (counts only, no personal data)."""

    posts: int = 0
    flags: int = 0
    snapshots: int = 0

    def counts(self) -> dict[str, int]:
        return {"posts": self.posts, "flags": self.flags, "snapshots": self.snapshots}


@dataclass(frozen=True)
class MigrationReport:
    """What :meth:`Store.migrate` moved: flags taken out of schema-1 posts."""

    flags_migrated: int = 0
    posts_rewritten: int = 0
    #: Indices reindexed for a mapping change, one line each (``old -> new (N documents; why)``).
    reindexed: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.flags_migrated} flags moved out of {self.posts_rewritten} posts"
        return text + "".join(f"; reindexed {line}" for line in self.reindexed)


@dataclass(frozen=True)
class TouchpointCount:
    """One row of the per-touchpoint scorecard."""

    touchpoint: str
    magic: int
    misery: int
    neutral: int

    @property
    def total(self) -> int:
        return self.magic + self.misery + self.neutral


def summarise_touchpoints(counts: dict[str, dict[str, int]]) -> list[TouchpointCount]:
    """Turn ``{touchpoint: {moment: n}}`` into scorecard rows, busiest first, then by name.

    Shared by the backends so they order the scorecard identically.
    """
    rows = [
        TouchpointCount(touchpoint=t, magic=m.get("magic", 0), misery=m.get("misery", 0), neutral=m.get("neutral", 0))
        for t, m in counts.items()
    ]
    return sorted(rows, key=lambda row: (-row.total, row.touchpoint))


def utc_millis(value: datetime) -> datetime:
    """``value`` in UTC (a naive datetime is taken as UTC), cut to the millisecond.

    Window bounds are cut like this on every backend: Elasticsearch stores dates to the
    millisecond, and a bound cut the same way selects the same posts from SQLite's
    microsecond values.
    """
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def bucket_millis(bucket: timedelta) -> int:
    """``bucket`` in whole milliseconds, for :meth:`Store.moment_counts`.

    Raises:
        ValueError: ``bucket`` is not positive, or not a whole number of milliseconds.
    """
    millis, rest = divmod(bucket, timedelta(milliseconds=1))
    if millis <= 0 or rest:
        raise ValueError(f"a bucket must be a positive whole number of milliseconds, not {bucket!r}")
    return int(millis)


def flag_sort_key(flag: Flag) -> tuple[str, float, datetime, str]:
    """The queue order both backends use: priority (P1 first), score (highest first), oldest, id."""
    return (flag.priority, -flag.score, flag.opened_at, flag.id)


@dataclass(frozen=True)
class FlagChange:
    """What a change function decided: the new flag, how the event names it, and why."""

    flag: Flag
    action: EventAction
    note: str | None = None


#: Given the stored flag, the change to make (``None``: nothing to do).
ChangeFn = Callable[[Flag], FlagChange | None]


class Store(abc.ABC):
    """Where posts and flags live. Post writes are idempotent by ``Post.id``."""

    #: Human-readable location (a path or URL), used in messages.
    location: str

    # ------------------------------------------------------------------ posts

    @abc.abstractmethod
    def upsert(self, posts: Iterable[Post]) -> IndexResult:
        """Insert or replace posts by id. Re-indexing the same posts never duplicates them."""

    @abc.abstractmethod
    def get(self, post_id: str) -> Post | None:
        """One post by id, or ``None``."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many posts are stored."""

    @abc.abstractmethod
    def search(
        self,
        query: str | None,
        *,
        brand: str | None = None,
        limit: int = 20,
        since: datetime | None = None,
        until: datetime | None = None,
        sort: str = "relevance",
    ) -> list[Post]:
        """The first ``limit`` posts matching ``query`` (:mod:`search.query` syntax; ``None``: every post), in order.

        ``since``/``until`` keep posts created in ``[since, until)``; ``sort`` is one of
        :data:`search.query.SORTS` (best match first by default), ties by id. A ``limit``
        beyond 10,000 pages like :meth:`iter_search`.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax (a blank one neither: it asks for nothing).
            UsageError: ``sort`` is not one of the orders.
        """

    @abc.abstractmethod
    def iter_search(
        self,
        query: str | None,
        *,
        brand: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sort: str = "relevance",
        page_size: int = 1000,
    ) -> Iterator[Post]:
        """Every post matching ``query`` (``None``: every post), in ``sort`` order, read ``page_size`` at a time.

        Stable while writes continue: each post that matched when the stream started comes
        exactly once (posts written meanwhile may or may not appear). Elasticsearch reads a
        point in time with ``search_after``; SQLite pages by keyset on (sort key, id), or for
        ``relevance`` with text to rank (bm25 moves as posts are added) takes the order of the
        matching ids once at the start and reads the posts in pages along it.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax (a blank one neither: it asks for nothing).
            UsageError: ``sort`` is not one of the orders.
        """

    @abc.abstractmethod
    def aggregate(
        self,
        name: str,
        *,
        query: str = "",
        brand: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """One of :data:`search.aggregations.AGGREGATIONS` over the posts matching the filters, computed by the store.

        Returns a JSON-able dict shaped by :mod:`search.aggregations`, the same on every backend.

        Raises:
            UsageError: ``name`` is not an aggregation, or the period is empty.
            QuerySyntaxError: ``query`` is not valid syntax.
        """

    @abc.abstractmethod
    def scan(self, *, since: datetime | None = None, brand: str | None = None) -> Iterator[Post]:
        """Every stored post (optionally created at/after ``since``), for flagging and exports."""

    @abc.abstractmethod
    def touchpoint_summary(self, *, brand: str | None = None) -> list[TouchpointCount]:
        """Magic / misery / neutral counts per touchpoint, over classified posts."""

    @abc.abstractmethod
    def get_many(self, post_ids: Iterable[str]) -> dict[str, Post]:
        """The stored posts among ``post_ids``, by id; ids not stored are absent.

        Read in chunks (SQLite ``IN``, Elasticsearch ``mget``), never one request per id.
        """

    @abc.abstractmethod
    def count_posts(self, query: str = "", *, brand: str | None = None) -> int:
        """How many posts match ``query`` (:mod:`search.query` syntax; blank: every post), counted by the store.

        ``author:"@jo" AND sentiment:negative AND created_at:>=2026-11-01T00:00:00Z`` is
        the kind of question it answers without fetching a single hit.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
        """

    @abc.abstractmethod
    def count_author_posts(
        self,
        *,
        handle: str,
        source: str,
        since: datetime,
        until: datetime,
        sentiment: str | None = None,
        brand: str | None = None,
    ) -> int:
        """Posts by one author (exact handle, on one source) created in ``[since, until)``.

        An index lookup on (author, time), for the repeat-complaint check the flagging rule
        makes for every candidate flag: it must not cost a scan of the window.
        """

    @abc.abstractmethod
    def recent_posts(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        sentiment: str | None = None,
        sources: Sequence[str] | None = None,
        brand: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Post]:
        """Posts created in ``[since, until)``, newest first (ties: id descending), read through an index.

        Args:
            since: Earliest ``created_at``, inclusive (a naive datetime is UTC).
            until: Latest ``created_at``, exclusive; ``None``: no upper bound.
            sentiment: Only posts whose ``classification.sentiment`` is this.
            sources: Only posts from these sources (``None``: any; empty: none).
            brand: Only posts naming this brand.
            limit: At most this many posts (``None``: all of them).

        Posts without ``created_at`` never match. The cost grows with the posts in the
        window, not with the size of the store; posts are read in pages, so callers
        may write while iterating.
        """

    @abc.abstractmethod
    def moment_counts(
        self,
        *,
        since: datetime,
        until: datetime,
        moment: str = "misery",
        bucket: timedelta = timedelta(hours=1),
        brand: str | None = None,
    ) -> dict[tuple[str, str], dict[datetime, int]]:
        """How many posts of one moment fall in each time bucket, per (brand, touchpoint), counted by the store.

        Args:
            since: Earliest ``created_at``, inclusive.
            until: Latest ``created_at``, exclusive.
            moment: The ``classification.moment`` to count.
            bucket: The bucket width (whole milliseconds); buckets start at multiples
                of it since the Unix epoch, in UTC.
            brand: Only this brand's keys (a post naming several brands counts for each).

        Returns:
            ``{(brand, touchpoint): {bucket start (UTC): count}}``; empty buckets, and
            keys without any post, are left out.

        Raises:
            ValueError: ``bucket`` is not a positive whole number of milliseconds.
        """

    @property
    @abc.abstractmethod
    def dead_letters(self) -> DeadLetterFile:
        """Where :meth:`upsert` keeps the posts this store refused (see :mod:`search.deadletter`)."""

    # ------------------------------------------------------------------ erasure and retention

    @abc.abstractmethod
    def erase_author(self, handle: str, source: str | None = None) -> ErasureReport:
        """Remove every post by ``handle`` (on ``source``, or any), the flags that point at them and their snapshots.

        Flags are deleted with their event logs, because a flag's reasons (and so its
        events) quote the post's words; see :mod:`search.erasure`. Spool and dead-letter
        files are cleaned by :func:`search.erasure.erase_author`, which calls this.
        """

    @abc.abstractmethod
    def purge(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete posts created before ``older_than`` (no ``created_at``: crawled before it); how many.

        Posts only: snapshots have their own period (:meth:`purge_snapshots`). With
        ``dry_run`` nothing is deleted and the number is what would be.
        """

    @abc.abstractmethod
    def purge_snapshots(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete engagement snapshots observed before ``older_than``; how many (``dry_run``: would).

        The snapshot rows/indices only: a post's own ``engagement_history`` is part of the post.
        """

    @abc.abstractmethod
    def purge_flags(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete closed flags (resolved, dismissed) closed before ``older_than``, with their event logs; how many.

        Closed means ``resolved_at``, or ``updated_at`` when a closed flag has none. Flags
        still being worked (any status of :data:`ACTIVE_STATUSES`) are never deleted, however
        old, and a flag reopened while the purge runs is kept. With ``dry_run``: how many would go.
        """

    # ------------------------------------------------------------------ flags

    @abc.abstractmethod
    def get_flag(self, flag_id: str) -> Flag | None:
        """One flag by id, or ``None``."""

    @abc.abstractmethod
    def list_flags(
        self,
        *,
        status: Sequence[str] | None = ACTIVE_STATUSES,
        brand: str | None = None,
        kind: str | None = None,
        touchpoint: str | None = None,
        limit: int = 100,
    ) -> list[Flag]:
        """Flags in queue order (:func:`flag_sort_key`); ``status=None`` means every status.

        ``kind`` (``post`` or ``burst``), ``brand`` and ``touchpoint`` keep only flags with that value.
        """

    @abc.abstractmethod
    def count_flags(
        self,
        *,
        status: Sequence[str] | None = ACTIVE_STATUSES,
        brand: str | None = None,
        kind: str | None = None,
    ) -> int:
        """How many flags :meth:`list_flags` would list with these filters and no limit, counted by the store."""

    @abc.abstractmethod
    def flag_events(self, flag_id: str) -> list[FlagEvent]:
        """A flag's event log, oldest first (empty for an unknown flag)."""

    @abc.abstractmethod
    def _create_flag(self, flag: Flag, event: FlagEvent) -> None:
        """Store a new flag and its first event atomically; ``ConflictError`` if the id exists."""

    @abc.abstractmethod
    def _replace_flag(self, flag: Flag, expected_version: int, event: FlagEvent) -> None:
        """Compare-and-set: store ``flag`` and append ``event`` only if the stored version is ``expected_version``.

        Raises:
            ConflictError: The stored version differs (or the flag is gone).
        """

    @abc.abstractmethod
    def migrate(self) -> MigrationReport:
        """Bring a store written by an older release up to the current schema, losing nothing.

        Flags kept inside posts (schema 1) become flag records with a ``migrated`` event.
        Safe to run any number of times; backends also run it when opened.
        """

    def create_flag(self, flag: Flag, *, actor: str, note: str | None = None, at: datetime | None = None) -> Flag:
        """Store a new flag at version 1 with an ``opened`` event.

        Raises:
            ConflictError: A flag with this id exists already.
        """
        at = at or utc_now()
        flag = flag.model_copy(update={"version": 1, "updated_at": at})
        event = FlagEvent(
            flag_id=flag.id, version=1, at=at, actor=actor, action="opened", changes=diff_flags(None, flag), note=note
        )
        self._create_flag(flag, event)
        return flag

    def change_flag(
        self,
        flag_id: str,
        change: ChangeFn,
        *,
        actor: str,
        if_version: int | None = None,
        at: datetime | None = None,
        attempts: int = 8,
    ) -> Flag:
        """Read a flag, apply ``change``, and write it back with a compare-and-set.

        Args:
            flag_id: The flag to change.
            change: Decides the new flag from the stored one; ``None`` changes nothing.
            actor: Who is changing it (a person's name, or ``rule:<version>``).
            if_version: The version the caller saw. When given, a different stored
                version is a conflict at once (a person must look again). When not
                given, a lost race re-reads and re-applies ``change`` on the newer
                version, so two writers' changes both land.
            at: When the change happens (default: now).
            attempts: How many lost races to absorb without ``if_version``.

        Returns:
            The flag as stored after the change (unchanged when ``change`` returned ``None``).

        Raises:
            KeyError: No flag has this id.
            ConflictError: ``if_version`` is stale, or the races never settled.
        """
        last_conflict: ConflictError | None = None
        for _ in range(max(attempts, 1)):
            current = self.get_flag(flag_id)
            if current is None:
                raise KeyError(flag_id)
            if if_version is not None and current.version != if_version:
                raise self._conflict(current, if_version)
            decided = change(current)
            if decided is None:
                return current
            when = at or utc_now()
            new = decided.flag.model_copy(update={"id": current.id, "version": current.version + 1, "updated_at": when})
            changes = diff_flags(current, new)
            if not changes and not decided.note:
                return current
            event = FlagEvent(
                flag_id=flag_id,
                version=new.version,
                at=when,
                actor=actor,
                action=decided.action,
                changes=changes,
                note=decided.note,
            )
            try:
                self._replace_flag(new, current.version, event)
                return new
            except ConflictError as exc:
                last_conflict = exc
                if if_version is not None:
                    latest = self.get_flag(flag_id)
                    raise (self._conflict(latest, if_version) if latest is not None else exc) from None
        assert last_conflict is not None
        raise last_conflict

    def _conflict(self, current: Flag, expected: int) -> ConflictError:
        """A conflict error that says who changed the flag last, and when."""
        events = self.flag_events(current.id)
        last = events[-1] if events else None
        return ConflictError(
            current.id,
            expected,
            current.version,
            changed_by=last.actor if last else None,
            changed_at=last.at.isoformat() if last else None,
        )

    # ------------------------------------------------------------------ accounts

    @abc.abstractmethod
    def get_user(self, name: str) -> User | None:
        """One user by name, or ``None``."""

    @abc.abstractmethod
    def put_user(self, user: User, *, update: bool = False) -> None:
        """Store a new user, or with ``update=True`` replace the stored one of that name.

        Raises:
            RecordExists: ``update`` is false and the name is taken.
            KeyError: ``update`` is true and no user has this name.
        """

    @abc.abstractmethod
    def list_users(self) -> list[User]:
        """Every user, by name."""

    @abc.abstractmethod
    def create_token(self, token: ApiToken) -> None:
        """Store a new API token (only its hash: the record never holds the secret).

        Raises:
            RecordExists: A token with this id exists already.
        """

    @abc.abstractmethod
    def get_token(self, token_id: str) -> ApiToken | None:
        """One API token by id, or ``None`` (revoked ones too: check ``revoked_at``)."""

    @abc.abstractmethod
    def list_tokens(self, *, user: str | None = None) -> list[ApiToken]:
        """API tokens (of one user, or all), oldest first, revoked ones included."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, *, at: datetime) -> ApiToken:
        """Mark a token revoked at ``at`` and return it; a revoked one keeps its first ``revoked_at``.

        Raises:
            KeyError: No token has this id.
        """

    @abc.abstractmethod
    def touch_token(self, token_id: str, *, at: datetime) -> None:
        """Set a token's ``last_used_at`` (nothing else: a concurrent revocation is never undone)."""

    @abc.abstractmethod
    def create_session(self, session: Session) -> None:
        """Store a new login session.

        Raises:
            RecordExists: A session with this id exists already.
        """

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session | None:
        """One session by id (the hash of its cookie), or ``None``; expired ones too: check ``expires_at``."""

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """Delete a session (logout); whether there was one."""

    @abc.abstractmethod
    def record_login_failure(self, key: str, at: datetime, window: timedelta) -> int:
        """Count one failed login for ``key`` at ``at``, atomically; how many fall in ``(at - window, at]`` now.

        ``key`` is whatever is limited (``account:alice``, ``address:203.0.113.9``). Failures
        older than the window are forgotten as the counter is written.
        """

    @abc.abstractmethod
    def login_failures(self, key: str, at: datetime, window: timedelta) -> list[datetime]:
        """The failures of ``key`` in ``(at - window, at]``, oldest first (see :func:`failures_within`)."""

    @abc.abstractmethod
    def clear_login_failures(self, key: str) -> None:
        """Forget every failure of ``key`` (after a successful login)."""

    @abc.abstractmethod
    def get_setting(self, key: str) -> AppSetting | None:
        """One app setting by key, or ``None``."""

    def get_settings(self, keys: Iterable[str]) -> dict[str, AppSetting]:
        """The stored settings among ``keys``, by key (absent keys left out).

        Stores override this with one batched read: the queue reads the presence of
        every flag it shows, and one read per flag was most of a queue request's time.
        """
        found: dict[str, AppSetting] = {}
        for key in dict.fromkeys(keys):
            setting = self.get_setting(key)
            if setting is not None:
                found[key] = setting
        return found

    @abc.abstractmethod
    def put_setting(self, setting: AppSetting) -> None:
        """Store an app setting, replacing any of that key."""

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
