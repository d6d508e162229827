"""Triage accounts: users, API tokens, sessions and rate-limited logins, on SQLite and a real Elasticsearch.

Every test runs against both stores (the Elasticsearch half needs ``MOMENTS_TEST_ES_URL``,
which ``make test`` provides, and skips, or fails under ``CI=true``, without it).
``moments users`` is run in process through :func:`moments.cli.main`, as the console
script runs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from argon2 import PasswordHasher

import triage.accounts as accounts
from moments.accounts import ApiToken, AppSetting, User
from moments.cli import main
from search.backends import open_store
from search.store import RecordExists, Store
from triage.accounts import (
    ACCOUNT_FAILURE_LIMIT,
    ADDRESS_FAILURE_LIMIT,
    FAILURE_WINDOW,
    LoginRefused,
    authenticate_token,
    check_login,
    end_session,
    hash_password,
    new_session,
    new_token,
    session_user,
    sha256_hex,
    verify_password,
)

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

OpenStore = Callable[[], Store]


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with tiny parameters: the same code path, a thousandth of the cost (one test restores the real one)."""
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def store_url(request: pytest.FixtureRequest, tmp_home: Path) -> Iterator[str]:
    """What ``--store`` names: a SQLite file in a temporary home, or the test Elasticsearch with a private prefix."""
    if request.param == "sqlite":
        yield str(tmp_home / "moments.db")
        return
    url: str = request.getfixturevalue("es_url")
    prefix: str = request.getfixturevalue("es_prefix")
    yield url
    # The shared es_url fixture deletes the posts and flags indices; the app index is this package's.
    delete = urllib.request.Request(f"{url}/{prefix}-app-v1?ignore_unavailable=true", method="DELETE")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(delete, timeout=30).close()


@pytest.fixture
def connect(store_url: str) -> Iterator[OpenStore]:
    """Opens a new Store on the same location at each call (another app process, as far as the store knows)."""
    opened: list[Store] = []

    def factory() -> Store:
        if store_url.startswith("http"):
            from search.elastic import ElasticStore

            # refresh=True keeps the suite fast; the CLI runs with the default "wait_for".
            store: Store = ElasticStore(store_url, refresh=True, backoff=0.05)
        else:
            store = open_store(store_url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(connect: OpenStore) -> Store:
    return connect()


def _user(store: Store, name: str = "alice", role: str = "agent", password: str = PASSWORD) -> User:
    user = User.model_validate({"name": name, "role": role, "password_hash": hash_password(password), "created_at": T0})
    store.put_user(user)
    return user


def _cli(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


# ------------------------------------------------------------------------------ moments users


def test_users_command_is_registered() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="moments.commands")}
    assert found.get("users") == "triage.commands:register"


