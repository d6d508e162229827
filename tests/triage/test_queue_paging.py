"""The queue under load: a page of entries with counts of all, one presence read, and bounded breach recording.

The API returns the first ``limit`` entries (default 100, 1..500) with counts over every
flag read. A queue request reads the presence of the entries it shows in one store read
(``get_settings``), and examines for new SLA breaches only flags whose clock says a target
is missed and that this process has not yet seen settled, a bounded number per request.
The store here is a real SQLite store that counts the reads that matter.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from test_app import Server, _flag, _post, login

from moments.accounts import AppSetting
from moments.config import MomentsConfig
from moments.records import Flag, FlagEvent, utc_now
from search.sqlite import SqliteStore
from triage.actions import QueueFilters, load_queue, record_presence
from triage.service_levels import effective_slas, record_queue_breaches


class CountingStore(SqliteStore):
    """A SQLite store that counts setting reads and log reads (the per-flag reads the queue must avoid)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: Counter[str] = Counter()

    def get_setting(self, key: str) -> AppSetting | None:
        self.reads["get_setting:" + key.split(":", 1)[0]] += 1
        return super().get_setting(key)

    def get_settings(self, keys: Any) -> dict[str, AppSetting]:
        self.reads["get_settings"] += 1
        return super().get_settings(keys)

    def flag_events(self, flag_id: str) -> list[FlagEvent]:
        self.reads["flag_events"] += 1
        return super().flag_events(flag_id)


def _seed(store: SqliteStore, minutes_ago: list[float], priority: str = "P3") -> list[Flag]:
    posts = [_post(f"q{n}") for n in range(len(minutes_ago))]
    store.upsert(posts)
    flags = [_flag(post, priority, ago) for post, ago in zip(posts, minutes_ago, strict=True)]
    for flag in flags:
        store.create_flag(flag, actor="rule:test", at=flag.opened_at)
    return flags


def test_api_limit_returns_the_first_entries_with_counts_of_all(server: Server, seeded: dict[str, Flag]) -> None:
    client, _ = login(server, "alice")
    everything = client.get("/api/flags").json()
    assert everything["counts"] == {"open": 5, "active": 6, "breached": 1, "shown": 6}
    assert everything["truncated"] is False

    first = client.get("/api/flags", params={"limit": 2}).json()
    assert [e["flag"]["id"] for e in first["entries"]] == [e["flag"]["id"] for e in everything["entries"][:2]]
    assert first["counts"] == {"open": 5, "active": 6, "breached": 1, "shown": 2}  # counts of all, not the page
    assert first["truncated"] is True
    assert "limit" not in first["filters"]
    assert client.get("/api/flags", params={"limit": 500}).json()["counts"]["shown"] == 6

    for bad in ("0", "501", "-3", "many"):
        response = client.get("/api/flags", params={"limit": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]

    spec = httpx.get(f"{server.url}/openapi.json").json()
    (limit,) = [p for p in spec["paths"]["/api/flags"]["get"]["parameters"] if p["name"] == "limit"]
    assert limit["in"] == "query" and limit["required"] is False
    assert limit["schema"] | {"minimum": 1, "maximum": 500, "default": 100} == limit["schema"]


def test_queue_reads_presence_once_and_shows_each_entries_viewers(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "presence.db")
    flags = _seed(store, [10, 20, 30, 40])
    now = utc_now()
    record_presence(store, flags[1].id, "bob", now=now - timedelta(seconds=40))
    record_presence(store, flags[1].id, "carol", now=now - timedelta(seconds=10))
    record_presence(store, flags[2].id, "bob", now=now - timedelta(minutes=5))  # too old to count
    record_presence(store, flags[3].id, "alice", now=now)  # the caller: left out
    store.reads.clear()

    queue = load_queue(store, MomentsConfig(), QueueFilters(), now=now, viewer="alice")

    assert store.reads["get_settings"] == 1 and store.reads["get_setting:presence"] == 0
    shown = {e.flag.id: [v.user for v in e.viewers] for e in queue.entries}
    assert shown == {flags[0].id: [], flags[1].id: ["carol", "bob"], flags[2].id: [], flags[3].id: []}

    page = load_queue(store, MomentsConfig(), QueueFilters(), now=now, viewer="alice", limit=1)
    assert page.counts.shown == 1 and page.counts.open == 4 and page.truncated


def test_queue_examines_only_unsettled_breaches_a_bounded_number_at_a_time(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "breaches.db")
    # P3: first response due after 4 h. Three flags late, two in time.
    flags = _seed(store, [300, 310, 320, 10, 20])
    slas = effective_slas(store, MomentsConfig())
    now = utc_now()
    listed = store.list_flags()
    store.reads.clear()

    first = record_queue_breaches(store, listed, slas, now, budget=2)
    assert len(first) == 2 and store.reads["flag_events"] == 2  # the two in time are never read
    second = record_queue_breaches(store, store.list_flags(), slas, now, budget=2)
    assert len(second) == 1
    assert {b.flag_id for b in first + second} == {f.id for f in flags[:3]}

    store.reads.clear()
    assert record_queue_breaches(store, store.list_flags(), slas, now + timedelta(seconds=5)) == []
    assert store.reads["flag_events"] == 0  # settled: nothing is read again

    # Once only: each late flag has one breach event.
    for flag in flags:
        breaches = [e for e in store.flag_events(flag.id) if e.note and e.note.startswith("sla_breached")]
        assert len(breaches) == (1 if flag in flags[:3] else 0)

    # The queue shows the versions the breach events made.
    queue = load_queue(store, MomentsConfig(), QueueFilters(), now=now)
    assert {e.flag.id: e.flag.version for e in queue.entries if e.sla.breached} == {f.id: 2 for f in flags[:3]}
    assert queue.counts.breached == 3
