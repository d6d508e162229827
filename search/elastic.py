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

Writes are bulk upserts with retries and exponential backoff. When Elasticsearch
stays unavailable the posts are *spooled* to ``$MOMENTS_HOME/spool`` rather than
lost, and the next :meth:`ElasticStore.upsert` replays (then deletes) the spool
before writing anything new.

The official 8.x client talks to the 9.x server: it sends
``compatible-with=8`` media types, which Elasticsearch 9 serves via its REST API
compatibility layer.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
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
from moments.records import Flag, FlagEvent, Post, ReadReport, read_posts, write_posts
from search.mapping import StoredFlag, es_mapping, index_names, text_fields
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
    parse,
    word_tokens,
)
from search.store import (
    ACTIVE_STATUSES,
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


class _Unavailable(Exception):
    """Elasticsearch could not take a write even after retries (internal: triggers spooling)."""


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
            self._ensure_index(self.index, self.alias, es_mapping())
            self._ensure_index(self.flags_index, self.flags_alias, es_mapping(StoredFlag))
            if legacy and migrate:
                self.migrate()
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
            # cannot be, and needs a new index version plus a reindex.
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

    def migrate(self) -> MigrationReport:
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
        """Bulk upsert by id; posts that cannot be written are spooled, never dropped.

        The spool of earlier failed writes is replayed first, so newer versions of
        a post in ``posts`` win.
        """
        down = not self._replay_spool()
        written = spooled = 0
        batch: list[Post] = []

        def flush() -> None:
            nonlocal written, spooled, down
            if not batch:
                return
            if not down:
                try:
                    self._write(batch)
                    written += len(batch)
                    return
                except _Unavailable as exc:
                    log.warning("Elasticsearch at %s unavailable (%s); spooling", self.location, exc)
                    down = True  # no point hammering it for every remaining batch
            self._spool(batch)
            spooled += len(batch)

        for post in posts:
            batch.append(post)
            if len(batch) >= _BATCH:
                flush()
                batch = []
        flush()
        return IndexResult(written=written, spooled=spooled)

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries and exponential backoff on transient failures."""
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                return fn()
            except ApiError as exc:
                if exc.status_code not in _RETRYABLE_STATUS:
                    self._fail(exc)
                failure: BaseException = exc
            except TransportError as exc:
                failure = exc
            if attempt < self._retries:
                log.info("Elasticsearch request failed (%s); retrying in %.1fs", _reason(failure, self._timeout), delay)
                time.sleep(delay)
                delay *= 2
        raise _Unavailable(_reason(failure, self._timeout))

    def _write(self, posts: list[Post]) -> None:
        pending = {post.id: post for post in posts}  # last version of an id wins, as in SQLite
        delay = self._backoff
        for attempt in range(self._retries + 1):
            operations: list[dict[str, Any]] = []
            for post in pending.values():
                operations.append({"index": {"_index": self.alias, "_id": post.id}})
                operations.append(post.model_dump(mode="json"))
            response = self._retrying(partial(self._client.bulk, operations=operations, refresh=self._refresh))
            if not response["errors"]:
                return
            retry: dict[str, Post] = {}
            for item in response["items"]:
                result = item["index"]
                if result.get("status", 200) < 300:
                    continue
                if result["status"] in _RETRYABLE_STATUS:
                    retry[result["_id"]] = pending[result["_id"]]
                    continue
                error = result.get("error", {})
                raise StoreError(
                    f"Elasticsearch at {self.location} rejected post {result['_id']}: "
                    f"{error.get('type')}: {error.get('reason')}"
                )
            pending = retry
            if attempt < self._retries:
                time.sleep(delay)
                delay *= 2
        raise _Unavailable(f"{len(pending)} posts still rejected as busy after {self._retries + 1} attempts")

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
        """Write spooled posts, deleting each file once written; ``False`` if still unavailable."""
        for path in self.spool_files():
            report = ReadReport()
            with path.open(encoding="utf-8") as handle:
                posts = list(read_posts(handle, report, source_name=str(path)))
            try:
                for start in range(0, len(posts), _BATCH):
                    self._write(posts[start : start + _BATCH])
            except _Unavailable:
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

    def search(self, query: str, *, brand: str | None = None, limit: int = 20) -> list[Post]:
        """Posts matching ``query`` (:mod:`search.query` syntax), best first (``_score``, then id).

        Raises:
            QuerySyntaxError: ``query`` is not valid syntax.
        """
        clause = text_query(parse(query), self._fields)
        response = self._search(
            query={"bool": {"must": [clause], "filter": self._filters(brand)}},
            sort=["_score", {"id": "asc"}],
            size=min(limit, _MAX_RESULT_WINDOW),  # deeper paging: search_after (later work)
        )
        return self._posts(response)

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
