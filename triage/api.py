"""The JSON API under ``/api``: the queue, one flag, actions, and a session login for scripts.

Every body is a pydantic model, so ``/openapi.json`` describes requests, responses and
errors exactly; FastAPI validates each response against its declared model.

Errors: 401 without a valid session or token (``WWW-Authenticate: Bearer``), 403 for a
role that may not act or a session request without ``X-CSRF-Token``, 404 for an unknown
flag, 409 for a stale ``if_version`` (the body names who changed the flag and when) or
an action the flag's status does not allow, 422 for a body that is not a valid request
(FastAPI answers 400 when the bytes cannot be read as JSON at all: not UTF-8), 429 for
a login while rate limited (``Retry-After``). Each operation declares exactly these in
the spec; ``tests/triage/test_api_schema.py`` fuzzes the API against it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from moments.accounts import Role
from moments.errors import ConflictError
from moments.records import FlagStatus, utc_now
from search.store import Store
from triage.accounts import LoginRefused, check_login, end_session, new_session
from triage.actions import (
    QUEUE_LIMIT,
    ActionInvalid,
    ActionResult,
    FlagAction,
    FlagDetail,
    InvalidTransition,
    Queue,
    QueueQuery,
    load_flag_detail,
    load_queue,
    perform_action,
)
from triage.auth import (
    Principal,
    clear_session_cookie,
    current_principal,
    get_store,
    set_session_cookie,
)
from triage.metrics import TeamMetrics, team_metrics
from triage.playbooks import (
    Playbook,
    PlaybookEdit,
    StaleRevision,
    get_playbook,
    playbook_touchpoints,
    save_playbook,
    valid_touchpoint,
)
from triage.service_levels import SlaEdit, SlaTable, save_slas, sla_table


class ErrorBody(BaseModel):
    """Why a request was refused."""

    detail: str


class ConflictBody(BaseModel):
    """A 409: the flag changed since the caller read it (``stale_version``), or its status does not allow the action."""

    error: Literal["stale_version", "invalid_transition"]
    detail: str
    flag_id: str
    expected_version: int | None = None
    current_version: int | None = None
    changed_by: str | None = Field(default=None, description="who made the last change")
    changed_at: str | None = Field(default=None, description="when (ISO 8601)")
    status: FlagStatus | None = Field(default=None, description="the flag's status now")


class LoginRequest(BaseModel):
    """A login for a script that wants a session (integrations should prefer an API token)."""

    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=2048)


class Me(BaseModel):
    """Who the caller is; ``csrf_token`` is what a session must send as ``X-CSRF-Token``."""

    user: str
    role: Role
    via: Literal["session", "token"]
    csrf_token: str | None


#: The default metrics period, in days before ``until``.
METRICS_DAYS = 30


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ConflictBody if code == 409 else ErrorBody} for code in codes}


router = APIRouter(prefix="/api", tags=["api"])

StoreDep = Annotated[Store, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def _me(principal: Principal) -> Me:
    return Me(
        user=principal.user.name,
        role=principal.user.role,
        via="session" if principal.via_session else "token",
        csrf_token=principal.csrf_token,
    )


@router.post("/login", response_model=Me, responses=_errors(400, 401, 429))
def api_login(body: LoginRequest, request: Request, response: Response, store: StoreDep) -> Me | JSONResponse:
    """Log in with a name and password: sets the session cookie and returns the CSRF token for it."""
    address = request.client.host if request.client else "unknown"
    try:
        user = check_login(store, body.name, body.password, address)
    except LoginRefused as refused:
        if refused.reason == "rate_limited":
            return JSONResponse(
                {"detail": str(refused)}, status_code=429, headers={"Retry-After": str(refused.retry_after or 1)}
            )
        return JSONResponse({"detail": str(refused)}, status_code=401)
    cookie, session = new_session(store, user)
    set_session_cookie(request, response, cookie)
    return Me(user=user.name, role=user.role, via="session", csrf_token=session.csrf_token)


@router.post("/logout", status_code=204, responses=_errors(401, 403))
def api_logout(request: Request, store: StoreDep, principal: PrincipalDep) -> Response:
    """End the caller's session (a token caller has none: revoke tokens with ``moments users revoke-token``)."""
    response = Response(status_code=204)
    if principal.cookie:
        end_session(store, principal.cookie)
        clear_session_cookie(request, response)
    return response


