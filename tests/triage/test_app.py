"""The triage web app over real HTTP: a uvicorn server on a loopback port, driven with httpx.

Each test starts the app (``triage.app.create_app``) in a background thread on a free
port, against SQLite in ``tmp_path`` and, when ``MOMENTS_TEST_ES_URL`` is set, a real
Elasticsearch. Flags and posts are written through the store; users through
``triage.accounts`` with a cheap argon2 hasher. Covered: login and cookie flags, CSRF,
the queue's order and filters, flag detail, every action and its compare-and-set,
roles (a matrix over every route in ``app.routes``), bearer tokens, two app processes
on one store, security headers, hostile post text, presence and the SLA arithmetic.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

import triage.accounts as accounts
from moments.accounts import ROLES, User
from moments.config import MomentsConfig, SlaTarget
from moments.records import Flag, FlagEvent, Post, post_flag_id, post_id, utc_now
from search.backends import open_store
from search.mapping import index_names
from search.store import Store
from triage.actions import parse_response_note, response_note, safe_url
from triage.app import create_app
from triage.auth import PUBLIC_PATHS, ROUTE_RULES, SESSION_COOKIE, may
from triage.sla import format_remaining, sla_state

PASSWORD = "correct horse battery staple"
#: One user per role (and a second agent).
USERS = {"alice": "agent", "bob": "agent", "lena": "lead", "mia": "brand_manager", "adam": "admin"}
BY_ROLE = {"agent": "alice", "lead": "lena", "brand_manager": "mia", "admin": "adam"}
HOSTILE_TEXT = "<script>alert(1)</script> my bag is gone <img src=x onerror=alert(1)>"
HOSTILE_NAME = "<b onmouseover=alert(2)>Mallory</b>"
HOSTILE_URL = "javascript:alert(1)"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with tiny parameters: the same code path at a thousandth of the cost (the server runs in-process)."""
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


# ------------------------------------------------------------------------------ stores and servers


def _es_call(url: str, path: str, method: str, body: bytes | None = None) -> None:
    request = urllib.request.Request(
        f"{url}/{path}", data=body, method=method, headers={"Content-Type": "application/json"}
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=30).close()


