"""The nightly flow: every source (a slow file import too), recovery, bursts over the day, the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from local_mastodon import brands_yaml, recordings, status
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from receivers import Receiver

from crawlers.mockserver import running_server
from flows.flows import RUN_DONE, TickSummary, nightly
from moments import settings
from moments.records import Classification, Flag, Post
from search import open_store

NIGHT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
BURST_END = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # 20:00 yesterday: six hours before the run


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(params=["sqlite", "elasticsearch"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "moments.db")
    return str(request.getfixturevalue("es_url"))


def _misery(native_id: str, at: datetime) -> Post:
    return Post(
        id=f"seed:{native_id}",
        source="seed",
        native_id=native_id,
        brand=["Northwind Air"],
        text="The gate agents at Oslo ignored the whole queue again",
        created_at=at,
        crawled_at=at,
        classification=Classification(
            sentiment="negative",
            sentiment_scores={"negative": 0.9, "neutral": 0.05, "positive": 0.05},
            touchpoint="staff_interaction",
            touchpoint_scores={"staff_interaction": 1.0},
            moment="misery",
            severity=0.6,
            model_version="seed",
        ),
    )


@pytest.mark.slow
def test_nightly_crawls_every_source_recovers_finds_the_days_burst_and_reports(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOMENTS_WEBHOOK_SECRET", "nightly-secret")
    # One misery post a day at that hour for a week, then 12 in one hour: yesterday evening's burst.
    seed = [_misery(f"d{day}", BURST_END - timedelta(days=day, minutes=30)) for day in range(1, 8)]
    seed += [_misery(f"b{i}", BURST_END - timedelta(minutes=55 - 4 * i)) for i in range(12)]
    # Retention (365 days): a post from 400 days ago is purged tonight.
    ancient = _misery("old", NIGHT - timedelta(days=400))
    # A flag opened two days ago and never answered: its SLA breaches are recorded tonight, once.
    late = Flag(
        id="post:seed:d2",
        brand="Northwind Air",
        touchpoint="staff_interaction",
        post_ids=["seed:d2"],
        priority="P2",
        score=4.0,
        reasons=["moment of misery"],
        opened_at=NIGHT - timedelta(days=2),
        updated_at=NIGHT - timedelta(days=2),
    )
    with open_store(store_url) as store:
        store.upsert([*seed, ancient])
        store.create_flag(late, actor="rule:test", at=late.opened_at)

    # A slow source: a file exported by another tool, read through the `import` source.
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text(
        "\n".join(
            json.dumps({"native_id": f"r{i}", "text": text, "created_at": "2026-11-20T22:00:00Z"})
            for i, text in enumerate(["Northwind Air lost my suitcase", "Northwind Air crew were lovely"])
        )
        + "\n",
        encoding="utf-8",
    )
    # A crawl file left by a run that died before indexing it.
    dead_run = settings.runs_dir() / "watch-20261120T230000Z-dead00"
    dead_run.mkdir(parents=True)
    orphan = status("9100", "Northwind Air kept us on the tarmac for 3 hours #northwindair", NIGHT - timedelta(hours=4))
    receiver = Receiver()
    with running_server() as mastodon:
        mastodon.replace(recordings([orphan]))
        from crawlers.runner import crawl

        crawl(
            "mastodon",
            query="northwindair",
            base_url=mastodon.base_url,
            output=dead_run / "crawl-orphan.jsonl",
            as_of=NIGHT - timedelta(hours=3),
            state_dir=tmp_path / "dead-run-state",
        )
        mastodon.replace(
            recordings(
                [status("9001", "Northwind Air cancelled my flight again #northwindair", NIGHT - timedelta(hours=1))]
            )
        )
        extra = f"      - {{source: import, query: {reviews}}}\n"
        config = tmp_path / "brands.yaml"
        yaml = brands_yaml(mastodon.base_url, receiver.url, extra_sources=extra) + "retention:\n  posts: 365d\n"
        config.write_text(yaml, encoding="utf-8")
        state = nightly(config, store_url=store_url, as_of=NIGHT, return_state=True)
    receiver.close()

    assert state.is_completed() and state.name == "Completed", state.message
    summary = state.result()
    assert isinstance(summary, TickSummary)
    assert summary.crawled == 3 and summary.recovered == 1 and summary.indexed == 4
    assert set(summary.source_health.values()) == {"healthy"} and len(summary.source_health) == 2
    assert (dead_run / RUN_DONE).exists()
    with open_store(store_url) as store:
        assert store.get("mastodon:9100") is not None  # the recovered post
        assert store.count() == len(seed) + 4  # the 400-day-old post is gone
        assert store.get("seed:old") is None
        breaches = [e for e in store.flag_events(late.id) if e.action == "sla_breached"]
        bursts = store.list_flags(status=None, kind="burst", limit=10)
    # The burst hour was found once, as one flag linking its posts, though several windows saw it.
    assert len(bursts) == 1 and bursts[0].touchpoint == "staff_interaction"
    assert {f"seed:b{i}" for i in range(12)} <= set(bursts[0].post_ids)
    assert any(b.startswith("Northwind Air/staff_interaction 12 posts") for b in summary.bursts)
    # Both of its targets (first response, resolution) were missed long ago: one event each.
    assert sorted(e.note.split(" ")[1] for e in breaches if e.note) == ["first_response", "resolution"]
    assert summary.sla_breaches >= 2  # and the burst flag, opened with the burst hours ago, may be late too
    assert any(line.startswith("purged 1 posts created before 2025-") for line in summary.maintenance)

    report = (summary.run_dir / "report.md").read_text(encoding="utf-8")
    for heading in ("# Moments nightly report, 2026-11-21 02:00 UTC", "## Posts", "## Flags", "## Source health"):
        assert heading in report
    assert "| Northwind Air/import:" in report and "| healthy |" in report
    # Straight to the API: prefect 3.8.8's client sends unset filter fields as null, which its own
    # server refuses (422), so this request names every field.
    body = {"artifacts": {"key": {"any_": ["moments-nightly"]}}, "limit": 10, "offset": 0, "sort": "CREATED_DESC"}
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
    response.raise_for_status()
    artifacts = [SimpleNamespace(**a) for a in response.json()]
    assert any(a.data == report for a in artifacts), [str(a.data)[:80] for a in artifacts]
