"""Accounts for the triage app: passwords, API tokens, login sessions and rate-limited logins.

Everything is kept in the configured store (:class:`search.store.Store`), beside the
flags, so two app processes on one store agree on who may do what, and on how many
logins just failed.

* **Passwords** are hashed with argon2id (``argon2-cffi``'s :class:`PasswordHasher`, its
  RFC 9106 defaults); a hash made with older parameters is replaced at the next good
  login. There is no default password: a user exists only once someone set one.
* **API tokens** are shown once, as ``mts_<id>_<secret>``. The store keeps the id and
  the SHA-256 of the secret, never the secret; a token acts with its user's role at
  the time of use, and stops working when revoked or when its user is disabled.
* **Sessions** are found by the SHA-256 of the cookie value, so the store alone cannot
  log anyone in; each carries a CSRF token for forms.
* **Logins** are limited per account and per client address (counters in the store):
  :data:`ACCOUNT_FAILURE_LIMIT` failures per account, or :data:`ADDRESS_FAILURE_LIMIT`
  per address, within :data:`FAILURE_WINDOW`, and further attempts are refused, even
  with the right password, until the oldest of those failures is older than the window.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from moments.accounts import USER_NAME, ApiToken, Session, User
from moments.errors import EXIT_USAGE, MomentsError, UsageError
from moments.records import utc_now
from search.store import Store

#: Failed logins of one account within :data:`FAILURE_WINDOW` after which its logins are refused.
ACCOUNT_FAILURE_LIMIT = 5
#: Failed logins from one client address within :data:`FAILURE_WINDOW` after which its logins are refused
#: (higher than the account limit: several people may share an office's address).
ADDRESS_FAILURE_LIMIT = 20
#: How long a failed login counts against its account and address.
FAILURE_WINDOW = timedelta(minutes=15)
#: The shortest password accepted (there is no composition rule: length is what counts).
MIN_PASSWORD_LENGTH = 12
#: The longest password accepted (argon2 takes any length; this only bounds the work one request costs).
MAX_PASSWORD_LENGTH = 1024
#: How a printed API token starts: ``mts_<id>_<secret>``.
TOKEN_PREFIX = "mts"
#: A token's ``last_used_at`` is written at most this often, so a busy integration is not one write per call.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
#: How long a login session lasts.
SESSION_TTL = timedelta(hours=12)

#: The password hasher: argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile:
#: t=3, m=64 MiB, p=4). Tests may swap in cheaper parameters.
PASSWORD_HASHER = PasswordHasher()


class LoginRefused(MomentsError):
    """A login was refused: bad credentials, or too many recent failures.

    Attributes:
        reason: ``bad_credentials`` (unknown name, wrong password or disabled user: one
            answer for all, so names cannot be probed) or ``rate_limited``.
        retry_after: For ``rate_limited``, whole seconds until a login may be tried again.
    """

    exit_code = EXIT_USAGE

    def __init__(self, reason: Literal["bad_credentials", "rate_limited"], *, retry_after: int | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        if reason == "rate_limited":
            message = f"too many failed logins; try again in {retry_after} seconds"
        else:
            message = "invalid user name or password"
        super().__init__(message)


# ------------------------------------------------------------------------------ passwords


def check_password_policy(password: str) -> str:
    """``password`` when it is acceptable as a new password.

    Raises:
        UsageError: It is empty, shorter than :data:`MIN_PASSWORD_LENGTH` or longer
            than :data:`MAX_PASSWORD_LENGTH` characters (exit 2).
    """
    if not password.strip():
        raise UsageError("the password is empty; there is no default password, so give one")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UsageError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (a PHC string starting ``$argon2id$``), salted afresh each call."""
    return PASSWORD_HASHER.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant-time inside argon2); a malformed hash never matches."""
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def rehash_if_needed(password: str, password_hash: str) -> str | None:
    """A new hash of ``password`` when ``password_hash`` was made with other parameters than today's, else ``None``.

    Call only after :func:`verify_password` accepted ``password``.
    """
    try:
        stale = PASSWORD_HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        stale = True
    return hash_password(password) if stale else None


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_hex(16))


def _waste_a_verification(password: str) -> None:
    """Verify against a hash nobody has, so an unknown name costs as long as a wrong password."""
    verify_password(password, _dummy_hash(PASSWORD_HASHER))


# ------------------------------------------------------------------------------ tokens


def sha256_hex(secret: str) -> str:
    """The SHA-256 of ``secret`` as lower-case hex: what the store keeps of a token or session secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class NewToken(NamedTuple):
    """A token just issued: unpacks as ``(token_id, secret)``; :attr:`token` is what to hand over, once."""

    token_id: str
    secret: str

    @property
    def token(self) -> str:
        return format_token(self.token_id, self.secret)


def format_token(token_id: str, secret: str) -> str:
    """The printed form of a token: ``mts_<id>_<secret>``."""
    return f"{TOKEN_PREFIX}_{token_id}_{secret}"


