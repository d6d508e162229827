"""The triage app's account records: users, API tokens, login sessions and settings.

They live in the configured store beside the flags (:class:`search.store.Store`), so
every app process on one store sees the same users, sessions and tokens. Like
:mod:`moments.records`, these are pydantic models with UTC-only timestamps; the
store keeps each one as JSON.

No secret is ever a field here: a user has an argon2 *hash* of the password, a
token the SHA-256 of its secret, a session the SHA-256 of its cookie value. Hashing
and checking them is the triage app's job (:mod:`triage.accounts`); the core only
defines the shapes.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moments.records import UtcDatetime

Role = Literal["agent", "lead", "brand_manager", "admin"]
#: Every role, least to most privileged.
ROLES: tuple[Role, ...] = ("agent", "lead", "brand_manager", "admin")

#: A user name: a letter or digit, then letters, digits, ``.``, ``_``, ``@`` or ``-``; at most 64 characters.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: A token id: lower-case hex (it sits between ``_`` in ``mts_<id>_<secret>``).
TOKEN_ID = re.compile(r"^[0-9a-f]{8,64}$")
#: A SHA-256, as lower-case hex.
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


def check_user_name(name: str) -> str:
    """``name`` when it is a valid user name (:data:`USER_NAME`).

    Raises:
        ValueError: It is not.
    """
    if not USER_NAME.match(name):
        raise ValueError(
            f"invalid user name {name!r}: use letters, digits, '.', '_', '@' or '-' "
            "(starting with a letter or digit), at most 64 characters"
        )
    return name


class User(_Record):
    """A person (or integration owner) who may use the triage app.

    Attributes:
        name: The login name, unique in the store.
        role: What they may do; an API token of theirs acts with this role.
        password_hash: An argon2id PHC string (``$argon2id$...``), never the password.
        created_at: When the user was added.
        updated_at: When the record last changed (role, password, disabled).
        disabled: A disabled user can neither log in nor use a token.
    """

    name: str
    role: Role
    password_hash: str = Field(min_length=1)
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    disabled: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_user_name(value)


class ApiToken(_Record):
    """An API token for an integration, shown once as ``mts_<id>_<secret>``.

    Attributes:
        id: The public part, how the token is found and revoked.
        user: The user it acts as (with that user's role, checked at each use).
        token_hash: SHA-256 of the secret, as hex; the secret itself is never stored.
        created_at: When it was issued.
        revoked_at: When it was revoked (``None``: valid while its user is enabled).
        last_used_at: When it last authenticated (updated at most about once a minute).
    """

    id: str = Field(pattern=TOKEN_ID.pattern)
    user: str
    token_hash: str = Field(pattern=SHA256_HEX.pattern)
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None
    last_used_at: UtcDatetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Session(_Record):
    """A browser login session.

    Attributes:
        id: SHA-256 (hex) of the cookie value: a stolen copy of the store cannot log anyone in.
        user: Who is logged in.
        csrf_token: The token forms must echo back (not a credential on its own).
        created_at: When the user logged in.
        expires_at: After this the session is refused (and may be deleted).
    """

    id: str = Field(pattern=SHA256_HEX.pattern)
    user: str
    csrf_token: str = Field(min_length=16)
    created_at: UtcDatetime
    expires_at: UtcDatetime


class AppSetting(_Record):
    """A named piece of app configuration kept in the store (playbooks, SLAs ...).

    Attributes:
        key: Its name, e.g. ``playbook:refund`` or ``sla:P1``.
        value: Any JSON object; its meaning belongs to whoever owns the key.
        updated_at: When it was last written.
        updated_by: Who wrote it.
    """

    key: str = Field(min_length=1, max_length=200)
    value: dict[str, Any] = Field(default_factory=dict)
    updated_at: UtcDatetime
    updated_by: str | None = None
