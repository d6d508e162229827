"""The embedded store: one SQLite file with an FTS5 index, no server to run.

Layout (all derived from the schema by :mod:`search.mapping`):

* ``posts``: one row per post: flattened scalar columns (``flag_priority``,
  ``classification_touchpoint`` ...) for filtering and counting, and ``doc``, the
  full record as JSON, which is what reads return.
* ``posts_fts``: an FTS5 table over the text-marked fields, keyed by the
  ``posts`` rowid and ranked with bm25.
* ``flags``: one row per flag, flattened the same way, with its ``version`` for
  compare-and-set updates inside ``BEGIN IMMEDIATE`` transactions.
* ``flag_events``: the append-only event log, one row per (flag, version); triggers
  refuse any UPDATE or DELETE of it.
* ``users``, ``api_tokens``, ``sessions``, ``app_settings``: the triage app's accounts
  (:mod:`moments.accounts`), one row per record with its key columns and ``doc``;
  ``login_failures``: one row per failed login, by key and time, for rate limits.

A schema field added later is added to an existing file on open (``ALTER TABLE``
plus a backfill from ``doc``), so old databases keep working; a file written by
schema 1 (flags inside posts) is migrated on open (``PRAGMA user_version``). Missing
indexes (:data:`_INDEXES`) are created on every open too, so an older file gains the
ones the window queries (``recent_posts``, ``moment_counts``) read through.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moments.accounts import ApiToken, AppSetting, Session, User
from moments.errors import ConflictError
from moments.records import CLOSED_STATUSES, SCHEMA_VERSION, EngagementSnapshot, Flag, FlagEvent, Post
from search.aggregations import (
    COMPLAINT_QUERY,
    MIN_TERM_DOCS,
    STANDOUT_FIELD,
    TOP_AUTHORS,
    TermCount,
    check_name,
    choose_interval,
    keep_term,
    moment_share_result,
    period,
    standout_terms_result,
    timeline_result,
    top_authors_result,
    volume_result,
)
from search.deadletter import DeadLetterFile, dead_letter_dir
from search.mapping import Column, TextField, sqlite_columns, text_fields, value_at
from search.migration import legacy_flag
from search.query import (
    FIELDS_BY_PATH,
    And,
    FieldMatch,
    MatchAll,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Range,
    Term,
    TextLeaf,
    check_sort,
    filtered,
    fold,
    parse,
    query_tree,
)
from search.store import (
    ACTIVE_STATUSES,
    ErasureReport,
    IndexResult,
    MigrationReport,
    RecordExists,
    Store,
    StoreError,
    TouchpointCount,
    bucket_millis,
    failures_within,
    summarise_touchpoints,
    utc_millis,
)

log = logging.getLogger("moments.search.sqlite")

#: Posts per write transaction: big enough to be fast, small enough that a long
#: import does not hold the write lock (or memory) for the whole file.
_BATCH = 500
_BRAND_FILTER = "EXISTS (SELECT 1 FROM json_each(posts.brand) WHERE json_each.value = ?)"
#: The indexes every store file has, by name: (table, columns). Created on open when
#: missing, so a file written by an older release gains them the first time it is opened.
_INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    # recent_posts: a created_at window, newest first, ties by id, straight from the index.
    "posts_created_at_id": ("posts", ("created_at", "id")),
    # recent_posts(sentiment=...): only the posts of that sentiment in the window.
    "posts_sentiment_created_at": ("posts", ("classification_sentiment", "created_at", "id")),
    # moment_counts: only the posts of that moment in the window.
    "posts_moment_created_at": ("posts", ("classification_moment", "created_at")),
    "posts_classification_touchpoint": ("posts", ("classification_touchpoint",)),
    # count_author_posts: one customer's posts in a window (repeat complaints).
    "posts_author_created_at": ("posts", ("author_handle", "source", "created_at")),
    "flags_status": ("flags", ("status",)),
    "flags_brand": ("flags", ("brand",)),
    "api_tokens_user": ("api_tokens", ("user", "created_at")),
    "sessions_expires_at": ("sessions", ("expires_at",)),
    "login_failures_key_at": ("login_failures", ("key", "at")),
}
#: The triage app's account tables (:mod:`moments.accounts`), created on open when missing.
_ACCOUNT_TABLES = (
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_tokens"
    " (id TEXT PRIMARY KEY, user TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions"
    " (id TEXT PRIMARY KEY, user TEXT NOT NULL, expires_at TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS app_settings (key TEXT PRIMARY KEY, doc TEXT NOT NULL)",
)
#: The trigger that keeps the flag log append-only against deletes (dropped only by an erasure, in its transaction).
_NO_DELETE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS flag_events_no_delete BEFORE DELETE ON flag_events "
    "BEGIN SELECT RAISE(ABORT, 'flag events are append-only'); END"
)
#: Engagement snapshots, one row per (post, observation time): rewriting a post rewrites its rows, never duplicates.
_SNAPSHOTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS snapshots (post_id TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL,"
    " PRIMARY KEY (post_id, at)) WITHOUT ROWID"
)
#: Indexes of older releases that one of :data:`_INDEXES` replaced.
_OBSOLETE_INDEXES = ("posts_created_at",)  # the start of posts_created_at_id


def _sql_datetime(value: datetime) -> str:
    """Fixed width with microseconds and a Z, so text comparison is chronological.

    Written field by field because ``strftime("%Y")`` does not zero-pad years before 1000.
    """
    value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def _sql_cutoff(older_than: datetime) -> str:
    """A purge cutoff as stored text (a naive time is taken as UTC)."""
    return _sql_datetime(older_than if older_than.tzinfo else older_than.replace(tzinfo=UTC))


def _column_value(record: BaseModel, column: Column) -> Any:
    value = value_at(record, column.path)
    if value is None:
        return None
    if column.kind == "datetime":
        return _sql_datetime(value)
    if column.kind == "json":
        return json.dumps(list(value), ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def _text_value(post: Post, field: TextField) -> str:
    value = value_at(post, field.path)
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    return str(value)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_defs(columns: list[Column], *, unique: bool = True) -> str:
    defs = ", ".join(
        f"{_quote(c.name)} {c.sql_type}" + (" NOT NULL UNIQUE" if unique and c.name == "id" else "") for c in columns
    )
    return f"rowid INTEGER PRIMARY KEY, {defs}"


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error) under the store's lock.

    IMMEDIATE takes the write lock up front, so a compare-and-set's read and write
    see no other writer in between, even from another process.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()


def _fts_string(text: str) -> str:
    """``text`` as one FTS5 string: the tokenizer sees its words, FTS5 sees no operator in it."""
    return '"' + text.replace('"', '""') + '"'


def _fts_leaf(leaf: TextLeaf) -> str:
    """A free-text leaf as a safe FTS5 expression: quoted strings, a trailing ``*``, a column filter."""
    expression = _fts_string(leaf.text) + (" *" if isinstance(leaf, Prefix) else "")
    if leaf.field is not None:
        column = FIELDS_BY_PATH[leaf.field].column
        if not re.fullmatch(r"\w+", column):
            raise ValueError(f"cannot filter FTS5 on column {column!r}")
        expression = f"{{{column}}} : {expression}"
    return expression


#: ``recent``: ``created_at`` to the millisecond (as Elasticsearch keeps it), undated posts last (descending).
_RECENT_KEY = "coalesce(substr(created_at, 1, 23), '')"
#: ``engagement``: :meth:`moments.records.Engagement.total` in SQL (likes, else a positive score; + shares,
#: replies, quotes; unknown counts 0). Elasticsearch sums the same fields in a ``function_score``.
_ENGAGEMENT_KEY = (
    "(coalesce(engagement_likes, max(coalesce(engagement_score, 0), 0))"
    " + coalesce(engagement_shares, 0) + coalesce(engagement_replies, 0) + coalesce(engagement_quotes, 0))"
)
#: Indexes on the sort keys, in their order (key descending, then id), so a keyset page of ``recent`` or
#: ``engagement`` starts at its place in the index and reads only its own rows.
_SORT_INDEXES: dict[str, str] = {
    "posts_recent_key_id": f"{_RECENT_KEY} DESC, id",
    "posts_engagement_key_id": f"{_ENGAGEMENT_KEY} DESC, id",
}
#: ``created_at`` as milliseconds since the epoch, from the fixed-width text (ms are characters 21-23).
_MILLIS = (
    "(CAST(strftime('%s', posts.created_at) AS INTEGER) * 1000 + CAST(substr(posts.created_at, 21, 3) AS INTEGER))"
)
#: The connection's own (``temp``) fts5vocab table over ``posts_fts``: one row per term instance.
_VOCAB = "moments_posts_vocab"


@dataclass(frozen=True)
class _Ordered:
    """Posts matching a search: ``FROM ... WHERE ...`` with its parameters, the sort key and the full order.

    Attributes:
        key: The SQL sort key, descending before the id (``None``: id order only).
        ranked: The key is a bm25 score (ascending, missing last), which moves as posts are added.
    """

    source: str
    params: list[Any]
    order: str
    key: str | None
    ranked: bool


def _sql_fold(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    """``moments_fold()`` in SQL: :func:`search.query.fold` for text, anything else unchanged."""
    return fold(value) if isinstance(value, str) else value


class _SqlQuery:
    """A query tree compiled to a SQL condition on ``posts`` (FTS5 only inside text leaves).

    The boolean structure is plain SQL over ``posts``, so ``NOT``/``OR`` mean exactly what
    they say (FTS5's own ``NOT`` is binary and its precedence differs); each text leaf is
    a ``rowid IN (... MATCH ?)`` with a safely quoted FTS5 expression. Every condition is
    true or false, never NULL, so ``NOT`` of a missing value is true, as in Elasticsearch.

    Attributes:
        where: The condition.
        params: Its parameters, in order.
        ranked: FTS5 expressions of the positive text leaves (under an even number of
            NOTs), which bm25 ranks by.
    """

    def __init__(self, node: Node) -> None:
        self.params: list[Any] = []
        self.ranked: list[str] = []
        self.where = self._compile(node, positive=True)

    def _compile(self, node: Node, *, positive: bool) -> str:
        if isinstance(node, MatchAll):
            return "1"
        if isinstance(node, Term | Phrase | Prefix):
            expression = _fts_leaf(node)
            self.params.append(expression)
            if positive:
                self.ranked.append(expression)
            return "posts.rowid IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?)"
        if isinstance(node, FieldMatch):
            field = FIELDS_BY_PATH[node.field]
            value = fold(node.value)
            if field.kind == "keywords":
                subject = "moments_fold(json_each.value)"
            else:
                subject = f"moments_fold(posts.{_quote(field.column)})"
            if node.prefix:
                condition = f"substr({subject}, 1, ?) = ?"
                self.params.extend([len(value), value])
            else:
                condition = f"{subject} = ?"
                self.params.append(value)
            if field.kind == "keywords":
                return f"EXISTS (SELECT 1 FROM json_each(posts.{_quote(field.column)}) WHERE {condition})"
            return f"coalesce({condition}, 0)"
        if isinstance(node, Range):
            column = f"posts.{_quote(FIELDS_BY_PATH[node.field].column)}"
            parts = [f"{column} IS NOT NULL"]
            if node.gte is not None:
                parts.append(f"{column} >= ?")
                self.params.append(_sql_datetime(node.gte))
            if node.lt is not None:
                parts.append(f"{column} < ?")
                self.params.append(_sql_datetime(node.lt))
            return f"({' AND '.join(parts)})"
        if isinstance(node, And | Or):
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(self._compile(child, positive=positive) for child in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT {self._compile(node.child, positive=not positive)})"
        raise TypeError(f"not a query node: {node!r}")


class SqliteStore(Store):
    """The embedded :class:`~search.store.Store`: SQLite in WAL mode with FTS5.

    Args:
        path: The database file; parent directories are created.
        migrate: Migrate a file written by an older release as it is opened
            (``False`` leaves that to an explicit :meth:`migrate`).

    Raises:
        StoreError: The file cannot be opened or this SQLite lacks FTS5.
    """

    def __init__(self, path: Path | str, *, migrate: bool = True) -> None:
        self.path = Path(path)
        self._auto_migrate = migrate
        self.location = str(self.path)
        self._columns = sqlite_columns()
        self._flag_columns = sqlite_columns(Flag)
        self._event_columns = sqlite_columns(FlagEvent)
        self._text = text_fields()
        # One connection shared by threads (Prefect task runners); the lock serialises it.
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode, and much faster than FULL.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._create_schema()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite store at {self.path} ({exc})") from None

    # ------------------------------------------------------------------ schema

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _create_schema(self) -> None:
        fts_columns = [f.column for f in self._text]
        with self._transaction():
            self._db.execute(f"CREATE TABLE IF NOT EXISTS posts ({_column_defs(self._columns)}, doc TEXT NOT NULL)")
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS flags ({_column_defs(self._flag_columns)}, doc TEXT NOT NULL)"
            )
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS flag_events ({_column_defs(self._event_columns, unique=False)}, "
                "doc TEXT NOT NULL, UNIQUE (flag_id, version))"
            )
            # The audit log is append-only: SQLite itself refuses edits and deletions.
            for verb in ("UPDATE", "DELETE"):
                self._db.execute(
                    f"CREATE TRIGGER IF NOT EXISTS flag_events_no_{verb.lower()} BEFORE {verb} ON flag_events "
                    "BEGIN SELECT RAISE(ABORT, 'flag events are append-only'); END"
                )
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            migrating = version < SCHEMA_VERSION and self._auto_migrate
            if migrating:
                self._migrate_legacy_flags()
            self._sync_columns("posts", self._columns, Post)
            self._sync_columns("flags", self._flag_columns, Flag)
            self._ensure_fts(fts_columns)
            for statement in _ACCOUNT_TABLES:
                self._db.execute(statement)
            self._db.execute(_SNAPSHOTS_TABLE)
            self._db.execute("CREATE INDEX IF NOT EXISTS snapshots_at ON snapshots(at)")
            self._ensure_indexes()
            is_new = version == 0 and self._db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
            if migrating or is_new:
                # Migrated now, or a new file: nothing older can be inside it.
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _ensure_indexes(self) -> None:
        """Create the indexes of :data:`_INDEXES` a file lacks (an older one, too) and drop replaced ones."""
        for name, (table, columns) in _INDEXES.items():
            listed = ", ".join(_quote(c) for c in columns)
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {_quote(name)} ON {table}({listed})")
        for name in _OBSOLETE_INDEXES:
            self._db.execute(f"DROP INDEX IF EXISTS {_quote(name)}")
        for name, expression in _SORT_INDEXES.items():
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {_quote(name)} ON posts({expression})")

    def _sync_columns(self, table: str, columns: list[Column], model: type[BaseModel]) -> None:
        """Add columns the schema gained (backfilled from ``doc``) and drop ones it lost."""
        existing = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        wanted = {c.name for c in columns}
        for column in columns:
            if column.name in existing:
                continue
            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(column.name)} {column.sql_type}")
            # Backfill from the stored records so filters see old rows too.
            for rowid, doc in self._db.execute(f"SELECT rowid, doc FROM {table}").fetchall():
                record = model.model_validate_json(doc)
                self._db.execute(
                    f"UPDATE {table} SET {_quote(column.name)} = ? WHERE rowid = ?",
                    (_column_value(record, column), rowid),
                )
        for gone in sorted(existing - wanted - {"rowid", "doc"}):
            # A field left the schema (schema 1's flag_* columns): its data lives on in ``doc``
            # or was migrated already, so the column and any index on it can go.
            for (index_name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql LIKE ?",
                (table, f'%"{gone}"%'),
            ).fetchall():
                self._db.execute(f"DROP INDEX {_quote(index_name)}")
            self._db.execute(f"ALTER TABLE {table} DROP COLUMN {_quote(gone)}")

    def _migrate_legacy_flags(self) -> MigrationReport:
        """Move schema-1 ``Post.flag`` values into flag records (inside the caller's transaction)."""
        migrated = rewritten = 0
        rows = self._db.execute("SELECT rowid, doc FROM posts WHERE json_extract(doc, '$.flag') IS NOT NULL").fetchall()
        for rowid, doc in rows:
            data = json.loads(doc)
            found = legacy_flag(data)
            if found is not None:
                flag, event = found
                exists = self._db.execute("SELECT 1 FROM flags WHERE id = ?", (flag.id,)).fetchone()
                if exists is None:
                    self._insert_flag_row(flag, event)
                    migrated += 1
            data.pop("flag", None)
            self._db.execute("UPDATE posts SET doc = ? WHERE rowid = ?", (json.dumps(data, ensure_ascii=False), rowid))
            rewritten += 1
        if rows:
            log.warning("migrated %d flags out of %d schema-1 posts in %s", migrated, rewritten, self.path)
        return MigrationReport(flags_migrated=migrated, posts_rewritten=rewritten)

    def migrate(self) -> MigrationReport:
        """Move any schema-1 flags out of posts (also done on open); safe to repeat."""
        with self._transaction():
            report = self._migrate_legacy_flags()
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return report

    def _ensure_fts(self, fts_columns: list[str]) -> None:
        row = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'posts_fts'").fetchone()
        wanted = f"CREATE VIRTUAL TABLE posts_fts USING fts5({', '.join(_quote(c) for c in fts_columns)})"
        if row is not None and row[0] == wanted:
            return
        if row is not None:
            # The text fields changed: rebuild the index from the stored records.
            self._db.execute("DROP TABLE posts_fts")
        try:
            self._db.execute(wanted)
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc):
                raise StoreError(f"this SQLite ({sqlite3.sqlite_version}) has no FTS5 support") from None
            raise
        for rowid, doc in self._db.execute("SELECT rowid, doc FROM posts").fetchall():
            self._write_fts(rowid, Post.model_validate_json(doc))

    def _write_fts(self, rowid: int, post: Post) -> None:
        names = ", ".join(_quote(f.column) for f in self._text)
        marks = ", ".join("?" for _ in self._text)
        self._db.execute("DELETE FROM posts_fts WHERE rowid = ?", (rowid,))
        self._db.execute(
            f"INSERT INTO posts_fts (rowid, {names}) VALUES (?, {marks})",
            (rowid, *(_text_value(post, f) for f in self._text)),
        )

    # ------------------------------------------------------------------ writes

    def upsert(self, posts: Iterable[Post]) -> IndexResult:
        """Insert or replace posts by id, in transactions of up to 500 posts; counts new and updated ones."""
        indexed = updated = 0
        batch: list[Post] = []
        for post in posts:
            batch.append(post)
            if len(batch) >= _BATCH:
                new, replaced = self._write_batch(batch)
                indexed, updated = indexed + new, updated + replaced
                batch = []
        if batch:
            new, replaced = self._write_batch(batch)
            indexed, updated = indexed + new, updated + replaced
        return IndexResult(written=indexed + updated, indexed=indexed, updated=updated)

    @property
    def dead_letters(self) -> DeadLetterFile:
        """``$MOMENTS_HOME/dead-letters/sqlite-<file stem>.jsonl`` (SQLite refuses no valid post: normally empty)."""
        return DeadLetterFile(dead_letter_dir() / f"sqlite-{self.path.stem}.jsonl")

    def _write_batch(self, posts: list[Post]) -> tuple[int, int]:
        """Write one batch in one transaction; (new, updated) posts."""
        names = [c.name for c in self._columns]
        quoted = ", ".join(_quote(n) for n in names)
        updates = ", ".join(f"{_quote(n)} = excluded.{_quote(n)}" for n in names if n != "id")
        sql = (
            f"INSERT INTO posts ({quoted}, doc) VALUES ({', '.join('?' for _ in names)}, ?) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}, doc = excluded.doc RETURNING rowid"
        )
        ids = list(dict.fromkeys(post.id for post in posts))
        with self._transaction():
            marks = ", ".join("?" for _ in ids)
            stored = {row[0] for row in self._db.execute(f"SELECT id FROM posts WHERE id IN ({marks})", ids)}
            new = 0
            for post in posts:
                values = [_column_value(post, c) for c in self._columns]
                (rowid,) = self._db.execute(sql, (*values, post.model_dump_json())).fetchone()
                self._write_fts(rowid, post)
                self._write_snapshots(post)
                if post.id not in stored:
                    new += 1
                    stored.add(post.id)  # a second copy in the same batch replaces the first
        return new, len(posts) - new

    def _write_snapshots(self, post: Post) -> None:
        """The post's engagement snapshots as rows of their own, keyed by (post id, observed at): idempotent."""
        if post.engagement_history:
            self._db.executemany(
                "INSERT INTO snapshots (post_id, at, doc) VALUES (?, ?, ?)"
                " ON CONFLICT(post_id, at) DO UPDATE SET doc = excluded.doc",
                [(post.id, _sql_datetime(s.at), s.model_dump_json()) for s in post.engagement_history],
            )

    def snapshots(self, post_id: str) -> list[EngagementSnapshot]:
        """A post's engagement snapshots from the ``snapshots`` table, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT doc FROM snapshots WHERE post_id = ? ORDER BY at", (post_id,)).fetchall()
        return [EngagementSnapshot.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ erasure and retention

    def _delete_posts(self, rowids: list[int]) -> None:
        """Delete posts (and their full-text rows and snapshots) by rowid, inside the caller's transaction."""
        for start in range(0, len(rowids), _BATCH):
            chunk = rowids[start : start + _BATCH]
            marks = ", ".join("?" for _ in chunk)
            self._db.execute(f"DELETE FROM posts_fts WHERE rowid IN ({marks})", chunk)
            self._db.execute(f"DELETE FROM posts WHERE rowid IN ({marks})", chunk)

    def erase_author(self, handle: str, source: str | None = None) -> ErasureReport:
        """Delete the author's posts, the flags pointing at them (events too) and their snapshots, in one transaction.

        The handle matches without case, with or without a leading ``@``. The flag log's
        append-only trigger is dropped and re-created inside the transaction, so no other
        writer ever sees it missing (see :mod:`search.erasure` for why flags go whole).
        """
        from search.erasure import handle_variants

        variants = sorted(handle_variants(handle))
        condition = f"lower(author_handle) IN ({', '.join('?' for _ in variants)})"
        params: list[Any] = list(variants)
        if source is not None:
            condition += " AND source = ?"
            params.append(source)
        with self._transaction():
            rows = self._db.execute(f"SELECT rowid, id FROM posts WHERE {condition}", params).fetchall()
            post_ids = [row[1] for row in rows]
            self._delete_posts([row[0] for row in rows])
            flag_ids: set[str] = set()
            snapshots = 0
            for start in range(0, len(post_ids), _BATCH):
                chunk = post_ids[start : start + _BATCH]
                marks = ", ".join("?" for _ in chunk)
                flag_ids.update(
                    row[0]
                    for row in self._db.execute(
                        "SELECT id FROM flags WHERE EXISTS"
                        f" (SELECT 1 FROM json_each(flags.post_ids) WHERE json_each.value IN ({marks}))",
                        chunk,
                    )
                )
                snapshots += self._db.execute(f"DELETE FROM snapshots WHERE post_id IN ({marks})", chunk).rowcount
            if flag_ids:
                ordered = sorted(flag_ids)
                self._db.execute("DROP TRIGGER IF EXISTS flag_events_no_delete")
                for start in range(0, len(ordered), _BATCH):
                    chunk = ordered[start : start + _BATCH]
                    marks = ", ".join("?" for _ in chunk)
                    self._db.execute(f"DELETE FROM flag_events WHERE flag_id IN ({marks})", chunk)
                    self._db.execute(f"DELETE FROM flags WHERE id IN ({marks})", chunk)
                self._db.execute(_NO_DELETE_TRIGGER)
        return ErasureReport(posts=len(post_ids), flags=len(flag_ids), snapshots=snapshots)

    def purge(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete posts created before ``older_than`` (crawled before it, when the creation time is unknown).

        Deleted 500 at a time, one transaction each, so a large purge never holds the
        write lock for long. Snapshots are left to :meth:`purge_snapshots` (their own period).
        """
        cutoff = _sql_cutoff(older_than)
        condition = "(created_at < ? OR (created_at IS NULL AND crawled_at < ?))"
        if dry_run:
            with self._lock:
                row = self._db.execute(f"SELECT count(*) FROM posts WHERE {condition}", (cutoff, cutoff)).fetchone()
            return int(row[0])
        purged = 0
        while True:
            with self._transaction():
                rowids = [
                    row[0]
                    for row in self._db.execute(
                        f"SELECT rowid FROM posts WHERE {condition} LIMIT {_BATCH}", (cutoff, cutoff)
                    )
                ]
                self._delete_posts(rowids)
            purged += len(rowids)
            if len(rowids) < _BATCH:
                return purged

    def purge_snapshots(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete snapshot rows observed before ``older_than``, 500 per transaction (the ``at`` index finds them)."""
        cutoff = _sql_cutoff(older_than)
        if dry_run:
            with self._lock:
                return int(self._db.execute("SELECT count(*) FROM snapshots WHERE at < ?", (cutoff,)).fetchone()[0])
        purged = 0
        while True:
            with self._transaction():
                deleted = self._db.execute(
                    "DELETE FROM snapshots WHERE (post_id, at) IN"
                    f" (SELECT post_id, at FROM snapshots WHERE at < ? LIMIT {_BATCH})",
                    (cutoff,),
                ).rowcount
            purged += deleted
            if deleted < _BATCH:
                return purged

    def purge_flags(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete closed flags closed before ``older_than`` and their events, 500 per transaction.

        Selected and deleted in the same transaction, so a flag reopened meanwhile is never
        taken. As in :meth:`erase_author`, the log's append-only trigger is dropped and
        re-created inside that transaction: no other writer ever sees it missing.
        """
        closed = sorted(CLOSED_STATUSES)
        condition = f"status IN ({', '.join('?' for _ in closed)}) AND coalesce(resolved_at, updated_at) < ?"
        params = (*closed, _sql_cutoff(older_than))
        if dry_run:
            with self._lock:
                return int(self._db.execute(f"SELECT count(*) FROM flags WHERE {condition}", params).fetchone()[0])
        purged = 0
        while True:
            with self._transaction():
                ids = [
                    row[0] for row in self._db.execute(f"SELECT id FROM flags WHERE {condition} LIMIT {_BATCH}", params)
                ]
                if ids:
                    marks = ", ".join("?" for _ in ids)
                    self._db.execute("DROP TRIGGER IF EXISTS flag_events_no_delete")
                    self._db.execute(f"DELETE FROM flag_events WHERE flag_id IN ({marks})", ids)
                    self._db.execute(f"DELETE FROM flags WHERE id IN ({marks})", ids)
                    self._db.execute(_NO_DELETE_TRIGGER)
            purged += len(ids)
            if len(ids) < _BATCH:
                return purged

    # ------------------------------------------------------------------ flags

    def _insert_row(self, table: str, columns: list[Column], record: BaseModel) -> None:
        """One record as a row: its flattened columns plus the whole record as ``doc``."""
        names = ", ".join(_quote(c.name) for c in columns)
        marks = ", ".join("?" for _ in columns)
        self._db.execute(
            f"INSERT INTO {table} ({names}, doc) VALUES ({marks}, ?)",
            (*(_column_value(record, c) for c in columns), record.model_dump_json()),
        )

    def _insert_flag_row(self, flag: Flag, event: FlagEvent) -> None:
        self._insert_row("flags", self._flag_columns, flag)
        self._insert_row("flag_events", self._event_columns, event)

    def _create_flag(self, flag: Flag, event: FlagEvent) -> None:
        try:
            with self._transaction():
                self._insert_flag_row(flag, event)
        except sqlite3.IntegrityError:
            stored = self.get_flag(flag.id)
            raise ConflictError(flag.id, None, stored.version if stored else None) from None

    def _replace_flag(self, flag: Flag, expected_version: int, event: FlagEvent) -> None:
        names = [c.name for c in self._flag_columns if c.name != "id"]
        assignments = ", ".join(f"{_quote(n)} = ?" for n in names)
        values = [_column_value(flag, c) for c in self._flag_columns if c.name != "id"]
        with self._transaction():
            cursor = self._db.execute(
                f"UPDATE flags SET {assignments}, doc = ? WHERE id = ? AND version = ?",
                (*values, flag.model_dump_json(), flag.id, expected_version),
            )
            if cursor.rowcount != 1:
                row = self._db.execute("SELECT version FROM flags WHERE id = ?", (flag.id,)).fetchone()
                raise ConflictError(flag.id, expected_version, row[0] if row else None)
            self._insert_row("flag_events", self._event_columns, event)

    def get_flag(self, flag_id: str) -> Flag | None:
        """One flag by id, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM flags WHERE id = ?", (flag_id,)).fetchone()
        return Flag.model_validate_json(row[0]) if row else None

    @staticmethod
    def _flag_filter(
        status: Sequence[str] | None, brand: str | None, kind: str | None, touchpoint: str | None
    ) -> tuple[str, list[Any]]:
        """A ``WHERE`` clause (or nothing) on ``flags`` and its parameters."""
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append(f"status IN ({', '.join('?' for _ in status)})")
            params.extend(status)
        for column, value in (("brand", brand), ("kind", kind), ("touchpoint", touchpoint)):
            if value:
                conditions.append(f"{column} = ?")
                params.append(value)
        return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), params

    def list_flags(
        self,
        *,
        status: Sequence[str] | None = ACTIVE_STATUSES,
        brand: str | None = None,
        kind: str | None = None,
        touchpoint: str | None = None,
        limit: int = 100,
    ) -> list[Flag]:
        """Flags in queue order: P1 first, then by score (highest first), then oldest."""
        where, params = self._flag_filter(status, brand, kind, touchpoint)
        sql = f"SELECT doc FROM flags {where} ORDER BY priority, score DESC, opened_at, id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [Flag.model_validate_json(row[0]) for row in rows]

    def count_flags(
        self,
        *,
        status: Sequence[str] | None = ACTIVE_STATUSES,
        brand: str | None = None,
        kind: str | None = None,
    ) -> int:
        """How many flags match, by SQL ``count``."""
        where, params = self._flag_filter(status, brand, kind, None)
        with self._lock:
            (count,) = self._db.execute(f"SELECT count(*) FROM flags {where}", params).fetchone()
        return int(count)

    def flag_events(self, flag_id: str) -> list[FlagEvent]:
        """A flag's event log, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM flag_events WHERE flag_id = ? ORDER BY version", (flag_id,)
            ).fetchall()
        return [FlagEvent.model_validate_json(row[0]) for row in rows]

    # ------------------------------------------------------------------ accounts

    def get_user(self, name: str) -> User | None:
        """One user by name, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM users WHERE name = ?", (name,)).fetchone()
        return User.model_validate_json(row[0]) if row else None

    def put_user(self, user: User, *, update: bool = False) -> None:
        """Insert a user, or replace the stored one with ``update=True`` (one transaction)."""
        with self._transaction():
            if update:
                cursor = self._db.execute(
                    "UPDATE users SET doc = ? WHERE name = ?", (user.model_dump_json(), user.name)
                )
                if cursor.rowcount != 1:
                    raise KeyError(user.name)
                return
            try:
                self._db.execute("INSERT INTO users (name, doc) VALUES (?, ?)", (user.name, user.model_dump_json()))
            except sqlite3.IntegrityError:
                raise RecordExists("user", user.name) from None

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self._lock:
            rows = self._db.execute("SELECT doc FROM users ORDER BY name").fetchall()
        return [User.model_validate_json(row[0]) for row in rows]

    def create_token(self, token: ApiToken) -> None:
        """Insert a token record (its hash, never the secret)."""
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO api_tokens (id, user, created_at, doc) VALUES (?, ?, ?, ?)",
                    (token.id, token.user, _sql_datetime(token.created_at), token.model_dump_json()),
                )
        except sqlite3.IntegrityError:
            raise RecordExists("token", token.id) from None

    def get_token(self, token_id: str) -> ApiToken | None:
        """One token by id, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        return ApiToken.model_validate_json(row[0]) if row else None

    def list_tokens(self, *, user: str | None = None) -> list[ApiToken]:
        """Tokens (of one user, or all), oldest first."""
        where, params = ("WHERE user = ?", (user,)) if user is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT doc FROM api_tokens {where} ORDER BY created_at, id", params).fetchall()
        return [ApiToken.model_validate_json(row[0]) for row in rows]

    def _change_token(self, token_id: str, change: Callable[[ApiToken], ApiToken]) -> ApiToken | None:
        """Read, change and write one token inside one write transaction; ``None`` when there is none."""
        with self._transaction():
            row = self._db.execute("SELECT doc FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                return None
            stored = ApiToken.model_validate_json(row[0])
            token = change(stored)
            if token != stored:
                self._db.execute("UPDATE api_tokens SET doc = ? WHERE id = ?", (token.model_dump_json(), token_id))
            return token

    def revoke_token(self, token_id: str, *, at: datetime) -> ApiToken:
        """Revoke a token (a revoked one is returned unchanged)."""
        changed = self._change_token(
            token_id, lambda t: t if t.revoked_at else t.model_copy(update={"revoked_at": at.astimezone(UTC)})
        )
        if changed is None:
            raise KeyError(token_id)
        return changed

    def touch_token(self, token_id: str, *, at: datetime) -> None:
        """Set ``last_used_at`` only."""
        self._change_token(token_id, lambda t: t.model_copy(update={"last_used_at": at.astimezone(UTC)}))

    def create_session(self, session: Session) -> None:
        """Insert a session; expired sessions are deleted on the way."""
        try:
            with self._transaction():
                self._db.execute("DELETE FROM sessions WHERE expires_at < ?", (_sql_datetime(session.created_at),))
                self._db.execute(
                    "INSERT INTO sessions (id, user, expires_at, doc) VALUES (?, ?, ?, ?)",
                    (session.id, session.user, _sql_datetime(session.expires_at), session.model_dump_json()),
                )
        except sqlite3.IntegrityError:
            raise RecordExists("session", session.id[:12]) from None

    def get_session(self, session_id: str) -> Session | None:
        """One session by id, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return Session.model_validate_json(row[0]) if row else None

    def delete_session(self, session_id: str) -> bool:
        """Delete a session; whether there was one."""
        with self._transaction():
            return self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def record_login_failure(self, key: str, at: datetime, window: timedelta) -> int:
        """Insert one failure row and count the window's, in one write transaction (so processes agree)."""
        at = utc_millis(at)
        with self._transaction():
            self._db.execute("DELETE FROM login_failures WHERE key = ? AND at <= ?", (key, _sql_datetime(at - window)))
            self._db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, _sql_datetime(at)))
            rows = self._db.execute("SELECT at FROM login_failures WHERE key = ?", (key,)).fetchall()
            kept = failures_within((datetime.fromisoformat(row[0]) for row in rows), at, window)
            if len(rows) > len(kept) and kept:
                # Rows beyond the cap (or in the future of ``at``) that no longer count: trim the oldest.
                self._db.execute("DELETE FROM login_failures WHERE key = ? AND at < ?", (key, _sql_datetime(kept[0])))
        return len(kept)

    def login_failures(self, key: str, at: datetime, window: timedelta) -> list[datetime]:
        """The failures of ``key`` in ``(at - window, at]``, oldest first."""
        at = utc_millis(at)
        with self._lock:
            rows = self._db.execute(
                "SELECT at FROM login_failures WHERE key = ? AND at > ? AND at <= ?",
                (key, _sql_datetime(at - window), _sql_datetime(at)),
            ).fetchall()
        return failures_within((datetime.fromisoformat(row[0]) for row in rows), at, window)

    def clear_login_failures(self, key: str) -> None:
        """Forget every failure of ``key``."""
        with self._transaction():
            self._db.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    def get_setting(self, key: str) -> AppSetting | None:
        """One setting by key, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM app_settings WHERE key = ?", (key,)).fetchone()
        return AppSetting.model_validate_json(row[0]) if row else None

    def get_settings(self, keys: Iterable[str]) -> dict[str, AppSetting]:
        """The stored settings among ``keys``, read with ``IN (...)`` in chunks of 500."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, AppSetting] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            marks = ", ".join("?" for _ in chunk)
            with self._lock:
                rows = self._db.execute(f"SELECT key, doc FROM app_settings WHERE key IN ({marks})", chunk).fetchall()
            for key, doc in rows:
                found[key] = AppSetting.model_validate_json(doc)
        return found

    def put_setting(self, setting: AppSetting) -> None:
        """Insert or replace a setting."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO app_settings (key, doc) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET doc = excluded.doc",
                (setting.key, setting.model_dump_json()),
            )

    # ------------------------------------------------------------------ reads

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Post]:
        with self._lock:
            rows = self._db.execute(sql, tuple(params)).fetchall()
        return [Post.model_validate_json(row[0]) for row in rows]

    def get(self, post_id: str) -> Post | None:
        """One post by id, or ``None``."""
        found = self._query("SELECT doc FROM posts WHERE id = ?", (post_id,))
        return found[0] if found else None

    def count(self) -> int:
        """How many posts are stored."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM posts").fetchone()
        return int(count)

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
        """Posts matching ``query`` (:mod:`search.query` syntax; ``None``: every post), in ``sort`` order.

        ``relevance`` ranks by bm25 over the query's positive text leaves (posts that match
        only through filters or ``NOT`` come after those); every order ends with the id.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
            UsageError: ``sort`` is not one of :data:`search.query.SORTS`.
        """
        ordered = self._ordered(query, brand=brand, since=since, until=until, sort=sort)
        sql = f"SELECT posts.doc {ordered.source} ORDER BY {ordered.order} LIMIT ?"
        return self._query(sql, [*ordered.params, limit])

    def _ordered(
        self, query: str | None, *, brand: str | None, since: datetime | None, until: datetime | None, sort: str
    ) -> _Ordered:
        """The posts matching the filters (``FROM ... WHERE ...``), their sort key and how to order them."""
        order = check_sort(sort)
        compiled = _SqlQuery(filtered(query_tree(query), since=since, until=until))
        params: list[Any] = []
        source = "FROM posts"
        key, ranked = "NULL", False
        if order == "relevance" and compiled.ranked:
            source += (
                " LEFT JOIN (SELECT rowid AS hit, bm25(posts_fts) AS score FROM posts_fts WHERE posts_fts MATCH ?)"
                " AS ranked ON ranked.hit = posts.rowid"
            )
            params.append(" OR ".join(f"({expression})" for expression in compiled.ranked))
            key, ranked = "ranked.score", True
        elif order == "recent":
            key = _RECENT_KEY
        elif order == "engagement":
            key = _ENGAGEMENT_KEY
        source += f" WHERE ({compiled.where})"
        params.extend(compiled.params)
        if brand:
            source += f" AND {_BRAND_FILTER}"
            params.append(brand)
        if ranked:
            by = "ranked.score IS NULL, ranked.score, posts.id"
        elif key != "NULL":
            by = f"{key} DESC, posts.id"
        else:
            by = "posts.id"
        self._register_fold()
        return _Ordered(source=source, params=params, order=by, key=None if key == "NULL" else key, ranked=ranked)

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
        """Every matching post in ``sort`` order, ``page_size`` per read, stable while writes continue.

        ``recent`` and ``engagement`` (and ``relevance`` without text to rank, which is id
        order) page by keyset: each page starts after the (key, id) of the last post read,
        so new posts never shift a page. bm25 scores move whenever a post is added, so a
        ranked ``relevance`` stream takes the order of the matching rowids once, at the
        start (8 bytes a hit), and reads the posts along it in pages.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
            UsageError: ``sort`` is not one of :data:`search.query.SORTS`.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        ordered = self._ordered(query, brand=brand, since=since, until=until, sort=sort)
        if ordered.ranked:
            yield from self._along(ordered, page_size)
            return
        after: tuple[Any, str] | None = None
        while True:
            if after is None:
                condition, extra = "", []
            elif ordered.key is None:
                condition, extra = " AND posts.id > ?", [after[1]]
            else:
                # The last clause repeats the first two as a range on the key: where the index walk starts.
                condition = f" AND ({ordered.key} < ? OR ({ordered.key} = ? AND posts.id > ?)) AND {ordered.key} <= ?"
                extra = [after[0], after[0], after[1], after[0]]
            sql = (
                f"SELECT posts.doc, posts.id, {ordered.key or 'NULL'} {ordered.source}{condition}"
                f" ORDER BY {ordered.order} LIMIT ?"
            )
            with self._lock:
                rows = self._db.execute(sql, [*ordered.params, *extra, page_size]).fetchall()
            for doc, post_id, key in rows:
                after = (key, post_id)
                yield Post.model_validate_json(doc)
            if len(rows) < page_size:
                return

    def _along(self, ordered: _Ordered, page_size: int) -> Iterator[Post]:
        """The posts of ``ordered``, in the order their rowids had when this started (posts gone since: skipped)."""
        with self._lock:
            cursor = self._db.execute(f"SELECT posts.rowid {ordered.source} ORDER BY {ordered.order}", ordered.params)
            rowids = array("q", (row[0] for row in cursor))
        for start in range(0, len(rowids), page_size):
            chunk = rowids[start : start + page_size].tolist()
            marks = ", ".join("?" for _ in chunk)
            with self._lock:
                rows = self._db.execute(f"SELECT rowid, doc FROM posts WHERE rowid IN ({marks})", chunk).fetchall()
            found = dict(rows)
            for rowid in chunk:
                if rowid in found:
                    yield Post.model_validate_json(found[rowid])

    # ------------------------------------------------------------------ aggregations

    def _where(self, node: Node, brand: str | None) -> tuple[str, list[Any]]:
        """A condition on ``posts`` (and its parameters) for a query tree and a brand."""
        compiled = _SqlQuery(node)
        where, params = f"({compiled.where})", list(compiled.params)
        if brand:
            where += f" AND {_BRAND_FILTER}"
            params.append(brand)
        self._register_fold()
        return where, params

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(row) for row in self._db.execute(sql, params).fetchall()]

    def aggregate(
        self,
        name: str,
        *,
        query: str = "",
        brand: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """One of :data:`search.aggregations.AGGREGATIONS`, by SQL ``GROUP BY`` (and FTS5 vocabulary for terms).

        Raises:
            UsageError: ``name`` is not an aggregation, or the period is empty.
            QuerySyntaxError: ``query`` is not valid syntax.
        """
        check_name(name)
        base = filtered(query)  # a syntax error first, whatever the name
        if name == "timeline":
            start, end = period(since, until)
            interval = choose_interval(start, end)
            where, params = self._where(filtered(base, since=start, until=end), brand)
            at = _MILLIS
            bucket = f"{at} - ((({at} - ?) % ?) + ?) % ?"
            rows = self._rows(
                f"SELECT {bucket}, classification_touchpoint, classification_moment, count(*) FROM posts"
                f" WHERE {where} AND classification_touchpoint IS NOT NULL AND classification_moment IS NOT NULL"
                " GROUP BY 1, 2, 3",
                [interval.offset_ms, interval.width_ms, interval.width_ms, interval.width_ms, *params],
            )
            return timeline_result(rows, since=start, until=end, interval=interval)
        if name == "moment_share":
            start, end = period(since, until)
            windows = {}
            for label, (low, high) in {"current": (start, end), "previous": (start - (end - start), start)}.items():
                where, params = self._where(filtered(base, since=low, until=high), brand)
                counts: dict[str, dict[str, int]] = {}
                for touchpoint, moment, n in self._rows(
                    f"SELECT classification_touchpoint, classification_moment, count(*) FROM posts WHERE {where}"
                    " AND classification_touchpoint IS NOT NULL AND classification_moment IS NOT NULL GROUP BY 1, 2",
                    params,
                ):
                    counts.setdefault(touchpoint, {})[moment] = int(n)
                windows[label] = counts
            return moment_share_result(windows["current"], windows["previous"], since=start, until=end)
        node = filtered(base, since=since, until=until)
        if name == "top_authors":
            where, params = self._where(node, brand)
            reach = self._rows(
                f"SELECT author_handle, max(author_followers), count(*) FROM posts WHERE {where}"
                " AND author_handle IS NOT NULL AND author_followers IS NOT NULL GROUP BY 1"
                f" ORDER BY 2 DESC, 3 DESC, 1 LIMIT {TOP_AUTHORS}",
                params,
            )
            where, params = self._where(And((node, parse(COMPLAINT_QUERY))), brand)
            complaints = self._rows(
                f"SELECT author_handle, count(*), max(author_followers) FROM posts WHERE {where}"
                f" AND author_handle IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_AUTHORS}",
                params,
            )
            return top_authors_result(reach, complaints)
        if name == "volume":
            where, params = self._where(node, brand)
            rows = self._rows(f"SELECT source, lang, count(*) FROM posts WHERE {where} GROUP BY 1, 2", params)
            return volume_result(rows)
        return self._standout_terms(node, brand)

    def _standout_terms(self, node: Node, brand: str | None) -> dict[str, Any]:
        """``standout_terms``: document counts of terms from the FTS5 index (an ``fts5vocab`` instance table).

        The target of a touchpoint is its misery posts among those matching the filters; the
        background every post matching them. Both counts are of posts whose ``text`` holds
        the term, counted by SQL over the index's term instances (one pass over the index for
        the target, lookups by term for the background), then scored by
        :func:`search.aggregations.g2_2x2`.
        """
        with self._lock:
            self._db.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_VOCAB} USING fts5vocab(main, posts_fts, instance)"
            )
        where, params = self._where(node, brand)
        (background,) = self._rows(f"SELECT count(*) FROM posts WHERE {where}", params)[0]
        misery_where, misery_params = self._where(And((node, parse("moment:misery"))), brand)
        misery_where += " AND classification_touchpoint IS NOT NULL"
        misery = {
            touchpoint: int(n)
            for touchpoint, n in self._rows(
                f"SELECT classification_touchpoint, count(*) FROM posts WHERE {misery_where} GROUP BY 1", misery_params
            )
        }
        found: dict[str, dict[str, int]] = {}
        for touchpoint, term, n in self._rows(
            f"WITH target AS MATERIALIZED (SELECT posts.rowid AS doc, classification_touchpoint AS touchpoint"
            f" FROM posts WHERE {misery_where})"
            f" SELECT target.touchpoint, vocab.term, count(DISTINCT vocab.doc) FROM temp.{_VOCAB} AS vocab"
            " CROSS JOIN target ON target.doc = vocab.doc WHERE vocab.col = ?"
            " GROUP BY 1, 2 HAVING count(DISTINCT vocab.doc) >= ?",
            [*misery_params, STANDOUT_FIELD, MIN_TERM_DOCS],
        ):
            if keep_term(term):
                found.setdefault(touchpoint, {})[term] = int(n)
        terms = sorted({term for counts in found.values() for term in counts})
        in_background: dict[str, int] = {}
        if terms:
            rows = self._rows(
                f"WITH background AS MATERIALIZED (SELECT posts.rowid AS doc FROM posts WHERE {where})"
                f" SELECT vocab.term, count(DISTINCT vocab.doc) FROM temp.{_VOCAB} AS vocab"
                " WHERE vocab.term IN (SELECT value FROM json_each(?)) AND vocab.col = ?"
                " AND vocab.doc IN (SELECT doc FROM background) GROUP BY 1",
                [*params, json.dumps(terms), STANDOUT_FIELD],
            )
            in_background = {term: int(n) for term, n in rows}
        candidates = {
            touchpoint: [TermCount(term, n, in_background.get(term, n)) for term, n in counts.items()]
            for touchpoint, counts in found.items()
        }
        return standout_terms_result(candidates, misery, int(background))

    def _register_fold(self) -> None:
        with self._lock:
            # Field values compare case-insensitively, the way Elasticsearch's case_insensitive does.
            self._db.create_function("moments_fold", 1, _sql_fold, deterministic=True)

    def count_posts(self, query: str = "", *, brand: str | None = None) -> int:
        """How many posts match ``query`` (blank: all), by SQL ``count`` over the compiled condition.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
        """
        compiled = _SqlQuery(parse(query) if query.strip() else MatchAll())
        sql = f"SELECT count(*) FROM posts WHERE ({compiled.where})"
        params = list(compiled.params)
        if brand:
            sql += f" AND {_BRAND_FILTER}"
            params.append(brand)
        self._register_fold()
        with self._lock:
            (count,) = self._db.execute(sql, params).fetchone()
        return int(count)

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
        """Posts by one author on one source in ``[since, until)``, along ``posts_author_created_at``."""
        # INDEXED BY: with a sentiment, the planner would rather walk every negative post of the window.
        sql = (
            "SELECT count(*) FROM posts INDEXED BY posts_author_created_at"
            " WHERE author_handle = ? AND source = ? AND created_at >= ? AND created_at < ?"
        )
        params: list[Any] = [handle, source, _sql_datetime(utc_millis(since)), _sql_datetime(utc_millis(until))]
        if sentiment is not None:
            sql += " AND classification_sentiment = ?"
            params.append(sentiment)
        if brand:
            sql += f" AND {_BRAND_FILTER}"
            params.append(brand)
        with self._lock:
            (count,) = self._db.execute(sql, params).fetchone()
        return int(count)

    def get_many(self, post_ids: Iterable[str]) -> dict[str, Post]:
        """The stored posts among ``post_ids``, read with ``IN (...)`` in chunks of 500."""
        wanted = list(dict.fromkeys(post_ids))
        found: dict[str, Post] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            marks = ", ".join("?" for _ in chunk)
            for post in self._query(f"SELECT doc FROM posts WHERE id IN ({marks})", chunk):
                found[post.id] = post
        return found

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
        """Posts created in ``[since, until)``, newest first, read backwards along an index in pages.

        The window (and ``sentiment``) is a range on ``posts_created_at_id`` (or
        ``posts_sentiment_created_at``), which also gives the order; each page starts
        after the last (created_at, id) seen, so no page re-reads the ones before it.
        """
        conditions = ["created_at >= ?"]
        params: list[Any] = [_sql_datetime(utc_millis(since))]
        if sentiment is not None:
            conditions.append("classification_sentiment = ?")
            params.append(sentiment)
        if sources is not None:
            conditions.append(f"source IN ({', '.join('?' for _ in sources)})")
            params.extend(sources)
        if brand:
            conditions.append(_BRAND_FILTER)
            params.append(brand)
        where = " AND ".join(conditions)
        order = "ORDER BY created_at DESC, id DESC LIMIT ?"
        # The upper end of the range: ``until`` on the first page, then the last post read
        # (which is below ``until``), so every page starts where the one before ended.
        first = f"SELECT doc, created_at, id FROM posts WHERE {where} AND created_at < ? {order}"
        later = f"SELECT doc, created_at, id FROM posts WHERE {where} AND (created_at, id) < (?, ?) {order}"
        left = limit
        after: tuple[str, str] | None = None
        ceiling = _sql_datetime(utc_millis(until)) if until is not None else "~"  # "~" sorts after any date
        while left is None or left > 0:
            size = _BATCH if left is None else min(left, _BATCH)
            with self._lock:
                if after is None:
                    rows = self._db.execute(first, (*params, ceiling, size)).fetchall()
                else:
                    rows = self._db.execute(later, (*params, *after, size)).fetchall()
            for doc, created_at, post_id in rows:
                after = (created_at, post_id)
                yield Post.model_validate_json(doc)
            if left is not None:
                left -= len(rows)
            if len(rows) < size:
                return

    def moment_counts(
        self,
        *,
        since: datetime,
        until: datetime,
        moment: str = "misery",
        bucket: timedelta = timedelta(hours=1),
        brand: str | None = None,
    ) -> dict[tuple[str, str], dict[datetime, int]]:
        """Posts of ``moment`` per (brand, touchpoint) and time bucket, by SQL ``GROUP BY``.

        Reads only that moment's posts in the window (``posts_moment_created_at``); each
        brand of a post (``json_each``) is a group of its own.
        """
        width = bucket_millis(bucket)
        # Milliseconds since the epoch, from the fixed-width text (ms are characters 21-23).
        millis = (
            "(CAST(strftime('%s', posts.created_at) AS INTEGER) * 1000"
            " + CAST(substr(posts.created_at, 21, 3) AS INTEGER))"
        )
        conditions = ["posts.classification_moment = ?", "posts.created_at >= ?", "posts.created_at < ?"]
        params: list[Any] = [moment, _sql_datetime(utc_millis(since)), _sql_datetime(utc_millis(until))]
        if brand:
            conditions.append("brands.value = ?")
            params.append(brand)
        sql = (
            # Floor to a multiple of the width, for dates before 1970 too (SQL's % truncates).
            f"SELECT brand, touchpoint, at - ((at % ?) + ?) % ?, count(DISTINCT post) FROM ("
            f"SELECT brands.value AS brand, posts.classification_touchpoint AS touchpoint, {millis} AS at,"
            " posts.rowid AS post FROM posts, json_each(posts.brand) AS brands"
            f" WHERE {' AND '.join(conditions)}) GROUP BY 1, 2, 3"
        )
        with self._lock:
            rows = self._db.execute(sql, (width, width, width, *params)).fetchall()
        counts: dict[tuple[str, str], dict[datetime, int]] = {}
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        for brand_name, touchpoint, start, n in rows:
            counts.setdefault((brand_name, touchpoint), {})[epoch + timedelta(milliseconds=start)] = int(n)
        return counts

    def scan(self, *, since: datetime | None = None, brand: str | None = None) -> Iterator[Post]:
        """Every post (created at/after ``since``), read in pages so callers may write meanwhile."""
        conditions = ["posts.rowid > ?"]
        params: list[Any] = []
        if since is not None:
            conditions.append("created_at >= ?")
            params.append(_sql_datetime(since if since.tzinfo else since.replace(tzinfo=UTC)))
        if brand:
            conditions.append(_BRAND_FILTER)
            params.append(brand)
        sql = f"SELECT doc, rowid FROM posts WHERE {' AND '.join(conditions)} ORDER BY rowid LIMIT {_BATCH}"
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(sql, (last, *params)).fetchall()
            if not rows:
                return
            for doc, rowid in rows:
                last = rowid
                yield Post.model_validate_json(doc)

    def touchpoint_summary(self, *, brand: str | None = None) -> list[TouchpointCount]:
        """Magic / misery / neutral counts per touchpoint, busiest touchpoint first."""
        where = "classification_touchpoint IS NOT NULL" + (f" AND {_BRAND_FILTER}" if brand else "")
        sql = (
            f"SELECT classification_touchpoint, classification_moment, count(*) FROM posts WHERE {where} GROUP BY 1, 2"
        )
        with self._lock:
            rows = self._db.execute(sql, [brand] if brand else []).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for touchpoint, moment, n in rows:
            counts.setdefault(touchpoint, {}).setdefault(moment, 0)
            counts[touchpoint][moment] += n
        return summarise_touchpoints(counts)

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        with self._lock:
            self._db.close()
