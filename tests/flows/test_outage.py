"""Elasticsearch stopped in the middle of a watch tick: nothing lost, nothing duplicated.

A private Elasticsearch node (not the suite's shared one) is really stopped after the
tick has crawled and before it indexes; the tick spools the posts, defers the flagging
and ends Partial. The node is started again on the same data, and the next tick drains
the spool and re-scores what was pending. Then every post and flag is counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from local_mastodon import brands_yaml, recordings, status
from prefect.testing.utilities import prefect_test_harness
from receivers import Receiver

import flows.flows
from crawlers.mockserver import running_server
from flows.flows import TickSummary, watch
from flows.state import pending_ids
from moments import settings
from search import devserver, open_store

T1 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SECRET = "outage-secret-118"


def _angry(native_id: str, minutes_ago: int, **engagement: int) -> dict[str, Any]:
    text = f"@northwindair lost my bag on NW{native_id}, nobody answers, worst airline ever. Furious #northwindair"
    return status(native_id, text, T1 - timedelta(minutes=minutes_ago), handle=f"user{native_id}", **engagement)


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def node() -> Iterator[list[devserver.Server]]:
    """A private Elasticsearch node; the list holds the current server (it is restarted in the test)."""
    try:
        started = [devserver.start()]
    except devserver.MissingTool as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(f"needs a local Elasticsearch: {exc}")
    yield started
    devserver.stop(started[-1])


def _tick(config: Path, url: str, at: datetime) -> tuple[str, TickSummary]:
    state = watch(config, store_url=url, as_of=at, force=True, return_state=True)
    assert state.is_completed(), state.message
    return state.name, state.result()


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_elasticsearch_stopped_mid_tick_loses_and_duplicates_nothing(
    tmp_path: Path, node: list[devserver.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOMENTS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("MOMENTS_ES_PREFIX", "outage")
    receiver = Receiver()
    url = node[0].url
    with running_server() as mastodon:
        config = tmp_path / "brands.yaml"
        config.write_text(brands_yaml(mastodon.base_url, receiver.url), encoding="utf-8")

        # Tick 1, all well: one complaint spreading.
        mastodon.replace(recordings([_angry("7001", 30, reblogs=10, favourites=15)]))
        name, first = _tick(config, url, T1)
        assert name == "Completed" and first.opened == ["post:mastodon:7001"]

        # Tick 2: two more complaints arrive; Elasticsearch stops after the crawl, before the index.
        mastodon.replace(
            recordings(
                [
                    _angry("7001", 45, reblogs=10, favourites=15),
                    _angry("7002", 20, reblogs=40, favourites=60),
                    _angry("7003", 10, reblogs=30, favourites=30),
                ]
            )
        )
        real_prepare = flows.flows.prepare_file

        def stop_then_prepare(*args: Any, **kwargs: Any) -> Any:
            if not node[0].run_dir.endswith("-stopped"):
                devserver.stop(node[0], keep=True)
                node[0].run_dir += "-stopped"  # remember it is down (restart strips the mark)
            return real_prepare(*args, **kwargs)

        monkeypatch.setattr(flows.flows, "prepare_file", stop_then_prepare)
        name, during = _tick(config, url, T1 + timedelta(minutes=15))
        monkeypatch.setattr(flows.flows, "prepare_file", real_prepare)
        assert name == "Partial"
        # Three from the tag timeline, and 7001 once more from its re-poll by id (upserts by id: one post).
        assert during.spooled == 4 and during.indexed == 0 and during.opened == []
        assert any(p.startswith("flagging deferred to the next run") for p in during.problems)
        assert sorted(pending_ids()) == ["mastodon:7001", "mastodon:7002", "mastodon:7003"]
        assert len(list(settings.spool_dir().glob("elasticsearch-*.jsonl"))) >= 1
        assert len(receiver.on("/hook")) == 1  # nothing new could be flagged, nothing sent

        # Elasticsearch is back on the same data; the next tick drains the spool and catches up.
        node[0].run_dir = node[0].run_dir.removesuffix("-stopped")
        node[0] = devserver.restart(node[0])
        name, after = _tick(config, url, T1 + timedelta(minutes=30))
        assert name == "Completed", after.problems
        assert sorted(after.opened) == ["post:mastodon:7002", "post:mastodon:7003"]
        assert pending_ids() == [] and list(settings.spool_dir().glob("elasticsearch-*.jsonl")) == []

        # A fourth tick changes nothing and sends nothing.
        _, quiet = _tick(config, url, T1 + timedelta(minutes=30))
        assert quiet.opened == quiet.escalated == [] and quiet.notifications_sent == 0

    with open_store(url) as store:
        assert store.count() == 3  # every post, once
        flags = store.list_flags(status=None, limit=100)
        assert sorted(f.id for f in flags) == ["post:mastodon:7001", "post:mastodon:7002", "post:mastodon:7003"]
        assert all([e.action for e in store.flag_events(f.id)][:1] == ["opened"] for f in flags)
    announced = [(flag["id"], flag["event"]) for r in receiver.on("/hook") for flag in r.json()["flags"]]
    opened = sorted(flag_id for flag_id, event in announced if event == "opened")
    assert opened == ["post:mastodon:7001", "post:mastodon:7002", "post:mastodon:7003"]  # each exactly once
    receiver.close()
