"""``moments users``: the triage app's users and API tokens, in the configured store."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from moments.accounts import ROLES, ApiToken, User, check_user_name
from moments.cli import Commands
from moments.errors import UsageError
from moments.records import utc_now
from search.backends import open_store
from search.store import Store
from triage.accounts import (
    MIN_PASSWORD_LENGTH,
    TOKEN_PREFIX,
    check_password_policy,
    hash_password,
    new_token,
    parse_token,
)

DESCRIPTION = f"""\
Users of the triage app and their API tokens, kept in the store beside the flags
(--store, $MOMENTS_STORE, or the embedded store), so every app process on that store
sees them at once.

Roles: {", ".join(ROLES)}. There is no default user and no default password: add
each person with a password of at least {MIN_PASSWORD_LENGTH} characters, typed twice at a terminal or
piped in with --password-stdin. Passwords are stored as argon2id hashes.

An API token is printed once, as {TOKEN_PREFIX}_<id>_<secret>; the store keeps only its id
and a hash of the secret. It acts with its user's role, and stops working when it is
revoked or its user is disabled.

Without an action, lists the users (like `moments users list`).

examples:
  moments users add dana --role lead                   # asks for the password twice
  printf '%s\\n' "$PASSWORD" | moments users add bot --role agent --password-stdin
  moments users token bot > bot.token                  # the token, shown this once
  moments users tokens bot                             # its tokens: id, created, last used
  moments users revoke-token 3f9c2a                    # by id, or a unique prefix of one
  moments users disable dana
  moments users list --json

