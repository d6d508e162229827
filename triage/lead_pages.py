"""The pages beyond the queue: playbooks and SLA targets (leads edit, everyone reads), team metrics, the scorecard.

Same rules as :mod:`triage.pages`: server-rendered, autoescaped, no script; every form
posts the session's CSRF token (checked by :func:`triage.auth.enforce_route_rule`
before a handler runs) and who may post is :data:`triage.auth.ROUTE_RULES`. An edit
that lost a race (someone saved since the page was read) is shown the same
"changed by X at T, reload" message as a stale flag action, and nothing is written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from moments.config import MomentsConfig, SlaTarget
from moments.records import PRIORITIES, Priority, utc_now
from search.store import Store
from triage.actions import QUEUE_LIMIT, validation_messages
from triage.auth import Principal, current_principal, get_store, may
from triage.metrics import format_rate, format_seconds, team_metrics
from triage.pages import _render, error_page
from triage.playbooks import (
    STEP_LABELS,
    STEPS,
    Playbook,
    StaleRevision,
    get_playbook,
    parse_playbook_form,
    playbook_touchpoints,
    save_playbook,
    valid_touchpoint,
)
from triage.service_levels import SlaEdit, describe_target, save_slas, sla_table

router = APIRouter(include_in_schema=False)

StoreDep = Annotated[Store, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]

#: Days the metrics and scorecard pages cover by default.
DEFAULT_DAYS = 30


def _config(request: Request) -> MomentsConfig:
    return cast(MomentsConfig, request.app.state.config)


def _day(text: str | None) -> datetime | None:
    """An ISO date or time from a page's form (naive is UTC); ``None`` when blank or unreadable."""
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _period(since: str | None, until: str | None) -> tuple[datetime, datetime, str | None]:
    """The page's period: ``[since, until)``; default the last :data:`DEFAULT_DAYS` days; a problem to show, if any."""
    now = utc_now()
    end = _day(until)
    start = _day(since)
    problem = None
    if (since and start is None) or (until and end is None):
        problem = "Dates are ISO dates (2026-11-01) or times (2026-11-01T09:00Z); the default period is shown."
        start = end = None
    end = end or now
    start = start or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        problem = "The start must be before the end; the default period is shown."
        end, start = now, now - timedelta(days=DEFAULT_DAYS)
    return start, end, problem


# ------------------------------------------------------------------------------ playbooks


@router.get("/playbooks", response_class=HTMLResponse)
def playbooks_page(request: Request, store: StoreDep, principal: PrincipalDep) -> HTMLResponse:
    """Every touchpoint's playbook: the default taxonomy's, then the touchpoints the flags name."""
    touchpoints = playbook_touchpoints(f.touchpoint or "" for f in store.list_flags(status=None, limit=QUEUE_LIMIT))
    playbooks = [get_playbook(store, tp) for tp in touchpoints]
    return _render(request, "playbooks.html", {"playbooks": playbooks, "can_edit": may(principal.user.role, "lead")})