@router.get("/me", response_model=Me, responses=_errors(401))
def api_me(principal: PrincipalDep) -> Me:
    """The caller: user, role, and (for a session) the CSRF token."""
    return _me(principal)


@router.get("/flags", response_model=Queue, responses=_errors(401))
def api_queue(
    query: Annotated[QueueQuery, Query()], request: Request, store: StoreDep, principal: PrincipalDep
) -> Queue:
    """The queue: the first ``limit`` active flags (or ``status``) by priority, then time left on their SLA.

    The counts cover every flag that matched (as read, up to 500), not only those returned.
    """
    config = request.app.state.config
    return load_queue(store, config, query.filters(), now=utc_now(), viewer=principal.user.name, limit=query.limit)


@router.get("/flags/{flag_id:path}", response_model=FlagDetail, responses=_errors(401, 404))
def api_flag(flag_id: str, request: Request, store: StoreDep, principal: PrincipalDep) -> FlagDetail:
    """One flag with its posts, its event log (oldest first) and its SLA state."""
    detail = load_flag_detail(store, request.app.state.config, flag_id, now=utc_now(), viewer=principal.user.name)
    if detail is None:
        raise HTTPException(404, f"no flag {flag_id!r}")
    return detail


def conflict_body(flag_id: str, exc: ConflictError | InvalidTransition, expected: int) -> ConflictBody:
    """The 409 body for a lost compare-and-set or a refused transition (the pages show the same facts)."""
    if isinstance(exc, InvalidTransition):
        return ConflictBody(
            error="invalid_transition",
            detail=str(exc),
            flag_id=flag_id,
            expected_version=expected,
            current_version=exc.flag.version,
            status=exc.flag.status,
        )
    return ConflictBody(
        error="stale_version",
        detail=str(exc),
        flag_id=flag_id,
        expected_version=exc.expected,
        current_version=exc.actual,
        changed_by=exc.changed_by,
        changed_at=exc.changed_at,
    )


