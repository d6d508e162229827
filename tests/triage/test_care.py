"""Playbooks, SLA targets and breach events, team metrics and the feedback export, on real stores.

The app runs as in ``test_app.py`` (a uvicorn server on loopback, over SQLite and, for
tests marked :data:`BOTH_STORES`, the real Elasticsearch); the fixtures are that
module's. Metrics and breaches are computed from flags and events written through the
store's own compare-and-set, at fixed times, so every expected figure is worked out by
hand in the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_app import BOTH_STORES, Server, act, form_csrf, login

from models.taxonomy import DEFAULT_TAXONOMY
from moments.cli import main
from moments.config import MomentsConfig
from moments.records import Flag, FlagStatus, Post, post_flag_id, post_id, utc_now
from search.store import FlagChange, Store
from triage.actions import parse_response_note, response_note
from triage.feedback import parse_reason, touchpoint_label
from triage.metrics import percentile, team_metrics
from triage.playbooks import (
    STEPS,
    PlaybookEdit,
    StaleRevision,
    default_playbook,
    fill_template,
    get_playbook,
    save_playbook,
)
from triage.service_levels import (
    BREACH_ACTOR,
    breach_target,
    record_breaches,
    record_flag_breaches,
)

# ------------------------------------------------------------------------------ playbooks


def test_default_playbooks_cover_every_step_with_unique_template_ids() -> None:
    ids: list[str] = []
    for touchpoint in [tp.id for tp in DEFAULT_TAXONOMY] + ["booking"]:
        playbook = default_playbook(touchpoint)
        assert [step.step for step in playbook.steps] == list(STEPS)
        assert all(step.templates and step.guidance for step in playbook.steps), touchpoint
        ids += [template.id for _, template in playbook.templates()]
    assert len(ids) == len(set(ids))
    assert default_playbook("fulfilment").template("fulfilment.apologise.1") is not None


def test_fill_template_replaces_only_handle_and_touchpoint() -> None:
    text = "Hi {handle}, sorry about your {touchpoint}. {0} {handle.__class__} {{handle}}"
    filled = fill_template(text, handle="@ann", touchpoint="fulfilment")
    assert filled == "Hi @ann, sorry about your fulfilment and delivery. {0} {handle.__class__} {@ann}"
    assert fill_template("Hi {handle}", handle=None, touchpoint=None) == "Hi there"
    with pytest.raises(ValueError, match="unknown placeholder"):
        PlaybookEdit.model_validate(
            {"if_revision": 0, "steps": [{"step": "act", "templates": [{"id": "a.1", "text": "{secret}"}]}]}
        )
    with pytest.raises(ValueError, match="used twice"):
        PlaybookEdit.model_validate(
            {
                "if_revision": 0,
                "steps": [
                    {"step": "act", "templates": [{"id": "a.1", "text": "x"}]},
                    {"step": "apologise", "templates": [{"id": "a.1", "text": "y"}]},
                ],
            }
        )


@BOTH_STORES
def test_playbook_saves_are_compare_and_set_on_the_revision(store: Store) -> None:
    assert get_playbook(store, "fulfilment").revision == 0
    edit = PlaybookEdit.model_validate(
        {"if_revision": 0, "steps": [{"step": "apologise", "templates": [{"id": "f.sorry", "text": "Sorry {handle}"}]}]}
    )
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    saved = save_playbook(store, "fulfilment", edit, by="lena", at=at)
    assert saved.revision == 1
    again = get_playbook(store, "fulfilment")
    assert again.revision == 1 and again.updated_by == "lena" and again.template("f.sorry") is not None
    with pytest.raises(StaleRevision, match="changed by lena"):
        save_playbook(store, "fulfilment", edit, by="other", at=at)  # still says revision 0
    assert get_playbook(store, "fulfilment").updated_by == "lena"


def test_playbook_api_roles_and_conflicts(server: Server, seeded: dict[str, Flag]) -> None:
    lena, lena_csrf = login(server, "lena")
    alice, alice_csrf = login(server, "alice")
    mia, mia_csrf = login(server, "mia")
    listed = alice.get("/api/playbooks").json()
    assert {p["touchpoint"] for p in listed} >= {tp.id for tp in DEFAULT_TAXONOMY} | {"booking", "baggage"}
    body = {
        "if_revision": 0,
        "steps": [
            {"step": "acknowledge", "guidance": "be quick", "templates": [{"id": "bk.hi", "text": "Hi {handle}"}]}
        ],
    }
    assert alice.put("/api/playbooks/booking", json=body, headers={"X-CSRF-Token": alice_csrf}).status_code == 403
    assert mia.put("/api/playbooks/booking", json=body, headers={"X-CSRF-Token": mia_csrf}).status_code == 403
    assert lena.put("/api/playbooks/booking", json=body).status_code == 403  # no CSRF token
    saved = lena.put("/api/playbooks/booking", json=body, headers={"X-CSRF-Token": lena_csrf})
    assert saved.status_code == 200 and saved.json()["revision"] == 1
    stale = lena.put("/api/playbooks/booking", json=body, headers={"X-CSRF-Token": lena_csrf})
    assert stale.status_code == 409
    assert stale.json()["error"] == "stale_revision" and stale.json()["changed_by"] == "lena"
    assert alice.get("/api/playbooks/booking").json()["steps"][0]["templates"] == [
        {"id": "bk.hi", "text": "Hi {handle}"}
    ]
    assert alice.get("/api/playbooks/bad%20id").status_code == 404

    # The saved template is the only one an agent may use now; the old default is refused.
    flag = seeded["a"]
    old = {"action": "respond", "text": "x", "template_id": "booking.apologise.1", "if_version": flag.version}
    assert act(alice, alice_csrf, flag.id, old).status_code == 422
    new = {**old, "template_id": "bk.hi"}
    assert act(alice, alice_csrf, flag.id, new).status_code == 200


def test_playbook_page_edit_form_and_stale_form(server: Server, seeded: dict[str, Flag]) -> None:
    lena, _ = login(server, "lena")
    bob, _ = login(server, "bob")
    page = lena.get("/playbooks/booking")
    assert page.status_code == 200 and 'name="if_revision" value="0"' in page.text
    form = {
        "csrf_token": form_csrf(page.text),
        "if_revision": "0",
        "guidance.apologise": "Say sorry first.",
        "template_id.apologise.0": "booking.apologise.1",
        "template_text.apologise.0": "Sorry, {handle}!",
        "template_text.apologise.1": "We let you down, {handle}.",  # a new alternative without an id
        "template_text.act.0": "DM us, {handle}.",
    }
    saved = lena.post("/playbooks/booking", data=form)
    assert saved.status_code == 303 and saved.headers["location"] == "/playbooks/booking?saved=1"
    playbook = lena.get("/api/playbooks/booking").json()
    steps = {step["step"]: step for step in playbook["steps"]}
    assert [t["id"] for t in steps["apologise"]["templates"]] == ["booking.apologise.1", "booking.apologise.2"]
    assert steps["apologise"]["guidance"] == "Say sorry first."
    assert steps["act"]["templates"] == [{"id": "booking.act.1", "text": "DM us, {handle}."}]
    assert steps["acknowledge"]["templates"] == []

    stale = lena.post("/playbooks/booking", data=form)  # the same form again: revision 0 is stale
    assert stale.status_code == 409 and "changed by lena" in stale.text and "reload" in stale.text
    bad = lena.post("/playbooks/booking", data={**form, "if_revision": "1", "template_text.act.0": "{oops}"})
    assert bad.status_code == 422 and "unknown placeholder" in bad.text

    agent_page = bob.get("/playbooks/booking").text
    assert "Sorry, {handle}!" in agent_page and 'name="if_revision"' not in agent_page  # read only
    forbidden = bob.post("/playbooks/booking", data={**form, "csrf_token": form_csrf(agent_page), "if_revision": "1"})
    assert forbidden.status_code == 403


def test_flag_page_offers_filled_templates_and_records_the_one_used(
    server: Server, seeded: dict[str, Flag], store: Store
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    post = store.get(seeded["a"].post_ids[0])
    assert post is not None
    store.upsert([post.model_copy(update={"author": post.author.model_copy(update={"handle": hostile})})])
    alice, _ = login(server, "alice")
    flag = seeded["a"]
    page = alice.get(f"/flags/{flag.id}?template=booking.apologise.1").text
    assert "Playbook: booking" in page and 'class="use-template"' in page
    assert hostile not in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # the handle, escaped
    assert '<option value="booking.apologise.1" selected>' in page
    assert "we are sorry about your booking" in page  # the textarea holds the filled text

    # Picking a template and leaving the text blank logs the template's text, filled in.
    response = alice.post(
        f"/flags/{flag.id}/actions",
        data={
            "csrf_token": form_csrf(page),
            "if_version": str(flag.version),
            "action": "respond",
            "template_id": "booking.acknowledge.2",
            "text": "",
        },
    )
    assert response.status_code == 303, response.text
    text, _, template = parse_response_note(store.flag_events(flag.id)[-1].note)
    assert template == "booking.acknowledge.2"
    assert text == f"Thanks for flagging this, {hostile}. A member of our team is looking at it now."


# ------------------------------------------------------------------------------ SLA targets


def test_sla_overrides_drive_the_queue_and_need_a_lead(server: Server, seeded: dict[str, Flag]) -> None:
    lena, lena_csrf = login(server, "lena")
    alice, alice_csrf = login(server, "alice")
    table = alice.get("/api/slas").json()
    assert table["revision"] == 0 and table["overridden"] == [] and table["slas"]["P2"]["first_response"] == "1h"

    def queue_entry(flag_id: str) -> dict[str, Any]:
        entries = alice.get("/api/flags").json()["entries"]
        return next(e for e in entries if e["flag"]["id"] == flag_id)

    assert not queue_entry(seeded["a"].id)["sla"]["breached"]  # P2 opened 10 min ago: 50 min left
    body = {"slas": {"P2": {"first_response": "5m", "resolution": "24h"}}, "if_revision": 0}
    assert alice.put("/api/slas", json=body, headers={"X-CSRF-Token": alice_csrf}).status_code == 403
    saved = lena.put("/api/slas", json=body, headers={"X-CSRF-Token": lena_csrf})
    assert saved.status_code == 200 and saved.json()["overridden"] == ["P2"] and saved.json()["revision"] == 1
    assert queue_entry(seeded["a"].id)["sla"]["breached"]  # now 5 min late
    assert lena.put("/api/slas", json=body, headers={"X-CSRF-Token": lena_csrf}).status_code == 409
    shorter = {"slas": {"P1": {"first_response": "4h", "resolution": "1h"}}, "if_revision": 1}
    assert lena.put("/api/slas", json=shorter, headers={"X-CSRF-Token": lena_csrf}).status_code == 422

    # The page: P2 shows as overridden; "follow the config" removes the override.
    page = lena.get("/slas").text
    assert 'name="first_response.P2" value="5m"' in page and "config: 1h / 1d" in page
    reset = lena.post("/slas", data={"csrf_token": form_csrf(page), "if_revision": "1", "reset.P2": "1"})
    assert reset.status_code == 303
    assert lena.get("/api/slas").json()["overridden"] == []
    stale = lena.post("/slas", data={"csrf_token": form_csrf(page), "if_revision": "1", "first_response.P1": "5m"})
    assert stale.status_code == 409 and "changed by lena" in stale.text
    bad = lena.post("/slas", data={"csrf_token": form_csrf(page), "if_revision": "2", "first_response.P1": "soon"})
    assert bad.status_code == 422 and "P1" in bad.text
    assert 'name="first_response.P1"' not in alice.get("/slas").text  # agents read the targets only


# ------------------------------------------------------------------------------ breaches


def _breaches(store: Store, flag_id: str) -> list[str]:
    return [target for e in store.flag_events(flag_id) if (target := breach_target(e))]


@BOTH_STORES
def test_breaches_are_recorded_once_per_flag_and_target(seeded: dict[str, Flag], store: Store) -> None:
    now = utc_now()
    written = record_breaches(store, now)
    # d: P3 opened 5 h ago, first response due after 4 h. Nothing else active is late.
    assert [(b.flag_id, b.target) for b in written] == [(seeded["d"].id, "first_response")]
    assert record_breaches(store, now) == []
    assert record_breaches(store, now + timedelta(seconds=1)) == []
    events = store.flag_events(seeded["d"].id)
    assert _breaches(store, seeded["d"].id) == ["first_response"]
    breach = events[-1]
    assert breach.actor == BREACH_ACTOR and breach.note and breach.note.startswith("sla_breached: first_response (P3")
    # Closed flags too when asked: f was resolved after its 15-minute first response target, unanswered.
    closed = record_breaches(store, now, statuses=None)
    assert [(b.flag_id, b.target) for b in closed] == [(seeded["f"].id, "first_response")]


@BOTH_STORES
def test_concurrent_breach_runs_write_one_event(seeded: dict[str, Flag], store: Store) -> None:
    slas = MomentsConfig().slas
    later = utc_now() + timedelta(hours=5)  # c (P1, opened a minute ago) is then past both targets
    results: list[list[Any]] = []

    def run() -> None:
        results.append(record_flag_breaches(store, seeded["c"].id, slas, later))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(b.target for found in results for b in found) == ["first_response", "resolution"]
    assert sorted(_breaches(store, seeded["c"].id)) == ["first_response", "resolution"]


def test_serving_the_queue_records_breaches_and_shows_current_versions(
    server: Server, seeded: dict[str, Flag], store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, csrf = login(server, "alice")
    entries = alice.get("/api/flags").json()["entries"]
    d = next(e for e in entries if e["flag"]["id"] == seeded["d"].id)
    assert d["flag"]["version"] == 2 and _breaches(store, seeded["d"].id) == ["first_response"]
    # The version the queue showed is the one to act on.
    assert act(alice, csrf, seeded["d"].id, {"action": "acknowledge", "if_version": 2}).status_code == 200
    assert "sla_breached: first_response" in alice.get(f"/flags/{seeded['d'].id}").text  # in the event log

    # The command for a schedule: only what is new, once.
    assert main(["triage", "breaches", "--all", "--json", "--store", store_url]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["flag_id"], r["target"]) for r in rows] == [(seeded["f"].id, "first_response")]
    assert main(["triage", "breaches", "--all", "--store", store_url]) == 0
    assert "0 breach events written" in capsys.readouterr().out


# ------------------------------------------------------------------------------ metrics

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BRAND = "northwind"


def _customer_post(native_id: str, handle: str, at: datetime, sentiment: str, brand: str = BRAND) -> Post:
    scores = {"negative": 0.1, "neutral": 0.1, "positive": 0.1} | {sentiment: 0.8}
    return Post.model_validate(
        {
            "id": post_id("mastodon", native_id),
            "source": "mastodon",
            "native_id": native_id,
            "url": f"https://social.example/{native_id}",
            "brand": [brand],
            "author": {"handle": handle, "display_name": handle.strip("@").title()},
            "text": f"{sentiment} post {native_id} by {handle}",
            "created_at": at,
            "crawled_at": at,
            "classification": {
                "sentiment": sentiment,
                "sentiment_scores": scores,
                "touchpoint": "fulfilment",
                "touchpoint_scores": {"fulfilment": 0.9},
                "moment": {"negative": "misery", "positive": "magic"}.get(sentiment, "neutral"),
                "severity": 0.5,
                "confidence": 0.9,
                "model_version": "test",
            },
        }
    )


def _status(status: FlagStatus, at: datetime, note: str | None = None) -> Callable[[Flag], FlagChange]:
    def change(current: Flag) -> FlagChange:
        return FlagChange(current.with_status(status, at), "status", note)

    return change


def _worked_flag(
    store: Store,
    post: Post,
    priority: str,
    opened: datetime,
    steps: list[tuple[str, FlagStatus, timedelta, str | None]],
) -> Flag:
    """A flag on ``post`` opened at ``opened``, then moved by (actor, status, after opening, template) steps."""
    flag = Flag.model_validate(
        {
            "id": post_flag_id(post.id),
            "brand": BRAND,
            "touchpoint": "fulfilment",
            "post_ids": [post.id],
            "priority": priority,
            "score": 1.0,
            "opened_at": opened,
            "updated_at": opened,
        }
    )
    store.create_flag(flag, actor="rule:test", at=opened)
    for actor, status, after, template in steps:
        note = response_note("Sorry!", None, template) if status == "responded" else None
        store.change_flag(flag.id, _status(status, opened + after, note), actor=actor, at=opened + after)
    return store.get_flag(flag.id) or flag


@BOTH_STORES
def test_team_metrics_from_real_flags_and_events(store: Store) -> None:
    m = timedelta(minutes=1)
    h = timedelta(hours=1)
    posts = {
        "ann": _customer_post("a1", "@ann", T0 - 10 * m, "negative"),
        "ben": _customer_post("b1", "@ben", T0 + 50 * m, "negative"),
        "cat": _customer_post("c1", "@cat", T0 + 110 * m, "negative"),
        "dan": _customer_post("d1", "@dan", T0 + 140 * m, "negative"),
    }
    later = [
        _customer_post("a2", "@ann", T0 + 5 * h, "neutral"),  # ann came back happy: recovered
        _customer_post("b2", "@ben", T0 + 8 * h, "negative"),  # ben did not ...
        _customer_post("b3", "@ben", T0 + 8 * h, "positive", brand="contoso"),  # ... about this brand
    ]
    store.upsert([*posts.values(), *later])
    # A (P1): alice answers in 10 min with template .1 and resolves after 2 h: both targets met.
    _worked_flag(
        store,
        posts["ann"],
        "P1",
        T0,
        [("alice", "responded", 10 * m, "fulfilment.apologise.1"), ("alice", "resolved", 2 * h, None)],
    )
    # B (P1): bob answers after 30 min (target 15) with template .2 and resolves after 6 h (target 4): both missed.
    _worked_flag(
        store,
        posts["ben"],
        "P1",
        T0 + h,
        [("bob", "responded", 30 * m, "fulfilment.apologise.2"), ("bob", "resolved", 6 * h, None)],
    )
    # C (P2): alice answers in 20 min without a template; resolution still running.
    _worked_flag(store, posts["cat"], "P2", T0 + 2 * h, [("alice", "responded", 20 * m, None)])
    # D (P2): dismissed by alice after 30 min: no response time, no resolve time, both targets met.
    _worked_flag(store, posts["dan"], "P2", T0 + 150 * m, [("alice", "dismissed", 30 * m, None)])

    metrics = team_metrics(store, MomentsConfig(), since=T0 - h, until=T0 + 12 * h, now=T0 + 12 * h)
    overall = metrics.overall
    assert metrics.flags == 4 and overall.flags == 4
    assert (overall.first_response.count, overall.first_response.median_s) == (3, 1200)
    assert overall.first_response.p90_s == pytest.approx(1680)  # 1200 + 0.8 * (1800 - 1200)
    assert (overall.resolve.count, overall.resolve.median_s) == (2, 14400)
    assert overall.resolve.p90_s == pytest.approx(20160)
    assert (overall.first_response_sla.met, overall.first_response_sla.decided) == (3, 4)
    assert (overall.resolution_sla.met, overall.resolution_sla.decided) == (2, 3)
    assert set(metrics.by_priority) == {"P1", "P2"} and metrics.by_priority["P1"].resolve.median_s == 14400
    alice, bob = metrics.by_agent["alice"], metrics.by_agent["bob"]
    assert alice.first_response.count == 2 and alice.first_response.median_s == 900
    assert alice.first_response_sla.rate == 1 and alice.resolution_sla.rate == 1
    assert bob.first_response_sla.rate == 0 and bob.resolve.median_s == 21600 and bob.resolution_sla.rate == 0

    recovery = metrics.recovery
    assert (recovery.resolved, recovery.measurable, recovery.recovered, recovery.rate) == (2, 2, 1, 0.5)
    by_template = {row.template_id: (row.resolved, row.recovered, row.rate) for row in recovery.by_template}
    assert by_template == {"fulfilment.apologise.1": (1, 1, 1.0), "fulfilment.apologise.2": (1, 0, 0.0)}

    # A later period holds none of these flags.
    empty = team_metrics(store, MomentsConfig(), since=T0 + 12 * h, until=T0 + 24 * h, now=T0 + 24 * h)
    assert empty.flags == 0 and empty.overall.first_response.median_s is None and empty.recovery.rate is None


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 0.0, 20.0], 90) == pytest.approx(18.0)


def test_metrics_api_and_page_are_for_leads(server: Server, seeded: dict[str, Flag]) -> None:
    lena, _ = login(server, "lena")
    alice, _ = login(server, "alice")
    mia, _ = login(server, "mia")
    response = lena.get("/api/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body["flags"] == len(seeded) and body["overall"]["flags"] == len(seeded)
    assert lena.get("/api/metrics", params={"since": "2026-03-02", "until": "2026-03-01"}).status_code == 422
    assert alice.get("/api/metrics").status_code == 403 and mia.get("/api/metrics").status_code == 403
    page = lena.get("/metrics")
    assert page.status_code == 200 and "Recovery rate" in page.text and "Per agent" in page.text
    assert alice.get("/metrics").status_code == 403
    assert 'href="/metrics"' in page.text and 'href="/metrics"' not in alice.get("/").text


def test_scorecard_page_for_managers_and_leads_only(server: Server, seeded: dict[str, Flag]) -> None:
    mia, _ = login(server, "mia")
    alice, _ = login(server, "alice")
    page = mia.get("/scorecard", params={"brand": "northwind"})
    assert page.status_code == 200
    assert "Moments scorecard: northwind" in page.text and "By touchpoint" in page.text and "<svg" in page.text
    nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in page.text  # the report's stylesheet, allowed by this response's nonce
    assert alice.get("/scorecard").status_code == 403
    assert mia.get("/scorecard", params={"since": "yesterday"}).status_code == 200  # unreadable: the default period


# ------------------------------------------------------------------------------ feedback export


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("not negative", ("sentiment", "not_negative")),
        ("Not negative: positive", ("sentiment", "positive")),
        ("neutral", ("sentiment", "neutral")),
        ("wrong touchpoint: delivery", ("touchpoint", "fulfilment")),
        ("wrong touchpoint: Customer support", ("touchpoint", "customer_support")),
        ("wrong touchpoint: price_billing", ("touchpoint", "price_billing")),
        ("wrong touchpoint: Lounge access", ("touchpoint", "lounge_access")),
        ("spam", ("spam", "spam")),
        ("SPAM bot", ("spam", "spam")),
        ("duplicate", None),
        ("wrong touchpoint", None),
    ],
)
def test_dismissal_reasons_become_labels(reason: str, expected: tuple[str, str] | None) -> None:
    label = parse_reason(reason)
    assert (None if label is None else (label.kind, label.label)) == expected


def test_touchpoint_words_map_to_default_ids() -> None:
    assert touchpoint_label("delivery") == "fulfilment"
    assert touchpoint_label("Returns and recovery") == "returns_recovery"
    assert touchpoint_label("experience") == "experience"  # two labels have it: kept as written


def test_feedback_export_writes_labelled_jsonl(
    seeded: dict[str, Flag], store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reasons = {"a": "not negative", "b": "wrong touchpoint: delivery", "c": "spam", "d": "handled by phone"}
    for key, reason in reasons.items():
        flag = seeded[key]
        store.change_flag(flag.id, _status("dismissed", utc_now(), reason), actor="alice", if_version=flag.version)
    # A burst: one line per post of it.
    burst = seeded["e"].model_copy(
        update={"id": "burst:northwind:1", "kind": "burst", "post_ids": seeded["e"].post_ids + seeded["x"].post_ids}
    )
    store.create_flag(burst, actor="rule:test")
    store.change_flag(burst.id, _status("dismissed", utc_now(), "Not negative: neutral"), actor="bob")

    out = tmp_path / "out" / "feedback.jsonl"
    assert main(["feedback", "export", "-o", str(out), "--store", store_url]) == 0
    assert "feedback: 5 lines" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {tuple(sorted(row)) for row in rows} == {
        ("at", "flag_id", "label", "label_kind", "post_id", "reason", "text")
    }
    by_post = {row["post_id"]: (row["label_kind"], row["label"], row["reason"], row["flag_id"]) for row in rows}
    assert by_post[seeded["a"].post_ids[0]] == ("sentiment", "not_negative", "not negative", seeded["a"].id)
    assert by_post[seeded["b"].post_ids[0]][:2] == ("touchpoint", "fulfilment")
    assert by_post[seeded["c"].post_ids[0]][:2] == ("spam", "spam")
    assert seeded["d"].post_ids[0] not in by_post  # "handled by phone" is no label
    assert by_post[seeded["x"].post_ids[0]] == ("sentiment", "neutral", "Not negative: neutral", burst.id)
    post_a = store.get(seeded["a"].post_ids[0])
    assert post_a is not None and rows[0]["text"] == post_a.text and rows[0]["at"].endswith("Z")

    # --since in the future: nothing; to standard output.
    assert main(["feedback", "export", "--since", "2999-01-01", "--store", store_url]) == 0
    assert capsys.readouterr().out == ""
    assert main(["feedback", "export", "--since", "last tuesday", "--store", store_url]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["feedback"]) == 2  # no action: say what to do