#: For the tests whose subject is the store's behaviour (sessions, CAS, queue filters, two processes):
#: run them on Elasticsearch too. The rest test the app layer, on SQLite only, to keep the suite fast.
BOTH_STORES = pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)], indirect=True
)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_home: Path, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in ``tmp_path``, or (with :data:`BOTH_STORES`) the test Elasticsearch under a private prefix."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield str(tmp_path / "triage.db")
        return
    url: str = request.getfixturevalue("es_url")
    prefix: str = request.getfixturevalue("es_prefix")
    yield url
    _es_call(url, f"{prefix}-app-v1?ignore_unavailable=true", "DELETE")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store the tests seed and inspect (another process, as far as the app knows)."""
    if store_url.startswith("http"):
        from search.elastic import ElasticStore

        # refresh=True: seeding is instantly visible. The app's flag writes wait for a refresh
        # ("wait_for"); a short interval on the flags index keeps those fast too.
        opened: Store = ElasticStore(store_url, refresh=True, backoff=0.05)
        flags_alias = index_names(os.environ["MOMENTS_ES_PREFIX"], "flags")[1]
        _es_call(store_url, f"{flags_alias}/_settings", "PUT", b'{"index":{"refresh_interval":"50ms"}}')
    else:
        opened = open_store(store_url)
    yield opened
    opened.close()


@dataclass
class Server:
    """One app process: a uvicorn server in a thread, on a free loopback port."""

    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _start(app: FastAPI) -> Server:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the triage app did not start")
        time.sleep(0.01)
    return Server(app, server, thread, f"http://127.0.0.1:{port}")


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(store_url: str) -> Iterator[StartServer]:
    """Starts app processes on the test store; each call is another process as far as the store knows."""
    servers: list[Server] = []

    def factory(**kwargs: Any) -> Server:
        server = _start(create_app(store_url, **kwargs))
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: StartServer, seeded: dict[str, Flag]) -> Server:
    return start_server()


# ------------------------------------------------------------------------------ seed data


def _post(native_id: str, *, source: str = "mastodon", lang: str = "en", **overrides: Any) -> Post:
    now = utc_now()
    fields: dict[str, Any] = {
        "id": post_id(source, native_id),
        "source": source,
        "native_id": native_id,
        "url": f"https://social.example/@someone/{native_id}",
        "brand": ["northwind"],
        "author": {"handle": f"@user{native_id}", "display_name": f"User {native_id}", "followers": 1500},
        "text": f"my flight {native_id} was cancelled and nobody answers",
        "lang": lang,
        "created_at": now - timedelta(hours=1),
        "crawled_at": now,
        "engagement": {"likes": 40, "shares": 12, "replies": 5},
        "engagement_history": [
            {"at": now - timedelta(minutes=50), "likes": 4, "shares": 1, "replies": 0},
            {"at": now - timedelta(minutes=20), "likes": 20, "shares": 6, "replies": 2},
            {"at": now - timedelta(minutes=2), "likes": 40, "shares": 12, "replies": 5},
        ],
        "classification": {
            "sentiment": "negative",
            "sentiment_scores": {"negative": 0.91, "neutral": 0.07, "positive": 0.02},
            "touchpoint": "booking",
            "touchpoint_scores": {"booking": 0.8, "baggage": 0.2},
            "moment": "misery",
            "severity": 0.8,
            "confidence": 0.9,
            "model_version": "test-1",
        },
    }
    fields.update(overrides)
    return Post.model_validate(fields)


def _flag(post: Post, priority: str, opened_minutes_ago: float, **overrides: Any) -> Flag:
    now = utc_now()
    fields: dict[str, Any] = {
        "id": post_flag_id(post.id),
        "brand": "northwind",
        "touchpoint": "booking",
        "post_ids": [post.id],
        "priority": priority,
        "score": 1.0,
        "reasons": ["negative and spreading: 40 interactions/h"],
        "opened_at": now - timedelta(minutes=opened_minutes_ago),
        "updated_at": now,
    }
    fields.update(overrides)
    return Flag.model_validate(fields)


@pytest.fixture
def seeded(store: Store) -> dict[str, Flag]:
    """Users of every role, and flags whose queue order differs from the store's (score) order.

    Default SLAs: P1 first response 15 min, P2 1 h, P3 4 h. Expected queue order:
    ``c`` (P1), ``b`` (P2, 10 min left), ``a`` (P2, 50 min left), ``e`` (P2, responded:
    resolution in 22 h), ``d`` (P3, first response 1 h overdue). ``f`` is resolved.
    """
    now = utc_now()
    for name, role in USERS.items():
        store.put_user(
            User.model_validate(
                {"name": name, "role": role, "password_hash": accounts.hash_password(PASSWORD), "created_at": now}
            )
        )
    posts = {
        "a": _post("a"),
        "b": _post("b", source="reddit"),
        "c": _post("c", lang="fr"),
        "d": _post("d"),
        "e": _post("e"),
        "f": _post("f"),
        "x": _post("x", source="reddit", text=HOSTILE_TEXT, url=HOSTILE_URL, author={"display_name": HOSTILE_NAME}),
    }
    store.upsert(posts.values())
    flags = {
        "a": _flag(posts["a"], "P2", 10, score=9.0),
        "b": _flag(posts["b"], "P2", 50, score=1.0),
        "c": _flag(posts["c"], "P1", 1, score=0.5, touchpoint="baggage"),
        "d": _flag(posts["d"], "P3", 300, score=8.0),
        "e": _flag(posts["e"], "P2", 120, score=7.0, status="responded", first_response_at=now - timedelta(hours=1)),
        "f": _flag(posts["f"], "P1", 30, score=9.9, status="resolved", resolved_at=now),
        "x": _flag(posts["x"], "P4", 5, score=0.1, brand="contoso", reasons=["<script>alert(3)</script>"]),
    }
    for flag in flags.values():
        store.create_flag(flag, actor="rule:test", at=flag.opened_at)
    return {key: store.get_flag(flag.id) or flag for key, flag in flags.items()}


# ------------------------------------------------------------------------------ clients


def login(server: Server, name: str) -> tuple[httpx.Client, str]:
    """A client logged in through the login form, and its session's CSRF token."""
    client = server.client()
    page = client.get("/login")
    assert page.status_code == 200
    token = client.cookies.get("moments_login_csrf")
    response = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token, "next": "/"})
    assert response.status_code == 303, response.text
    me = client.get("/api/me")
    assert me.status_code == 200, me.text
    return client, me.json()["csrf_token"]


def act(client: httpx.Client, csrf: str | None, flag_id: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(f"/api/flags/{flag_id}/actions", json=body, headers=headers)


def version(client: httpx.Client, flag_id: str) -> int:
    response = client.get(f"/api/flags/{flag_id}")
    assert response.status_code == 200, response.text
    return int(response.json()["flag"]["version"])


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


# ------------------------------------------------------------------------------ login and cookies


def test_triage_command_is_registered() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="moments.commands")}
    assert found.get("triage") == "triage.serve:register"


