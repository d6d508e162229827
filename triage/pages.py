"""The server-rendered pages: the queue, a flag, login and logout.

Pages are Jinja2 templates with autoescaping on: post text, author names, notes and
reasons are always escaped, and only http(s) URLs become links (:func:`triage.actions.safe_url`).
The one piece of markup passed through unescaped is a chart from :mod:`triage.svg`,
which escapes every text it draws. There is no script: the queue refreshes with
``<meta http-equiv="refresh">``.

A form posts the session's CSRF token in a hidden field; the login form, before any
session exists, echoes a random cookie instead (double submit), so no other site can
log a browser in to an account of its choosing.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from models.forecast import Forecast, forecast_post
from moments.config import MomentsConfig
from moments.errors import ConflictError
from moments.records import Post, utc_now
from search.store import Store
from triage.accounts import LoginRefused, check_login, end_session, new_session
from triage.actions import (
    ACTION_NAMES,
    TRANSITIONS,
    ActionInvalid,
    InvalidTransition,
    QueueFilters,
    assignable_users,
    load_flag_detail,
    load_queue,
    parse_form_action,
    parse_response_note,
    perform_action,
    post_lang,
    record_presence,
    safe_url,
    validation_messages,
)
from triage.auth import (
    LOGIN_CSRF_COOKIE,
    Forbidden,
    Principal,
    clear_session_cookie,
    cookie_secure,
    current_principal,
    get_store,
    may,
    same_token,
    set_session_cookie,
)
from triage.playbooks import filled_templates, get_playbook
from triage.sla import format_remaining
from triage.svg import engagement_chart

log = logging.getLogger("moments.triage")

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
TEMPLATES.env.autoescape = True  # every template, whatever its name: user data is never trusted
#: Seconds between the queue's self-refreshes.
QUEUE_REFRESH_SECONDS = 30


def _when(value: datetime | None) -> str:
    """A time as the pages show it: ``2026-03-01 12:05 UTC``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((utc_now() - value).total_seconds()))
    return f"{seconds}s ago" if seconds < 60 else f"{seconds // 60}m ago"


TEMPLATES.env.filters.update(safe_url=safe_url, remaining=format_remaining, when=_when, ago=_ago)
TEMPLATES.env.globals.update(parse_response_note=parse_response_note, post_lang=post_lang, may=may)

router = APIRouter(include_in_schema=False)

