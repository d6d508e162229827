"""Index templates derived from the schema, engagement snapshots as records of their own, and reindex migrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moments.cli import main
from moments.records import Post
from search.elastic import ElasticStore
from search.mapping import (
    StoredFlag,
    StoredSnapshot,
    es_mapping,
    index_templates,
    mapping_conflicts,
    removed_fields,
    snapshot_index,
)
from search.migration import drop_prefix
from search.sqlite import SqliteStore

MakePost = Callable[..., Post]
T0 = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
HISTORY = [{"at": T0, "likes": 1}, {"at": T0 + timedelta(hours=1), "likes": 5}]  # two months: March and April


def test_templates_are_derived_from_the_schema() -> None:
    templates = index_templates("acme", {"number_of_shards": 1, "number_of_replicas": 0})
    assert templates["acme-posts"]["index_patterns"] == ["acme-posts-v*"]
    assert templates["acme-posts"]["template"]["mappings"] == es_mapping()
    assert templates["acme-flags"]["template"]["mappings"] == es_mapping(StoredFlag)
    assert templates["acme-snapshots"]["index_patterns"] == ["acme-snapshots-*"]
    assert templates["acme-snapshots"]["template"]["mappings"]["properties"]["post_id"] == {"type": "keyword"}
    assert snapshot_index("acme", T0) == "acme-snapshots-2026.03"


def test_conflicts_name_the_field_and_removed_fields_are_found() -> None:
    live = es_mapping()
    live["properties"]["engagement"]["properties"]["likes"] = {"type": "text"}
    live["properties"]["gone"] = {"type": "keyword"}
    live["properties"]["classification"]["properties"]["touchpoint_scores"]["properties"] = {"x": {"type": "float"}}
    assert [str(c) for c in mapping_conflicts(live, es_mapping())] == [
        "field engagement.likes is text in the live index but long in the schema"
    ]
    assert removed_fields(live, es_mapping()) == ["gone"]  # keys grown under a score map are not "removed"


def test_sqlite_keeps_snapshots_by_post_and_time(tmp_home: Path, make_post: MakePost) -> None:
    with SqliteStore(tmp_home / "moments.db") as store:
        post = make_post(engagement_history=HISTORY)
        store.upsert([post])
        store.upsert([post])  # a re-crawl rewrites the same rows
        assert store.snapshots(post.id) == post.engagement_history
        (rows,) = store._db.execute("SELECT count(*) FROM snapshots").fetchone()
        assert rows == 2


@pytest.fixture
def es(es_url: str, es_prefix: str, tmp_home: Path) -> Iterator[ElasticStore]:
    with ElasticStore(es_url, index_prefix=es_prefix, backoff=0.05, retries=1) as store:
        yield store
    drop_prefix(es_url, es_prefix)


@pytest.mark.elasticsearch
def test_templates_and_monthly_snapshot_indices_on_the_live_server(
    es: ElasticStore, es_prefix: str, make_post: MakePost
) -> None:
    live = es._client.indices.get_index_template(name=f"{es_prefix}-*")["index_templates"]
    assert sorted(t["name"] for t in live) == [f"{es_prefix}-{k}" for k in ("flags", "posts", "snapshots")]

    post = make_post(engagement_history=HISTORY)
    es.upsert([post])
    es.upsert([post])  # idempotent: the same two snapshot documents
    months = sorted(es._client.indices.get(index=es.snapshot_pattern))
    assert months == [f"{es_prefix}-snapshots-2026.03", f"{es_prefix}-snapshots-2026.04"]
    mapping = es._client.indices.get_mapping(index=months[0])[months[0]]["mappings"]
    assert mapping == es_mapping(StoredSnapshot)  # from the template, not guessed by dynamic mapping
    assert int(es._client.count(index=es.snapshot_pattern)["count"]) == 2
    assert es.snapshots(post.id) == post.engagement_history


@pytest.mark.elasticsearch
def test_migrate_with_an_unchanged_mapping_moves_nothing(
    es: ElasticStore, es_url: str, es_prefix: str, make_post: MakePost, capsys: pytest.CaptureFixture[str]
) -> None:
    es.upsert([make_post(classification=None)])
    assert main(["search", "migrate", "--store", es_url]) == 0
    assert "reindexed" not in capsys.readouterr().out
    assert es._alias_target(es.alias) == f"{es_prefix}-posts-v1"


@pytest.mark.elasticsearch
def test_writes_during_a_reindex_are_spooled_then_land_in_the_new_index(
    es: ElasticStore, es_url: str, es_prefix: str, tmp_home: Path, make_post: MakePost
) -> None:
    """The old index is write-blocked while it is copied: a write then is retried, spooled, and replayed."""
    before = [make_post() for _ in range(3)]
    es.upsert(before)
    es._client.indices.put_mapping(index=es.alias, properties={"legacy_note": {"type": "keyword"}})

    es._client.indices.put_settings(index=es.index, settings={"index.blocks.write": True})  # as the reindex does
    during = make_post(native_id="during")
    result = es.upsert([during])
    assert (result.written, result.spooled, result.rejected) == (0, 1, 0)  # busy, not refused: nothing dead-lettered

    report = es.migrate()
    assert report.reindexed == (
        f"{es_prefix}-posts-v1 -> {es_prefix}-posts-v2 (3 documents; field legacy_note left the schema)",
    )
    assert es.index == f"{es_prefix}-posts-v2"
    assert not es._client.indices.exists(index=f"{es_prefix}-posts-v1")  # no stale copy left behind
    es.upsert([])  # the next write replays the spool through the alias
    assert es.count() == 4 and es.get(during.id) == during
    assert es._client.indices.get_mapping(index=es.alias)[es.index]["mappings"] == es_mapping()