def test_login_sets_a_strict_session_cookie(server: Server, store: Store) -> None:
    client = server.client()
    assert client.get("/login").status_code == 200
    token = client.cookies.get("moments_login_csrf")
    response = client.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"})

    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert re.search(r"samesite=lax", cookie, re.IGNORECASE)
    assert "secure" not in attributes  # loopback: plain HTTP development works
    assert client.get("/").status_code == 200
    me = client.get("/api/me").json()
    assert me["user"] == "alice" and me["role"] == "agent" and me["via"] == "session" and len(me["csrf_token"]) >= 16


def test_cookie_is_secure_off_loopback(start_server: StartServer, seeded: dict[str, Flag]) -> None:
    server = start_server()
    response = server.client().post(
        "/api/login", json={"name": "alice", "password": PASSWORD}, headers={"Host": "triage.example.org"}
    )
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert re.search(r";\s*secure", cookie, re.IGNORECASE) and "httponly" in cookie.lower()


def test_bad_login_and_rate_limit(server: Server) -> None:
    client = server.client()
    client.get("/login")
    token = client.cookies.get("moments_login_csrf")
    wrong = client.post("/login", data={"name": "alice", "password": "nope" * 4, "csrf_token": token})
    assert wrong.status_code == 401 and "Invalid user name or password" in wrong.text
    assert SESSION_COOKIE not in client.cookies

    for _ in range(accounts.ACCOUNT_FAILURE_LIMIT):
        client.post("/api/login", json={"name": "bob", "password": "wrong password!"})
    limited = client.post("/api/login", json={"name": "bob", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    page = client.post("/login", data={"name": "bob", "password": PASSWORD, "csrf_token": token})
    assert page.status_code == 429 and "Too many failed logins" in page.text and page.headers["retry-after"]


def test_login_needs_the_login_form_token_and_next_stays_on_site(server: Server) -> None:
    client = server.client()
    forged = client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert forged.status_code == 403 and SESSION_COOKIE not in client.cookies
    client.get("/login")
    token = client.cookies.get("moments_login_csrf")
    response = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_logout_ends_the_session(server: Server) -> None:
    client, csrf = login(server, "alice")
    assert client.post("/logout").status_code == 403  # no CSRF token: refused
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401


# ------------------------------------------------------------------------------ CSRF, 401, 403


def test_csrf_required_for_session_state_changes(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    client, csrf = login(server, "alice")
    flag = seeded["a"]
    body = {"action": "acknowledge", "if_version": flag.version}

    assert act(client, None, flag.id, body).status_code == 403
    assert act(client, "not-the-token", flag.id, body).status_code == 403
    page = client.post(f"/flags/{flag.id}/actions", data={"action": "acknowledge", "if_version": str(flag.version)})
    assert page.status_code == 403
    assert [e.action for e in store.flag_events(flag.id)] == ["opened"]

    assert act(client, csrf, flag.id, body).status_code == 200
    assert store.get_flag(flag.id).status == "acknowledged"  # type: ignore[union-attr]


def test_unauthenticated_api_401_and_pages_redirect(server: Server, seeded: dict[str, Flag]) -> None:
    client = server.client()
    flag = seeded["a"]
    for method, path in [
        ("GET", "/api/flags"),
        ("GET", f"/api/flags/{flag.id}"),
        ("POST", f"/api/flags/{flag.id}/actions"),
        ("GET", "/api/me"),
    ]:
        response = client.request(method, path, json={"action": "acknowledge", "if_version": 1})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
    queue = client.get("/?brand=northwind")
    assert queue.status_code == 303 and queue.headers["location"] == "/login?next=%2F%3Fbrand%3Dnorthwind"
    page = client.get(f"/flags/{flag.id}")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Fflags%2F")
    post = client.post(f"/flags/{flag.id}/actions", data={"action": "acknowledge", "if_version": "1"})
    assert post.status_code == 303 and post.headers["location"].startswith("/login")


def test_brand_manager_reads_but_every_action_is_403(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    client, csrf = login(server, "mia")
    flag = seeded["a"]
    assert client.get("/api/flags").status_code == 200
    assert client.get(f"/flags/{flag.id}").status_code == 200
    assert 'name="action"' not in client.get(f"/flags/{flag.id}").text  # no action forms are offered
    bodies = [
        {"action": "assign", "assignee": "mia"},
        {"action": "acknowledge"},
        {"action": "respond", "text": "sorry"},
        {"action": "resolve"},
        {"action": "dismiss", "reason": "spam"},
        {"action": "note", "text": "hm"},
    ]
    token = accounts.new_token(store, "mia").token
    bearer = server.client(headers={"Authorization": f"Bearer {token}"})
    for body in bodies:
        full = {**body, "if_version": flag.version}
        assert act(client, csrf, flag.id, full).status_code == 403, body
        assert act(bearer, None, flag.id, full).status_code == 403, body
        form = {k: str(v) for k, v in full.items()} | {"csrf_token": csrf}
        assert client.post(f"/flags/{flag.id}/actions", data=form).status_code == 403, body
    assert [e.action for e in store.flag_events(flag.id)] == ["opened"]


# ------------------------------------------------------------------------------ the queue


@BOTH_STORES
def test_queue_orders_by_priority_then_sla_time_left(server: Server, seeded: dict[str, Flag]) -> None:
    client, _ = login(server, "alice")
    queue = client.get("/api/flags").json()
    ids = [entry["flag"]["id"] for entry in queue["entries"]]
    expected = [seeded[k].id for k in ("c", "b", "a", "e", "d", "x")]
    assert ids == expected
    by_id = {entry["flag"]["id"]: entry for entry in queue["entries"]}
    assert by_id[seeded["d"].id]["sla"]["first_response_breached"] is True
    assert by_id[seeded["d"].id]["sla"]["remaining_s"] < 0
    assert by_id[seeded["e"].id]["sla"]["next_due"] == "resolution"
    assert by_id[seeded["c"].id]["new_p1"] is True
    assert queue["counts"] == {"open": 5, "active": 6, "breached": 1, "shown": 6}

    page = client.get("/").text
    positions = [page.index(f"/flags/{seeded[k].id.replace(':', '%3A')}") for k in ("c", "b", "a", "e", "d")]
    assert positions == sorted(positions)
    assert 'http-equiv="refresh"' in page
    assert "new-p1" in page and "(1 new P1)" in page
    assert re.search(r"<strong>1</strong> breached", page)


@BOTH_STORES
def test_queue_filters(server: Server, seeded: dict[str, Flag]) -> None:
    client, csrf = login(server, "lena")
    assigned = act(client, csrf, seeded["b"].id, {"action": "assign", "assignee": "bob", "if_version": 1})
    assert assigned.status_code == 200

    def ids(**params: str) -> set[str]:
        response = client.get("/api/flags", params=params)
        assert response.status_code == 200, response.text
        return {entry["flag"]["id"] for entry in response.json()["entries"]}

    k = {key: flag.id for key, flag in seeded.items()}
    assert ids(brand="contoso") == {k["x"]}
    assert ids(touchpoint="baggage") == {k["c"]}
    assert ids(source="reddit") == {k["b"], k["x"]}
    assert ids(lang="fr") == {k["c"]}
    assert ids(assignee="bob") == {k["b"]}
    assert ids(status="resolved") == {k["f"]}
    assert ids(status="responded") == {k["e"]}
    assert k["f"] in ids(status="all")
    assert ids(brand="northwind", source="reddit") == {k["b"]}
    assert client.get("/api/flags", params={"status": "bogus"}).status_code == 422

    page = client.get("/", params={"source": "reddit", "brand": "", "status": ""}).text
    assert k["b"].replace(":", "%3A") in page and k["a"].replace(":", "%3A") not in page
    assert "assigned to bob" in page


# ------------------------------------------------------------------------------ one flag and actions


def test_flag_detail_json_and_page(server: Server, seeded: dict[str, Flag]) -> None:
    client, _ = login(server, "alice")
    flag = seeded["a"]
    detail = client.get(f"/api/flags/{flag.id}").json()
    assert detail["flag"]["id"] == flag.id and detail["flag"]["version"] == 1
    assert [p["id"] for p in detail["posts"]] == flag.post_ids
    assert detail["posts"][0]["author"]["followers"] == 1500
    assert [e["action"] for e in detail["events"]] == ["opened"]
    assert detail["sla"]["first_response_breached"] is False
    assert client.get("/api/flags/post:nope:1").status_code == 404

    page = client.get(f"/flags/{flag.id}")
    assert page.status_code == 200
    html = page.text
    assert '<svg class="chart"' in html and "forecast range" in html  # engagement with the forecast band
    assert "1,500 followers" in html
    assert 'href="https://social.example/@someone/a"' in html
    assert "negative and spreading" in html and "booking" in html and "0.91" in html
    assert client.get("/flags/post:nope:1").status_code == 404


@BOTH_STORES
def test_every_action(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    alice, csrf = login(server, "alice")
    flag_id = seeded["a"].id

    def ok(body: dict[str, Any]) -> dict[str, Any]:
        response = act(alice, csrf, flag_id, {**body, "if_version": version(alice, flag_id)})
        assert response.status_code == 200, response.text
        return dict(response.json())

    taken = ok({"action": "assign", "assignee": "alice"})
    assert taken["flag"]["assignee"] == "alice" and taken["event"]["action"] == "assigned"
    acked = ok({"action": "acknowledge"})
    assert acked["flag"]["status"] == "acknowledged"
    link = "https://social.example/r/1"
    # A template must be one of the flag's touchpoint playbook (here the built-in one for "booking").
    unknown = {"action": "respond", "text": "Sorry!", "template_id": "refund-1", "if_version": version(alice, flag_id)}
    refused = act(alice, csrf, flag_id, unknown)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "template_id"]
    template = "booking.apologise.1"
    responded = ok({"action": "respond", "text": "Sorry! DM us.", "link": link, "template_id": template})
    assert responded["flag"]["status"] == "responded" and responded["flag"]["first_response_at"]
    assert parse_response_note(responded["event"]["note"]) == ("Sorry! DM us.", link, template)
    noted = ok({"action": "note", "text": "customer rebooked"})
    assert noted["event"]["action"] == "note" and noted["event"]["changes"] == []
    resolved = ok({"action": "resolve"})
    assert resolved["flag"]["status"] == "resolved" and resolved["flag"]["resolved_at"]

    events = store.flag_events(flag_id)
    assert [e.action for e in events] == ["opened", "assigned", "status", "status", "note", "status"]
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e.actor == "alice" for e in events[1:])

    # Not applicable to a resolved flag: 409, nothing written.
    again = act(alice, csrf, flag_id, {"action": "acknowledge", "if_version": 6})
    assert again.status_code == 409 and again.json()["error"] == "invalid_transition"

    dismissed = act(alice, csrf, seeded["b"].id, {"action": "dismiss", "reason": "a bot", "if_version": 1})
    assert dismissed.status_code == 200 and dismissed.json()["flag"]["status"] == "dismissed"
    last = store.flag_events(seeded["b"].id)[-1]
    assert last.note == "a bot" and any(c.field == "status" and c.new == "dismissed" for c in last.changes)

    bad_bodies: list[dict[str, Any]] = [
        {"action": "dismiss", "if_version": 1},  # reason required
        {"action": "dismiss", "reason": "  ", "if_version": 1},
        {"action": "respond", "if_version": 1},  # text or link required
        {"action": "respond", "link": "javascript:alert(1)", "if_version": 1},
        {"action": "note", "text": "x"},  # if_version required
        {"action": "explode", "if_version": 1},
        {"action": "assign", "assignee": "nobody-here", "if_version": 1},  # no such user
    ]
    for bad in bad_bodies:
        assert act(alice, csrf, seeded["c"].id, bad).status_code == 422, bad
    assert act(alice, csrf, "post:nope:1", {"action": "note", "text": "x", "if_version": 1}).status_code == 404

    # An agent takes flags for themself only; a lead assigns anyone.
    to_bob = {"action": "assign", "assignee": "bob", "if_version": 1}
    assert act(alice, csrf, seeded["c"].id, to_bob).status_code == 403
    lena, lead_csrf = login(server, "lena")
    assert act(lena, lead_csrf, seeded["c"].id, to_bob).status_code == 200
    # ... and then it is bob's: an agent cannot take it from him.
    take = {"action": "assign", "assignee": "alice", "if_version": 2}
    assert act(alice, csrf, seeded["c"].id, take).status_code == 403


def test_page_actions_and_stale_page(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    alice, _ = login(server, "alice")
    bob, _ = login(server, "bob")
    flag = seeded["a"]
    alice_page = alice.get(f"/flags/{flag.id}").text
    bob_page = bob.get(f"/flags/{flag.id}").text
    assert 'name="if_version" value="1"' in alice_page

    done = alice.post(
        f"/flags/{flag.id}/actions",
        data={"csrf_token": form_csrf(alice_page), "if_version": "1", "action": "acknowledge"},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=acknowledge")
    stale = bob.post(
        f"/flags/{flag.id}/actions",
        data={"csrf_token": form_csrf(bob_page), "if_version": "1", "action": "dismiss", "reason": "dup"},
    )
    assert stale.status_code == 409
    assert "changed by alice" in stale.text and "reload" in stale.text
    assert [e.action for e in store.flag_events(flag.id)] == ["opened", "status"]
    assert store.get_flag(flag.id).status == "acknowledged"  # type: ignore[union-attr]

    invalid = bob.post(
        f"/flags/{flag.id}/actions", data={"csrf_token": form_csrf(bob_page), "if_version": "2", "action": "dismiss"}
    )
    assert invalid.status_code == 422 and "reason" in invalid.text


@BOTH_STORES
def test_stale_if_version_is_409_and_writes_nothing(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    alice, alice_csrf = login(server, "alice")
    bob, bob_csrf = login(server, "bob")
    flag = seeded["a"]

    first = act(alice, alice_csrf, flag.id, {"action": "acknowledge", "if_version": 1})
    assert first.status_code == 200
    second = act(bob, bob_csrf, flag.id, {"action": "resolve", "if_version": 1})

    assert second.status_code == 409
    body = second.json()
    assert body["error"] == "stale_version" and body["changed_by"] == "alice" and body["changed_at"]
    assert body["expected_version"] == 1 and body["current_version"] == 2
    events = store.flag_events(flag.id)
    assert [(e.version, e.actor, e.action) for e in events] == [(1, "rule:test", "opened"), (2, "alice", "status")]
    assert store.get_flag(flag.id).status == "acknowledged"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ tokens and processes


@BOTH_STORES
def test_bearer_token_works_and_revoked_one_is_401(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    issued = accounts.new_token(store, "bob")
    bot = server.client(headers={"Authorization": f"Bearer {issued.token}"})
    assert bot.get("/api/me").json() == {"user": "bob", "role": "agent", "via": "token", "csrf_token": None}
    # No CSRF token needed: a bearer header is never sent by a browser on its own.
    response = act(bot, None, seeded["a"].id, {"action": "note", "text": "from the bot", "if_version": 1})
    assert response.status_code == 200 and response.json()["event"]["actor"] == "bob"

    store.revoke_token(issued.token_id, at=utc_now())
    assert bot.get("/api/flags").status_code == 401
    assert act(bot, None, seeded["a"].id, {"action": "note", "text": "again", "if_version": 2}).status_code == 401
    bad = server.client(headers={"Authorization": "Bearer mts_abcdef12_wrong"})
    assert bad.get("/api/flags").status_code == 401


@BOTH_STORES
def test_two_app_processes_share_sessions_and_changes(
    start_server: StartServer, seeded: dict[str, Flag], store: Store
) -> None:
    one, two = start_server(), start_server()
    client, csrf = login(one, "alice")
    cookie = client.cookies.get(SESSION_COOKIE)
    other = two.client(cookies={SESSION_COOKIE: cookie})
    assert other.get("/api/me").json()["user"] == "alice"

    flag = seeded["a"]
    assert act(client, csrf, flag.id, {"action": "acknowledge", "if_version": 1}).status_code == 200
    assert other.get(f"/api/flags/{flag.id}").json()["flag"]["status"] == "acknowledged"
    stale = act(other, csrf, flag.id, {"action": "resolve", "if_version": 1})
    assert stale.status_code == 409 and stale.json()["changed_by"] == "alice"

    assert other.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/me").status_code == 401  # logged out everywhere at once


def test_presence_shows_who_has_a_flag_open(server: Server, seeded: dict[str, Flag]) -> None:
    alice, _ = login(server, "alice")
    bob, _ = login(server, "bob")
    flag = seeded["b"]
    assert bob.get(f"/flags/{flag.id}").status_code == 200

    entry = next(e for e in alice.get("/api/flags").json()["entries"] if e["flag"]["id"] == flag.id)
    assert [v["user"] for v in entry["viewers"]] == ["bob"]
    assert "bob viewing" in alice.get("/").text
    bob_entry = next(e for e in bob.get("/api/flags").json()["entries"] if e["flag"]["id"] == flag.id)
    assert bob_entry["viewers"] == []  # one's own view is not news
    assert "Also viewing: bob" in alice.get(f"/flags/{flag.id}").text


# ------------------------------------------------------------------------------ headers and escaping


def test_security_headers_on_every_response(server: Server, seeded: dict[str, Flag]) -> None:
    client, _ = login(server, "alice")
    anonymous = server.client()
    responses = [
        client.get("/"),
        client.get(f"/flags/{seeded['a'].id}"),
        client.get("/api/flags"),
        anonymous.get("/login"),
        anonymous.get("/api/flags"),
        anonymous.get("/"),
        anonymous.get("/static/app.css"),
        anonymous.get("/openapi.json"),
        client.get("/no-such-page"),
    ]
    nonces = set()
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert "form-action 'self'" in csp and "img-src 'self' data:" in csp
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
        assert nonce and "unsafe-inline" not in csp
        nonces.add(nonce.group(1))
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert len(nonces) == len(responses)  # a fresh nonce per response
    assert responses[6].status_code == 200 and "text/css" in responses[6].headers["content-type"]
    for page in responses[:2]:
        assert "<script" not in page.text and "http://" not in page.text.replace("http://www.w3.org", "")


def test_hostile_post_text_is_escaped_and_never_linked(server: Server, seeded: dict[str, Flag]) -> None:
    client, _ = login(server, "alice")
    flag = seeded["x"]
    for html in (client.get("/").text, client.get(f"/flags/{flag.id}").text):
        assert "<script>alert" not in html and "<img src=x" not in html and "<b onmouseover" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "&lt;b onmouseover=alert(2)&gt;Mallory&lt;/b&gt;" in html
        assert 'href="javascript:' not in html.lower() and "javascript:alert(1)" in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in client.get(f"/flags/{flag.id}").text

    # Notes and responses are escaped too; only an http(s) link becomes one.
    client, csrf = login(server, "bob")
    act(client, csrf, flag.id, {"action": "note", "text": "<script>alert(4)</script>", "if_version": 1})
    html = client.get(f"/flags/{flag.id}").text
    assert "<script>alert(4)" not in html and "&lt;script&gt;alert(4)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------ the role matrix


def _route_keys(app: FastAPI) -> list[tuple[str, str]]:
    """``(method, path)`` of every route the app serves, included routers flattened (FastAPI includes them lazily)."""
    keys = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            # The rule is looked up by the route's own path: a prefix added at include time would not be in it.
            assert context.path == route.path, f"include {route.path} without a prefix (put it on the APIRouter)"
            keys += [(method, route.path) for method in sorted(context.methods or ())]
        elif isinstance(route, Mount):
            assert route.path in PUBLIC_PATHS, f"mount {route.path} is not public and has no rule"
        else:
            path = getattr(route, "path", "")
            assert path in PUBLIC_PATHS, f"route {path} has no rule in triage.auth.ROUTE_RULES"
    return keys


def test_every_route_has_a_rule_and_roles_get_exactly_what_it_allows(
    server: Server, seeded: dict[str, Flag], store: Store
) -> None:
    keys = _route_keys(server.app)
    missing = [key for key in keys if key not in ROUTE_RULES]
    assert not missing, f"routes without a rule in triage.auth.ROUTE_RULES: {missing}"
    assert set(ROUTE_RULES) == set(keys), "rules for routes that do not exist"

    flag = seeded["c"]

    def revision(client: httpx.Client, api_path: str) -> int:
        response = client.get(api_path)  # an anonymous caller cannot read it: 0 will do
        return int(response.json()["revision"]) if response.status_code == 200 else 0

    def request(client: httpx.Client, csrf: str | None, method: str, path: str) -> httpx.Response:
        url = path.replace("{flag_id:path}", flag.id).replace("{touchpoint}", "fulfilment")
        headers = {"X-CSRF-Token": csrf or ""}
        if method == "GET":
            return client.get(url)
        if path == "/api/playbooks/{touchpoint}":
            current = revision(client, url)
            return client.put(url, json={"steps": [], "if_revision": current}, headers=headers)
        if path == "/api/slas":
            return client.put(url, json={"slas": {}, "if_revision": revision(client, url)}, headers=headers)
        if path in ("/playbooks/{touchpoint}", "/slas"):
            current = revision(client, "/api/playbooks/fulfilment" if path != "/slas" else "/api/slas")
            return client.post(url, data={"csrf_token": csrf or "", "if_revision": str(current)})
        if path.endswith("/actions"):
            current = version(client, flag.id) if csrf else 1  # an anonymous caller cannot read it
            body = {"action": "note", "text": "matrix", "if_version": current}
            if path.startswith("/api/"):
                return act(client, csrf, flag.id, body)
            return client.post(url, data={k: str(v) for k, v in body.items()} | {"csrf_token": csrf or ""})
        if path == "/api/login":
            return client.post(url, json={"name": "bob", "password": PASSWORD})
        if path == "/login":
            client.get("/login")
            token = client.cookies.get("moments_login_csrf") or ""
            return client.post(url, data={"name": "bob", "password": PASSWORD, "csrf_token": token})
        if path.startswith("/api/"):
            return client.post(url, headers={"X-CSRF-Token": csrf or ""})
        return client.post(url, data={"csrf_token": csrf or ""})

    sessions = {role: login(server, BY_ROLE[role]) for role in ROLES}
    for method, path in keys:
        rule = ROUTE_RULES[(method, path)]
        anonymous = request(server.client(), None, method, path)
        if rule == "public":
            assert anonymous.status_code not in (401, 403), (method, path)
            continue
        expected_anonymous = 401 if path.startswith("/api/") else 303
        assert anonymous.status_code == expected_anonymous, (method, path, anonymous.status_code)
        for role in ROLES:
            # A logout ends its session: give it a fresh one.
            client, csrf = login(server, BY_ROLE[role]) if path.endswith("/logout") else sessions[role]
            response = request(client, csrf, method, path)
            if may(role, rule):
                assert response.status_code in (200, 204, 303), (role, method, path, response.status_code)
            else:
                assert response.status_code == 403, (role, method, path, response.status_code)


def test_openapi_describes_the_api(server: Server) -> None:
    spec = server.client().get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/login",
        "/api/logout",
        "/api/me",
        "/api/flags",
        "/api/flags/{flag_id}",
        "/api/flags/{flag_id}/actions",
        "/api/playbooks",
        "/api/playbooks/{touchpoint}",
        "/api/slas",
        "/api/metrics",
    }
    schemas = spec["components"]["schemas"]
    for name in (
        "Queue",
        "FlagDetail",
        "ActionResult",
        "ConflictBody",
        "DismissAction",
        "RespondAction",
        "Flag",
        "Playbook",
        "PlaybookEdit",
        "SlaTable",
        "SlaEdit",
        "StaleBody",
        "TeamMetrics",
    ):
        assert name in schemas, name
    action = spec["paths"]["/api/flags/{flag_id}/actions"]["post"]
    assert "discriminator" in str(action["requestBody"])
    assert set(action["responses"]) >= {"200", "401", "403", "404", "409", "422"}
    assert schemas["DismissAction"]["required"] == ["if_version", "action", "reason"]


# ------------------------------------------------------------------------------ pure helpers


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_sla_state_due_times_and_breaches() -> None:
    slas = MomentsConfig().slas
    flag = Flag(id="f", post_ids=["p"], priority="P1", score=1, opened_at=T0, updated_at=T0)
    state = sla_state(flag, [], slas, T0 + timedelta(minutes=10))
    assert state.first_response_due == T0 + timedelta(minutes=15) and state.resolution_due == T0 + timedelta(hours=4)
    assert state.first_response_remaining == 300 and not state.breached and state.next_due == "first_response"

    late = sla_state(flag, [], slas, T0 + timedelta(minutes=20))
    assert late.first_response_breached and late.remaining == -300

    responded = flag.with_status("responded", T0 + timedelta(minutes=5))
    after = sla_state(responded, [], slas, T0 + timedelta(hours=5))
    assert not after.first_response_breached and after.resolution_breached and after.next_due == "resolution"

    # A responded event counts when the flag has no first_response_at (flags from older writers).
    event = FlagEvent.model_validate(
        {"flag_id": "f", "version": 2, "at": T0 + timedelta(minutes=30), "actor": "a", "action": "status",
         "changes": [{"field": "status", "old": "open", "new": "responded"}]}
    )  # fmt: skip
    by_event = sla_state(flag.model_copy(update={"status": "responded"}), [event], slas, T0 + timedelta(hours=1))
    assert by_event.first_response_at == event.at and by_event.first_response_breached

    closed = flag.with_status("dismissed", T0 + timedelta(minutes=5))
    done = sla_state(closed, [], slas, T0 + timedelta(days=1))
    assert done.remaining is None and not done.breached

    custom = {**slas, "P1": SlaTarget.model_validate({"first_response": "1m", "resolution": "2m"})}
    assert sla_state(flag, [], custom, T0 + timedelta(seconds=90)).first_response_breached
    assert format_remaining(-420) == "-7m" and format_remaining(3900) == "1h 05m" and format_remaining(None) == "-"


def test_response_notes_round_trip() -> None:
    cases = [
        ("Sorry!", "https://x.example/1", "refund-1"),
        ("Sorry!", None, None),
        (None, "https://x.example/1", None),
        ("link: https://looks.like/a/header", None, None),
        ("template: t\n\nand more", None, "t2"),
    ]
    for text, link, template in cases:
        assert parse_response_note(response_note(text, link, template)) == (text, link, template)


def test_safe_url_links_only_http() -> None:
    assert safe_url("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert safe_url("http://example.org") == "http://example.org"
    bad_urls = ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "/relative", "//host/x", "https://")
    for bad in (*bad_urls, None, ""):
        assert safe_url(bad) is None, bad
