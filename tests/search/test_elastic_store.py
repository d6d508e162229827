"""Elasticsearch specifics: the derived mapping, spooling while the server is down, one-line errors."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from moments.records import Post
from search.elastic import ElasticStore
from search.mapping import StoredFlag, es_mapping, index_names, sqlite_columns, text_fields
from search.sqlite import SqliteStore
from search.store import StoreError

MakePost = Callable[..., Post]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- mapping (no server needed)


class Sarcasm(BaseModel):
    """A made-up part of the schema, to show the derivation picks it up."""

    score: float
    explanation: str = Field(json_schema_extra={"index": "text"})


class PostWithMore(Post):
    """The schema plus fields added later."""

    sarcasm: Sarcasm | None = None
    reviewed: bool = False
    reply_count: int | None = None
    editor_note: str | None = Field(default=None, json_schema_extra={"index": "text"})
    tags: list[str] = Field(default_factory=list)
    emotion_scores: dict[str, float] = Field(default_factory=dict, json_schema_extra={"index": "scores"})


def test_mapping_shape_follows_schema_markers() -> None:
    mapping = es_mapping()
    props = mapping["properties"]

    assert mapping["dynamic"] == "strict"
    assert set(props) == set(Post.model_fields)
    assert props["id"] == {"type": "keyword"}
    assert props["brand"] == {"type": "keyword"}
    assert props["text"] == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert props["author"]["properties"]["display_name"]["type"] == "text"
    assert props["author"]["properties"]["followers"] == {"type": "long"}
    assert props["created_at"] == {"type": "date"}
    assert props["rating"] == {"type": "double"}
    assert props["engagement_history"]["type"] == "nested"
    assert props["engagement_history"]["properties"]["at"] == {"type": "date"}
    assert props["extra"] == {"type": "object", "enabled": False}
    assert props["classification"]["properties"]["sentiment_scores"] == {"type": "object", "dynamic": "true"}
    # Flags are records of their own (the flags index); their reasons are not post text.
    assert "flag" not in props
    templates = {name: body for template in mapping["dynamic_templates"] for name, body in template.items()}
    assert templates["classification_touchpoint_scores_as_float"] == {
        "path_match": "classification.touchpoint_scores.*",
        "mapping": {"type": "float"},
    }
    assert index_names() == ("moments-posts-v1", "moments-posts")


def test_added_schema_fields_appear_in_every_layout() -> None:
    props = es_mapping(PostWithMore)["properties"]
    assert props["sarcasm"] == {
        "properties": {
            "score": {"type": "double"},
            "explanation": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        }
    }
    assert props["reviewed"] == {"type": "boolean"}
    assert props["reply_count"] == {"type": "long"}
    assert props["editor_note"]["type"] == "text"
    assert props["tags"] == {"type": "keyword"}
    assert props["emotion_scores"] == {"type": "object", "dynamic": "true"}
    assert any("emotion_scores_as_float" in t for t in es_mapping(PostWithMore)["dynamic_templates"])

    columns = {c.name: c for c in sqlite_columns(PostWithMore)}
    assert columns["sarcasm_score"].sql_type == "REAL"
    assert columns["reviewed"].sql_type == "INTEGER"
    assert columns["reply_count"].sql_type == "INTEGER"
    assert columns["tags"].kind == "json"
    assert {"author_followers", "classification_touchpoint", "classification_moment"} <= set(columns)
    assert not any(name.startswith("flag") for name in columns)
    assert "editor_note" not in columns  # text goes to FTS5, not a column

    assert [f.dotted for f in text_fields(PostWithMore)] == [
        "author.display_name",
        "text",
        "title",
        "sarcasm.explanation",
        "editor_note",
    ]


def test_sqlite_adds_columns_for_new_schema_fields(tmp_path: Path, make_post: MakePost, monkeypatch: Any) -> None:
    """An existing database file gains (and backfills) the columns of a newer schema on open."""
    db = tmp_path / "old.db"
    with SqliteStore(db) as store:
        store.upsert([make_post(native_id="kept")])

    import search.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "sqlite_columns", lambda model=None: sqlite_columns(model or PostWithMore))
    monkeypatch.setattr(sqlite_module, "text_fields", lambda: text_fields(PostWithMore))
    monkeypatch.setattr(sqlite_module, "Post", PostWithMore)
    with SqliteStore(db) as store:
        names = {row[1] for row in store._db.execute("PRAGMA table_info(posts)")}
        assert {"sarcasm_score", "reviewed", "tags"} <= names
        assert store._db.execute("SELECT reviewed, tags FROM posts").fetchall() == [(0, "[]")]
        fts = store._db.execute("SELECT sql FROM sqlite_master WHERE name = 'posts_fts'").fetchone()[0]
        assert '"editor_note"' in fts
        assert store.count() == 1
        assert [p.native_id for p in store.search("post")] == ["kept"]  # FTS rebuilt from stored docs


# --------------------------------------------------------------------------- live server


@pytest.fixture
def prefix(es_prefix: str) -> str:
    return es_prefix


@pytest.fixture
def es_store(es_url: str, prefix: str, tmp_home: Path) -> Iterator[ElasticStore]:
    with ElasticStore(es_url, index_prefix=prefix, refresh=True, backoff=0.05) as store:
        yield store


@pytest.mark.elasticsearch
def test_live_index_mapping_equals_derived(es_store: ElasticStore, prefix: str) -> None:
    response = es_store._client.indices.get_mapping(index=es_store.alias)
    assert list(response) == [f"{prefix}-posts-v1"]  # the alias resolves to the versioned index
    assert response[f"{prefix}-posts-v1"]["mappings"] == es_mapping()
    aliases = es_store._client.indices.get_alias(name=es_store.alias)
    assert aliases[es_store.index]["aliases"][es_store.alias] == {"is_write_index": True}

    flags = es_store._client.indices.get_mapping(index=es_store.flags_alias)
    assert list(flags) == [f"{prefix}-flags-v1"]
    assert flags[f"{prefix}-flags-v1"]["mappings"] == es_mapping(StoredFlag)
    assert flags[f"{prefix}-flags-v1"]["mappings"]["properties"]["events"]["type"] == "nested"


@pytest.mark.elasticsearch
def test_reopening_keeps_the_index(es_url: str, es_store: ElasticStore, make_post: MakePost) -> None:
    es_store.upsert([make_post()])
    again = ElasticStore(es_url, index_prefix=es_store.alias.removesuffix("-posts"))
    assert again.count() == 1
    again.close()


@pytest.mark.elasticsearch
def test_strict_mapping_rejects_unknown_fields_with_one_line(es_store: ElasticStore) -> None:
    with pytest.raises(StoreError) as failure:
        es_store._write([_post_with_stray_field()])
    assert "strict_dynamic_mapping_exception" in str(failure.value)
    assert "\n" not in str(failure.value)


def _post_with_stray_field() -> Post:
    post = PostWithMore.model_validate(
        {
            "id": "test:stray",
            "source": "test",
            "native_id": "stray",
            "text": "x",
            "crawled_at": "2026-01-01T00:00:00Z",
            "reviewed": True,
        }
    )
    return post


class TcpProxy:
    """A TCP forwarder we can switch off and on, to take 'the server' away mid-run."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = _free_port()
        self._server: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._running = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.1)
        self._running.set()
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        if self._server is not None:
            self._server.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self._connections.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.elasticsearch
