"""Who is calling, and what they may do: sessions, bearer tokens, CSRF, and the role tables.

Every route of the app declares nothing itself: one app-wide dependency
(:func:`enforce_route_rule`) looks the matched route up in :data:`ROUTE_RULES` and
refuses what the table does not allow. A route missing from the table is refused
for everyone (deny by default), and the test suite walks ``app.routes`` against the
table, so a new route cannot ship without a rule.

Credentials, checked against the store at every request (no cache: two app processes
on one store agree at once on logouts, revocations and disabled users):

* ``Authorization: Bearer mts_<id>_<secret>``: an API token, acting with its user's
  current role. A header the browser never adds on its own, so no CSRF token is needed.
* The ``moments_session`` cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` unless the
  request is to a loopback host). A browser sends it with any request, so every
  state-changing request carrying it must echo the session's CSRF token: the
  ``csrf_token`` form field on pages, the ``X-CSRF-Token`` header on the API.

Roles (:data:`PERMISSIONS`): every role reads; ``agent``, ``lead`` and ``admin`` work
flags; ``lead`` and ``admin`` also assign flags to others, edit playbooks and SLA
targets and see the team metrics; ``admin`` manages users; ``brand_manager`` reads
only, and with leads sees the scorecard.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Literal, cast

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from moments.accounts import ROLES, Role, Session, User
from search.store import Store
from triage.accounts import SESSION_TTL, authenticate_token, session_user

#: The session cookie.
SESSION_COOKIE = "moments_session"
#: The pre-login CSRF cookie (double submit): a login form must echo it, so no other site can log a browser in.
LOGIN_CSRF_COOKIE = "moments_login_csrf"
#: The form field and the header that carry the session's CSRF token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

Permission = Literal["read", "work", "assign_others", "lead", "scorecard", "manage_users"]
#: What a route needs: a permission, or ``public`` (login, logout's landing, the OpenAPI spec).
Rule = Permission | Literal["public"]

#: Which roles hold each permission. The one place roles are given meaning.
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    "read": frozenset(ROLES),
    "work": frozenset({"agent", "lead", "admin"}),
    "assign_others": frozenset({"lead", "admin"}),
    # edit playbooks and SLA targets, read the team metrics
    "lead": frozenset({"lead", "admin"}),
    "scorecard": frozenset({"lead", "brand_manager", "admin"}),
    "manage_users": frozenset({"admin"}),
}

#: Every route, by ``(method, path as declared)``, and what it needs. Deny by default: a
#: route not listed here answers 403 to everyone, whatever its handler would do.
ROUTE_RULES: dict[tuple[str, str], Rule] = {
    # pages
    ("GET", "/"): "read",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "read",
    ("GET", "/flags/{flag_id:path}"): "read",
    ("POST", "/flags/{flag_id:path}/actions"): "work",
    ("GET", "/playbooks"): "read",
    ("GET", "/playbooks/{touchpoint}"): "read",
    ("POST", "/playbooks/{touchpoint}"): "lead",
    ("GET", "/slas"): "read",
    ("POST", "/slas"): "lead",
    ("GET", "/metrics"): "lead",
    ("GET", "/scorecard"): "scorecard",
    # API
    ("POST", "/api/login"): "public",
    ("POST", "/api/logout"): "read",
    ("GET", "/api/me"): "read",
    ("GET", "/api/flags"): "read",
    ("GET", "/api/flags/{flag_id:path}"): "read",
    ("POST", "/api/flags/{flag_id:path}/actions"): "work",
    ("GET", "/api/playbooks"): "read",
    ("GET", "/api/playbooks/{touchpoint}"): "read",
    ("PUT", "/api/playbooks/{touchpoint}"): "lead",
    ("GET", "/api/slas"): "read",
    ("PUT", "/api/slas"): "lead",
    ("GET", "/api/metrics"): "lead",
}

#: Routes that FastAPI or Starlette add outside the routers, and need no login.
PUBLIC_PATHS: frozenset[str] = frozenset({"/openapi.json", "/static"})

#: Methods that change state: with a session cookie they need the CSRF token.
UNSAFE_METHODS: frozenset[str] = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_UNSET = object()


def may(role: str, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown role holds none)."""
    return role in PERMISSIONS[permission]


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    Attributes:
        user: The user, as stored now (their current role).
        session: The login session when the cookie authenticated; ``None`` for a bearer token.
        cookie: The session cookie's value (to end the session at logout).
    """

    user: User
    session: Session | None = None
    cookie: str | None = None

    @property
    def via_session(self) -> bool:
        """Authenticated by the cookie, so a state change needs the CSRF token."""
        return self.session is not None

    @property
    def csrf_token(self) -> str | None:
        return self.session.csrf_token if self.session else None


class AuthProblem(Exception):
    """A request refused for who is calling; the app answers JSON on ``/api`` and a page elsewhere."""

    status_code = 403

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(AuthProblem):
    """No valid session or token (401 on the API, a redirect to the login page elsewhere)."""

    status_code = 401


class Forbidden(AuthProblem):
    """Logged in, but the role may not do this, or the CSRF token is missing or wrong (403)."""

    status_code = 403


def is_api(request: Request) -> bool:
    """Whether the request is to the JSON API (errors as JSON, never a redirect)."""
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a Host header's name) is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: the app's setting, else yes unless the request is to a loopback host.

    A browser on plain HTTP drops a ``Secure`` cookie, so a non-loopback deployment
    without TLS cannot log in at all rather than send sessions in the clear.
    """
    forced: bool | None = request.app.state.secure_cookies
    if forced is not None:
        return forced
    return request.url.scheme == "https" or not is_loopback_host(request.url.hostname)