exit status: 0 done; 1 the store failed; 2 bad usage (an existing user, a short
password, no password on a non-terminal stdin, an unknown user or token).
"""


def _name(text: str) -> str:
    try:
        return check_user_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin with ``--password-stdin``, else typed twice at a terminal."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        check_password_policy(password)
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords do not match; nothing was changed")
    else:
        raise UsageError(
            "no password given and standard input is not a terminal: pipe one line with --password-stdin "
            "(there is no default password)"
        )
    return check_password_policy(password)


def _user(store: Store, name: str) -> User:
    user = store.get_user(name)
    if user is None:
        raise UsageError(f"no user {name!r} in {store.location} (see: moments users list)")
    return user


def _cmd_add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with open_store(args.store) as store:
        if store.get_user(args.name) is not None:
            # Checked before the slow hash; put_user refuses a race all the same.
            raise UsageError(f"user {args.name!r} exists already in {store.location}")
        now = utc_now()
        user = User(name=args.name, role=args.role, password_hash=hash_password(password), created_at=now)
        store.put_user(user)
        location = store.location
    print(f"added user {user.name} ({user.role}) to {location}")
    return 0


def _cmd_set_password(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with open_store(args.store) as store:
        user = _user(store, args.name)
        changed = user.model_copy(update={"password_hash": hash_password(password), "updated_at": utc_now()})
        store.put_user(changed, update=True)
    print(f"changed the password of {user.name}")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    with open_store(args.store) as store:
        user = _user(store, args.name)
        if user.disabled != disabled:
            store.put_user(user.model_copy(update={"disabled": disabled, "updated_at": utc_now()}), update=True)
    state = "disabled: no login, no API token works" if disabled else "enabled"
    print(f"user {user.name} {state}")
    return 0


def _cmd_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def _cmd_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _cmd_list(args: argparse.Namespace) -> int:
    with open_store(args.store) as store:
        users = store.list_users()
        tokens = store.list_tokens()
        location = store.location
    active: dict[str, int] = {}
    for token in tokens:
        if token.revoked_at is None:
            active[token.user] = active.get(token.user, 0) + 1
    if args.json:
        rows = [
            {
                **user.model_dump(mode="json", exclude={"password_hash"}),
                "active_tokens": active.get(user.name, 0),
            }
            for user in users
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not users:
        print(f"no users in {location}; add one with: moments users add NAME --role agent")
        return 0
    width = max(len(user.name) for user in users)
    print(f"{'name':<{width}}  {'role':<13}  {'status':<8}  {'tokens':>6}  created")
    for user in users:
        status = "disabled" if user.disabled else "active"
        created = _when(user.created_at)
        print(f"{user.name:<{width}}  {user.role:<13}  {status:<8}  {active.get(user.name, 0):>6}  {created}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    with open_store(args.store) as store:
        issued = new_token(store, args.name)
        role = _user(store, args.name).role
    print(issued.token)
    print(
        f"token {issued.token_id} for {args.name} (role {role}): shown this once, keep it secret; "
        f"revoke it with: moments users revoke-token {issued.token_id}",
        file=sys.stderr,
    )
    return 0


def _token_row(token: ApiToken) -> dict[str, Any]:
    return token.model_dump(mode="json", exclude={"token_hash"})


def _cmd_tokens(args: argparse.Namespace) -> int:
    with open_store(args.store) as store:
        if args.name is not None:
            _user(store, args.name)
        tokens = store.list_tokens(user=args.name)
    if args.json:
        print(json.dumps([_token_row(token) for token in tokens], indent=2))
        return 0
    if not tokens:
        print("no tokens")
        return 0
    print(f"{'id':<16}  {'user':<16}  {'created':<16}  {'last used':<16}  revoked")
    for token in tokens:
        created, used, revoked = _when(token.created_at), _when(token.last_used_at), _when(token.revoked_at)
        print(f"{token.id:<16}  {token.user:<16}  {created:<16}  {used:<16}  {revoked}")
    return 0


#: The shortest id prefix ``revoke-token`` accepts.
_MIN_PREFIX = 4


def resolve_token(store: Store, text: str) -> ApiToken:
    """The one token ``text`` names: a printed token, ``mts_<id>``, an id, or a unique prefix of an id.

    Raises:
        UsageError: None matches, or a prefix matches several.
    """
    given = text.strip()
    parsed = parse_token(given)
    token_id = parsed[0] if parsed else given.removeprefix(f"{TOKEN_PREFIX}_").lower()
    exact = store.get_token(token_id) if token_id else None
    if exact is not None:
        return exact
    if len(token_id) < _MIN_PREFIX:
        raise UsageError(f"no token {token_id!r}; give a token id or at least {_MIN_PREFIX} of its first characters")
    matches = [token for token in store.list_tokens() if token.id.startswith(token_id)]
    if not matches:
        raise UsageError(f"no token starts with {token_id!r} (see: moments users tokens)")
    if len(matches) > 1:
        raise UsageError(f"{token_id!r} matches {len(matches)} tokens ({', '.join(t.id for t in matches)}); give more")
    return matches[0]


def _cmd_revoke(args: argparse.Namespace) -> int:
    with open_store(args.store) as store:
        token = resolve_token(store, args.token)
        already = token.revoked_at is not None
        revoked = store.revoke_token(token.id, at=utc_now())
    if already:
        print(f"token {revoked.id} of {revoked.user} was revoked already at {revoked.revoked_at}")
    else:
        print(f"revoked token {revoked.id} of {revoked.user}")
    return 0


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from one line of standard input instead of asking twice at the terminal",
    )


def register(commands: Commands) -> None:
    """Add ``users`` (``add``, ``list``, ``token``, ``tokens``, ``revoke-token``, ``disable`` ...) to ``moments``."""
    users = commands.add(
        "users",
        help="triage app users and API tokens: add, list, token, revoke-token, disable",
        description=DESCRIPTION,
        handler=_cmd_list,
        options=("store", "json"),
    )
    actions = commands.group(users, dest="users_action")
    add = actions.add(
        "add",
        help="add a user with a role and a password",
        description="Add a user. The password is asked twice at a terminal, or read from one line of\n"
        f"standard input with --password-stdin; at least {MIN_PASSWORD_LENGTH} characters.\n"
        "An existing name is refused.\n\n"
        "examples:\n  moments users add dana --role lead\n"
        "  printf '%s\\n' \"$PASSWORD\" | moments users add bot --role agent --password-stdin",
        handler=_cmd_add,
        options=("store",),
    )
    add.add_argument("name", metavar="NAME", type=_name, help="the login name")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    _password_option(add)

    password = actions.add(
        "set-password",
        help="set a user's password",
        description="Replace a user's password (asked twice, or --password-stdin).\n\n"
        "example:\n  moments users set-password dana",
        handler=_cmd_set_password,
        options=("store",),
    )
    password.add_argument("name", metavar="NAME", type=_name, help="the login name")
    _password_option(password)

    listing = actions.add(
        "list",
        help="list users with their role, status and active tokens",
        description="Every user: role, active or disabled, active API tokens.\n\nexample:\n  moments users list --json",
        handler=_cmd_list,
        options=("store", "json"),
    )
    del listing

    token = actions.add(
        "token",
        help="issue an API token for a user and print it once",
        description="Issue an API token acting as NAME (with NAME's role) and print it on standard\n"
        f"output, once: {TOKEN_PREFIX}_<id>_<secret>. Only its id and a hash are stored.\n\n"
        "example:\n  moments users token bot > bot.token",
        handler=_cmd_token,
        options=("store",),
    )
    token.add_argument("name", metavar="NAME", type=_name, help="the user the token acts as")

    tokens = actions.add(
        "tokens",
        help="list API tokens (never their secrets)",
        description="API tokens, oldest first: id, user, created, last used, revoked.\n\n"
        "example:\n  moments users tokens bot",
        handler=_cmd_tokens,
        options=("store", "json"),
    )
    tokens.add_argument("name", metavar="NAME", nargs="?", type=_name, help="only this user's tokens")

    revoke = actions.add(
        "revoke-token",
        help="revoke an API token",
        description="Revoke a token at once, for every app process on the store. Name it by its id,\n"
        f"a unique prefix of the id (at least {_MIN_PREFIX} characters), or the whole printed token.\n\n"
        "example:\n  moments users revoke-token 3f9c2a",
        handler=_cmd_revoke,
        options=("store",),
    )
    revoke.add_argument("token", metavar="TOKEN_ID_OR_PREFIX", help="the token's id, a prefix of it, or the token")

    disable = actions.add(
        "disable",
        help="disable a user: no login, no API token",
        description="Disable a user: logins and all the user's API tokens are refused from now on\n"
        "(the record stays; `moments users enable` undoes it).\n\nexample:\n  moments users disable dana",
        handler=_cmd_disable,
        options=("store",),
    )
    disable.add_argument("name", metavar="NAME", type=_name, help="the login name")
    enable = actions.add(
        "enable",
        help="enable a disabled user again",
        description="Enable a disabled user again.\n\nexample:\n  moments users enable dana",
        handler=_cmd_enable,
        options=("store",),
    )
    enable.add_argument("name", metavar="NAME", type=_name, help="the login name")