StoreDep = Annotated[Store, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (never ``//host`` or a scheme), else the queue."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch.isspace() or ord(ch) < 32 for ch in target):
        return "/"
    return target


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    base = {
        "nonce": getattr(request.state, "csp_nonce", ""),
        "principal": principal,
        "csrf_token": principal.csrf_token if isinstance(principal, Principal) else None,
    }
    return TEMPLATES.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """An error as a page (403, 404): the message is escaped like everything else."""
    return _render(request, "error.html", {"status_code": status_code, "message": message}, status_code)


# ------------------------------------------------------------------------------ login


def _login_page(request: Request, next_url: str, message: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = _render(
        request, "login.html", {"login_csrf": token, "next_url": next_url, "message": message}, status_code
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", httponly=True, samesite="strict",
        secure=cookie_secure(request),
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    """The login form."""
    return _login_page(request, safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=2048)],
    store: StoreDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the login (rate limited per account and address), start a session, go where the user was headed."""
    target = safe_next(next)
    if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(request, target, "Your login form expired; please try again.", 403)
    address = request.client.host if request.client else "unknown"
    try:
        user = check_login(store, name, password, address)
    except LoginRefused as refused:
        if refused.reason == "rate_limited":
            wait = refused.retry_after or 1
            page = _login_page(request, target, f"Too many failed logins. Try again in {wait} seconds.", 429)
            page.headers["Retry-After"] = str(wait)
            return page
        return _login_page(request, target, "Invalid user name or password.", 401)
    cookie, _ = new_session(store, user)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, cookie)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, principal: PrincipalDep) -> Response:
    """End the session (the CSRF check already ran: no other site can log a user out)."""
    if principal.cookie:
        end_session(get_store(request), principal.cookie)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(request, response)
    return response


# ------------------------------------------------------------------------------ queue


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request, filters: Annotated[QueueFilters, Query()], principal: PrincipalDep) -> HTMLResponse:
    """The queue, refreshing itself; P1 flags nobody acknowledged stand out."""
    store = get_store(request)
    queue = load_queue(store, request.app.state.config, filters, now=utc_now(), viewer=principal.user.name)
    new_p1 = sum(1 for entry in queue.entries if entry.new_p1)
    return _render(
        request,
        "queue.html",
        {"queue": queue, "filters": filters, "new_p1": new_p1, "refresh": QUEUE_REFRESH_SECONDS},
    )


# ------------------------------------------------------------------------------ one flag


def _forecast(config: MomentsConfig, brand: str | None, post: Post) -> Forecast | None:
    """The post's virality forecast with its brand's threshold and horizon; ``None`` when there is none."""
    rules = config.rules_for(brand)
    try:
        return forecast_post(post, threshold=rules.viral_threshold_for(post.source), horizon=rules.forecast_horizon)
    except (ValueError, ArithmeticError) as exc:  # a forecast is a hint: a page never fails for it
        log.warning("no forecast for %s: %s", post.id, exc)
        return None


def _chart(post: Post, forecast: Forecast | None) -> Markup:
    """Engagement over time (in the forecast's unit) with the forecast band; SVG escaped by :mod:`triage.svg`."""
    reposts = forecast is not None and forecast.unit == "reposts"
    snapshots = [(s.at, (s.shares or 0) if reposts else s.total()) for s in post.engagement_history]
    band = None
    if forecast is not None and post.created_at is not None and snapshots:
        end = post.created_at + forecast.horizon
        band = (forecast.expected_final, forecast.low, forecast.high, end)
    title = "Reposts over time" if reposts else "Interactions over time"
    return Markup(engagement_chart(snapshots, band, title=title))  # svg.py escapes every text it draws


def _flag_page(
    request: Request,
    principal: Principal,
    flag_id: str,
    *,
    status_code: int = 200,
    problem: str | None = None,
    problems: list[str] | None = None,
    done: str | None = None,
    template: str | None = None,
) -> HTMLResponse:
    store = get_store(request)
    config: MomentsConfig = request.app.state.config
    detail = load_flag_detail(store, config, flag_id, now=utc_now(), viewer=principal.user.name)
    if detail is None:
        return error_page(request, 404, f"There is no flag {flag_id}.")
    posts = []
    for post in detail.posts:
        forecast = _forecast(config, detail.flag.brand, post)
        posts.append({"post": post, "forecast": forecast, "chart": _chart(post, forecast)})
    playbook = get_playbook(store, detail.flag.touchpoint or "other")
    handle = detail.posts[0].author.handle if detail.posts else None
    steps = filled_templates(playbook, handle=handle, touchpoint=detail.flag.touchpoint)
    chosen = next((t for step in steps for t in step["templates"] if t["id"] == template), None)
    role = principal.user.role
    can_work = may(role, "work")
    allowed = {name: detail.flag.status in TRANSITIONS[name][0] for name in ACTION_NAMES} if can_work else {}
    context = {
        "detail": detail,
        "flag": detail.flag,
        "posts": posts,
        "can_work": can_work,
        "can_assign_others": may(role, "assign_others"),
        "allowed": allowed,
        "users": assignable_users(store) if can_work and may(role, "assign_others") else [],
        "problem": problem,
        "problems": problems or [],
        "done": done if done in ACTION_NAMES else None,
        "playbook": playbook,
        "playbook_steps": steps,
        "chosen_template": chosen,
    }
    return _render(request, "flag.html", context, status_code)


@router.get("/flags/{flag_id:path}", response_class=HTMLResponse)
def flag_page(
    request: Request,
    flag_id: str,
    principal: PrincipalDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
    template: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """A flag: its posts, chart and forecast, classification, reasons, playbook, event log and the actions allowed.

    ``template`` (a playbook template's id, from a "Use this" link) fills the response form with its text.
    """
    store = get_store(request)
    if store.get_flag(flag_id) is not None:
        record_presence(store, flag_id, principal.user.name, now=utc_now())
    return _flag_page(request, principal, flag_id, done=done, template=template)


def _with_template_text(store: Store, flag_id: str, items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A response picked from the template menu without text gets the template's text, filled in for the flag."""
    fields = {key: value for key, value in items if isinstance(value, str)}
    template_id = fields.get("template_id", "").strip()
    if fields.get("action") != "respond" or not template_id or fields.get("text", "").strip():
        return items
    flag = store.get_flag(flag_id)
    if flag is None:
        return items
    playbook = get_playbook(store, flag.touchpoint or "other")
    posts = store.get_many(flag.post_ids[:1])
    handle = posts[flag.post_ids[0]].author.handle if flag.post_ids[0] in posts else None
    for step in filled_templates(playbook, handle=handle, touchpoint=flag.touchpoint):
        for template in step["templates"]:
            if template["id"] == template_id:
                return [(k, v) for k, v in items if k != "text"] + [("text", template["text"])]
    return items


@router.post("/flags/{flag_id:path}/actions", response_class=HTMLResponse)
async def flag_action(request: Request, flag_id: str, principal: PrincipalDep) -> Response:
    """An action from the flag page: on success back to the page; a stale page is told who changed it and when."""
    form = await request.form()
    items = await run_in_threadpool(_with_template_text, get_store(request), flag_id, list(form.multi_items()))
    try:
        action = parse_form_action(items)
    except ValidationError as exc:
        return await run_in_threadpool(
            _flag_page, request, principal, flag_id, status_code=422, problems=validation_messages(exc)
        )

    def act() -> Response:
        store = get_store(request)
        try:
            perform_action(store, flag_id, action, principal.user, at=utc_now())
        except KeyError:
            return error_page(request, 404, f"There is no flag {flag_id}.")
        except ConflictError as exc:
            who = exc.changed_by or "someone"
            when = _when(datetime.fromisoformat(exc.changed_at)) if exc.changed_at else "a moment ago"
            message = f"This flag was changed by {who} at {when} (version {exc.actual}); reload and try again."
            return _flag_page(request, principal, flag_id, status_code=409, problem=message)
        except InvalidTransition as exc:
            return _flag_page(request, principal, flag_id, status_code=409, problem=f"Not done: {exc}.")
        except ActionInvalid as exc:
            return _flag_page(request, principal, flag_id, status_code=422, problem=str(exc))
        except Forbidden as exc:
            return error_page(request, 403, exc.detail)
        return RedirectResponse(f"/flags/{quote(flag_id, safe=':@')}?done={action.action}", status_code=303)

    return await run_in_threadpool(act)
