"""The Elasticsearch store, for teams that want Kibana and a shared, scalable index.

Posts live in ``moments-posts-v1`` behind the alias ``moments-posts``, flags in
``moments-flags-v1`` behind ``moments-flags``, and the triage app's accounts (users,
API tokens, sessions, settings, login-failure counters) in ``moments-app-v1`` behind
``moments-app``, created the first time an account method is used; every read and
write goes through an alias, so a later mapping version is a reindex plus an alias swap, and Kibana data
views never need to change. The mappings are derived from the schema
(:func:`search.mapping.es_mapping`) and created on first use.

An app document is one record by type and key (id ``user:alice``, ``token:<id>``,
``session:<hash>``, ``login:<key>``, ``setting:<key>``): the record as JSON under
``record``, not indexed, beside a few keyword fields to filter on. Reads by key are
realtime GETs, so a write is seen by every process at once; writes that a list shows
(users, tokens, settings: rare, made by hand) also refresh the small index, so a
search shows them at once. Changes to a stored record
(revoking a token, counting a failed login) are compare-and-sets on the document's
sequence number, retried on a lost race.

A flag document holds the flag and its event log together (:class:`StoredFlag`), and
every change is an ``index`` with ``if_seq_no``/``if_primary_term`` taken from the
read it was based on: a concurrent writer makes it fail with HTTP 409, which becomes
a :class:`~moments.errors.ConflictError`, never a silent overwrite.

Writes are bulk upserts (``helpers.streaming_bulk``, by post id) with retries and
exponential backoff on 429s, and one refresh at the end of a load, not one per
request. When Elasticsearch stays unavailable the posts are *spooled* to
``$MOMENTS_HOME/spool`` rather than lost, and the next :meth:`ElasticStore.upsert`
replays (then deletes) the spool before writing anything new. A post the server
refuses (a mapping error) goes to a dead-letter file (:mod:`search.deadletter`).

Index templates (``<prefix>-posts``, ``-flags``, ``-snapshots``) are derived from the
schema and put on open. Each post's engagement snapshots are also written to monthly
indices ``<prefix>-snapshots-YYYY.MM`` (by post id and time, so idempotent). A
changed field type is caught on open, naming the field; ``moments search migrate``
reindexes into ``-v<N+1>`` and swaps the alias (:meth:`ElasticStore.migrate`).

The official 8.x client talks to the 9.x server: it sends
``compatible-with=8`` media types, which Elasticsearch 9 serves via its REST API
compatibility layer.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import (
    ApiError,
    BadRequestError,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    TransportError,
    UnsupportedProductError,
    helpers,
)
from elasticsearch import ConflictError as EsConflictError

from moments import settings
from moments.accounts import ApiToken, AppSetting, Session, User
from moments.errors import ConflictError, UsageError
from moments.records import (
    CLOSED_STATUSES,
    EngagementSnapshot,
    Flag,
    FlagEvent,
    Post,
    ReadReport,
    read_posts,
    write_posts,
)
from search.aggregations import (
    COMPLAINT_QUERY,
    MIN_TERM_DOCS,
    STANDOUT_FIELD,
    TOP_AUTHORS,
    TOP_TERMS,
    TermCount,
    check_name,
    choose_interval,
    es_term_exclusion,
    moment_share_result,
    period,
    standout_terms_result,
    timeline_result,
    top_authors_result,
    volume_result,
)
from search.deadletter import DeadLetter, DeadLetterFile, dead_letter_dir
from search.mapping import (
    MappingConflict,
    StoredFlag,
    StoredSnapshot,
    es_mapping,
    index_names,
    index_templates,
    mapping_conflicts,
    removed_fields,
    snapshot_id,
    snapshot_index,
    text_fields,
)
from search.migration import legacy_flag
from search.query import (
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
    check_sort,
    filtered,
    parse,
    query_tree,
    word_tokens,
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

log = logging.getLogger("moments.search.elastic")
# With one node and our own retries, the pool's "node has failed, putting on timeout"
# warnings only add lines to what must be a one-line error.
logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)

T = TypeVar("T")

_BATCH = 500
#: Elasticsearch's default index.max_result_window: the most hits one search may return.
_MAX_RESULT_WINDOW = 10_000
#: Buckets per page of a composite aggregation.
_COMPOSITE_PAGE = 1000
#: How long a point in time of :meth:`ElasticStore.iter_search` lives between two pages.
_PIT_KEEP_ALIVE = "2m"
#: Candidate terms ``significant_text`` returns per touchpoint, ranked like G², before the final cut.
_STANDOUT_CANDIDATES = 4 * TOP_TERMS + 20
#: Touchpoints one terms aggregation lists (far more than any taxonomy has).
_MAX_TERMS_BUCKETS = 10_000
#: HTTP statuses worth retrying: the cluster is busy or a node is restarting.
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_SPOOL_NAME = re.compile(r"^elasticsearch-(?P<alias>.+)-(?P<stamp>\d{8}T\d{12}Z)-(?P<pid>\d+)-(?P<seq>\d+)\.jsonl$")
_spool_seq = itertools.count()

#: Version of the app index's mapping, bumped like :data:`search.mapping.MAPPING_VERSION`.
APP_MAPPING_VERSION = 1
#: The app index: one document per account record, by type and key; the record itself is not indexed.
APP_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "type": {"type": "keyword"},
        "key": {"type": "keyword"},
        "user": {"type": "keyword"},
        "created_at": {"type": "date"},
        "record": {"type": "object", "enabled": False},
        "failures": {"type": "date"},
    },
}
#: Lost compare-and-set races an app write absorbs before giving up.
_APP_ATTEMPTS = 20


def app_index_names(prefix: str | None = None) -> tuple[str, str]:
    """App index and alias for a prefix (default ``$MOMENTS_ES_PREFIX``): ``moments-app-v1``, ``moments-app``."""
    chosen = settings.es_prefix(prefix)
    return f"{chosen}-app-v{APP_MAPPING_VERSION}", f"{chosen}-app"


def _spool_to(directory: Path, alias: str, posts: Iterable[Post]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"elasticsearch-{alias}-{stamp}-{os.getpid()}-{next(_spool_seq)}.jsonl"
    # Write then rename, so a replay never reads a half-written file.
    unfinished = path.with_suffix(".partial")
    with unfinished.open("w", encoding="utf-8") as handle:
        count = write_posts(posts, handle)
    unfinished.replace(path)
    log.warning("spooled %d posts to %s", count, path)
    return path


def spool_posts(posts: Iterable[Post], *, index_prefix: str | None = None, spool_dir: Path | None = None) -> Path:
    """Spool posts for an Elasticsearch that cannot even be opened; its next upsert replays them.

    Args:
        posts: The posts to keep.
        index_prefix: The index prefix the store would use (default ``$MOMENTS_ES_PREFIX``).
        spool_dir: Default ``$MOMENTS_HOME/spool``, where :class:`ElasticStore` looks.
    """
    alias = index_names(settings.es_prefix(index_prefix))[1]
    return _spool_to(spool_dir if spool_dir is not None else settings.spool_dir(), alias, posts)


@dataclass
class _Tally:
    """What bulk writes did so far: counts, and the posts refused for good (post, reason, HTTP status)."""

    indexed: int = 0
    updated: int = 0
    retried: int = 0
    rejected: list[tuple[Post, str, int]] = dataclass_field(default_factory=list)

    def add(self, other: _Tally) -> None:
        self.indexed += other.indexed
        self.updated += other.updated
        self.retried += other.retried
        self.rejected.extend(other.rejected)


class _Unavailable(Exception):
    """Elasticsearch could not take a write even after retries (internal: triggers spooling).

    Attributes:
        tally: What the batch did before giving up.
        pending: The posts not written (to spool).
    """

    def __init__(self, message: str, tally: _Tally | None = None, pending: list[Post] | None = None) -> None:
        super().__init__(message)
        self.tally = tally if tally is not None else _Tally()
        self.pending = pending if pending is not None else []


class _Rejected(StoreError):
    """The server refused some posts of a batch for good; the rest are written (internal: dead-letters them)."""

    def __init__(self, message: str, tally: _Tally) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the server said
        self.tally = tally


def _is_busy(result: dict[str, Any]) -> bool:
    """Whether a bulk item failed for a while only: the cluster is busy, or the index is write-blocked for a reindex."""
    status = int(result.get("status", 200))
    if status in _RETRYABLE_STATUS:
        return True
    error = result.get("error")
    return status == 403 and isinstance(error, dict) and error.get("type") == "cluster_block_exception"


def _item_reason(result: dict[str, Any]) -> str:
    """Why a bulk item failed, in one line: ``type: reason`` (and the cause's, when there is one)."""
    error = result.get("error")
    if not isinstance(error, dict):
        return " ".join(str(error or f"HTTP {result.get('status')}").split())
    text = f"{error.get('type')}: {error.get('reason')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
    return " ".join(text.split())


def redact(url: str) -> str:
    """``url`` without credentials, for messages and ``Store.location``."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _reason(exc: BaseException, timeout: float) -> str:
    """A few words on why a request failed, for a one-line error."""
    if isinstance(exc, ConnectionTimeout):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, UnsupportedProductError):
        return "the server there is not Elasticsearch"
    if isinstance(exc, ApiError):
        error = exc.body.get("error") if isinstance(exc.body, dict) else None
        if isinstance(error, dict):
            return f"HTTP {exc.status_code}: {error.get('type')}: {error.get('reason')}"
        if isinstance(exc.body, str) and exc.body.strip():
            return f"HTTP {exc.status_code}: {exc.body.strip().splitlines()[0][:120]}"
        return f"HTTP {exc.status_code}"
    # elastic_transport's str() is just "Connection error"; the cause is in ``message``.
    message = getattr(exc, "message", "")
    text = f"{exc} {message}" if isinstance(message, str) else str(exc)
    for needle, words in (
        ("refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("getaddrinfo", "unknown host"),
        ("Failed to resolve", "unknown host"),
        ("SSL", "TLS handshake failed"),
        ("timed out", f"no answer within {timeout:g}s"),
    ):
        if needle in text:
            return words
    detail = message if isinstance(message, str) and message else str(exc)
    return detail.splitlines()[0][:200] if detail else type(exc).__name__


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat() if value.tzinfo else value.replace(tzinfo=UTC).isoformat()


# ------------------------------------------------------------------------------ queries


#: Terms a multi-word prefix (``check-i*``) may expand to; single-word prefixes have no limit.
_MAX_EXPANSIONS = 10_000


def _es_time(value: datetime) -> str:
    """A range bound to the millisecond, which is what a ``date`` field stores."""
    value = value.astimezone(UTC)
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _unscored(clause: dict[str, Any]) -> dict[str, Any]:
    # Filters decide what matches but not the order: only text ranks, as on SQLite (bm25).
    return {"bool": {"filter": [clause]}}


def text_query(query: str | Node, fields: list[str]) -> dict[str, Any]:
    """Compile a :mod:`search.query` query (text, or a parsed tree) into Elasticsearch DSL.

    Free-text leaves score (``multi_match`` phrase over ``fields``, or the one field
    named; prefixes as ``prefix`` queries, which are not analyzed, so lower-cased here);
    field values, dates and ``NOT`` only filter. A word of several tokens is a phrase,
    as in FTS5.

    Args:
        query: What the user typed, or the tree :func:`search.query.parse` made of it.
        fields: The free-text fields a leaf without a field searches.

    Returns:
        One query clause.

    Raises:
        QuerySyntaxError: ``query`` is text that is not valid syntax.
    """
    node = parse(query) if isinstance(query, str) else query
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, Term | Phrase):
        targets = [node.field] if node.field else fields
        return {"multi_match": {"query": node.text, "fields": targets, "type": "phrase"}}
    if isinstance(node, Prefix):
        targets = [node.field] if node.field else fields
        tokens = word_tokens(node.text)
        if len(tokens) > 1:
            return {
                "multi_match": {
                    "query": node.text,
                    "fields": targets,
                    "type": "phrase_prefix",
                    "max_expansions": _MAX_EXPANSIONS,
                }
            }
        clauses = [{"prefix": {target: {"value": tokens[0].lower()}}} for target in targets]
        return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}
    if isinstance(node, FieldMatch):
        kind = "prefix" if node.prefix else "term"
        return _unscored({kind: {node.field: {"value": node.value, "case_insensitive": True}}})
    if isinstance(node, Range):
        bounds: dict[str, str] = {}
        if node.gte is not None:
            bounds["gte"] = _es_time(node.gte)
        if node.lt is not None:
            bounds["lt"] = _es_time(node.lt)
        return _unscored({"range": {node.field: bounds}} if bounds else {"exists": {"field": node.field}})
    if isinstance(node, And):
        return {"bool": {"must": [text_query(child, fields) for child in node.children]}}
    if isinstance(node, Or):
        return {"bool": {"should": [text_query(child, fields) for child in node.children], "minimum_should_match": 1}}
    if isinstance(node, Not):
        return {"bool": {"filter": [{"match_all": {}}], "must_not": [text_query(node.child, fields)]}}
    raise TypeError(f"not a query node: {node!r}")


class ElasticStore(Store):
    """A :class:`~search.store.Store` on Elasticsearch 9 (official 8.x Python client).

    Args:
        url: ``http(s)://[user:password@]host:port``.
        index_prefix: Prefix of the index and alias names (``moments`` gives
            ``moments-posts-v1`` behind ``moments-posts``); default
            ``$MOMENTS_ES_PREFIX`` or ``moments``. Tests use a unique one each.
        timeout: Seconds to wait for any single request (connecting included).
        retries: Extra attempts of a failed bulk write before spooling.
        backoff: First wait between attempts, doubled each time.
        refresh: ``"wait_for"`` (writes return once searchable) or ``True``
            (force a refresh: instantly visible, costlier at volume).
        spool_dir: Where unwritten posts wait; default ``$MOMENTS_HOME/spool``.
        migrate: Migrate an index written by an older release as it is opened
            (``False`` leaves that to an explicit :meth:`migrate`).
        shards: Primary shards of an index this store creates; default
            ``$MOMENTS_ES_SHARDS`` or 1 (an existing index keeps its own).
        replicas: Replicas of each shard of an index this store creates; default
            ``$MOMENTS_ES_REPLICAS`` or 0 (one node holds no replica; a cluster wants 1).

    Raises:
        StoreError: Elasticsearch cannot be reached (one line, naming the URL) or
            the live index cannot take the schema's mapping.
    """

    def __init__(
        self,
        url: str,
        *,
        index_prefix: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        refresh: Literal[True, "wait_for"] = "wait_for",
        spool_dir: Path | None = None,
        migrate: bool = True,
        shards: int | None = None,
        replicas: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._index_settings = {
            "number_of_shards": _count_setting(shards, "MOMENTS_ES_SHARDS", 1, minimum=1),
            "number_of_replicas": _count_setting(replicas, "MOMENTS_ES_REPLICAS", 0, minimum=0),
        }
        self.location = redact(self.url)
        prefix = settings.es_prefix(index_prefix)
        self.prefix = prefix
        #: Fields whose live type differs from the schema's (see :meth:`migrate`); writes refuse while any remain.
        self._conflicts: list[MappingConflict] = []
        self.index, self.alias = index_names(prefix)
        self.flags_index, self.flags_alias = index_names(prefix, "flags")
        self.app_index, self.app_alias = app_index_names(prefix)
        self._app_ready = False
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._refresh = refresh
        self._spool_dir = spool_dir
        self._fields = [f.dotted for f in text_fields()]
        # The client's own retries would multiply with ours; ours back off and then spool.
        self._client = Elasticsearch(self.url, request_timeout=timeout, max_retries=0, retry_on_timeout=False)
        # A short connect check: a wrong URL must fail now, in one line, not deep in a run.
        try:
            self._call(lambda: self._client.options(request_timeout=min(timeout, 5.0)).cluster.health())
            legacy = self._has_legacy_flags()
            self._ensure_templates()
            self._ensure_index(self.index, self.alias, es_mapping())
            self._ensure_index(self.flags_index, self.flags_alias, es_mapping(StoredFlag))
            self.index = self._alias_target(self.alias) or self.index
            self.flags_index = self._alias_target(self.flags_alias) or self.flags_index
            if self._conflicts and migrate:
                # Before any write: a changed field type would refuse every post.
                raise StoreError(f"{self._conflicts[0]}; run moments search migrate")
            if legacy and migrate:
                self._migrate_legacy()
        except StoreError:
            self._client.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _fail(self, exc: BaseException) -> NoReturn:
        if isinstance(exc, ApiError):
            raise StoreError(f"Elasticsearch at {self.location} refused the request ({_reason(exc, self._timeout)})")
        raise StoreError(f"cannot reach Elasticsearch at {self.location} ({_reason(exc, self._timeout)})")

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one client call, turning transport and API failures into a one-line StoreError."""
        try:
            return fn()
        except (TransportError, ApiError, UnsupportedProductError) as exc:
            self._fail(exc)

    def _ensure_index(self, index: str, alias: str, mapping: dict[str, Any]) -> None:
        if self._call(lambda: bool(self._client.indices.exists_alias(name=alias))):
            # Additive schema changes (a new field) are applied in place; a changed type
            # cannot be, and needs a new index version plus a reindex (moments search migrate).
            conflicts = self._check_schema(alias, mapping)
            if conflicts:
                self._conflicts.extend(conflicts)
                return
            try:
                self._client.indices.put_mapping(index=alias, **mapping)
            except BadRequestError as exc:
                raise StoreError(
                    f"the index behind {alias} at {self.location} does not fit the current schema "
                    f"({_reason(exc, self._timeout)}); reindex into a new version"
                ) from None
            except (TransportError, ApiError) as exc:
                self._fail(exc)
            return
        try:
            self._client.indices.create(
                index=index,
                mappings=mapping,
                settings=self._index_settings,
                aliases={alias: {"is_write_index": True}},
            )
        except BadRequestError as exc:
            # Another process created it first: fine, as long as the alias exists.
            if exc.error != "resource_already_exists_exception":
                self._fail(exc)
            if not self._call(lambda: bool(self._client.indices.exists_alias(name=alias))):
                self._call(lambda: self._client.indices.put_alias(index=index, name=alias))
        except (TransportError, ApiError) as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ migration

    def _posts_mapping_has_flag(self) -> bool:
        if not self._call(lambda: bool(self._client.indices.exists_alias(name=self.alias))):
            return False
        mappings = self._call(lambda: dict(self._client.indices.get_mapping(index=self.alias)))
        return any("flag" in body.get("mappings", {}).get("properties", {}) for body in mappings.values())

    def _has_legacy_flags(self) -> bool:
        """Whether the posts index was written by schema 1 and still holds flags inside posts."""
        if not self._posts_mapping_has_flag():
            return False
        found = self._call(lambda: self._client.count(index=self.alias, query={"exists": {"field": "flag"}}))
        return int(found["count"]) > 0

    def _migrate_legacy(self) -> MigrationReport:
        """Move schema-1 flags out of posts into the flags index (also done on open); safe to repeat.

        Each flag is created first (an existing one is left alone), and only then is
        the field removed from its post, so an interrupted migration resumes cleanly.
        """
        if not self._posts_mapping_has_flag():
            return MigrationReport()
        migrated = 0
        rewrites: list[dict[str, Any]] = []
        query = {"query": {"exists": {"field": "flag"}}, "seq_no_primary_term": True}
        try:
            for hit in helpers.scan(self._client, index=self.alias, query=query, size=_BATCH):
                found = legacy_flag(hit["_source"])
                if found is not None:
                    try:
                        self._create_flag(*found)
                        migrated += 1
                    except ConflictError:
                        pass  # migrated by an earlier, interrupted run
                # The post without its flag, only if nobody rewrote it since it was read. (The
                # integ-test distribution has no update-by-query; a plain bulk does the same.)
                source = {k: v for k, v in hit["_source"].items() if k != "flag"}
                rewrites.append(
                    {
                        "_op_type": "index",
                        "_index": self.alias,
                        "_id": hit["_id"],
                        "_source": source,
                        "if_seq_no": hit["_seq_no"],
                        "if_primary_term": hit["_primary_term"],
                    }
                )
            rewritten = 0
            for ok, item in helpers.streaming_bulk(
                self._client, rewrites, chunk_size=_BATCH, raise_on_error=False, refresh=True
            ):
                status = item["index"].get("status", 500)
                if ok:
                    rewritten += 1
                elif status != 409:  # 409: a newer write (without a flag) replaced it meanwhile
                    error = item["index"].get("error", {})
                    raise StoreError(f"could not migrate post {item['index']['_id']}: {error.get('reason')}")
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        if migrated or rewritten:
            log.warning("migrated %d flags out of %d schema-1 posts at %s", migrated, rewritten, self.location)
        return MigrationReport(flags_migrated=migrated, posts_rewritten=rewritten)

    # ------------------------------------------------------------------ writes

    def upsert(self, posts: Iterable[Post]) -> IndexResult:
        """Bulk upsert by id (``streaming_bulk``, 500 posts a request); nothing given is lost silently.

        Each post is counted once: indexed (new), updated, rejected (the server refused
        it: kept in :attr:`dead_letters` with the reason), or spooled (Elasticsearch
        unavailable even after retries with backoff: written by the next upsert). HTTP
        429s are retried per batch with exponential backoff and counted as retried.

        The spool of earlier failed writes is replayed first, so newer versions of a
        post in ``posts`` win. There is no refresh per request (it costs a bulk load
        several times over): the index is refreshed once at the end, so what was
        written is searchable when this returns.
        """
        down = not self._replay_spool()
        total = _Tally()
        spooled = 0
        batch: list[Post] = []

        def flush() -> None:
            nonlocal spooled, down
            if not batch:
                return
            if not down:
                try:
                    total.add(self._write_counted(batch))
                    return
                except _Unavailable as exc:
                    log.warning("Elasticsearch at %s unavailable (%s); spooling", self.location, exc)
                    total.add(exc.tally)
                    self._dead_letter(exc.tally.rejected)
                    down = True  # no point hammering it for every remaining batch
                    self._spool(exc.pending)
                    spooled += len(exc.pending)
                    return
            self._spool(batch)
            spooled += len(batch)

        for post in posts:
            batch.append(post)
            if len(batch) >= _BATCH:
                flush()
                batch = []
        flush()
        if total.indexed or total.updated:
            self._refresh_posts()
        return IndexResult(
            written=total.indexed + total.updated,
            spooled=spooled,
            indexed=total.indexed,
            updated=total.updated,
            rejected=len(total.rejected),
            retried=total.retried,
            dead_letter=self.dead_letters.path if total.rejected else None,
        )

    def _refresh_posts(self) -> None:
        """One refresh after a load (posts, snapshots), so what was written is searchable; a failure loses nothing."""
        try:
            self._client.indices.refresh(
                index=f"{self.alias},{self.snapshot_pattern}", ignore_unavailable=True, allow_no_indices=True
            )
        except (TransportError, ApiError) as exc:
            log.warning("written, but the refresh of %s failed (%s)", self.alias, _reason(exc, self._timeout))

    @property
    def dead_letters(self) -> DeadLetterFile:
        """This index's dead-letter file: ``$MOMENTS_HOME/dead-letters/elasticsearch-<alias>.jsonl``."""
        return DeadLetterFile(dead_letter_dir(self._spool_dir) / f"elasticsearch-{self.alias}.jsonl")

    def _dead_letter(self, rejected: list[tuple[Post, str, int]]) -> None:
        if not rejected:
            return
        at = datetime.now(UTC)
        letters = [DeadLetter(post, reason, at, self.alias, status) for post, reason, status in rejected]
        self.dead_letters.append(letters)
        log.error("Elasticsearch at %s rejected %d posts; kept in %s", self.location, len(letters), self.dead_letters)

    def _write_counted(self, posts: list[Post]) -> _Tally:
        """:meth:`_write`, with refused posts dead-lettered rather than raised."""
        try:
            return self._write(posts)
        except _Rejected as exc:
            self._dead_letter(exc.tally.rejected)
            return exc.tally

    @staticmethod
    def _unanswered(
        actions: list[dict[str, Any]],
        owners: list[str | None],
        pending: dict[str, Post],
        busy: dict[str, Post],
        snapshots_busy: list[dict[str, Any]],
    ) -> None:
        """The actions a failed request left without an answer go round again."""
        for action, owner in zip(actions, owners, strict=True):
            if owner is None:
                snapshots_busy.append(action)
            else:
                busy[owner] = pending[owner]

    def _write(self, posts: list[Post]) -> _Tally:
        """Index one batch with ``streaming_bulk`` (one request), retrying what the server was too busy for.

        Busy answers (429, and 502-504 while a node restarts), for the whole request or
        for single documents, are retried with exponential backoff; each document sent
        again counts in ``retried``.

        Raises:
            _Rejected: The server refused some posts for good (a mapping error); the
                others are written, and the exception carries the tally.
            _Unavailable: Still busy or unreachable after the retries; carries the tally
                so far and the posts not written.
            StoreError: The whole request was refused (not busy).
        """
        if self._conflicts:
            # Caught before any write: every post would be refused, one dead letter at a time.
            raise StoreError(f"{self._conflicts[0]}; run moments search migrate")
        pending = {post.id: post for post in posts}  # last version of an id wins, as in SQLite
        # An earlier copy of an id in the same batch counts as replaced by the later one, as in SQLite.
        tally = _Tally(updated=len(posts) - len(pending))
        snapshots_busy: list[dict[str, Any]] = []
        delay = self._backoff
        failure = ""
        for attempt in range(self._retries + 1):
            if attempt:
                log.info("Elasticsearch busy (%s); retrying %d posts in %.1fs", failure, len(pending), delay)
                time.sleep(delay)
                delay *= 2
                tally.retried += len(pending)
            busy: dict[str, Post] = {}
            # Each post, then its snapshots (to the monthly indices), in one request; a result
            # comes back for each action in order, so ``owners`` says whose it is.
            actions: list[dict[str, Any]] = list(snapshots_busy)
            owners: list[str | None] = [None] * len(actions)
            snapshots_busy = []
            for post in pending.values():
                actions.append(
                    {"_op_type": "index", "_index": self.alias, "_id": post.id, "_source": post.model_dump(mode="json")}
                )
                owners.append(post.id)
                for action in self._snapshot_actions(post):
                    actions.append(action)
                    owners.append(None)
            done = 0
            try:
                for (ok, item), owner, action in zip(
                    helpers.streaming_bulk(
                        self._client, actions, chunk_size=len(actions), raise_on_error=False, max_retries=0
                    ),
                    owners,
                    actions,
                    strict=False,
                ):
                    done += 1
                    result = item["index"]
                    status = int(result.get("status", 500))
                    if owner is None:  # a snapshot: the post carries it too, so a refusal is logged, not fatal
                        if _is_busy(result):
                            snapshots_busy.append(action)
                        elif not ok:
                            log.error("snapshot %s not written: %s", result.get("_id"), _item_reason(result))
                    elif ok:
                        if result.get("result") == "created":
                            tally.indexed += 1
                        else:
                            tally.updated += 1
                    elif _is_busy(result):
                        busy[owner] = pending[owner]
                        failure = f"HTTP {status}"
                    else:
                        tally.rejected.append((pending[owner], _item_reason(result), status))
            except ApiError as exc:
                if exc.status_code not in _RETRYABLE_STATUS:
                    self._fail(exc)
                failure = _reason(exc, self._timeout)
                self._unanswered(actions[done:], owners[done:], pending, busy, snapshots_busy)
            except TransportError as exc:
                failure = _reason(exc, self._timeout)
                self._unanswered(actions[done:], owners[done:], pending, busy, snapshots_busy)
            pending = busy
            if not pending and not snapshots_busy:
                break
        if pending:
            raise _Unavailable(
                f"{failure}; {len(pending)} posts still not written after {self._retries + 1} attempts",
                tally,
                list(pending.values()),
            )
        if snapshots_busy:
            log.warning("%d snapshots not written (busy); the posts carry them", len(snapshots_busy))
        if tally.rejected:
            post, reason, _ = tally.rejected[0]
            more = f" (and {len(tally.rejected) - 1} more)" if len(tally.rejected) > 1 else ""
            raise _Rejected(f"Elasticsearch at {self.location} rejected post {post.id}: {reason}{more}", tally)
        return tally

    # ------------------------------------------------------------------ templates, snapshots, mapping migration

    def _ensure_templates(self) -> None:
        """Put the index templates (:func:`search.mapping.index_templates`) that are missing or out of date.

        One GET in the usual case; a template is re-put only when its checksum (``version``) changed.
        """
        wanted = index_templates(self.prefix, self._index_settings)
        try:
            live = self._client.indices.get_index_template(name=f"{self.prefix}-*")
            versions = {t["name"]: t["index_template"].get("version") for t in live.get("index_templates", [])}
        except NotFoundError:
            versions = {}
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        for name, body in wanted.items():
            if versions.get(name) != body["version"]:
                self._call(lambda name=name, body=body: self._client.indices.put_index_template(name=name, **body))  # type: ignore[misc]

    def _alias_target(self, alias: str) -> str | None:
        """The concrete index behind an alias (its write index), or ``None`` without the alias."""
        try:
            found = self._client.indices.get_alias(name=alias)
        except NotFoundError:
            return None
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        names = sorted(found)
        writers = [n for n in names if found[n]["aliases"][alias].get("is_write_index")]
        return (writers or names)[-1] if names else None

    def _check_schema(self, alias: str, mapping: dict[str, Any]) -> list[MappingConflict]:
        """The fields whose live type conflicts with the schema's, read before anything is written."""
        live = self._call(lambda: dict(self._client.indices.get_mapping(index=alias)))
        found: list[MappingConflict] = []
        for body in live.values():
            found.extend(mapping_conflicts(body.get("mappings", {}), mapping))
        return found

    def _snapshot_actions(self, post: Post) -> Iterator[dict[str, Any]]:
        """The post's engagement snapshots as documents of the monthly snapshot indices, by (post id, time)."""
        for snap in post.engagement_history:
            stored = StoredSnapshot(**snap.model_dump(), post_id=post.id, source=post.source, brand=post.brand)
            yield {
                "_op_type": "index",
                "_index": snapshot_index(self.prefix, snap.at),
                "_id": snapshot_id(post.id, snap.at),
                "_source": stored.model_dump(mode="json"),
            }

    @property
    def snapshot_pattern(self) -> str:
        """Every monthly snapshot index of this prefix."""
        return f"{self.prefix}-snapshots-*"

    def snapshots(self, post_id: str) -> list[EngagementSnapshot]:
        """A post's snapshots from the snapshot indices, oldest first."""
        response = self._call(
            lambda: dict(
                self._client.search(
                    index=self.snapshot_pattern,
                    query={"term": {"post_id": post_id}},
                    sort=[{"at": "asc"}],
                    size=_MAX_RESULT_WINDOW,
                    ignore_unavailable=True,
                    allow_no_indices=True,
                )
            )
        )
        fields = set(EngagementSnapshot.model_fields)
        return [
            EngagementSnapshot.model_validate({k: v for k, v in hit["_source"].items() if k in fields})
            for hit in response["hits"]["hits"]
        ]

    def migrate(self) -> MigrationReport:
        """Migrate now: schema-1 flags out of posts, then any index whose mapping differs from the schema.

        A mapping change is a reindex behind the alias (:meth:`_reindex`): a new
        ``<prefix>-posts-v<N+1>`` with the derived mapping, the documents copied, the
        alias swapped in one atomic ``update_aliases``.
        """
        legacy = self._migrate_legacy()
        moved: list[str] = []
        for alias, mapping in ((self.alias, es_mapping()), (self.flags_alias, es_mapping(StoredFlag))):
            note = self._migrate_mapping(alias, mapping)
            if note:
                moved.append(note)
        self.index = self._alias_target(self.alias) or self.index
        self.flags_index = self._alias_target(self.flags_alias) or self.flags_index
        self._conflicts = []
        return MigrationReport(legacy.flags_migrated, legacy.posts_rewritten, reindexed=tuple(moved))

    def _migrate_mapping(self, alias: str, mapping: dict[str, Any]) -> str | None:
        """Reindex the index behind ``alias`` if its mapping is not the schema's; a line saying what moved."""
        old = self._alias_target(alias)
        if old is None:
            return None
        live = self._call(lambda: dict(self._client.indices.get_mapping(index=old)))[old]["mappings"]
        conflicts = mapping_conflicts(live, mapping)
        if not conflicts:
            with contextlib.suppress(BadRequestError):
                self._client.indices.put_mapping(index=old, **mapping)  # additive changes, in place
            live = self._call(lambda: dict(self._client.indices.get_mapping(index=old)))[old]["mappings"]
        removed = removed_fields(live, mapping)
        if not conflicts and not removed:
            return None
        match = re.fullmatch(r"(?P<base>.+-v)(?P<n>\d+)", old)
        new = f"{match['base']}{int(match['n']) + 1}" if match else f"{old}-v2"
        copied = self._reindex(old, new, alias, mapping)
        why = "; ".join([str(c) for c in conflicts] + [f"field {f} left the schema" for f in removed])
        return f"{old} -> {new} ({copied} documents; {why})"

    def _reindex(self, old: str, new: str, alias: str, mapping: dict[str, Any]) -> int:
        """Copy ``old`` into a fresh ``new`` with ``mapping`` and move ``alias`` to it; how many documents.

        No write is lost: ``old`` is blocked for writes first (``index.blocks.write``), so
        a post written meanwhile is answered 403 ``cluster_block_exception``, which
        :meth:`_write` treats as busy: it retries with backoff and then spools, and the
        spool is replayed through the alias, which by then names ``new``. The copy is a
        scan plus bulk from this client (the integ-test distribution lacks the reindex
        module, so there is no server-side ``_reindex``). The alias moves in one
        ``update_aliases`` call (readers never see no index), and ``old`` is deleted
        afterwards, so no copy of an erased post survives in it. A failure before the
        swap unblocks ``old`` and drops ``new``: the alias never moved, and the run can
        simply be repeated.
        """
        if self._call(lambda: bool(self._client.indices.exists(index=new))):
            # A half-done earlier run: never behind the alias, so nothing reads it.
            self._call(lambda: self._client.indices.delete(index=new))
        live_settings = self._call(lambda: dict(self._client.indices.get_settings(index=old)))[old]["settings"]["index"]
        shape = {k: live_settings[k] for k in ("number_of_shards", "number_of_replicas")}
        self._call(lambda: self._client.indices.create(index=new, mappings=mapping, settings=shape))
        self._call(lambda: self._client.indices.put_settings(index=old, settings={"index.blocks.write": True}))
        try:
            self._call(lambda: self._client.indices.refresh(index=old))
            letters: list[tuple[Post, str, int]] = []
            copied = 0
            # Each document goes through the schema on its way (a schema-1 ``"flag": null`` is dropped, say), so
            # the copy fits the strict new mapping; one that no longer reads as a record stops the migration.
            model: type[Post] | type[StoredFlag] = Post if alias == self.alias else StoredFlag
            actions = (
                {"_op_type": "index", "_index": new, "_id": hit["_id"], "_source": self._current(model, hit)}
                for hit in helpers.scan(self._client, index=old, size=_BATCH, query={"query": {"match_all": {}}})
            )
            for ok, item in helpers.streaming_bulk(
                self._client, actions, chunk_size=_BATCH, raise_on_error=False, max_retries=self._retries
            ):
                if ok:
                    copied += 1
                    continue
                result = item["index"]
                if alias != self.alias:
                    raise StoreError(f"could not copy {result['_id']} into {new}: {_item_reason(result)}")
                source = self._client.get(index=old, id=result["_id"])["_source"]
                letters.append((Post.model_validate(source), _item_reason(result), int(result.get("status", 500))))
            self._dead_letter(letters)  # a post the new mapping refuses is kept, never dropped
            self._call(lambda: self._client.indices.refresh(index=new))
            self._call(
                lambda: self._client.indices.update_aliases(
                    actions=[
                        {"remove": {"index": old, "alias": alias}},
                        {"add": {"index": new, "alias": alias, "is_write_index": True}},
                    ]
                )
            )
        except BaseException:
            with contextlib.suppress(TransportError, ApiError):
                self._client.indices.put_settings(index=old, settings={"index.blocks.write": False})
                self._client.indices.delete(index=new)
            raise
        self._call(lambda: self._client.indices.delete(index=old))
        log.warning("reindexed %s into %s (%d documents) and moved %s", old, new, copied, alias)
        return copied

    @staticmethod
    def _current(model: type[Post] | type[StoredFlag], hit: dict[str, Any]) -> dict[str, Any]:
        """A stored document as the current schema writes it; a StoreError when it no longer reads as one."""
        try:
            return model.model_validate(hit["_source"]).model_dump(mode="json")
        except ValueError as exc:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise StoreError(f"cannot migrate {hit['_index']}/{hit['_id']}: {first[0].strip()}") from None

    # ------------------------------------------------------------------ erasure and retention

    def _delete_matching(self, index: str, query: dict[str, Any], *, unchanged: bool = False) -> list[str]:
        """Delete every document ``query`` matches in ``index`` (name, alias or pattern); their ids.

        A scan plus bulk deletes from this client rather than ``_delete_by_query``: the
        integ-test distribution the tests run on has no reindex module (so no
        ``_delete_by_query``), and this works the same on every cluster. With
        ``unchanged``, a document is deleted only if nobody wrote it since the scan read it
        (``if_seq_no``): one changed meanwhile (a flag reopened) is kept and not counted.
        """
        hits = helpers.scan(
            self._client,
            index=index,
            query={"query": query, "_source": False, "seq_no_primary_term": unchanged},
            size=_BATCH,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        ids: list[str] = []
        touched: set[str] = set()

        def deletes() -> Iterator[dict[str, Any]]:
            for hit in hits:
                touched.add(hit["_index"])
                guard = {"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"]} if unchanged else {}
                yield {"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"], **guard}

        try:
            for ok, item in helpers.streaming_bulk(
                self._client, deletes(), chunk_size=_BATCH, raise_on_error=False, max_retries=self._retries
            ):
                result = item["delete"]
                if ok or result.get("status") == 404:  # 404: gone already
                    ids.append(result["_id"])
                elif not (unchanged and result.get("status") == 409):  # 409: changed since the scan, so kept
                    raise StoreError(f"could not delete {result['_id']} from {index}: {_item_reason(result)}")
            if touched:
                self._client.indices.refresh(index=",".join(sorted(touched)))
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return ids

    def erase_author(self, handle: str, source: str | None = None) -> ErasureReport:
        """Delete the author's posts, the flags pointing at them (events are inside) and their snapshots."""
        from search.erasure import handle_variants

        matches = [{"term": {"author.handle": {"value": v, "case_insensitive": True}}} for v in handle_variants(handle)]
        filters: list[dict[str, Any]] = [{"bool": {"should": matches, "minimum_should_match": 1}}]
        if source is not None:
            filters.append({"term": {"source": source}})
        post_ids = self._delete_matching(self.alias, {"bool": {"filter": filters}})
        flags = snapshots = 0
        for start in range(0, len(post_ids), _BATCH):
            chunk = post_ids[start : start + _BATCH]
            flags += len(self._delete_matching(self.flags_alias, {"terms": {"post_ids": chunk}}))
            snapshots += len(self._delete_matching(self.snapshot_pattern, {"terms": {"post_id": chunk}}))
        return ErasureReport(posts=len(post_ids), flags=flags, snapshots=snapshots)

    def purge(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete posts created (or, without a creation time, crawled) before ``older_than``; how many.

        A scheduled delete (the nightly flow): posts live in one index behind an alias, so
        ILM could not do it. Snapshots have their own period (:meth:`purge_snapshots`).
        """
        cutoff = _es_time(utc_millis(older_than))
        undated = {
            "bool": {
                "must_not": [{"exists": {"field": "created_at"}}],
                "filter": [{"range": {"crawled_at": {"lt": cutoff}}}],
            }
        }
        query = {"bool": {"should": [{"range": {"created_at": {"lt": cutoff}}}, undated], "minimum_should_match": 1}}
        if dry_run:
            return int(self._call(lambda: self._client.count(index=self.alias, query=query))["count"])
        return len(self._delete_matching(self.alias, query))

    def purge_snapshots(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete snapshots observed before ``older_than``: whole monthly indices, then the boundary month's older ones.

        A scheduled delete rather than ILM: the integ-test distribution has no ILM. On a
        production cluster with ILM, the snapshot indices could get a delete phase instead.
        Every index of a month wholly before the cutoff is dropped at once; in the month of
        the cutoff, the older documents are deleted one by one (scan plus bulk).
        """
        before = {"range": {"at": {"lt": _es_time(utc_millis(older_than))}}}
        if dry_run:
            return self._count_snapshots(self.snapshot_pattern, before)
        month = snapshot_index(self.prefix, older_than)
        try:
            names = sorted(self._client.indices.get(index=self.snapshot_pattern, allow_no_indices=True))
        except NotFoundError:
            names = []
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        old_months = [name for name in names if name < month]
        purged = 0
        if old_months:
            purged = self._count_snapshots(",".join(old_months), {"match_all": {}})
            self._call(lambda: self._client.indices.delete(index=",".join(old_months)))
        return purged + len(self._delete_matching(month, before))

    def _count_snapshots(self, index: str, query: dict[str, Any]) -> int:
        counted = self._call(
            lambda: self._client.count(index=index, query=query, ignore_unavailable=True, allow_no_indices=True)
        )
        return int(counted["count"])

    def purge_flags(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete closed flags closed before ``older_than``; their event logs live inside them, so go too.

        Each delete is guarded by the sequence number the scan read, so a flag reopened (or
        otherwise changed) between the scan and the delete is kept.
        """
        cutoff = _es_time(utc_millis(older_than))
        no_close_time = {
            "bool": {
                "must_not": [{"exists": {"field": "resolved_at"}}],
                "filter": [{"range": {"updated_at": {"lt": cutoff}}}],
            }
        }
        closed_before = [{"range": {"resolved_at": {"lt": cutoff}}}, no_close_time]
        query = {
            "bool": {
                "filter": [{"terms": {"status": sorted(CLOSED_STATUSES)}}],
                "should": closed_before,
                "minimum_should_match": 1,
            }
        }
        if dry_run:
            return int(self._call(lambda: self._client.count(index=self.flags_alias, query=query))["count"])
        return len(self._delete_matching(self.flags_alias, query, unchanged=True))

    # ------------------------------------------------------------------ flags

    def _create_flag(self, flag: Flag, event: FlagEvent) -> None:
        document = StoredFlag(**flag.model_dump(), events=[event]).model_dump(mode="json")
        try:
            self._client.create(index=self.flags_alias, id=flag.id, document=document, refresh=self._refresh)
        except EsConflictError:
            stored = self.get_flag(flag.id)
            raise ConflictError(flag.id, None, stored.version if stored else None) from None
        except (TransportError, ApiError) as exc:
            self._fail(exc)

    def _read_flag(self, flag_id: str) -> tuple[StoredFlag, int, int] | None:
        """A flag document with the sequence number and primary term a compare-and-set needs."""
        try:
            response = self._client.get(index=self.flags_alias, id=flag_id)
        except NotFoundError:
            return None
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return StoredFlag.model_validate(response["_source"]), response["_seq_no"], response["_primary_term"]

    def _replace_flag(self, flag: Flag, expected_version: int, event: FlagEvent) -> None:
        read = self._read_flag(flag.id)
        if read is None:
            raise ConflictError(flag.id, expected_version, None)
        stored, seq_no, primary_term = read
        if stored.version != expected_version:
            raise ConflictError(flag.id, expected_version, stored.version)
        # The log only grows: the stored events are carried over untouched and one is added.
        document = StoredFlag(**flag.model_dump(), events=[*stored.events, event]).model_dump(mode="json")
        try:
            self._client.index(
                index=self.flags_alias,
                id=flag.id,
                document=document,
                if_seq_no=seq_no,
                if_primary_term=primary_term,
                refresh=self._refresh,
            )
        except EsConflictError:
            latest = self._read_flag(flag.id)
            raise ConflictError(flag.id, expected_version, latest[0].version if latest else None) from None
        except (TransportError, ApiError) as exc:
            self._fail(exc)

    def get_flag(self, flag_id: str) -> Flag | None:
        """One flag by id, or ``None``."""
        read = self._read_flag(flag_id)
        if read is None:
            return None
        return Flag.model_validate(read[0].model_dump(exclude={"events"}))

    @staticmethod
    def _flag_filters(
        status: Sequence[str] | None, brand: str | None, kind: str | None, touchpoint: str | None
    ) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        if status is not None:
            filters.append({"terms": {"status": list(status)}})
        for field, value in (("brand", brand), ("kind", kind), ("touchpoint", touchpoint)):
            if value:
                filters.append({"term": {field: value}})
        return filters

    def count_flags(
        self,
        *,
        status: Sequence[str] | None = ACTIVE_STATUSES,
        brand: str | None = None,
        kind: str | None = None,
    ) -> int:
        """How many flags match, by the ``count`` API."""
        query = {"bool": {"filter": self._flag_filters(status, brand, kind, None)}}
        return int(self._call(lambda: self._client.count(index=self.flags_alias, query=query))["count"])

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
        filters = self._flag_filters(status, brand, kind, touchpoint)
        sort = [{"priority": "asc"}, {"score": "desc"}, {"opened_at": "asc"}, {"id": "asc"}]
        flags: list[Flag] = []
        after: list[Any] | None = None
        # One search returns at most index.max_result_window hits: page with search_after
        # (the sort ends with the unique id, so pages never overlap or skip).
        while len(flags) < limit:
            size = min(limit - len(flags), _MAX_RESULT_WINDOW)
            paging = {"search_after": after} if after is not None else {}
            response = self._call(
                lambda size=size, paging=paging: dict(  # type: ignore[misc]
                    self._client.search(
                        index=self.flags_alias,
                        query={"bool": {"filter": filters}},
                        sort=sort,
                        size=size,
                        source_excludes=["events"],
                        **paging,
                    )
                )
            )
            hits = response["hits"]["hits"]
            flags.extend(Flag.model_validate(hit["_source"]) for hit in hits)
            if len(hits) < size:
                break
            after = hits[-1]["sort"]
        return flags

    def flag_events(self, flag_id: str) -> list[FlagEvent]:
        """A flag's event log, oldest first."""
        read = self._read_flag(flag_id)
        return sorted(read[0].events, key=lambda e: e.version) if read else []

    # ------------------------------------------------------------------ accounts

    def _app(self) -> str:
        """The app alias, its index created on first use (so a posts-only store never gets one)."""
        if not self._app_ready:
            self._ensure_index(self.app_index, self.app_alias, APP_MAPPING)
            self._app_ready = True
        return self.app_alias

    def _app_get(self, kind: str, key: str) -> tuple[dict[str, Any], int, int] | None:
        """A realtime GET of one app document: its source, sequence number and primary term."""
        alias = self._app()
        try:
            response = self._client.get(index=alias, id=f"{kind}:{key}", realtime=True)
        except NotFoundError:
            return None
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return dict(response["_source"]), int(response["_seq_no"]), int(response["_primary_term"])

    def _app_write(
        self,
        kind: str,
        key: str,
        body: dict[str, Any],
        *,
        create: bool = False,
        cas: tuple[int, int] | None = None,
        listed: bool = False,
    ) -> bool:
        """Write one app document; ``False`` when ``create`` found it there or ``cas`` lost a race.

        Args:
            create: Only if no document has this id.
            cas: Only if the stored document is still at this (sequence number, primary term).
            listed: Refresh, because a list (a search) must show the write as soon as it returns.
        """
        alias = self._app()
        document = {"type": kind, "key": key, **body}
        # Listed records (users, tokens, settings) change rarely, by hand: a forced refresh of this
        # small index makes them searchable at once, where "wait_for" would cost up to a second each.
        refresh: Literal[True] | None = True if listed else None
        try:
            if create:
                self._client.create(index=alias, id=f"{kind}:{key}", document=document, refresh=refresh)
            elif cas is not None:
                self._client.index(
                    index=alias,
                    id=f"{kind}:{key}",
                    document=document,
                    if_seq_no=cas[0],
                    if_primary_term=cas[1],
                    refresh=refresh,
                )
            else:
                self._client.index(index=alias, id=f"{kind}:{key}", document=document, refresh=refresh)
        except EsConflictError:
            return False
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return True

    def _app_search(self, kind: str, user: str | None, sort: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every app record of one type (and user), in ``sort`` order, paged with ``search_after``."""
        alias = self._app()
        filters: list[dict[str, Any]] = [{"term": {"type": kind}}]
        if user is not None:
            filters.append({"term": {"user": user}})
        records: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while True:
            paging = {"search_after": after} if after is not None else {}
            response = self._call(
                lambda paging=paging: dict(  # type: ignore[misc]
                    self._client.search(
                        index=alias,
                        query={"bool": {"filter": filters}},
                        sort=[*sort, {"key": "asc"}],
                        size=_BATCH,
                        **paging,
                    )
                )
            )
            hits = response["hits"]["hits"]
            records.extend(hit["_source"]["record"] for hit in hits)
            if len(hits) < _BATCH:
                return records
            after = hits[-1]["sort"]

    def get_user(self, name: str) -> User | None:
        """One user by name (realtime GET), or ``None``."""
        read = self._app_get("user", name)
        return User.model_validate(read[0]["record"]) if read else None

    def put_user(self, user: User, *, update: bool = False) -> None:
        """Create a user (``create``: refused if the id exists), or replace the stored one with ``update=True``."""
        body = {"user": user.name, "created_at": _es_time(user.created_at), "record": user.model_dump(mode="json")}
        if not update:
            if not self._app_write("user", user.name, body, create=True, listed=True):
                raise RecordExists("user", user.name)
            return
        for _ in range(_APP_ATTEMPTS):
            read = self._app_get("user", user.name)
            if read is None:
                raise KeyError(user.name)
            if self._app_write("user", user.name, body, cas=read[1:], listed=True):
                return
        raise StoreError(f"could not update user {user.name!r} at {self.location}: too many concurrent writers")

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return [User.model_validate(record) for record in self._app_search("user", None, [])]

    @staticmethod
    def _token_body(token: ApiToken) -> dict[str, Any]:
        return {"user": token.user, "created_at": _es_time(token.created_at), "record": token.model_dump(mode="json")}

    def create_token(self, token: ApiToken) -> None:
        """Store a new token (refused if its id exists)."""
        if not self._app_write("token", token.id, self._token_body(token), create=True, listed=True):
            raise RecordExists("token", token.id)

    def get_token(self, token_id: str) -> ApiToken | None:
        """One token by id (realtime GET), or ``None``."""
        read = self._app_get("token", token_id)
        return ApiToken.model_validate(read[0]["record"]) if read else None

    def list_tokens(self, *, user: str | None = None) -> list[ApiToken]:
        """Tokens (of one user, or all), oldest first."""
        records = self._app_search("token", user, [{"created_at": "asc"}])
        return [ApiToken.model_validate(record) for record in records]

    def _change_token(self, token_id: str, change: Callable[[ApiToken], ApiToken], *, listed: bool) -> ApiToken | None:
        """Compare-and-set one token: ``change`` applied to the stored one; ``None`` when there is none."""
        for _ in range(_APP_ATTEMPTS):
            read = self._app_get("token", token_id)
            if read is None:
                return None
            stored = ApiToken.model_validate(read[0]["record"])
            token = change(stored)
            if token == stored:
                return token
            if self._app_write("token", token_id, self._token_body(token), cas=read[1:], listed=listed):
                return token
        raise StoreError(f"could not change token {token_id} at {self.location}: too many concurrent writers")

    def revoke_token(self, token_id: str, *, at: datetime) -> ApiToken:
        """Revoke a token with a compare-and-set (a revoked one is returned unchanged)."""
        changed = self._change_token(
            token_id,
            lambda t: t if t.revoked_at else t.model_copy(update={"revoked_at": at.astimezone(UTC)}),
            listed=True,
        )
        if changed is None:
            raise KeyError(token_id)
        return changed

    def touch_token(self, token_id: str, *, at: datetime) -> None:
        """Set ``last_used_at`` with a compare-and-set (never undoing a revocation); no refresh wait."""
        self._change_token(token_id, lambda t: t.model_copy(update={"last_used_at": at.astimezone(UTC)}), listed=False)

    def create_session(self, session: Session) -> None:
        """Store a new session (read back by id only, so no refresh wait)."""
        record = session.model_dump(mode="json")
        body = {"user": session.user, "created_at": _es_time(session.created_at), "record": record}
        if not self._app_write("session", session.id, body, create=True):
            raise RecordExists("session", session.id[:12])

    def get_session(self, session_id: str) -> Session | None:
        """One session by id (realtime GET), or ``None``."""
        read = self._app_get("session", session_id)
        return Session.model_validate(read[0]["record"]) if read else None

    def delete_session(self, session_id: str) -> bool:
        """Delete a session; whether there was one."""
        alias = self._app()
        try:
            self._client.delete(index=alias, id=f"session:{session_id}")
        except NotFoundError:
            return False
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return True

    @staticmethod
    def _failures(source: dict[str, Any]) -> list[datetime]:
        return [datetime.fromisoformat(value) for value in source.get("failures", [])]

    def record_login_failure(self, key: str, at: datetime, window: timedelta) -> int:
        """Append one failure to the key's document with a compare-and-set (retried on a lost race)."""
        at = utc_millis(at)
        for _ in range(_APP_ATTEMPTS):
            read = self._app_get("login", key)
            previous = self._failures(read[0]) if read else []
            # Failures after ``at`` (another process's clock) are kept, not counted.
            later = [f for f in previous if f > at]
            kept = failures_within([*previous, at], at, window)
            body = {"failures": [_es_time(f) for f in [*kept, *later]]}
            if self._app_write("login", key, body, create=read is None, cas=read[1:] if read else None):
                return len(kept)
        raise StoreError(f"could not count a failed login at {self.location}: too many concurrent writers")

    def login_failures(self, key: str, at: datetime, window: timedelta) -> list[datetime]:
        """The failures of ``key`` in ``(at - window, at]`` (realtime GET), oldest first."""
        read = self._app_get("login", key)
        return failures_within(self._failures(read[0]), utc_millis(at), window) if read else []

    def clear_login_failures(self, key: str) -> None:
        """Forget every failure of ``key``."""
        alias = self._app()
        try:
            self._client.delete(index=alias, id=f"login:{key}")
        except NotFoundError:
            return
        except (TransportError, ApiError) as exc:
            self._fail(exc)

    def get_setting(self, key: str) -> AppSetting | None:
        """One setting by key (realtime GET), or ``None``."""
        read = self._app_get("setting", key)
        return AppSetting.model_validate(read[0]["record"]) if read else None

    def get_settings(self, keys: Iterable[str]) -> dict[str, AppSetting]:
        """The stored settings among ``keys``: one realtime ``mget`` on the app index per 500 keys."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, AppSetting] = {}
        if not wanted:
            return found
        alias = self._app()
        for start in range(0, len(wanted), _BATCH):
            ids = [f"setting:{key}" for key in wanted[start : start + _BATCH]]
            try:
                response = dict(self._client.mget(index=alias, ids=ids, realtime=True))
            except (TransportError, ApiError) as exc:
                self._fail(exc)
            for doc in response["docs"]:
                if doc.get("found"):
                    setting = AppSetting.model_validate(doc["_source"]["record"])
                    found[setting.key] = setting
        return found

    def put_setting(self, setting: AppSetting) -> None:
        """Store a setting, replacing any of that key."""
        body = {"created_at": _es_time(setting.updated_at), "record": setting.model_dump(mode="json")}
        self._app_write("setting", setting.key, body, listed=True)

    # ------------------------------------------------------------------ spool

    @property
    def spool_dir(self) -> Path:
        """Where posts wait while Elasticsearch is unavailable."""
        return self._spool_dir if self._spool_dir is not None else settings.spool_dir()

    def spool_files(self) -> list[Path]:
        """This index's spool files, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        files = []
        for path in self.spool_dir.glob("elasticsearch-*.jsonl"):
            match = _SPOOL_NAME.match(path.name)
            if match and match["alias"] == self.alias:
                files.append((match["stamp"], int(match["seq"]), path))
        return [path for *_, path in sorted(files)]

    def _spool(self, posts: list[Post]) -> Path:
        return _spool_to(self.spool_dir, self.alias, posts)

    def _replay_spool(self) -> bool:
        """Write spooled posts, deleting each file once written; ``False`` if still unavailable.

        Posts the server refuses go to the dead-letter file like any others.
        """
        replayed = _Tally()
        for path in self.spool_files():
            report = ReadReport()
            with path.open(encoding="utf-8") as handle:
                posts = list(read_posts(handle, report, source_name=str(path)))
            try:
                for start in range(0, len(posts), _BATCH):
                    replayed.add(self._write_counted(posts[start : start + _BATCH]))
            except _Unavailable:
                # The file stays whole; what went through is simply written again next time (idempotent).
                return False
            except StoreError as exc:
                # Rejected, not unavailable (e.g. the mapping refuses a field): retrying
                # cannot help, and a poisoned spool must not block every later write.
                rejected = path.with_suffix(".rejected")
                path.replace(rejected)
                log.error("spool %s rejected (%s); kept as %s", path.name, exc, rejected.name)
                continue
            path.unlink()
            log.info("replayed %d spooled posts from %s", len(posts), path)
        if replayed.indexed or replayed.updated:
            self._refresh_posts()
        return True

    # ------------------------------------------------------------------ reads

    def _search(self, **body: Any) -> dict[str, Any]:
        return self._call(lambda: dict(self._client.search(index=self.alias, **body)))

    def _filters(self, brand: str | None) -> list[dict[str, Any]]:
        return [{"term": {"brand": brand}}] if brand else []

    @staticmethod
    def _posts(response: dict[str, Any]) -> list[Post]:
        return [Post.model_validate(hit["_source"]) for hit in response["hits"]["hits"]]

    def get(self, post_id: str) -> Post | None:
        """One post by id, or ``None``."""
        try:
            response = self._client.get(index=self.alias, id=post_id)
        except NotFoundError:
            return None
        except (TransportError, ApiError) as exc:
            self._fail(exc)
        return Post.model_validate(response["_source"])

    def count(self) -> int:
        """How many posts are stored (exact: writes wait for the refresh)."""
        return int(self._call(lambda: self._client.count(index=self.alias))["count"])

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
        """Posts matching ``query`` (:mod:`search.query` syntax; ``None``: every post), in ``sort`` order, then id.

        Up to 10,000 posts (the most one search returns) are one request; more are read
        like :meth:`iter_search`.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
            UsageError: ``sort`` is not one of :data:`search.query.SORTS`.
        """
        body, order = self._sorted(query, brand=brand, since=since, until=until, sort=sort)
        if limit > _MAX_RESULT_WINDOW:
            pages = _MAX_RESULT_WINDOW
            hits = self.iter_search(query, brand=brand, since=since, until=until, sort=sort, page_size=pages)
            return list(itertools.islice(hits, limit))
        return self._posts(self._search(query=body, sort=order, size=limit, track_total_hits=False))

    def _clause(self, node: Node, brand: str | None) -> dict[str, Any]:
        """A query tree and a brand as one query clause."""
        return {"bool": {"must": [text_query(node, self._fields)], "filter": self._filters(brand)}}

    def _sorted(
        self, query: str | None, *, brand: str | None, since: datetime | None, until: datetime | None, sort: str
    ) -> tuple[dict[str, Any], list[Any]]:
        """The query and the sort of a search in ``sort`` order, every order ending with ``id``.

        ``engagement`` is a ``function_score`` that replaces the score with the sum of the
        counters (no script: the sum :meth:`moments.records.Engagement.total` makes, likes
        or else a positive net score, plus shares, replies and quotes, unknown as 0); scores
        are 32-bit floats, exact up to 16,777,216 interactions.
        """
        order = check_sort(sort)
        clause = self._clause(filtered(query_tree(query), since=since, until=until), brand)
        if order == "recent":
            newest = {"created_at": {"order": "desc", "missing": "_last"}}
            return {"bool": {"filter": [clause]}}, [newest, {"id": "asc"}]
        if order == "engagement":
            likes = {"exists": {"field": "engagement.likes"}}
            functions: list[dict[str, Any]] = [
                {"filter": likes, "field_value_factor": {"field": "engagement.likes", "missing": 0}},
                {
                    "filter": {"bool": {"must_not": [likes], "filter": [{"range": {"engagement.score": {"gt": 0}}}]}},
                    "field_value_factor": {"field": "engagement.score", "missing": 0},
                },
                *(
                    {"field_value_factor": {"field": f"engagement.{name}", "missing": 0}}
                    for name in ("shares", "replies", "quotes")
                ),
            ]
            scored = {
                "function_score": {
                    "query": {"bool": {"filter": [clause]}},
                    "functions": functions,
                    "score_mode": "sum",
                    "boost_mode": "replace",
                }
            }
            return scored, ["_score", {"id": "asc"}]
        return clause, ["_score", {"id": "asc"}]

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
        """Every matching post in ``sort`` order: a point in time read with ``search_after`` on (sort, id).

        The point in time freezes what the stream sees when it starts, so writes made
        meanwhile never shift a page and no post comes twice or goes missing, however deep
        (past the 10,000 hits one search may return). It is kept alive between pages and
        closed when the stream ends or is dropped.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
            UsageError: ``sort`` is not one of :data:`search.query.SORTS`.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        body, order = self._sorted(query, brand=brand, since=since, until=until, sort=sort)
        size = min(page_size, _MAX_RESULT_WINDOW)
        opened = self._call(lambda: dict(self._client.open_point_in_time(index=self.alias, keep_alive=_PIT_KEEP_ALIVE)))
        pit_id: str = opened["id"]
        try:
            after: list[Any] | None = None
            while True:
                paging = {"search_after": after} if after is not None else {}
                pit = {"id": pit_id, "keep_alive": _PIT_KEEP_ALIVE}

                def page(pit: dict[str, str] = pit, paging: dict[str, Any] = paging) -> dict[str, Any]:
                    found = self._client.search(
                        pit=pit, query=body, sort=order, size=size, track_total_hits=False, **paging
                    )
                    return dict(found)

                response = self._call(page)
                pit_id = response.get("pit_id", pit_id)
                hits = response["hits"]["hits"]
                for hit in hits:
                    yield Post.model_validate(hit["_source"])
                if len(hits) < size:
                    return
                after = hits[-1]["sort"]
        finally:
            with contextlib.suppress(TransportError, ApiError):
                self._client.close_point_in_time(id=pit_id)

    # ------------------------------------------------------------------ aggregations

    def _composite(self, query: dict[str, Any], sources: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], int]]:
        """Every bucket of a composite aggregation over ``sources`` (its key, its posts), paged by ``after_key``."""
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": _COMPOSITE_PAGE, "sources": sources}
            if after is not None:
                composite["after"] = after
            response = self._search(query=query, size=0, track_total_hits=False, aggs={"c": {"composite": composite}})
            result = response["aggregations"]["c"]
            for bucket in result["buckets"]:
                yield bucket["key"], int(bucket["doc_count"])
            after = result.get("after_key")
            if not result["buckets"] or after is None:
                return

    def aggregate(
        self,
        name: str,
        *,
        query: str = "",
        brand: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """One of :data:`search.aggregations.AGGREGATIONS`, by Elasticsearch aggregations.

        ``timeline``, ``moment_share`` and ``volume`` are composite aggregations (every
        bucket, paged); ``top_authors`` terms aggregations ordered by a ``max`` of followers
        and by count; ``standout_terms`` a ``significant_text`` per touchpoint.

        Raises:
            UsageError: ``name`` is not an aggregation, or the period is empty.
            QuerySyntaxError: ``query`` is not valid syntax.
        """
        check_name(name)
        base = filtered(query)  # a syntax error first, whatever the name
        touchpoint_terms = {"touchpoint": {"terms": {"field": "classification.touchpoint"}}}
        moment_terms = {"moment": {"terms": {"field": "classification.moment"}}}
        classified = [{"exists": {"field": f"classification.{field}"}} for field in ("touchpoint", "moment")]
        if name == "timeline":
            start, end = period(since, until)
            interval = choose_interval(start, end)
            histogram = {
                "field": "created_at",
                "fixed_interval": f"{interval.width_ms}ms",
                "offset": f"{interval.offset_ms}ms",
            }
            body = {"bool": {"filter": [self._clause(filtered(base, since=start, until=end), brand), *classified]}}
            buckets = self._composite(body, [{"at": {"date_histogram": histogram}}, touchpoint_terms, moment_terms])
            rows = [(int(key["at"]), key["touchpoint"], key["moment"], n) for key, n in buckets]
            return timeline_result(rows, since=start, until=end, interval=interval)
        if name == "moment_share":
            start, end = period(since, until)
            windows: dict[str, dict[str, dict[str, int]]] = {}
            for label, (low, high) in {"current": (start, end), "previous": (start - (end - start), start)}.items():
                body = {"bool": {"filter": [self._clause(filtered(base, since=low, until=high), brand), *classified]}}
                counts: dict[str, dict[str, int]] = {}
                for key, n in self._composite(body, [touchpoint_terms, moment_terms]):
                    counts.setdefault(key["touchpoint"], {})[key["moment"]] = n
                windows[label] = counts
            return moment_share_result(windows["current"], windows["previous"], since=start, until=end)
        node = filtered(base, since=since, until=until)
        if name == "volume":
            sources: list[dict[str, Any]] = [
                {"source": {"terms": {"field": "source"}}},
                {"lang": {"terms": {"field": "lang", "missing_bucket": True}}},
            ]
            buckets = self._composite(self._clause(node, brand), sources)
            return volume_result([(key["source"], key["lang"], n) for key, n in buckets])
        if name == "top_authors":
            return self._top_authors(node, brand)
        return self._standout_terms(node, brand)

    def _top_authors(self, node: Node, brand: str | None) -> dict[str, Any]:
        """``top_authors``: two terms aggregations on the handle, by the most followers and by complaints."""
        handle = {"exists": {"field": "author.handle"}}
        followers = {"max": {"field": "author.followers"}}
        response = self._search(
            query=self._clause(node, brand),
            size=0,
            track_total_hits=False,
            aggs={
                "reach": {
                    "filter": {"bool": {"filter": [handle, {"exists": {"field": "author.followers"}}]}},
                    "aggs": {
                        "authors": {
                            "terms": {
                                "field": "author.handle",
                                "size": TOP_AUTHORS,
                                "order": [{"followers": "desc"}, {"_count": "desc"}, {"_key": "asc"}],
                            },
                            "aggs": {"followers": followers},
                        }
                    },
                },
                "complaints": {
                    "filter": {"bool": {"filter": [handle, text_query(parse(COMPLAINT_QUERY), self._fields)]}},
                    "aggs": {
                        "authors": {
                            "terms": {
                                "field": "author.handle",
                                "size": TOP_AUTHORS,
                                "order": [{"_count": "desc"}, {"_key": "asc"}],
                            },
                            "aggs": {"followers": followers},
                        }
                    },
                },
            },
        )
        aggregations = response["aggregations"]

        def most(value: float | None) -> int | None:
            return int(value) if value is not None else None

        reach = [
            (b["key"], most(b["followers"]["value"]) or 0, int(b["doc_count"]))
            for b in aggregations["reach"]["authors"]["buckets"]
        ]
        complaints = [
            (b["key"], int(b["doc_count"]), most(b["followers"]["value"]))
            for b in aggregations["complaints"]["authors"]["buckets"]
        ]
        return top_authors_result(reach, complaints)

    def _standout_terms(self, node: Node, brand: str | None) -> dict[str, Any]:
        """``standout_terms``: a ``significant_text`` on the post text under a terms aggregation of touchpoints.

        The background filter is every post matching the filters, so the counts are the
        ones SQLite makes. ``mutual_information`` ranks the candidates in the order of
        :func:`search.aggregations.g2_2x2` (it is G² / 2N); the result is then scored and cut
        by :func:`search.aggregations.standout_terms_result`, as on SQLite.
        """
        clause = self._clause(node, brand)
        misery = self._clause(And((node, parse("moment:misery"))), brand)
        significant = {
            "field": STANDOUT_FIELD,
            "size": _STANDOUT_CANDIDATES,
            "min_doc_count": MIN_TERM_DOCS,
            "background_filter": clause,
            "mutual_information": {"include_negatives": False, "background_is_superset": True},
            "exclude": es_term_exclusion(),
        }
        response = self._search(
            query={"bool": {"filter": [misery, {"exists": {"field": "classification.touchpoint"}}]}},
            size=0,
            track_total_hits=False,
            aggs={
                "touchpoints": {
                    "terms": {"field": "classification.touchpoint", "size": _MAX_TERMS_BUCKETS},
                    "aggs": {"terms": {"significant_text": significant}},
                }
            },
        )
        background = int(self._call(lambda: self._client.count(index=self.alias, query=clause))["count"])
        misery_posts: dict[str, int] = {}
        candidates: dict[str, list[TermCount]] = {}
        for bucket in response["aggregations"]["touchpoints"]["buckets"]:
            misery_posts[bucket["key"]] = int(bucket["doc_count"])
            candidates[bucket["key"]] = [
                TermCount(term["key"], int(term["doc_count"]), int(term["bg_count"]))
                for term in bucket["terms"]["buckets"]
            ]
        return standout_terms_result(candidates, misery_posts, background)

    def scan(self, *, since: datetime | None = None, brand: str | None = None) -> Iterator[Post]:
        """Every post (created at/after ``since``), streamed with a scroll."""
        filters = self._filters(brand)
        if since is not None:
            filters.append({"range": {"created_at": {"gte": _ts(since)}}})
        hits = helpers.scan(self._client, index=self.alias, query={"query": {"bool": {"filter": filters}}}, size=_BATCH)
        try:
            for hit in hits:
                yield Post.model_validate(hit["_source"])
        except (TransportError, ApiError) as exc:
            self._fail(exc)

    def get_many(self, post_ids: Iterable[str]) -> dict[str, Post]:
        """The stored posts among ``post_ids``, read with ``mget`` in chunks of 500."""
        wanted = list(dict.fromkeys(post_ids))
        found: dict[str, Post] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            response = self._call(lambda chunk=chunk: dict(self._client.mget(index=self.alias, ids=chunk)))  # type: ignore[misc]
            for doc in response["docs"]:
                if doc.get("found"):
                    post = Post.model_validate(doc["_source"])
                    found[post.id] = post
        return found

    def count_posts(self, query: str = "", *, brand: str | None = None) -> int:
        """How many posts match ``query`` (blank: all), by the ``count`` API.

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
        """
        clause = text_query(parse(query), self._fields) if query.strip() else {"match_all": {}}
        body = {"bool": {"must": [clause], "filter": self._filters(brand)}}
        return int(self._call(lambda: self._client.count(index=self.alias, query=body))["count"])

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
        """Posts by one author on one source in ``[since, until)``: a ``count`` of term and range filters."""
        filters = [{"term": {"author.handle": handle}}, {"term": {"source": source}}, self._window(since, until)]
        if sentiment is not None:
            filters.append({"term": {"classification.sentiment": sentiment}})
        body = {"bool": {"filter": filters + self._filters(brand)}}
        return int(self._call(lambda: self._client.count(index=self.alias, query=body))["count"])

    @staticmethod
    def _window(since: datetime, until: datetime | None) -> dict[str, Any]:
        bounds = {"gte": _es_time(utc_millis(since))}
        if until is not None:
            bounds["lt"] = _es_time(utc_millis(until))
        return {"range": {"created_at": bounds}}

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
        """Posts created in ``[since, until)``, newest first: a range query sorted on ``created_at``.

        Paged with ``search_after`` on (created_at, id), so any number of posts (past the
        10,000 one search may return) streams in pages of 500.
        """
        filters = [self._window(since, until), *self._filters(brand)]
        if sentiment is not None:
            filters.append({"term": {"classification.sentiment": sentiment}})
        if sources is not None:
            filters.append({"terms": {"source": list(sources)}})
        sort = [{"created_at": "desc"}, {"id": "desc"}]
        left = limit
        after: list[Any] | None = None
        while left is None or left > 0:
            size = _BATCH if left is None else min(left, _BATCH)
            paging = {"search_after": after} if after is not None else {}
            response = self._search(
                query={"bool": {"filter": filters}}, sort=sort, size=size, track_total_hits=False, **paging
            )
            hits = response["hits"]["hits"]
            for hit in hits:
                yield Post.model_validate(hit["_source"])
            if left is not None:
                left -= len(hits)
            if len(hits) < size:
                return
            after = hits[-1]["sort"]

    def moment_counts(
        self,
        *,
        since: datetime,
        until: datetime,
        moment: str = "misery",
        bucket: timedelta = timedelta(hours=1),
        brand: str | None = None,
    ) -> dict[tuple[str, str], dict[datetime, int]]:
        """Posts of ``moment`` per (brand, touchpoint) and time bucket: one composite aggregation.

        Sources: ``brand`` terms (a post with two brands lands in both), touchpoint
        terms and a ``fixed_interval`` date histogram (aligned to the epoch), paged
        with ``after_key``.
        """
        width = bucket_millis(bucket)
        filters = [{"term": {"classification.moment": moment}}, self._window(since, until), *self._filters(brand)]
        sources: list[dict[str, Any]] = []
        if not brand:
            # With a brand given, other brands of the same posts are not asked for.
            sources.append({"brand": {"terms": {"field": "brand"}}})
        sources.append({"touchpoint": {"terms": {"field": "classification.touchpoint"}}})
        sources.append({"at": {"date_histogram": {"field": "created_at", "fixed_interval": f"{width}ms"}}})
        counts: dict[tuple[str, str], dict[datetime, int]] = {}
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": _COMPOSITE_PAGE, "sources": sources}
            if after is not None:
                composite["after"] = after
            response = self._search(
                query={"bool": {"filter": filters}},
                size=0,
                track_total_hits=False,
                aggs={"counts": {"composite": composite}},
            )
            result = response["aggregations"]["counts"]
            for item in result["buckets"]:
                key = item["key"]
                start = epoch + timedelta(milliseconds=int(key["at"]))
                counts.setdefault((key.get("brand", brand), key["touchpoint"]), {})[start] = int(item["doc_count"])
            after = result.get("after_key")
            if not result["buckets"] or after is None:
                return counts

    def touchpoint_summary(self, *, brand: str | None = None) -> list[TouchpointCount]:
        """Magic / misery / neutral counts per touchpoint, busiest touchpoint first."""
        response = self._search(
            query={"bool": {"filter": self._filters(brand)}},
            size=0,
            aggs={
                "touchpoints": {
                    "terms": {"field": "classification.touchpoint", "size": 10_000},
                    "aggs": {"moments": {"terms": {"field": "classification.moment", "size": 10}}},
                }
            },
        )
        counts = {
            bucket["key"]: {m["key"]: m["doc_count"] for m in bucket["moments"]["buckets"]}
            for bucket in response["aggregations"]["touchpoints"]["buckets"]
        }
        return summarise_touchpoints(counts)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def _count_setting(given: int | None, env_name: str, default: int, *, minimum: int) -> int:
    """A shard or replica count: the argument, else the environment variable, else the default."""
    if given is not None:
        value: object = given
    else:
        raw = os.environ.get(env_name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"{env_name}={raw!r} is not a whole number") from None
    if not isinstance(value, int) or value < minimum:
        raise UsageError(f"{env_name} must be a whole number >= {minimum}, got {value!r}")
    return value