def _playbook_page(
    request: Request,
    principal: Principal,
    playbook: Playbook,
    *,
    status_code: int = 200,
    problem: str | None = None,
    problems: list[str] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    rows = {step.step: step for step in playbook.steps}
    steps = [
        {
            "step": step,
            "label": STEP_LABELS[step],
            "guidance": rows[step].guidance if step in rows else "",
            "templates": rows[step].templates if step in rows else [],
        }
        for step in STEPS
    ]
    context = {
        "playbook": playbook,
        "steps": steps,
        "can_edit": may(principal.user.role, "lead"),
        "problem": problem,
        "problems": problems or [],
        "saved": saved,
    }
    return _render(request, "playbook.html", context, status_code)


@router.get("/playbooks/{touchpoint}", response_class=HTMLResponse)
def playbook_page(
    request: Request,
    touchpoint: str,
    store: StoreDep,
    principal: PrincipalDep,
    saved: Annotated[str | None, Query(max_length=5)] = None,
) -> HTMLResponse:
    """One playbook: steps, guidance and templates; a lead gets the edit form."""
    if not valid_touchpoint(touchpoint):
        return error_page(request, 404, f"There is no playbook for {touchpoint}.")
    return _playbook_page(request, principal, get_playbook(store, touchpoint), saved=bool(saved))


@router.post("/playbooks/{touchpoint}", response_class=HTMLResponse)
async def save_playbook_page(request: Request, touchpoint: str, principal: PrincipalDep) -> Response:
    """Save a lead's edit: a compare-and-set on the revision the form was read at."""
    if not valid_touchpoint(touchpoint):
        return error_page(request, 404, f"There is no playbook for {touchpoint}.")
    form = await request.form()
    items = list(form.multi_items())

    def save() -> Response:
        store = get_store(request)
        current = get_playbook(store, touchpoint)
        try:
            edit = parse_playbook_form(items, touchpoint)
        except ValidationError as exc:
            return _playbook_page(request, principal, current, status_code=422, problems=validation_messages(exc))
        try:
            save_playbook(store, touchpoint, edit, by=principal.user.name, at=utc_now())
        except StaleRevision as exc:
            return _playbook_page(request, principal, current, status_code=409, problem=str(exc))
        return RedirectResponse(f"/playbooks/{quote(touchpoint, safe='')}?saved=1", status_code=303)

    return await run_in_threadpool(save)


# ------------------------------------------------------------------------------ SLA targets


def _slas_page(
    request: Request,
    principal: Principal,
    *,
    status_code: int = 200,
    problem: str | None = None,
    saved: bool = False,
) -> HTMLResponse:
    store = get_store(request)
    config = _config(request)
    table = sla_table(store, config)
    rows = [
        {
            "priority": p,
            "target": describe_target(table.slas[p]),
            "config": describe_target(config.slas[p]),
            "overridden": p in table.overridden,
        }
        for p in PRIORITIES
    ]
    context = {
        "table": table,
        "rows": rows,
        "can_edit": may(principal.user.role, "lead"),
        "problem": problem,
        "saved": saved,
    }
    return _render(request, "slas.html", context, status_code)


@router.get("/slas", response_class=HTMLResponse)
def slas_page(
    request: Request, principal: PrincipalDep, saved: Annotated[str | None, Query(max_length=5)] = None
) -> HTMLResponse:
    """The SLA targets per priority, where each comes from (config or the app), and a lead's edit form."""
    return _slas_page(request, principal, saved=bool(saved))


def parse_sla_form(items: list[tuple[str, Any]], config: MomentsConfig) -> SlaEdit:
    """The SLA edit from the page: ``first_response.P1``, ``resolution.P1`` per priority; ``reset.P1``: follow config.

    Raises:
        ValueError: A duration is unreadable or a resolution shorter than its first response (the message says which).
    """
    fields = {key: value.strip() for key, value in items if isinstance(value, str)}
    slas: dict[Priority, SlaTarget] = {}
    for priority in PRIORITIES:
        if fields.get(f"reset.{priority}"):
            continue
        first = fields.get(f"first_response.{priority}") or None
        resolution = fields.get(f"resolution.{priority}") or None
        if first is None and resolution is None:
            continue
        default = describe_target(config.slas[priority])
        try:
            slas[priority] = SlaTarget.model_validate(
                {
                    "first_response": first or default["first_response"],
                    "resolution": resolution or default["resolution"],
                }
            )
        except ValidationError as exc:
            message = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"{priority}: {message}") from None
    revision = fields.get("if_revision", "")
    if not revision.isdigit():
        raise ValueError("the form lost its revision; reload the page")
    return SlaEdit(slas=slas, if_revision=int(revision))


@router.post("/slas", response_class=HTMLResponse)
async def save_slas_page(request: Request, principal: PrincipalDep) -> Response:
    """Save a lead's SLA targets (compare-and-set on the table's revision)."""
    form = await request.form()
    items = list(form.multi_items())

    def save() -> Response:
        store = get_store(request)
        config = _config(request)
        try:
            edit = parse_sla_form(items, config)
            save_slas(store, config, edit, by=principal.user.name, at=utc_now())
        except StaleRevision as exc:
            return _slas_page(request, principal, status_code=409, problem=str(exc))
        except ValueError as exc:
            return _slas_page(request, principal, status_code=422, problem=str(exc))
        return RedirectResponse("/slas?saved=1", status_code=303)

    return await run_in_threadpool(save)


# ------------------------------------------------------------------------------ metrics


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(
    request: Request,
    store: StoreDep,
    principal: PrincipalDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    """Team metrics over the flags opened in a period (leads)."""
    start, end, problem = _period(since, until)
    metrics = team_metrics(store, _config(request), since=start, until=end, now=utc_now())
    context = {
        "metrics": metrics,
        "problem": problem,
        "since": start.strftime("%Y-%m-%d"),
        "until": end.strftime("%Y-%m-%d %H:%M"),
        "since_value": since or "",
        "until_value": until or "",
        "seconds": format_seconds,
        "rate": format_rate,
    }
    return _render(request, "metrics.html", context)


# ------------------------------------------------------------------------------ scorecard


@router.get("/scorecard", response_class=HTMLResponse)
def scorecard_page(
    request: Request,
    store: StoreDep,
    principal: PrincipalDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    brand: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The touchpoint scorecard of a period (brand managers and leads): the report of ``moments report``, as a page."""
    from triage.report import scorecard_charts, scorecard_view
    from triage.scorecard import build_scorecard

    start, end, problem = _period(since, until)
    chosen = brand.strip() if brand and brand.strip() else None
    scorecard = build_scorecard(store, since=start, until=end, brand=chosen, now=utc_now())
    context = {
        "view": scorecard_view(scorecard),
        "charts": scorecard_charts(scorecard),
        "problem": problem,
        "since_value": since or "",
        "until_value": until or "",
        "brand_value": brand or "",
    }
    return _render(request, "scorecard.html", context)
