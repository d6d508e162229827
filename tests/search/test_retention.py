"""Retention: ``purge_all`` and ``moments search purge`` delete posts, snapshots and closed flags past their periods.

Every test runs on both stores.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moments.cli import main
from moments.config import Retention
from moments.records import Flag, FlagStatus, Post
from search.migration import drop_prefix
from search.retention import AUDIT_PREFIX, purge_all
from search.sqlite import SqliteStore
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
    dry = purge_all(store, Retention(posts=timedelta(days=365)), NOW, dry_run=True)
    assert (dry.posts, dry.dry_run, dry.audit_key) == (2, True, None) and store.count() == 5

    report = purge_all(store, Retention(posts=timedelta(days=365)), NOW)
    assert report.posts == 2 and report.posts_cutoff == NOW - timedelta(days=365)
    assert {p.id for p in store.scan()} == {posts[k].id for k in ("recent", "undated_recent", "edge")}
    assert store.search(posts["old"].text.split()[-1]) == []  # gone from the full-text index too
    # Unset, the snapshots period follows the posts period: the 400-day-old snapshot went with it.
    assert (report.snapshots, report.snapshots_cutoff) == (1, report.posts_cutoff)
    assert store.snapshots(posts["old"].id) == []  # type: ignore[attr-defined]
    assert len(store.snapshots(posts["recent"].id)) == 1  # type: ignore[attr-defined]
    again = purge_all(store, Retention(posts=timedelta(days=365)), NOW)
    assert again.counts() == {"posts": 0, "snapshots": 0, "flags": 0} and again.audit_key is None


def _days(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_snapshots_follow_their_own_period(store: Store, cleanup: None, make_post: MakePost) -> None:
    # June 2026 is the month of the 150-day cutoff (23 June): one snapshot before it, one after.
    observed = [400, 200, 160, 145, 10]
    post = make_post(created_at=_days(10), engagement_history=[{"at": _days(d), "likes": d} for d in observed])
    ancient = make_post(created_at=_days(400), engagement_history=[{"at": _days(400), "likes": 1}])
    store.upsert([post, ancient])

    # Snapshots kept longer than posts: the old post goes, its snapshot stays.
    kept_longer = purge_all(store, Retention(posts=timedelta(days=365), snapshots=timedelta(days=500)), NOW)
    assert (kept_longer.posts, kept_longer.snapshots) == (1, 0)
    assert store.get(ancient.id) is None and len(store.snapshots(ancient.id)) == 1  # type: ignore[attr-defined]

    # Kept shorter: old snapshots go (whole months, and the older part of June), the post stays.
    shorter = Retention(posts=timedelta(days=365), snapshots=timedelta(days=150))
    assert purge_all(store, shorter, NOW, dry_run=True).snapshots == 4
    assert len(store.snapshots(post.id)) == 5  # type: ignore[attr-defined]
    report = purge_all(store, shorter, NOW)
    assert (report.posts, report.snapshots, report.snapshots_cutoff) == (0, 4, _days(150))
    assert [s.at for s in store.snapshots(post.id)] == [_days(145), _days(10)]  # type: ignore[attr-defined]
    assert store.snapshots(ancient.id) == []  # type: ignore[attr-defined]
    assert store.get(post.id) is not None and len(store.get(post.id).engagement_history) == 5  # type: ignore[union-attr]
    assert purge_all(store, shorter, NOW).snapshots == 0


def _flag(name: str, status: FlagStatus, opened: float, *, resolved: float | None = None) -> Flag:
    return Flag(
        id=f"post:test:{name}",
        post_ids=[f"test:{name}"],
        priority="P3",
        score=1.0,
        reasons=["moment of misery"],
        status=status,
        opened_at=_days(opened),
        resolved_at=_days(resolved) if resolved is not None else None,
        updated_at=_days(opened),
    )


def test_closed_flags_past_the_period_go_with_their_events(store: Store, cleanup: None) -> None:
    flags = {
        "resolved_long_ago": _flag("a", "resolved", 300, resolved=200),
        "dismissed_undated": _flag("b", "dismissed", 200),  # no resolved_at: its last update counts
        "resolved_lately": _flag("c", "resolved", 300, resolved=10),
        "open_for_ages": _flag("d", "open", 400),
        "acknowledged_for_ages": _flag("e", "acknowledged", 400),
    }
    for flag in flags.values():
        store.create_flag(flag, actor="rule:test", at=flag.updated_at)
    retention = Retention(flags=timedelta(days=90))

    dry = purge_all(store, retention, NOW, dry_run=True)
    assert dry.counts() == {"posts": 0, "snapshots": 0, "flags": 2} and dry.audit_key is None
    assert store.count_flags(status=None) == 5

    report = purge_all(store, retention, NOW)
    assert report.flags == 2 and report.flags_cutoff == _days(90)
    survivors = {flag.id for flag in store.list_flags(status=None)}
    assert survivors == {flags[k].id for k in ("resolved_lately", "open_for_ages", "acknowledged_for_ages")}
    for gone in ("resolved_long_ago", "dismissed_undated"):
        assert store.get_flag(flags[gone].id) is None and store.flag_events(flags[gone].id) == []
    assert len(store.flag_events(flags["open_for_ages"].id)) == 1
    assert str(report) == (
        "purged 2 closed flags closed before 2026-08-22T12:00:00+00:00; kept forever: posts, snapshots"
    )
    # One audit record: counts and cutoffs, nothing about which flags or whose posts.
    assert report.audit_key and report.audit_key.startswith(AUDIT_PREFIX)
    audit = store.get_setting(report.audit_key)
    assert audit is not None and audit.updated_by == "retention"
    assert audit.value["removed"] == {"posts": 0, "snapshots": 0, "flags": 2}
    assert audit.value["cutoffs"]["flags"] == "2026-08-22T12:00:00+00:00" and "test:a" not in json.dumps(audit.value)
    if isinstance(store, SqliteStore):  # the log is append-only again once the purge is over
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._db.execute("DELETE FROM flag_events")

    again = purge_all(store, retention, NOW)
    assert again.flags == 0 and again.audit_key is None and store.count_flags(status=None) == 3


def test_purge_command_reads_the_period_from_config(
    store: Store, cleanup: None, tmp_home: Path, make_post: MakePost, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    _seed(store, make_post, now)
    store.create_flag(_flag("old", "dismissed", 400), actor="rule:test", at=now - timedelta(days=400))
    config = tmp_home / "brands.yaml"
    config.write_text("retention:\n  posts: 365d\n  flags: 90d\n", encoding="utf-8")
    argv = ["search", "purge", "--store", store.location, "--config", str(config)]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would purge 2 posts created before ")
    assert ", 1 snapshots observed before " in out and ", 1 closed flags closed before " in out
    assert store.count() == 5 and store.count_flags(status=None) == 1
    assert main([*argv, "--older-than", "7d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("purged 4 posts created before ") and ", 1 closed flags closed before " in out
    assert store.count() == 1 and store.count_flags(status=None) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--older-than", "soon"], "--older-than: expected a duration"),
        (["--config", "missing.yaml"], "say how old: --older-than 365d"),
        (["--config", "missing.yaml", "--older-than", "7d"], "--config: missing.yaml not found"),
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
    assert "retention.posts, retention.snapshots and retention.flags are not set" in capsys.readouterr().err