@router.post("/flags/{flag_id:path}/actions", response_model=ActionResult, responses=_errors(400, 401, 403, 404, 409))
def api_action(
    flag_id: str, action: FlagAction, store: StoreDep, principal: PrincipalDep
) -> ActionResult | JSONResponse:
    """Act on a flag: a compare-and-set on ``if_version``; a stale version is a 409 and changes nothing."""
    try:
        return perform_action(store, flag_id, action, principal.user, at=utc_now())
    except KeyError:
        raise HTTPException(404, f"no flag {flag_id!r}") from None
    except (ConflictError, InvalidTransition) as exc:
        body = conflict_body(flag_id, exc, action.if_version)
        return JSONResponse(body.model_dump(mode="json"), status_code=409)
    except ActionInvalid as exc:
        # The shape of every other 422, so the response matches the declared validation-error schema.
        error = {"type": "value_error", "loc": ["body", exc.field], "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from None


# ------------------------------------------------------------------------------ playbooks, SLAs, metrics


class StaleBody(BaseModel):
    """A 409 on a playbook or SLA edit: someone saved it since the editor read it; nothing was written."""

    error: Literal["stale_revision"] = "stale_revision"
    detail: str
    expected_revision: int
    current_revision: int
    changed_by: str | None = None
    changed_at: datetime | None = None


def _stale(exc: StaleRevision) -> JSONResponse:
    body = StaleBody(
        detail=str(exc),
        expected_revision=exc.expected,
        current_revision=exc.actual,
        changed_by=exc.changed_by,
        changed_at=exc.changed_at,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=409)


def _touchpoint(touchpoint: str) -> str:
    if not valid_touchpoint(touchpoint):
        raise HTTPException(404, f"no playbook for {touchpoint!r}: a touchpoint id is letters, digits, '.', '_', '-'")
    return touchpoint


_STALE: dict[int | str, dict[str, object]] = {409: {"model": StaleBody}}


@router.get("/playbooks", response_model=list[Playbook], responses=_errors(401))
def api_playbooks(store: StoreDep, principal: PrincipalDep) -> list[Playbook]:
    """Every touchpoint's recovery playbook (the default taxonomy's and the flags' own), saved or built in."""
    touchpoints = playbook_touchpoints(f.touchpoint or "" for f in store.list_flags(status=None, limit=QUEUE_LIMIT))
    return [get_playbook(store, tp) for tp in touchpoints]


@router.get("/playbooks/{touchpoint}", response_model=Playbook, responses=_errors(401, 404))
def api_playbook(touchpoint: str, store: StoreDep, principal: PrincipalDep) -> Playbook:
    """One touchpoint's playbook: steps, guidance, templates (``revision`` 0: the built-in default)."""
    return get_playbook(store, _touchpoint(touchpoint))


@router.put("/playbooks/{touchpoint}", response_model=Playbook, responses={**_errors(400, 401, 403, 404), **_STALE})
def api_save_playbook(
    touchpoint: str, edit: PlaybookEdit, store: StoreDep, principal: PrincipalDep
) -> Playbook | JSONResponse:
    """Replace a playbook (leads): a compare-and-set on ``if_revision``; a stale one is a 409 and writes nothing."""
    try:
        return save_playbook(store, _touchpoint(touchpoint), edit, by=principal.user.name, at=utc_now())
    except StaleRevision as exc:
        return _stale(exc)


@router.get("/slas", response_model=SlaTable, responses=_errors(401))
def api_slas(request: Request, store: StoreDep, principal: PrincipalDep) -> SlaTable:
    """The SLA targets in force per priority (config, with the leads' overrides)."""
    return sla_table(store, request.app.state.config)


@router.put("/slas", response_model=SlaTable, responses={**_errors(400, 401, 403), **_STALE})
def api_save_slas(edit: SlaEdit, request: Request, store: StoreDep, principal: PrincipalDep) -> SlaTable | JSONResponse:
    """Set SLA targets (leads); priorities left out follow the config. Compare-and-set on ``if_revision``."""
    try:
        return save_slas(store, request.app.state.config, edit, by=principal.user.name, at=utc_now())
    except StaleRevision as exc:
        return _stale(exc)


def metrics_period(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The metrics period: default the last :data:`METRICS_DAYS` days; naive times are UTC.

    Raises:
        RequestValidationError: ``since`` is not before ``until`` (a 422 shaped like every other).
    """
    end = until or now
    start = since or end - timedelta(days=METRICS_DAYS)
    end, start = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (end, start))
    if start >= end:
        error = {"type": "value_error", "loc": ["query", "since"], "msg": "since must be before until", "input": None}
        raise RequestValidationError([error])
    return start, end


@router.get("/metrics", response_model=TeamMetrics, responses=_errors(401, 403))
def api_metrics(
    request: Request,
    store: StoreDep,
    principal: PrincipalDep,
    since: Annotated[datetime | None, Query(description="start (default: 30 days before until)")] = None,
    until: Annotated[datetime | None, Query(description="end, excluded (default: now)")] = None,
) -> TeamMetrics:
    """Team metrics over the flags opened in the period (leads): response and resolve times, SLA hit rates,
    and the recovery rate by playbook template."""
    now = utc_now()
    start, end = metrics_period(since, until, now)
    return team_metrics(store, request.app.state.config, since=start, until=end, now=now)
