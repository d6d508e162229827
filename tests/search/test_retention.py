"""Retention: ``Store.purge`` and ``moments search purge`` delete posts past the period, on both stores."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moments.cli import main
from moments.records import Post
from search.migration import drop_prefix
from search.retention import purge_posts
from search.store import Store

MakePost = Callable[..., Post]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def cleanup(store: Store) -> Iterator[None]:
    prefix, url = os.environ.get("MOMENTS_ES_PREFIX"), os.environ.get("MOMENTS_TEST_ES_URL")
    yield
    if store.location.startswith("http") and prefix and url:
        drop_prefix(url, prefix)


def _seed(store: Store, make_post: MakePost, now: datetime) -> dict[str, Post]:
    def at(days: int) -> datetime:
        return now - timedelta(days=days)

    posts = {
        "old": make_post(created_at=at(400), crawled_at=at(1), engagement_history=[{"at": at(400), "likes": 1}]),
        "undated_old": make_post(created_at=None, crawled_at=at(380)),
        "recent": make_post(created_at=at(10), crawled_at=at(9), engagement_history=[{"at": at(9), "likes": 3}]),
        "undated_recent": make_post(created_at=None, crawled_at=at(5)),
        "edge": make_post(created_at=at(364), crawled_at=at(364)),
    }
    store.upsert(posts.values())
    return posts


def test_purge_deletes_only_posts_past_the_period(store: Store, cleanup: None, make_post: MakePost) -> None:
    posts = _seed(store, make_post, NOW)
    dry = purge_posts(store, timedelta(days=365), dry_run=True, now=NOW)
    assert (dry.posts, dry.dry_run) == (2, True) and store.count() == 5

    report = purge_posts(store, timedelta(days=365), now=NOW)
    assert report.posts == 2 and report.cutoff == NOW - timedelta(days=365)
    assert {p.id for p in store.scan()} == {posts[k].id for k in ("recent", "undated_recent", "edge")}
    assert store.search(posts["old"].text.split()[-1]) == []  # gone from the full-text index too
    assert store.snapshots(posts["old"].id) == []  # type: ignore[attr-defined]
    assert len(store.snapshots(posts["recent"].id)) == 1  # type: ignore[attr-defined]
    assert purge_posts(store, timedelta(days=365), now=NOW).posts == 0  # nothing left to purge


def test_purge_command_reads_the_period_from_config(
    store: Store, cleanup: None, tmp_home: Path, make_post: MakePost, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(store, make_post, datetime.now(UTC))
    config = tmp_home / "brands.yaml"
    config.write_text("retention:\n  posts: 365d\n", encoding="utf-8")
    argv = ["search", "purge", "--store", store.location, "--config", str(config)]
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would purge 2 posts created before ")
    assert main(["search", "purge", "--store", store.location, "--older-than", "7d"]) == 0
    assert capsys.readouterr().out.startswith("purged 4 posts created before ")
    assert store.count() == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--older-than", "soon"], "--older-than: expected a duration"),
        (["--config", "missing.yaml"], "say how old: --older-than 365d"),
    ],
)
def test_purge_without_a_period_is_bad_input(
    tmp_home: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "purge", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_home / "moments.db").exists()


def test_a_config_without_retention_keeps_posts_forever(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_home / "brands.yaml"
    config.write_text("retention: {}\n", encoding="utf-8")
    assert main(["search", "purge", "--config", str(config)]) == 2
    assert "retention.posts is not set" in capsys.readouterr().err
