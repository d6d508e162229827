"""Stores written by the first release (flags inside posts) migrate on open and lose nothing.

The fixtures in ``tests/search/data/`` were written by that release's own code (see
the README there): 81 posts, 11 of them flagged, one flag acknowledged and one
resolved by a care agent.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from moments.cli import main
from moments.records import post_flag_id
from search.migration import MIGRATION_ACTOR, drop_prefix
from search.sqlite import SqliteStore
from search.store import Store

DATA = Path(__file__).parent / "data"


def _old_posts() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "schema1-posts.jsonl").read_text(encoding="utf-8").splitlines()]


def _expected_flags() -> dict[str, dict[str, Any]]:
    """What the old release stored, keyed by the new flag id."""
    return {post_flag_id(p["id"]): p["flag"] for p in _old_posts() if p.get("flag")}


def _check_migrated(store: Store) -> None:
    expected = _expected_flags()
    assert len(expected) == 11
    flags = {f.id: f for f in store.list_flags(status=None, limit=1000)}
    assert set(flags) == set(expected)
    for flag_id, old in expected.items():
        flag = flags[flag_id]
        assert flag.status == old["status"]  # a care agent's work survives
        assert (flag.priority, flag.score, flag.reasons) == (old["priority"], old["score"], old["reasons"])
        assert flag.velocity_per_hour == old["velocity_per_hour"]
        assert flag.opened_at.isoformat().replace("+00:00", "Z") == old["flagged_at"].replace("+00:00", "Z")
        assert flag.post_ids == [flag_id.removeprefix("post:")]
        assert flag.version == 1
        events = store.flag_events(flag_id)
        assert [(e.action, e.actor, e.version) for e in events] == [("migrated", MIGRATION_ACTOR, 1)]
        assert {c.field: c.new for c in events[0].changes}["status"] == old["status"]
    statuses = sorted(f.status for f in flags.values())
    assert statuses.count("acknowledged") == 1 and statuses.count("resolved") == 1
    assert store.count() == 81
    # Every post survives, field for field, without the flag.
    for old in _old_posts():
        post = store.get(old["id"])
        assert post is not None
        kept = {k: v for k, v in old.items() if k != "flag"}
        # Fields added to the schema since (with their defaults) are the only difference.
        added = {k: v for k, v in post.model_dump(mode="json").items() if k not in kept}
        assert added == {"reshares": []}
        assert {k: v for k, v in post.model_dump(mode="json").items() if k in kept} == kept
    # Flag reasons were post text in schema 1; they are not searchable post text any more.
    assert store.search("touchpoint") == []


def test_sqlite_store_of_the_first_release_migrates_on_open(tmp_path: Path) -> None:
    db = tmp_path / "moments.db"
    shutil.copy(DATA / "schema1-store.db", db)

    with SqliteStore(db) as store:
        _check_migrated(store)
        assert store.search("delay")  # the full-text index was rebuilt from the stored posts

    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
        assert raw.execute("SELECT count(*) FROM posts WHERE json_extract(doc, '$.flag') IS NOT NULL").fetchone() == (
            0,
        )
        columns = {row[1] for row in raw.execute("PRAGMA table_info(posts)")}
        assert not any(name.startswith("flag_") for name in columns)
    finally:
        raw.close()

    # Opening again (or migrating again) changes nothing and duplicates nothing.
    with SqliteStore(db) as store:
        assert store.migrate().flags_migrated == 0
        _check_migrated(store)


def test_migrate_command_reports_what_moved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "moments.db"
    shutil.copy(DATA / "schema1-store.db", db)

    assert main(["search", "migrate", "--store", str(db)]) == 0
    assert capsys.readouterr().out.strip() == f"migrated {db}: 11 flags moved out of 11 posts; 11 flags in the store"
    assert main(["search", "migrate", "--store", str(db)]) == 0
    assert capsys.readouterr().out.strip() == f"migrated {db}: 0 flags moved out of 0 posts; 11 flags in the store"


def test_an_interrupted_migration_resumes_without_duplicates(tmp_path: Path) -> None:
    """A migration that stored some flags but died before stripping the posts is simply run again."""
    db = tmp_path / "moments.db"
    shutil.copy(DATA / "schema1-store.db", db)
    with SqliteStore(db, migrate=False) as store:
        first = next(iter(_expected_flags()))
        # Half-done: one flag record exists, its post still carries the old flag.
        from search.migration import legacy_flag

        doc = next(p for p in _old_posts() if post_flag_id(p["id"]) == first)
        found = legacy_flag(doc)
        assert found is not None
        store._create_flag(*found)
        assert len(store.list_flags(status=None)) == 1

    with SqliteStore(db) as store:
        _check_migrated(store)


@pytest.mark.elasticsearch
def test_elasticsearch_index_of_the_first_release_migrates_on_open(es_url: str, es_prefix: str, tmp_home: Path) -> None:
    from elasticsearch import Elasticsearch, helpers

    from search.elastic import ElasticStore
    from search.mapping import index_names

    index, alias = index_names(es_prefix)
    old_mapping = json.loads((DATA / "schema1-es-mapping.json").read_text(encoding="utf-8"))
    client = Elasticsearch(es_url)
    try:
        client.indices.create(index=index, mappings=old_mapping, aliases={alias: {"is_write_index": True}})
        helpers.bulk(
            client,
            ({"_index": alias, "_id": post["id"], "_source": post} for post in _old_posts()),
            refresh=True,
        )
        assert client.count(index=alias, query={"exists": {"field": "flag"}})["count"] == 11

        with ElasticStore(es_url, index_prefix=es_prefix, refresh=True) as store:
            _check_migrated(store)
        assert client.count(index=alias, query={"exists": {"field": "flag"}})["count"] == 0

        with ElasticStore(es_url, index_prefix=es_prefix, refresh=True) as store:
            report = store.migrate()
            assert report.flags_migrated == 0
            # The schema-1 mapping still names the dead ``flag`` field: the explicit migrate reindexes it away.
            assert report.reindexed[0].startswith(f"{index} -> {es_prefix}-posts-v2 (81 documents; field flag left")
            assert "flag" not in client.indices.get_mapping(index=alias)[store.index]["mappings"]["properties"]
            _check_migrated(store)
            assert store.migrate().reindexed == ()  # nothing left to move
    finally:
        client.close()
        drop_prefix(es_url, es_prefix)