def test_add_with_password_stdin_stores_an_argon2id_hash(
    store_url: str, connect: OpenStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", PasswordHasher())  # the shipped parameters
    status = _cli(
        monkeypatch,
        ["users", "add", "alice", "--role", "agent", "--password-stdin", "--store", store_url],
        PASSWORD + "\n",
    )

    assert status == 0, capsys.readouterr().err
    assert "added user alice (agent)" in capsys.readouterr().out
    user = connect().get_user("alice")
    assert user is not None and user.role == "agent" and not user.disabled
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in user.model_dump_json()
    assert verify_password(PASSWORD, user.password_hash)
    assert not verify_password(PASSWORD + "!", user.password_hash)
    assert check_login(connect(), "alice", PASSWORD, "192.0.2.1", now=T0).name == "alice"


def test_no_default_password(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # stdin is not a terminal and --password-stdin is not given: refused, nothing created.
    status = _cli(monkeypatch, ["users", "add", "bob", "--role", "admin", "--store", store_url])

    assert status == 2
    assert "no password given" in capsys.readouterr().err
    assert store.get_user("bob") is None
    assert store.list_users() == []


def test_short_or_empty_password_refused(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["users", "add", "bob", "--role", "agent", "--password-stdin", "--store", store_url]
    for password, message in (("", "password is empty"), ("   ", "password is empty"), ("eleven-char", "at least 12")):
        assert _cli(monkeypatch, argv, password + "\n") == 2, password
        assert message in capsys.readouterr().err
    assert store.get_user("bob") is None
    # Twelve characters are enough.
    assert _cli(monkeypatch, argv, "twelve-chars\n") == 0


def test_terminal_prompt_asks_twice(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([PASSWORD, PASSWORD + "x", PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    argv = ["users", "add", "carol", "--role", "lead", "--store", store_url]
    monkeypatch.setattr(sys, "stdin", Tty())

    assert main(argv) == 2
    assert "do not match" in capsys.readouterr().err
    assert store.get_user("carol") is None
    assert main(argv) == 0
    user = store.get_user("carol")
    assert user is not None and verify_password(PASSWORD, user.password_hash)


def test_duplicate_user_refused_unless_an_explicit_update(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _user(store, "alice", "agent")
    argv = ["users", "add", "alice", "--role", "admin", "--password-stdin", "--store", store_url]

    assert _cli(monkeypatch, argv, "another long password\n") == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(RecordExists, match="alice"):
        store.put_user(first.model_copy(update={"role": "admin"}))
    assert store.get_user("alice") == first

    store.put_user(first.model_copy(update={"role": "lead"}), update=True)
    stored = store.get_user("alice")
    assert stored is not None and stored.role == "lead"
    with pytest.raises(KeyError):
        store.put_user(first.model_copy(update={"name": "nobody"}), update=True)


# ------------------------------------------------------------------------------ tokens


def _store_text(store: Store, store_url: str) -> str:
    """Everything the store holds, as text: the SQLite files' bytes, or every app document's source."""
    if not store_url.startswith("http"):
        return b"".join(p.read_bytes() for p in Path(store_url).parent.glob("moments.db*")).decode("latin-1")
    from search.elastic import ElasticStore

    assert isinstance(store, ElasticStore)
    response = store._client.search(index=store.app_alias, query={"match_all": {}}, size=1000)
    return json.dumps(dict(response))


def test_token_printed_once_authenticates_and_revoked_token_refused(
    store_url: str, connect: OpenStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = connect()
    _user(store, "bot", "brand_manager")

    assert _cli(monkeypatch, ["users", "token", "bot", "--store", store_url]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out.count("\n") == 1 and re.fullmatch(r"mts_[0-9a-f]{16}_[0-9a-f]{48}", token)
    token_id, secret = token.split("_")[1:]
    assert token_id in err and secret not in err

    user = authenticate_token(store, token, now=T0)
    assert user is not None and user.name == "bot" and user.role == "brand_manager"
    assert authenticate_token(store, f"Bearer {token}", now=T0) is not None
    for bad in (token[:-1] + ("0" if token[-1] != "0" else "1"), f"mts_{token_id}_", "mts_zz_x", "", token_id):
        assert authenticate_token(store, bad, now=T0) is None

    stored = store.get_token(token_id)
    assert stored is not None and stored.token_hash == sha256_hex(secret) and stored.last_used_at == T0
    assert secret not in _store_text(store, store_url)
    assert [t.id for t in store.list_tokens(user="bot")] == [token_id]

    assert _cli(monkeypatch, ["users", "revoke-token", token_id[:6], "--store", store_url]) == 0
    assert f"revoked token {token_id}" in capsys.readouterr().out
    assert authenticate_token(connect(), token, now=T0) is None
    revoked = store.get_token(token_id)
    assert revoked is not None and revoked.revoked_at is not None
    # Revoking again keeps the first time; an unknown id is bad usage.
    assert store.revoke_token(token_id, at=T0 + timedelta(days=1)).revoked_at == revoked.revoked_at
    assert _cli(monkeypatch, ["users", "revoke-token", "ffffffff", "--store", store_url]) == 2
    with pytest.raises(KeyError):
        store.revoke_token("0123456789abcdef", at=T0)


def test_disabled_user_refused_for_tokens_and_logins(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _user(store, "alice")
    token = new_token(store, "alice", now=T0).token
    assert authenticate_token(store, token, now=T0) is not None

    assert _cli(monkeypatch, ["users", "disable", "alice", "--store", store_url]) == 0
    assert "alice disabled" in capsys.readouterr().out
    assert authenticate_token(store, token, now=T0) is None
    with pytest.raises(LoginRefused) as refused:
        check_login(store, "alice", PASSWORD, "192.0.2.1", now=T0)
    assert refused.value.reason == "bad_credentials"
    with pytest.raises(Exception, match="disabled"):
        new_token(store, "alice", now=T0)
    assert _cli(monkeypatch, ["users", "list", "--json", "--store", store_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "name": "alice",
            "role": "agent",
            "created_at": "2026-03-01T12:00:00Z",
            "updated_at": listed[0]["updated_at"],
            "disabled": True,
            "active_tokens": 1,
        }
    ]
    assert "password" not in json.dumps(listed)

    assert _cli(monkeypatch, ["users", "enable", "alice", "--store", store_url]) == 0
    assert authenticate_token(store, token, now=T0) is not None


# ------------------------------------------------------------------------------ two processes


def test_two_stores_on_one_location_agree(connect: OpenStore) -> None:
    one, two = connect(), connect()

    _user(one, "alice", "lead")
    seen = two.get_user("alice")
    assert seen is not None and seen.role == "lead"
    assert [u.name for u in two.list_users()] == ["alice"]
    with pytest.raises(RecordExists):
        _user(two, "alice")

    token = new_token(two, "alice", now=T0)
    assert (authenticated := authenticate_token(one, token.token, now=T0)) is not None
    assert authenticated.name == "alice"
    assert [t.id for t in one.list_tokens()] == [token.token_id]

    cookie, session = new_session(one, seen, now=T0)
    found = session_user(two, cookie, now=T0 + timedelta(minutes=1))
    assert found is not None and found[0].name == "alice" and found[1].csrf_token == session.csrf_token
    assert cookie not in session.model_dump_json()  # only the cookie's hash is stored

    two.revoke_token(token.token_id, at=T0)
    assert authenticate_token(one, token.token, now=T0) is None
    assert end_session(two, cookie)
    assert session_user(one, cookie, now=T0) is None
    assert not end_session(one, cookie)

    assert one.record_login_failure("account:alice", T0, FAILURE_WINDOW) == 1
    assert two.record_login_failure("account:alice", T0 + timedelta(seconds=1), FAILURE_WINDOW) == 2
    assert one.login_failures("account:alice", T0 + timedelta(seconds=2), FAILURE_WINDOW) == [
        T0,
        T0 + timedelta(seconds=1),
    ]
    two.clear_login_failures("account:alice")
    assert one.login_failures("account:alice", T0 + timedelta(seconds=2), FAILURE_WINDOW) == []

    one.put_setting(AppSetting(key="sla:P1", value={"respond_within_minutes": 15}, updated_at=T0, updated_by="alice"))
    setting = two.get_setting("sla:P1")
    assert setting is not None and setting.value == {"respond_within_minutes": 15}
    assert two.get_setting("sla:P9") is None


def test_sessions_expire(store: Store) -> None:
    user = _user(store, "alice")
    cookie, session = new_session(store, user, now=T0, ttl=timedelta(hours=1))

    assert store.get_session(session.id) == session
    assert session_user(store, cookie, now=T0 + timedelta(minutes=59)) is not None
    assert session_user(store, cookie, now=T0 + timedelta(hours=1)) is None
    assert session_user(store, "not-a-cookie", now=T0) is None
    assert session_user(store, "", now=T0) is None


# ------------------------------------------------------------------------------ rate limits


def test_login_failures_limited_per_account(store: Store) -> None:
    _user(store, "alice")
    for i in range(ACCOUNT_FAILURE_LIMIT):
        with pytest.raises(LoginRefused) as refused:
            check_login(store, "alice", "wrong password!", f"198.51.100.{i}", now=T0 + timedelta(seconds=i))
        assert refused.value.reason == "bad_credentials"

    # The 6th attempt is refused even with the right password, from any address.
    sixth = T0 + timedelta(minutes=1)
    with pytest.raises(LoginRefused) as refused:
        check_login(store, "alice", PASSWORD, "203.0.113.7", now=sixth)
    assert refused.value.reason == "rate_limited"
    assert refused.value.retry_after == int((T0 + FAILURE_WINDOW - sixth).total_seconds())
    assert "try again in" in str(refused.value)
    # A refused attempt is not a failure: the lock ends one window after the failures that caused it.
    assert len(store.login_failures("account:alice", sixth, FAILURE_WINDOW)) == ACCOUNT_FAILURE_LIMIT

    later = T0 + FAILURE_WINDOW + timedelta(seconds=ACCOUNT_FAILURE_LIMIT)
    assert check_login(store, "alice", PASSWORD, "203.0.113.7", now=later).name == "alice"
    assert store.login_failures("account:alice", later, FAILURE_WINDOW) == []


def test_login_failures_limited_per_address(store: Store) -> None:
    _user(store, "alice")
    address = "2001:db8::1"
    for i in range(ADDRESS_FAILURE_LIMIT):
        # Different (unknown) names: no account limit is reached, the address's is.
        with pytest.raises(LoginRefused):
            check_login(store, f"guess{i}", PASSWORD, address, now=T0 + timedelta(seconds=i))

    with pytest.raises(LoginRefused) as refused:
        check_login(store, "alice", PASSWORD, address, now=T0 + timedelta(minutes=2))
    assert refused.value.reason == "rate_limited" and refused.value.retry_after is not None
    # Another address is not held back, and a good login does not reset the address's count.
    assert check_login(store, "alice", PASSWORD, "192.0.2.50", now=T0 + timedelta(minutes=2)).name == "alice"
    assert len(store.login_failures(f"address:{address}", T0 + timedelta(minutes=2), FAILURE_WINDOW)) == 20

    after = T0 + FAILURE_WINDOW + timedelta(seconds=ADDRESS_FAILURE_LIMIT)
    assert check_login(store, "alice", PASSWORD, address, now=after).name == "alice"


def test_login_rehashes_an_outdated_hash(store: Store) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    store.put_user(User(name="alice", role="agent", password_hash=old, created_at=T0))

    check_login(store, "alice", PASSWORD, "192.0.2.1", now=T0)
    stored = store.get_user("alice")
    assert stored is not None and stored.password_hash != old
    assert stored.password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert verify_password(PASSWORD, stored.password_hash)


def test_token_records_hold_no_secret() -> None:
    fields = set(ApiToken.model_fields)
    assert "secret" not in fields and "token" not in fields


def test_search_and_core_never_import_triage() -> None:
    for package in ("moments", "search"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"^\s*(from|import)\s+triage\b", text, re.M), path