def test_spools_while_down_and_replays_next_time(es_url: str, prefix: str, tmp_home: Path, make_post: MakePost) -> None:
    proxy = TcpProxy(int(es_url.rsplit(":", 1)[1]))
    proxy.start()
    store = ElasticStore(proxy.url, index_prefix=prefix, timeout=3, retries=2, backoff=0.05)
    direct = ElasticStore(es_url, index_prefix=prefix)
    try:
        first = make_post(native_id="before")
        assert store.upsert([first]).written == 1

        proxy.stop()
        during = [make_post(native_id="during-1"), make_post(native_id="during-2")]
        started = time.monotonic()
        result = store.upsert(during)
        assert (result.written, result.spooled) == (0, 2)
        assert time.monotonic() - started < 15  # backoff is bounded
        spooled = sorted((tmp_home / "spool").glob("elasticsearch-*.jsonl"))
        assert len(spooled) == 1 and spooled[0].name.startswith(f"elasticsearch-{prefix}-posts-")
        assert len(spooled[0].read_text().splitlines()) == 2
        assert direct.count() == 1  # nothing reached the server meanwhile

        proxy.start()
        after = make_post(native_id="after")
        result = store.upsert([after])
        assert (result.written, result.spooled) == (1, 0)
        assert list((tmp_home / "spool").glob("elasticsearch-*.jsonl")) == []
        assert direct.count() == 4
        assert direct.get(during[1].id) == during[1]
    finally:
        proxy.stop()
        store.close()
        direct.close()


def test_unreachable_url_is_one_quick_line(tmp_home: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as failure:
        ElasticStore(url)
    assert time.monotonic() - started < 5
    assert str(failure.value) == f"cannot reach Elasticsearch at {url} (connection refused)"


def test_unreachable_url_on_the_command_line(tmp_home: Path, make_post: MakePost) -> None:
    posts = tmp_home / "posts.jsonl"
    posts.write_text(make_post().to_json() + "\n")
    url = f"http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "moments.cli", "index", str(posts), "--store", url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"moments index: error: cannot reach Elasticsearch at {url} (connection refused)"
    ]


@pytest.mark.elasticsearch
def test_a_rejected_spool_file_is_set_aside(
    es_store: ElasticStore, tmp_home: Path, make_post: MakePost, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = es_store._spool([make_post(native_id="poison")])

    def reject(posts: list[Post]) -> None:
        raise StoreError("Elasticsearch rejected post test:poison")

    with monkeypatch.context() as patch:
        patch.setattr(es_store, "_write", reject)
        assert es_store._replay_spool() is True

    assert not poisoned.exists()
    assert poisoned.with_suffix(".rejected").is_file()
    assert es_store.spool_files() == []
    assert es_store.upsert([make_post(native_id="fine")]).written == 1


@pytest.mark.elasticsearch
def test_list_flags_pages_past_the_result_window(es_store: ElasticStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """More flags than one search may return come back in order, page by page (search_after)."""
    import search.elastic as elastic_module
    from moments.records import Flag

    opened = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    for n in range(7):
        es_store.create_flag(
            Flag(
                id=f"post:test:{n}",
                post_ids=[f"test:{n}"],
                priority="P1" if n % 2 else "P2",
                score=float(n),
                opened_at=opened,
                updated_at=opened,
            ),
            actor="rule:test",
            at=opened,
        )
    expected = [f.id for f in es_store.list_flags(limit=100)]
    assert expected == [f"post:test:{n}" for n in (5, 3, 1, 6, 4, 2, 0)]
    monkeypatch.setattr(elastic_module, "_MAX_RESULT_WINDOW", 3)  # pages of 3: 3 + 3 + 1
    assert [f.id for f in es_store.list_flags(limit=100)] == expected
    assert [f.id for f in es_store.list_flags(limit=4)] == expected[:4]
    assert es_store.list_flags(limit=100_000)  # above Elasticsearch's own window: paged, not refused
