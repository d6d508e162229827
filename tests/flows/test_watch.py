"""The watch loop end to end: a local Mastodon whose post spreads, real flow runs, a signed webhook.

Each tick is a real Prefect flow run: the real spiders crawl a local HTTP server (the
tag timeline, then the post again by id), the real classifier reads the post, the store
is SQLite or the real Elasticsearch, and the notification goes over a socket to a local
receiver that checks its HMAC signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from local_mastodon import brands_yaml, recordings, status
from prefect.testing.utilities import prefect_test_harness
from receivers import Receiver

from crawlers.mockserver import MockServer, running_server
from flows.flows import TickSummary, watch
from moments.cli import main
from search import open_store

T1 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SECRET = "watch-test-secret-5521"
POSTED = T1 - timedelta(minutes=30)
ANGRY = "@northwindair you lost my bag on NW12, nobody answers, worst airline ever. Furious. #northwindair"
HAPPY = "Thanks @northwindair, the crew on NW7 were lovely and we landed early #northwindair"


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mastodon() -> Iterator[MockServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture(params=["sqlite", "elasticsearch"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "moments.db")
    return str(request.getfixturevalue("es_url"))


def _publish(server: MockServer, *, angry: dict[str, int]) -> None:
    server.replace(
        recordings(
            [
                status("5001", ANGRY, POSTED, **angry),
                status("5002", HAPPY, POSTED, favourites=400, reblogs=200, handle="fan"),
            ]
        )
    )


def _tick(config: Path, store_url: str, at: datetime) -> TickSummary:
    state = watch(config, store_url=store_url, as_of=at, force=True, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert isinstance(summary, TickSummary)
    return summary


def _verified(receiver: Receiver) -> list[dict[str, object]]:
    bodies = []
    for request in receiver.on("/hook"):
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Moments-Signature"] == expected
        bodies.append(request.json())
    return bodies


@pytest.mark.slow
def test_a_spreading_complaint_is_flagged_escalated_and_notified_once_per_change(
    tmp_path: Path,
    store_url: str,
    mastodon: MockServer,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOMENTS_WEBHOOK_SECRET", SECRET)
    config = tmp_path / "brands.yaml"
    config.write_text(brands_yaml(mastodon.base_url, receiver.url), encoding="utf-8")
    flag_id = "post:mastodon:5001"

    # Tick 1, through the CLI: 25 interactions in the half hour since it was posted.
    _publish(mastodon, angry={"reblogs": 10, "favourites": 15})
    code = main(["watch", "--config", str(config), "--store", store_url, "--once", "--as-of", T1.isoformat()])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "watch 2026-11-20 18:00Z: 2 crawled" in out and "1 opened" in out
    first = _verified(receiver)
    assert len(first) == 1 and first[0]["event"] == "opened"
    opened = first[0]["flag"]
    assert isinstance(opened, dict) and opened["id"] == flag_id and opened["post_ids"] == ["mastodon:5001"]
    assert opened["urls"] == ["https://mastodon.example/@traveller/5001"]
    assert first[0]["idempotency_key"] == f"{flag_id}:v1"

    # Tick 2, 15 minutes on: the post took off (re-polled by id as well as found again).
    _publish(mastodon, angry={"reblogs": 1800, "favourites": 1200})
    second_tick = _tick(config, store_url, T1 + timedelta(minutes=15))
    assert second_tick.escalated == [flag_id] and second_tick.opened == [] and second_tick.repolled == 1
    assert second_tick.reused == 3 and second_tick.classified == 0  # re-polls keep their classification
    bodies = _verified(receiver)
    assert len(bodies) == 2 and bodies[1]["event"] == "escalated"
    escalated = bodies[1]["flag"]
    assert isinstance(escalated, dict)
    assert escalated["priority"] < opened["priority"]  # "P2" < "P3": more urgent
    assert any("interactions/h" in reason and "between re-polls" in reason for reason in escalated["reasons"])
    assert bodies[1]["idempotency_key"] == f"{flag_id}:v2"

    # The same window again: the same flags, nothing sent.
    again = _tick(config, store_url, T1 + timedelta(minutes=15))
    assert again.opened == again.escalated == [] and len(_verified(receiver)) == 2

    # Tick 3: no more engagement. The flag's figures are refreshed (it slowed down), nothing is sent.
    third = _tick(config, store_url, T1 + timedelta(minutes=30))
    assert third.opened == third.escalated == [] and third.notifications_sent == 0
    assert "1 updated" in third.flags and third.sla_breaches == 1
    assert len(_verified(receiver)) == 2

    with open_store(store_url) as store:
        assert store.count() == 2
        assert store.count_flags(status=None) == 1
        flag = store.get_flag(flag_id)
        # Nobody answered within the first-response target of the flag's priority: the third
        # tick also recorded that breach, once, after refreshing the flag.
        assert flag is not None and flag.version == 4 and flag.priority == escalated["priority"]
        events = store.flag_events(flag_id)
        assert [e.action for e in events] == ["opened", "escalated", "updated", "sla_breached"]
        assert events[-1].note is not None and events[-1].note.startswith("sla_breached: first_response")
        post = store.get("mastodon:5001")
        assert post is not None and [s.total() for s in post.engagement_history] == [25, 3000, 3000]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_failing_source_leaves_the_tick_partial_and_the_others_flagged(
    tmp_path: Path, mastodon: MockServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOMENTS_WEBHOOK_SECRET", SECRET)
    dead = f"http://127.0.0.1:{_closed_port()}"
    config = tmp_path / "brands.yaml"
    extra = f'      - {{source: lemmy, query: northwind, base_url: "{dead}"}}\n'
    config.write_text(brands_yaml(mastodon.base_url, receiver.url, extra_sources=extra), encoding="utf-8")
    _publish(mastodon, angry={"reblogs": 10, "favourites": 15})

    state = watch(config, store_url=str(tmp_path / "m.db"), as_of=T1, force=True, return_state=True)
    assert state.is_completed() and state.name == "Partial"
    summary = state.result()
    assert summary.source_health == {
        "Northwind Air/mastodon:northwindair": "healthy",
        "Northwind Air/lemmy:northwind": "unhealthy",
    }
    assert summary.problems == ["source lemmy:northwind failed"] and summary.opened == ["post:mastodon:5001"]
    assert len(receiver.on("/hook")) == 1


@pytest.mark.slow
def test_an_endpoint_that_fails_does_not_block_flagging_and_gets_the_message_later(
    tmp_path: Path, mastodon: MockServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOMENTS_WEBHOOK_SECRET", SECRET)
    config = tmp_path / "brands.yaml"
    config.write_text(brands_yaml(mastodon.base_url, receiver.url), encoding="utf-8")
    store_url = str(tmp_path / "m.db")
    _publish(mastodon, angry={"reblogs": 10, "favourites": 15})
    receiver.status = 500

    down = _tick(config, store_url, T1)
    assert down.opened == ["post:mastodon:5001"] and down.partial
    assert "1 notifications not delivered (kept in the outbox)" in down.problems
    assert len(receiver.on("/hook")) == 1  # tried once, refused

    receiver.status = 200
    later = _tick(config, store_url, T1 + timedelta(minutes=10))  # past the first retry's backoff
    assert later.notifications_sent == 1 and not later.partial
    bodies = [json.loads(r.body) for r in receiver.on("/hook")]
    assert len(bodies) == 2 and bodies[0]["idempotency_key"] == bodies[1]["idempotency_key"] == "post:mastodon:5001:v1"
    _tick(config, store_url, T1 + timedelta(minutes=40))
    assert len(receiver.on("/hook")) == 2  # delivered once: never again
