"""The embedded store: one SQLite file with an FTS5 index, no server to run.

Layout (all derived from the schema by :mod:`search.mapping`):

* ``posts``: one row per post: flattened scalar columns (``flag_priority``,
  ``classification_touchpoint`` ...) for filtering and counting, and ``doc``, the
  full record as JSON, which is what reads return.
* ``posts_fts``: an FTS5 table over the text-marked fields, keyed by the
  ``posts`` rowid and ranked with bm25.

A schema field added later is added to an existing file on open (``ALTER TABLE``
plus a backfill from ``doc``), so old databases keep working.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawlers.schema import Flag, Post
from search.mapping import Column, TextField, sqlite_columns, text_fields, value_at
from search.store import IndexResult, Store, StoreError, TouchpointCount, summarise_touchpoints

#: Posts per write transaction: big enough to be fast, small enough that a long
#: import does not hold the write lock (or memory) for the whole file.
_BATCH = 500
_PRIORITY_ORDER = "CASE flag_priority WHEN 'P1' THEN 1 WHEN 'P2' THEN 2 WHEN 'P3' THEN 3 WHEN 'P4' THEN 4 ELSE 5 END"
_BRAND_FILTER = "EXISTS (SELECT 1 FROM json_each(posts.brand) WHERE json_each.value = ?)"


def _sql_datetime(value: datetime) -> str:
    # Fixed width with microseconds and a Z, so text comparison is chronological.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _column_value(post: Post, column: Column) -> Any:
    value = value_at(post, column.path)
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


def quote_terms(query: str) -> str:
    """Make any user input a valid FTS5 query: every whitespace-separated term a quoted string.

    Terms stay ANDed (FTS5's implicit operator), so ``refund late!`` still means
    "both words", only without any operator meaning for the punctuation.
    """
    return " ".join(_quote(term) for term in query.split() if re.search(r"\w", term))


class SqliteStore(Store):
    """The embedded :class:`~search.store.Store`: SQLite in WAL mode with FTS5.

    Args:
        path: The database file; parent directories are created.

    Raises:
        StoreError: The file cannot be opened or this SQLite lacks FTS5.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._columns = sqlite_columns()
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

    def _create_schema(self) -> None:
        columns = ", ".join(
            f"{_quote(c.name)} {c.sql_type}" + (" NOT NULL UNIQUE" if c.name == "id" else "") for c in self._columns
        )
        fts_columns = [f.column for f in self._text]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS posts (rowid INTEGER PRIMARY KEY, {columns}, doc TEXT NOT NULL)"
                )
                self._add_missing_columns()
                self._ensure_fts(fts_columns)
                for name in ("created_at", "flag_status", "classification_touchpoint"):
                    if any(c.name == name for c in self._columns):
                        self._db.execute(f"CREATE INDEX IF NOT EXISTS posts_{name} ON posts({_quote(name)})")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _add_missing_columns(self) -> None:
        existing = {row[1] for row in self._db.execute("PRAGMA table_info(posts)")}
        for column in self._columns:
            if column.name in existing:
                continue
            self._db.execute(f"ALTER TABLE posts ADD COLUMN {_quote(column.name)} {column.sql_type}")
            # Backfill from the stored records so filters see old rows too.
            for rowid, doc in self._db.execute("SELECT rowid, doc FROM posts").fetchall():
                post = Post.model_validate_json(doc)
                self._db.execute(
                    f"UPDATE posts SET {_quote(column.name)} = ? WHERE rowid = ?", (_column_value(post, column), rowid)
                )

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
        """Insert or replace posts by id, in transactions of up to 500 posts.

        A stored ``flag`` is kept when the incoming post has none.
        """
        written = 0
        batch: list[Post] = []
        for post in posts:
            batch.append(post)
            if len(batch) >= _BATCH:
                written += self._write_batch(batch)
                batch = []
        if batch:
            written += self._write_batch(batch)
        return IndexResult(written=written)

    def _write_batch(self, posts: list[Post]) -> int:
        names = [c.name for c in self._columns]
        quoted = ", ".join(_quote(n) for n in names)
        updates = ", ".join(f"{_quote(n)} = excluded.{_quote(n)}" for n in names if n != "id")
        sql = (
            f"INSERT INTO posts ({quoted}, doc) VALUES ({', '.join('?' for _ in names)}, ?) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}, doc = excluded.doc RETURNING rowid"
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for post in posts:
                    post = self._keep_stored_flag(post)
                    values = [_column_value(post, c) for c in self._columns]
                    (rowid,) = self._db.execute(sql, (*values, post.model_dump_json())).fetchone()
                    self._write_fts(rowid, post)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(posts)

    def _keep_stored_flag(self, post: Post) -> Post:
        if post.flag is not None:
            return post
        row = self._db.execute("SELECT json_extract(doc, '$.flag') FROM posts WHERE id = ?", (post.id,)).fetchone()
        if row is None or row[0] is None:
            return post
        return post.model_copy(update={"flag": Flag.model_validate_json(row[0])})

    def set_flag(self, post_id: str, flag: Flag | None) -> None:
        """Set or clear the flag of a stored post; ``KeyError`` if the id is unknown."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT rowid, doc FROM posts WHERE id = ?", (post_id,)).fetchone()
                if row is None:
                    raise KeyError(post_id)
                post = Post.model_validate_json(row[1]).model_copy(update={"flag": flag})
                flag_columns = [c for c in self._columns if c.path[0] == "flag"]
                assignments = "".join(f"{_quote(c.name)} = ?, " for c in flag_columns)
                self._db.execute(
                    f"UPDATE posts SET {assignments}doc = ? WHERE rowid = ?",
                    (*(_column_value(post, c) for c in flag_columns), post.model_dump_json(), row[0]),
                )
                self._write_fts(row[0], post)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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

    def search(self, query: str, *, brand: str | None = None, limit: int = 20) -> list[Post]:
        """FTS5 search ranked by bm25, best first.

        The query is FTS5 syntax when it parses (``delay``, ``"lost bag"``,
        ``refund AND late``); when it does not, its terms are quoted and ANDed
        instead of failing.
        """
        if not query.strip():
            return []
        where = "posts_fts MATCH ?" + (f" AND {_BRAND_FILTER}" if brand else "")
        sql = (
            "SELECT posts.doc FROM posts_fts JOIN posts ON posts.rowid = posts_fts.rowid "
            f"WHERE {where} ORDER BY bm25(posts_fts), posts.rowid LIMIT ?"
        )
        extra = [brand] if brand else []
        attempts = [query]
        if query.count('"') % 2:
            # An unclosed phrase is most likely a phrase typed to the end: close it.
            attempts.append(query + '"')
        for attempt in attempts:
            try:
                return self._query(sql, [attempt, *extra, limit])
            except sqlite3.OperationalError:
                continue  # not valid FTS5 syntax (stray quote, ``foo:`` on an unknown column ...)
        safe = quote_terms(query)
        return self._query(sql, [safe, *extra, limit]) if safe else []

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

    def open_flags(self, *, brand: str | None = None, limit: int = 100) -> list[Post]:
        """Open flags, P1 first, then by score (highest first)."""
        where = "flag_status = 'open'" + (f" AND {_BRAND_FILTER}" if brand else "")
        sql = f"SELECT doc FROM posts WHERE {where} ORDER BY {_PRIORITY_ORDER}, flag_score DESC, rowid LIMIT ?"
        return self._query(sql, [*([brand] if brand else []), limit])

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
