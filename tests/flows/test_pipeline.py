"""The pipeline as a real Prefect flow run, over real crawls of recorded responses."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

import flows.flows
from crawlers.mockserver import serve_recordings
from flows.demo import AS_OF, BRAND, CONFIG_TEMPLATE, CORPUS
from flows.flows import RUN_DONE, pipeline
from moments.records import Post
from search import open_store


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def corpus_url() -> Iterator[str]:
    with serve_recordings(CORPUS) as base_url:
        yield base_url


def _config(tmp_path: Path, base_url: str, extra_source: str = "") -> Path:
    text = CONFIG_TEMPLATE.read_text(encoding="utf-8").replace("{base_url}", base_url) + extra_source
    path = tmp_path / "brands.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_pipeline_flow_run_into_sqlite_is_idempotent(
    tmp_path: Path, corpus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    config = _config(tmp_path, corpus_url)
    store_url = str(tmp_path / "store.db")

    first = pipeline(config, store_url=store_url, as_of=AS_OF, run_dir=tmp_path / "run1")
    assert first.failed_sources == []
    assert first.crawled >= 50
    assert first.classified == first.crawled
    assert first.indexed == first.classified
    assert first.flagged >= 1
    # Every stage's output stays on disk for a crash-safe re-run.
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "run1").glob("*.jsonl")).count("classified") == 3

    with open_store(store_url) as store:
        count_after_first = store.count()
        flags_after_first = store.list_flags(limit=1000)
        events_after_first = {f.id: store.flag_events(f.id) for f in flags_after_first}
        assert count_after_first == first.indexed
        assert all(p.classification is not None for p in store.scan())

    second = pipeline(config, store_url=store_url, as_of=AS_OF, run_dir=tmp_path / "run2")
    assert second.failed_sources == []
    with open_store(store_url) as store:
        assert store.count() == count_after_first
        # The same data flags the same posts: no second flag, no new event, no version bump.
        assert store.list_flags(limit=1000) == flags_after_first
        assert {f.id: store.flag_events(f.id) for f in flags_after_first} == events_after_first


@pytest.mark.slow
def test_a_source_that_is_down_does_not_stop_the_others(
    tmp_path: Path, corpus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    # The real task retries three times with 10-40 s backoff; one attempt proves the point faster.
    monkeypatch.setattr(flows.flows, "crawl_source", flows.flows.crawl_source.with_options(retries=0))
    dead = f"http://127.0.0.1:{_closed_port()}"
    extra = (
        "  - name: Unreachable Co\n"
        "    names: [Unreachable]\n"
        "    sources:\n"
        f'      - {{source: mastodon, query: unreachable, base_url: "{dead}"}}\n'
    )
    config = _config(tmp_path, corpus_url, extra)
    summary = pipeline(config, store_url=str(tmp_path / "store.db"), as_of=AS_OF, run_dir=tmp_path / "run")
    assert summary.crawled >= 50
    assert summary.indexed >= 50
    assert summary.failed_sources == ["mastodon:unreachable"]
    with open_store(str(tmp_path / "store.db")) as store:
        assert sum(1 for _ in store.scan(brand=BRAND)) == summary.indexed


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_pipeline_flow_run_into_elasticsearch(
    tmp_path: Path, corpus_url: str, es_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    summary = pipeline(_config(tmp_path, corpus_url), store_url=es_url, as_of=AS_OF, run_dir=tmp_path / "run")
    assert summary.failed_sources == []
    with open_store(es_url) as store:
        assert store.count() >= summary.indexed
        flagged = store.list_flags(brand=BRAND, limit=1000)
        assert len(flagged) >= 1
        assert all(f.opened_at == AS_OF and f.version == 1 for f in flagged)
        assert all(store.get(f.post_ids[0]) is not None for f in flagged)
        assert store.search("delay", brand=BRAND)


@pytest.mark.slow
def test_posts_crawled_by_a_run_that_died_are_indexed_by_the_next(
    tmp_path: Path, make_post: Callable[..., Post], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    runs = tmp_path / "runs"
    died = runs / "20261120T170000Z-died"
    died.mkdir(parents=True)
    survivor = make_post(source="mastodon", native_id="died-1", text="My bag never arrived, three days now")
    # The spider was killed mid-write: one whole record, then half a line.
    (died / "crawl-northwind-mastodon.jsonl.partial").write_text(survivor.to_json() + '\n{"id": "mastodon:died-2", "te')
    config = tmp_path / "brands.yaml"
    config.write_text("brands:\n  - name: Northwind Air\n", encoding="utf-8")
    store_url = str(tmp_path / "store.db")

    summary = pipeline(config, store_url=store_url, as_of=AS_OF, run_dir=runs / "20261120T180000Z-next")

    assert summary.recovered == 2
    assert summary.classified == 1
    assert summary.dropped == 1
    with open_store(store_url) as store:
        recovered = store.get(survivor.id)
        assert recovered is not None
        assert recovered.classification is not None
    assert (died / RUN_DONE).exists()
    # Once indexed, the recovered run is not replayed again.
    again = pipeline(config, store_url=store_url, as_of=AS_OF, run_dir=runs / "20261120T190000Z-again")
    assert again.recovered == 0


@pytest.mark.slow
def test_brand_taxonomy_and_flag_rules_from_config_change_the_run(
    tmp_path: Path, corpus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same corpus, with the brand's own taxonomy and stricter flag rules in brands.yaml."""
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "home"))
    text = CONFIG_TEMPLATE.read_text(encoding="utf-8").replace("{base_url}", corpus_url)
    brand_settings = (
        "    taxonomy:\n"
        "      mode: replace\n"
        "      touchpoints:\n"
        "        - {id: on_the_ground, description: 'airport, check-in, gates, bags, delays on the ground'}\n"
        "        - {id: in_the_air, description: 'the flight itself: seats, crew, food, comfort on board'}\n"
        "        - {id: money_matters, description: 'fares, refunds, fees, charges and compensation'}\n"
        "    flag_rules: {min_velocity: 1000000, vulnerability_terms: []}\n"
    )
    text = text.replace("    sources:\n", brand_settings + "    sources:\n", 1)
    config = tmp_path / "brands.yaml"
    config.write_text(text, encoding="utf-8")
    store_url = str(tmp_path / "store.db")

    summary = pipeline(config, store_url=store_url, as_of=AS_OF, run_dir=tmp_path / "run")

    assert summary.failed_sources == [] and summary.indexed >= 50
    with open_store(store_url) as store:
        touchpoints = {p.classification.touchpoint for p in store.scan() if p.classification}
        assert touchpoints and touchpoints <= {"on_the_ground", "in_the_air", "money_matters"}
        assert len(touchpoints) >= 2  # the custom labels discriminate, not one label for everything
        # With the default rules this corpus opens flags (see the idempotency test); not with these.
        assert store.list_flags(status=None) == []
    assert summary.flagged == 0
