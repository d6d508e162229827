"""Writes count every post: new, updated, rejected (dead-lettered, replayable) and retried after a 429.

Rejections are real: the live index is given a conflicting mapping for one dynamic
key (a touchpoint score mapped ``boolean``), and a counter past the range of ``long``.
The 429s come from a small HTTP proxy in front of the real Elasticsearch.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from moments.cli import main
from moments.records import Post
from search.deadletter import replay_dead_letters
from search.elastic import ElasticStore
from search.migration import drop_prefix
from search.store import Store, StoreError

MakePost = Callable[..., Post]


def _scores(**scores: float) -> dict[str, Any]:
    return {
        "sentiment": "negative",
        "sentiment_scores": {"negative": 0.8, "neutral": 0.1, "positive": 0.1},
        "touchpoint": "baggage",
        "touchpoint_scores": scores,
        "moment": "misery",
        "severity": 0.5,
        "model_version": "test-1",
    }


@pytest.fixture
def es(es_url: str, es_prefix: str, tmp_home: Path) -> Iterator[ElasticStore]:
    with ElasticStore(es_url, index_prefix=es_prefix, backoff=0.05, retries=2) as store:
        yield store
    drop_prefix(es_url, es_prefix)


def _letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_sqlite_counts_new_and_updated(tmp_home: Path, make_post: MakePost) -> None:
    from search.sqlite import SqliteStore

    with SqliteStore(tmp_home / "moments.db") as store:
        posts = [make_post() for _ in range(3)]
        first = store.upsert(posts)
        assert (first.written, first.indexed, first.updated, first.rejected, first.retried) == (3, 3, 0, 0, 0)
        again = store.upsert([*posts[:2], make_post()])
        assert (again.written, again.indexed, again.updated, again.dead_letter) == (3, 1, 2, None)


@pytest.mark.elasticsearch
def test_rejected_posts_are_dead_lettered_then_replayed_after_migrate(
    es: ElasticStore, es_url: str, es_prefix: str, tmp_home: Path, make_post: MakePost, capsys: Any
) -> None:
    # Someone's dynamic mapping made one touchpoint-score key a boolean: every score for it is refused.
    late = {"touchpoint_scores": {"properties": {"late": {"type": "boolean"}}}}
    es._client.indices.put_mapping(index=es.alias, properties={"classification": {"properties": late}})
    refused = make_post(native_id="refused", classification=_scores(late=0.9))
    hopeless = make_post(native_id="hopeless", engagement={"likes": 2**64})  # past the range of long
    fine = [make_post(native_id=f"fine-{n}") for n in range(3)]

    result = es.upsert([fine[0], refused, fine[1], hopeless, fine[2]])

    assert (result.indexed, result.updated, result.rejected, result.spooled) == (3, 0, 2, 0)
    assert result.dead_letter == tmp_home / "dead-letters" / f"elasticsearch-{es.alias}.jsonl"
    assert es.count() == 3  # refreshed once at the end: the good ones are searchable now
    letters = {letter["post"]["id"]: letter for letter in _letters(result.dead_letter)}
    assert set(letters) == {refused.id, hopeless.id}
    assert Post.model_validate(letters[refused.id]["post"]) == refused
    assert letters[refused.id]["index"] == es.alias and letters[refused.id]["status"] == 400
    assert "late" in letters[refused.id]["reason"] and "boolean" in letters[refused.id]["reason"]
    assert "out of range" in letters[hopeless.id]["reason"]
    assert letters[refused.id]["at"]

    # The conflict is now caught before any write, naming the field.
    with pytest.raises(
        StoreError,
        match=r"field classification\.touchpoint_scores\.late is boolean in the live "
        r"index but float in the schema; run moments search migrate",
    ):
        ElasticStore(es_url, index_prefix=es_prefix)
    capsys.readouterr()
    assert main(["search", "migrate", "--store", es_url]) == 0
    out = capsys.readouterr().out
    assert f"reindexed {es_prefix}-posts-v1 -> {es_prefix}-posts-v2 (3 documents;" in out
    assert "classification.touchpoint_scores.late" in out

    assert main(["search", "replay-dead-letters", "--store", es_url]) == 0
    assert "replayed 1 dead-lettered posts, 1 still rejected" in capsys.readouterr().out
    left = _letters(result.dead_letter)
    assert [letter["post"]["id"] for letter in left] == [hopeless.id]  # still refused, with the new reason and time
    assert left[0]["at"] > letters[hopeless.id]["at"]
    with ElasticStore(es_url, index_prefix=es_prefix) as fresh:
        assert fresh.index == f"{es_prefix}-posts-v2"
        assert fresh.get(refused.id) == refused
        assert fresh.count() == 4


@pytest.mark.elasticsearch
def test_a_rejected_post_in_the_spool_is_dead_lettered_not_lost(es: ElasticStore, make_post: MakePost) -> None:
    hopeless = make_post(native_id="hopeless", engagement={"likes": 2**64})
    spooled = es._spool([make_post(native_id="kept"), hopeless])
    result = es.upsert([make_post(native_id="new")])
    assert not spooled.exists() and not spooled.with_suffix(".rejected").exists()
    assert result.written == 1 and es.count() == 2
    assert [letter["post"]["id"] for letter in _letters(es.dead_letters.path)] == [hopeless.id]


class BusyProxy:
    """An HTTP pass-through to Elasticsearch that answers the first bulk request(s) 429, as a busy cluster does.

    ``mode="request"``: the whole request is refused (``es_rejected_execution_exception``);
    ``mode="items"``: the request is answered 200 with every item refused 429 (nothing written).
    """

    def __init__(self, target: str, *, busy: int = 1, mode: str = "request") -> None:
        parts = urlsplit(target)
        self.busy = busy
        self.bulk_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0].endswith("/_bulk"):
                    proxy.bulk_requests += 1
                    if proxy.bulk_requests <= proxy.busy:
                        self._busy(body, mode)
                        return
                upstream = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            def _busy(self, body: bytes, mode: str) -> None:
                error = {"type": "es_rejected_execution_exception", "reason": "rejected execution (queue full)"}
                if mode == "request":
                    status, answer = 429, {"error": error, "status": 429}
                else:
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    items = [
                        {op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429, "error": error}}
                        for line in lines
                        for op, meta in line.items()
                        if op in ("index", "create", "update", "delete")
                    ]
                    status, answer = 200, {"took": 1, "errors": True, "items": items}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.elasticsearch+json; compatible-with=8")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.elasticsearch
@pytest.mark.parametrize("mode", ["request", "items"])
def test_429s_are_retried_with_backoff_and_counted(
    es: ElasticStore, es_url: str, es_prefix: str, make_post: MakePost, mode: str
) -> None:
    proxy = BusyProxy(es_url, busy=2, mode=mode)
    try:
        with ElasticStore(proxy.url, index_prefix=es_prefix, backoff=0.05, retries=3) as store:
            posts = [make_post() for _ in range(7)]
            result = store.upsert(posts)
    finally:
        proxy.close()
    # Refused twice, accepted the third time: every post sent again twice.
    assert (result.indexed, result.retried, result.rejected, result.spooled) == (7, 14, 0, 0)
    assert proxy.bulk_requests == 3
    assert es.count() == 7
    assert es.get_many(p.id for p in posts) == {p.id: p for p in posts}


@pytest.mark.elasticsearch
def test_index_command_prints_every_count(
    es_url: str, es: ElasticStore, tmp_home: Path, make_post: MakePost, capsys: Any
) -> None:
    path = tmp_home / "posts.jsonl"
    hopeless = make_post(native_id="hopeless", engagement={"likes": 2**64})
    path.write_text("\n".join(p.to_json() for p in [make_post(), hopeless]) + "\n", encoding="utf-8")
    assert main(["index", str(path), "--store", es_url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"indexed 1 post into {es_url}: 1 new, 0 updated, 1 rejected -> dead-letter "
        f"{es.dead_letters.path}, 0 retried (0 spooled, 0 lines dropped)"
    )


def test_replay_with_nothing_dead_lettered_is_quiet(tmp_home: Path, capsys: Any) -> None:
    assert main(["search", "replay-dead-letters"]) == 0
    assert capsys.readouterr().out.startswith("replayed 0 dead-lettered posts, 0 still rejected")


def test_replay_on_sqlite_writes_the_letters_and_empties_the_file(
    tmp_home: Path, make_post: MakePost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A letter left by an Elasticsearch store can be replayed into any store; a line that is no post is kept."""
    from search.deadletter import DeadLetter
    from search.sqlite import SqliteStore

    store: Store
    with SqliteStore(tmp_home / "moments.db") as store:
        post = make_post()
        store.dead_letters.append([DeadLetter(post, "was refused", post.crawled_at, "elsewhere", 400)])
        with store.dead_letters.path.open("a") as handle:
            handle.write("not json\n")
        report = replay_dead_letters(store)
        assert (report.replayed, report.still_rejected, report.unreadable) == (1, 0, 1)
        assert store.get(post.id) == post
        assert store.dead_letters.lines() == ["not json"]