def parse_token(bearer: str) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a printed token (an ``Authorization: Bearer`` value works too), or ``None``."""
    text = bearer.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    prefix, _, rest = text.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id or not secret:
        return None
    if not all(c in "0123456789abcdef" for c in token_id) or len(token_id) > 64:
        return None
    return token_id, secret


def new_token(store: Store, user: str | User, *, now: datetime | None = None) -> NewToken:
    """Issue an API token for ``user``: store its id and the SHA-256 of its secret, return both.

    Raises:
        UsageError: No such user, or the user is disabled.
    """
    name = user.name if isinstance(user, User) else user
    stored = store.get_user(name) if USER_NAME.match(name) else None
    if stored is None:
        raise UsageError(f"no user {name!r}; add one with: moments users add {name} --role agent")
    if stored.disabled:
        raise UsageError(f"user {name!r} is disabled; a disabled user gets no token")
    secret = secrets.token_hex(24)
    token = ApiToken(
        id=secrets.token_hex(8), user=stored.name, token_hash=sha256_hex(secret), created_at=now or utc_now()
    )
    store.create_token(token)
    return NewToken(token.id, secret)


def authenticate_token(store: Store, bearer: str, *, now: datetime | None = None) -> User | None:
    """The user a token acts as (with that user's current role), or ``None`` for any token that must not work.

    Refused: a malformed token, an unknown id, a wrong secret (compared in constant
    time), a revoked token, a missing or disabled user.
    """
    parsed = parse_token(bearer)
    if parsed is None:
        return None
    token_id, secret = parsed
    token = store.get_token(token_id)
    if token is None:
        return None
    if not hmac.compare_digest(sha256_hex(secret), token.token_hash) or token.revoked_at is not None:
        return None
    user = store.get_user(token.user)
    if user is None or user.disabled:
        return None
    now = now or utc_now()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        store.touch_token(token.id, at=now)
    return user


# ------------------------------------------------------------------------------ logins


def _key(kind: str, value: str) -> str:
    # An over-long or odd value (a name no user can have) is counted under its hash.
    if len(value) <= 100 and value.isprintable():
        return f"{kind}:{value}"
    return f"{kind}:sha256:{sha256_hex(value)}"


def account_key(name: str) -> str:
    """The login-failure counter of an account."""
    return _key("account", name)


def address_key(address: str) -> str:
    """The login-failure counter of a client address."""
    return _key("address", address)


def _retry_after(failures: list[datetime], limit: int, now: datetime) -> int | None:
    """Whole seconds until fewer than ``limit`` of ``failures`` (oldest first) count, or ``None`` if fewer do now."""
    if len(failures) < limit:
        return None
    # The count drops below the limit when the failure at index len - limit leaves the window.
    until = failures[len(failures) - limit] + FAILURE_WINDOW
    return max(1, math.ceil((until - now).total_seconds()))


def check_login(store: Store, name: str, password: str, address: str, *, now: datetime | None = None) -> User:
    """The user ``name`` when ``password`` is theirs and no rate limit is reached; a failure is counted otherwise.

    Args:
        store: Where users and the failure counters live.
        name: The login name typed.
        password: The password typed.
        address: The client's address (the app decides which: the peer, or a trusted proxy's header).
        now: The clock (tests inject one).

    Raises:
        LoginRefused: ``rate_limited`` (with ``retry_after``) while :data:`ACCOUNT_FAILURE_LIMIT`
            failures of this account or :data:`ADDRESS_FAILURE_LIMIT` of this address
            fall within :data:`FAILURE_WINDOW`; refused attempts are not counted, so
            a lock-out ends one window after the failures that caused it. Otherwise
            ``bad_credentials`` for an unknown name, a wrong password or a disabled user.
    """
    now = now or utc_now()
    account, client = account_key(name), address_key(address)
    waits = [
        _retry_after(store.login_failures(account, now, FAILURE_WINDOW), ACCOUNT_FAILURE_LIMIT, now),
        _retry_after(store.login_failures(client, now, FAILURE_WINDOW), ADDRESS_FAILURE_LIMIT, now),
    ]
    limited = [wait for wait in waits if wait is not None]
    if limited:
        raise LoginRefused("rate_limited", retry_after=max(limited))
    user = store.get_user(name) if USER_NAME.match(name) else None
    if user is None:
        _waste_a_verification(password)
        ok = False
    else:
        ok = verify_password(password, user.password_hash) and not user.disabled
    if user is None or not ok:
        store.record_login_failure(account, now, FAILURE_WINDOW)
        store.record_login_failure(client, now, FAILURE_WINDOW)
        raise LoginRefused("bad_credentials")
    # A good login forgets the account's failures, not the address's: one good account
    # must not reset a counter that limits guessing at the others.
    store.clear_login_failures(account)
    fresh_hash = rehash_if_needed(password, user.password_hash)
    if fresh_hash is not None:
        latest = store.get_user(name) or user
        user = latest.model_copy(update={"password_hash": fresh_hash, "updated_at": now})
        store.put_user(user, update=True)
    return user


# ------------------------------------------------------------------------------ sessions


def new_session(
    store: Store, user: User, *, now: datetime | None = None, ttl: timedelta = SESSION_TTL
) -> tuple[str, Session]:
    """Start a session for ``user``: ``(cookie value, session)``; the store keeps only the cookie's hash."""
    now = now or utc_now()
    cookie = secrets.token_urlsafe(32)
    session = Session(
        id=sha256_hex(cookie),
        user=user.name,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
    )
    store.create_session(session)
    return cookie, session


def session_user(store: Store, cookie: str, *, now: datetime | None = None) -> tuple[User, Session] | None:
    """The user and session behind a cookie value, or ``None``: unknown, expired, or a missing or disabled user."""
    if not cookie:
        return None
    session = store.get_session(sha256_hex(cookie))
    if session is None or session.expires_at <= (now or utc_now()):
        return None
    user = store.get_user(session.user)
    if user is None or user.disabled:
        return None
    return user, session


def end_session(store: Store, cookie: str) -> bool:
    """Log out: delete the session behind a cookie value; whether there was one."""
    return bool(cookie) and store.delete_session(sha256_hex(cookie))