def get_store(request: Request) -> Store:
    """The app's store (opened once per app; every read goes to it, nothing is cached)."""
    store: Store = request.app.state.store
    return store


def resolve_principal(request: Request) -> Principal | None:
    """The caller, from ``Authorization: Bearer`` (which wins when present) or the session cookie.

    Read once per request and kept on ``request.state`` for the rest of that request only.
    """
    cached = getattr(request.state, "principal", _UNSET)
    if cached is not _UNSET:
        return cast("Principal | None", cached)
    store = get_store(request)
    principal: Principal | None = None
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            user = authenticate_token(store, value.strip())
            principal = Principal(user=user) if user is not None else None
    else:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        found = session_user(store, cookie) if cookie else None
        if found is not None:
            principal = Principal(user=found[0], session=found[1], cookie=cookie)
    request.state.principal = principal
    return principal


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a CSRF token with the expected one (missing never matches)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def check_csrf(request: Request, principal: Principal) -> None:
    """Refuse a state change by a session without its CSRF token (bearer tokens need none).

    Raises:
        Forbidden: The token is missing or wrong.
    """
    if not principal.via_session:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and not is_api(request):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette keeps it: the handler reads the same form.
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
    if not same_token(given, principal.csrf_token):
        raise Forbidden("missing or invalid CSRF token; reload the page and try again")


def route_rule(request: Request) -> Rule | None:
    """The rule of the route this request matched (``None``: the route has none, so it is refused).

    Looked up by the matched ``APIRoute``'s own ``path``, so routers carry their prefix
    (``APIRouter(prefix="/api")``) rather than getting one at ``include_router`` time;
    the route-matrix test checks that every served path is the route's own.
    """
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return None
    return ROUTE_RULES.get((request.method, path))


async def enforce_route_rule(request: Request) -> None:
    """The app-wide dependency: authenticate, check CSRF on state changes, then the route's permission.

    The order is the one a caller can act on: 401 (log in), then 403 for a missing
    CSRF token (reload the page), then 403 for the role.
    """
    rule = route_rule(request)
    if rule is None:
        raise Forbidden("this route has no access rule")
    if rule == "public":
        return
    principal = await run_in_threadpool(resolve_principal, request)  # store reads: off the event loop
    if principal is None:
        raise NotAuthenticated("not logged in")
    if request.method in UNSAFE_METHODS:
        await check_csrf(request, principal)
    if not may(principal.user.role, rule):
        raise Forbidden(f"role {principal.user.role} may not do this")


def current_principal(request: Request) -> Principal:
    """The authenticated caller (for handlers behind a non-public rule)."""
    principal = resolve_principal(request)
    if principal is None:
        raise NotAuthenticated("not logged in")
    return principal


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    """Send the session cookie: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` per :func:`cookie_secure`.

    It lasts as long as the session does in the store; the store's expiry is what counts.
    """
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    """Tell the browser to drop the session cookie (with the same attributes it was set with)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))
