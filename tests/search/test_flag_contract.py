"""Flags as work items: one contract, run against SQLite and a real Elasticsearch.

Covers the lifecycle and its append-only event log, compare-and-set conflicts
(including two processes racing on one flag), escalation without duplicates, and
the rule never undoing a person's work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.flagging import RULE_VERSION, apply_flags
from moments.config import FlagRules
from moments.errors import ConflictError
from moments.records import Classification, Flag, Post, post_flag_id
from search.store import FlagChange, Store

MakePost = Callable[..., Post]
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def _flag(flag_id: str = "post:test:1", **overrides: object) -> Flag:
    fields: dict[str, object] = {
        "id": flag_id,
        "brand": "northwind",
        "touchpoint": "fulfilment",
        "post_ids": [flag_id.removeprefix("post:")],
        "priority": "P2",
        "score": 4.5,
        "reasons": ["moment of misery", "spreading at 40 interactions/hour"],
        "opened_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Flag.model_validate(fields)


def _set(**update: object) -> Callable[[Flag], FlagChange]:
    """A change function that sets fields as a person would, with the action named after the first field."""

    def change(current: Flag) -> FlagChange:
        updated = current
        if "status" in update:
            updated = updated.with_status(update["status"], T0 + timedelta(minutes=5))  # type: ignore[arg-type]
        rest = {k: v for k, v in update.items() if k not in ("status", "note")}
        updated = updated.model_copy(update=rest)
        action = "status" if "status" in update else "assigned" if "assignee" in update else "note"
        return FlagChange(updated, action, update.get("note"))  # type: ignore[arg-type]

    return change


def test_create_get_and_a_second_create_conflicts(store: Store) -> None:
    created = store.create_flag(_flag(), actor="rule:test", at=T0)

    assert created.version == 1
    assert store.get_flag(created.id) == created
    assert store.get_flag("post:test:none") is None
    events = store.flag_events(created.id)
    assert [(e.version, e.action, e.actor) for e in events] == [(1, "opened", "rule:test")]
    assert {c.field: c.new for c in events[0].changes}["priority"] == "P2"

    with pytest.raises(ConflictError):
        store.create_flag(_flag(priority="P1"), actor="rule:other", at=T0)
    assert store.get_flag(created.id) == created  # the second create changed nothing
    assert len(store.flag_events(created.id)) == 1


def test_lifecycle_writes_one_event_per_change_and_never_rewrites_the_past(store: Store) -> None:
    store.create_flag(_flag(), actor="rule:test", at=T0)
    opened_event = store.flag_events("post:test:1")[0]

    acked = store.change_flag(
        "post:test:1", _set(status="acknowledged", assignee="dana"), actor="dana", at=T0 + timedelta(minutes=1)
    )
    assert (acked.version, acked.status, acked.assignee) == (2, "acknowledged", "dana")
    assert acked.first_response_at is None  # acknowledging is internal; the customer has no answer yet

    responded = store.change_flag(
        "post:test:1", _set(status="responded", note="DM sent with the claim link"), actor="dana", if_version=2
    )
    assert responded.status == "responded" and responded.first_response_at is not None
    resolved = store.change_flag("post:test:1", _set(status="resolved"), actor="lee", if_version=3)
    assert resolved.status == "resolved" and resolved.resolved_at is not None and resolved.is_closed
    noted = store.change_flag("post:test:1", _set(note="customer thanked us"), actor="lee")
    assert noted.version == 5

    events = store.flag_events("post:test:1")
    assert [e.version for e in events] == [1, 2, 3, 4, 5]
    assert [(e.actor, e.action) for e in events] == [
        ("rule:test", "opened"),
        ("dana", "status"),
        ("dana", "status"),
        ("lee", "status"),
        ("lee", "note"),
    ]
    assert events[0] == opened_event  # earlier entries are never edited
    changes = {c.field: (c.old, c.new) for c in events[1].changes}
    assert changes["status"] == ("open", "acknowledged")
    assert changes["assignee"] == (None, "dana")
    assert events[2].note == "DM sent with the claim link"
    assert events[4].changes == [] and events[4].note == "customer thanked us"
    assert store.get_flag("post:test:1") == noted


def test_a_change_that_changes_nothing_writes_nothing(store: Store) -> None:
    store.create_flag(_flag(), actor="rule:test", at=T0)
    same = store.change_flag("post:test:1", lambda current: None, actor="rule:test")
    unchanged = store.change_flag("post:test:1", _set(priority="P2"), actor="dana")
    assert same.version == unchanged.version == 1
    assert len(store.flag_events("post:test:1")) == 1
    with pytest.raises(KeyError):
        store.change_flag("post:test:unknown", _set(status="resolved"), actor="dana")


def test_a_stale_version_is_a_conflict_naming_who_changed_it(store: Store) -> None:
    store.create_flag(_flag(), actor="rule:test", at=T0)
    store.change_flag("post:test:1", _set(assignee="dana"), actor="dana", at=T0 + timedelta(minutes=2))

    with pytest.raises(ConflictError) as caught:
        store.change_flag("post:test:1", _set(status="dismissed"), actor="lee", if_version=1)
    assert caught.value.expected == 1 and caught.value.actual == 2
    assert caught.value.changed_by == "dana"
    assert "changed by dana at 2026-11-20T18:02:00+00:00" in str(caught.value)
    stored = store.get_flag("post:test:1")
    assert stored is not None and stored.status == "open" and stored.version == 2
    assert len(store.flag_events("post:test:1")) == 2  # the stale write left no trace

    # The raw compare-and-set refuses a stale expected version too.
    with pytest.raises(ConflictError):
        store._replace_flag(stored.model_copy(update={"version": 3}), 1, store.flag_events("post:test:1")[0])


def test_without_if_version_a_lost_race_is_retried_so_both_changes_land(store: Store) -> None:
    """A flagging run and an agent change the same flag at once: neither change is lost."""
    store.create_flag(_flag(), actor="rule:test", at=T0)
    interfered = []

    def rule_escalates(current: Flag) -> FlagChange:
        if not interfered:
            # Between this read and the write, an agent acknowledges the flag.
            interfered.append(True)
            store.change_flag("post:test:1", _set(status="acknowledged", assignee="dana"), actor="dana")
        return FlagChange(current.model_copy(update={"priority": "P1", "score": 7.5}), "escalated")

    result = store.change_flag("post:test:1", rule_escalates, actor="rule:test")

    assert (result.priority, result.status, result.assignee, result.version) == ("P1", "acknowledged", "dana", 3)
    assert [e.action for e in store.flag_events("post:test:1")] == ["opened", "status", "escalated"]


def test_list_flags_orders_the_queue_and_filters(store: Store) -> None:
    rows = [
        ("a", "P2", 5.0, "open", "northwind", 0),
        ("b", "P4", 50.0, "open", "northwind", 1),
        ("c", "P1", 1.0, "acknowledged", "northwind", 2),
        ("d", "P2", 9.0, "responded", "northwind", 3),
        ("e", "P1", 99.0, "resolved", "northwind", 4),
        ("f", "P3", 2.0, "open", "contoso", 5),
        ("g", "P2", 5.0, "open", "northwind", 6),  # same priority and score as a, opened later
    ]
    for name, priority, score, status, brand, minutes in rows:
        opened = T0 + timedelta(minutes=minutes)
        flag = _flag(f"post:test:{name}", priority=priority, score=score, brand=brand, opened_at=opened)
        store.create_flag(flag.with_status(status, opened), actor="rule:test", at=opened)  # type: ignore[arg-type]

    def names(**kwargs: object) -> list[str]:
        return [f.id.removeprefix("post:test:") for f in store.list_flags(**kwargs)]  # type: ignore[arg-type]

    assert names() == ["c", "d", "a", "g", "f", "b"]  # active ones: P1 first, then score, then oldest
    assert names(limit=2) == ["c", "d"]
    assert names(brand="contoso") == ["f"]
    assert names(status=["resolved"]) == ["e"]
    assert names(status=["open"], brand="northwind") == ["a", "g", "b"]
    assert names(status=None) == ["e", "c", "d", "a", "g", "f", "b"]


# --------------------------------------------------------------------------- the rule and the store


def _spreading(make_post: MakePost, likes: int, native_id: str = "viral", **extra: object) -> Post:
    return make_post(
        source="mastodon",
        native_id=native_id,
        text="Lost my bag and nobody answers",
        created_at=T0 - timedelta(hours=2),
        crawled_at=T0,
        author={"handle": "@traveller", "followers": 120},
        engagement={"likes": likes},
        classification=Classification(
            sentiment="negative",
            sentiment_scores={"negative": 0.9, "neutral": 0.05, "positive": 0.05},
            touchpoint="fulfilment",
            touchpoint_scores={"fulfilment": 0.9, "other": 0.1},
            moment="misery",
            severity=0.9,
            model_version="test",
        ),
        **extra,
    )


def test_re_evaluation_escalates_one_flag_and_never_duplicates(store: Store, make_post: MakePost) -> None:
    rules = FlagRules(min_velocity=5, p1_score=6.0, p2_score=5.0, p3_score=4.0, reopen_margin=0.5)
    flag_id = post_flag_id("mastodon:viral")

    first = apply_flags(store, T0, rules, posts=[_spreading(make_post, likes=20)])
    assert first.opened == [flag_id]
    opened = store.get_flag(flag_id)
    assert opened is not None and opened.rule_version == RULE_VERSION and opened.opened_at == T0
    assert opened.priority == "P3"

    again = apply_flags(store, T0, rules, posts=[_spreading(make_post, likes=20)])
    assert again.unchanged == 1 and again.changed == 0
    assert len(store.flag_events(flag_id)) == 1  # re-running the same evaluation writes nothing

    later = T0 + timedelta(hours=1)
    hotter = apply_flags(store, later, rules, posts=[_spreading(make_post, likes=4000)])
    assert hotter.escalated == [flag_id]
    escalated = store.get_flag(flag_id)
    assert escalated is not None and escalated.priority == "P1" and escalated.version == 2
    assert escalated.opened_at == T0  # still the same flag
    assert store.flag_events(flag_id)[-1].action == "escalated"
    assert len(store.list_flags(status=None)) == 1

    # Cooling down never lowers the priority a care agent is already working to.
    cooler = apply_flags(store, later, rules, posts=[_spreading(make_post, likes=3000)])
    assert cooler.updated == [flag_id]
    stored = store.get_flag(flag_id)
    assert stored is not None and stored.priority == "P1"


def test_a_closed_flag_reopens_only_past_the_margin_and_says_so(store: Store, make_post: MakePost) -> None:
    # Scores are sums of bounded points (flows.flagging), so a margin of 15% is a big step.
    rules = FlagRules(min_velocity=5, p1_score=6.0, p2_score=5.0, p3_score=4.0, reopen_margin=0.15)
    flag_id = post_flag_id("mastodon:viral")
    apply_flags(store, T0, rules, posts=[_spreading(make_post, likes=100)])
    closed = store.change_flag(flag_id, _set(status="resolved", note="refunded"), actor="dana")
    score_when_closed = closed.score

    a_bit_worse = apply_flags(store, T0, rules, posts=[_spreading(make_post, likes=140)])
    assert a_bit_worse.unchanged == 1
    stored = store.get_flag(flag_id)
    assert stored is not None and stored.status == "resolved" and stored.score == score_when_closed

    much_worse = apply_flags(store, T0, rules, posts=[_spreading(make_post, likes=20_000)])
    assert much_worse.reopened == [flag_id]
    reopened = store.get_flag(flag_id)
    assert reopened is not None and reopened.status == "open" and reopened.resolved_at is None
    assert reopened.score >= score_when_closed * 1.15
    last = store.flag_events(flag_id)[-1]
    assert last.action == "reopened" and last.actor == f"rule:{RULE_VERSION}"
    assert last.note is not None and "15%" in last.note and "resolved" in last.note
    assert len(store.list_flags(status=None)) == 1


# --------------------------------------------------------------------------- two processes racing

_RACER = textwrap.dedent(
    """
    import sys
    from search import FlagChange, open_store

    store_url, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open_store(store_url) as store:
        for n in range(rounds):
            note = f"{name} {n}"
            store.change_flag(
                "post:test:race",
                lambda current, note=note: FlagChange(current, "note", note),
                actor=name,
                attempts=1000,
            )
    print("done")
    """
)


def _race(store: Store, store_url: str, tmp_path: Path, rounds: int = 12) -> list[str]:
    """Two processes add ``rounds`` notes each to one flag at once; returns the notes the log holds."""
    store.create_flag(_flag("post:test:race"), actor="rule:test", at=T0)
    script = tmp_path / "racer.py"
    script.write_text(_RACER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), store_url, name, str(rounds)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("agent-a", "agent-b")
    ]
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-2000:]
        assert out.strip() == "done"

    events = store.flag_events("post:test:race")
    flag = store.get_flag("post:test:race")
    assert flag is not None and flag.version == 1 + 2 * rounds
    # No lost update: every change of both processes is in the log, once, in version order.
    assert [e.version for e in events] == list(range(1, 2 * rounds + 2))
    return sorted(e.note for e in events[1:] if e.note)


_EVERY_NOTE = sorted(f"{name} {n}" for name in ("agent-a", "agent-b") for n in range(12))


def test_two_processes_racing_on_sqlite_lose_nothing(tmp_home: Path, tmp_path: Path) -> None:
    from search.sqlite import SqliteStore

    db = tmp_home / "race.db"
    with SqliteStore(db) as store:
        assert _race(store, str(db), tmp_path) == _EVERY_NOTE


@pytest.mark.elasticsearch
def test_two_processes_racing_on_elasticsearch_lose_nothing(
    es_url: str, es_prefix: str, tmp_home: Path, tmp_path: Path
) -> None:
    from search.elastic import ElasticStore

    # The racers inherit $MOMENTS_ES_PREFIX (set by es_url), so they share this index.
    with ElasticStore(es_url, index_prefix=es_prefix, refresh=True) as store:
        assert _race(store, es_url, tmp_path) == _EVERY_NOTE


def test_stale_if_version_from_another_process_is_refused(store: Store, tmp_path: Path) -> None:
    """Two people read version 1; the second to write gets a conflict, and the log holds only the first."""
    store.create_flag(_flag("post:test:both"), actor="rule:test", at=T0)
    seen = store.get_flag("post:test:both")
    assert seen is not None
    store.change_flag("post:test:both", _set(status="acknowledged"), actor="dana", if_version=seen.version)
    with pytest.raises(ConflictError):
        store.change_flag("post:test:both", _set(status="dismissed"), actor="lee", if_version=seen.version)
    events = store.flag_events("post:test:both")
    assert [(e.actor, e.action) for e in events] == [("rule:test", "opened"), ("dana", "status")]
    assert json.loads(store.get_flag("post:test:both").model_dump_json())["status"] == "acknowledged"  # type: ignore[union-attr]
