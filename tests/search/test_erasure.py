"""``moments search erase``: an author's posts, flags, snapshots and spooled copies go; the audit keeps no name."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moments.cli import main
from moments.records import Flag, Post
from search import FlagChange
from search.deadletter import DeadLetter
from search.elastic import spool_posts
from search.erasure import AUDIT_PREFIX, erase_author
from search.migration import drop_prefix
from search.store import Store

MakePost = Callable[..., Post]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HANDLE = "@Zelda_Quist"


@pytest.fixture
def cleanup(store: Store) -> Iterator[None]:
    """After the test, drop every index and template of its Elasticsearch prefix (snapshot months included)."""
    prefix, url = os.environ.get("MOMENTS_ES_PREFIX"), os.environ.get("MOMENTS_TEST_ES_URL")
    yield
    if store.location.startswith("http") and prefix and url:
        drop_prefix(url, prefix)


def _flag(flag_id: str, post_ids: list[str], reasons: list[str]) -> Flag:
    return Flag(id=flag_id, post_ids=post_ids, priority="P2", score=1.0, reasons=reasons, opened_at=T0, updated_at=T0)


def _seed(store: Store, make_post: MakePost) -> dict[str, Post]:
    history = [{"at": T0, "likes": 1}, {"at": T0 + timedelta(hours=1), "likes": 9}]
    posts = {
        "hers": make_post(native_id="hers", author={"handle": HANDLE}, engagement_history=history),
        "hers_lower": make_post(native_id="hers-2", author={"handle": "zelda_quist"}, engagement_history=history),
        "hers_elsewhere": make_post(source="mastodon", native_id="m1", author={"handle": HANDLE}),
        "other": make_post(native_id="other", author={"handle": "@someone"}, engagement_history=history),
    }
    store.upsert(posts.values())
    store.create_flag(
        _flag("post:test:hers", ["test:hers"], ["safety/vulnerability: 'my chemo'"]), actor="rule:test", at=T0
    )
    store.change_flag(
        "post:test:hers",
        lambda f: FlagChange(f.with_status("acknowledged", T0), "status", "called her"),
        actor="agent",
    )
    store.create_flag(_flag("burst:1", ["test:other", "test:hers-2"], ["burst of 2"]), actor="rule:test", at=T0)
    store.create_flag(_flag("post:test:other", ["test:other"], ["author reach 10"]), actor="rule:test", at=T0)
    return posts


def test_erase_removes_every_copy_and_audits_without_the_name(
    store: Store, cleanup: None, tmp_home: Path, make_post: MakePost
) -> None:
    posts = _seed(store, make_post)
    spool = spool_posts([posts["hers"], posts["other"]])
    store.dead_letters.append([DeadLetter(p, "refused", T0, "x", 400) for p in (posts["hers_lower"], posts["other"])])
    rejected_spool = spool_posts([posts["hers_elsewhere"]]).rename(spool.with_name("old.rejected"))

    report = erase_author(store, "ZELDA_QUIST", actor="dpo")  # any case, with or without @

    assert report.counts() == {"posts": 3, "flags": 2, "snapshots": 4, "spool_lines": 2, "dead_letters": 1}
    for key in ("hers", "hers_lower", "hers_elsewhere"):
        assert store.get(posts[key].id) is None
    assert store.get(posts["other"].id) == posts["other"]
    assert store.get_flag("post:test:hers") is None and store.get_flag("burst:1") is None
    assert store.flag_events("post:test:hers") == []  # the log quoted her words: it goes with the flag
    assert store.get_flag("post:test:other") is not None and len(store.flag_events("post:test:other")) == 1
    assert store.snapshots(posts["hers"].id) == [] and len(store.snapshots(posts["other"].id)) == 2  # type: ignore[attr-defined]
    assert [Post.model_validate_json(line).id for line in spool.read_text().splitlines()] == [posts["other"].id]
    assert rejected_spool.read_text() == ""
    assert [json.loads(line)["post"]["id"] for line in store.dead_letters.lines()] == [posts["other"].id]
    assert store.search("zelda") == [] and store.count() == 1

    audit = store.get_setting(report.audit_key)
    assert audit is not None and report.audit_key.startswith(AUDIT_PREFIX)
    assert audit.value["removed"]["posts"] == 3 and audit.value["actor"] == "dpo" and audit.value["source"] is None
    text = json.dumps(audit.model_dump(mode="json")).lower()
    assert "zelda" not in text and "quist" not in text  # no handle, not even part of it


def test_erase_on_one_source_keeps_the_others(store: Store, cleanup: None, make_post: MakePost) -> None:
    posts = _seed(store, make_post)
    report = erase_author(store, HANDLE, source="mastodon")
    assert report.counts()["posts"] == 1 and report.counts()["flags"] == 0
    assert store.get(posts["hers_elsewhere"].id) is None
    assert store.get(posts["hers"].id) is not None and store.get_flag("post:test:hers") is not None


def test_erase_command_prints_what_went(
    store: Store, cleanup: None, tmp_home: Path, make_post: MakePost, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(store, make_post)
    assert main(["search", "erase", "--author", "zelda_quist", "--source", "test", "--store", store.location]) == 0
    out = capsys.readouterr().out
    assert out.startswith("erased 2 posts, 2 flags (with their event logs), 4 engagement snapshots, 0 spooled posts")
    assert "audit event audit:erasure:" in out and "zelda" not in out.lower()


@pytest.mark.parametrize("argv", [["--author", "@"], []])
def test_erase_without_a_handle_is_bad_input(tmp_home: Path, argv: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        status = main(["search", "erase", *argv])
        raise SystemExit(status)
    assert exited.value.code == 2
    assert not (tmp_home / "moments.db").exists()  # nothing opened, nothing created
