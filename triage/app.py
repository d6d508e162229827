"""The triage web app: the care team's queue and flag pages, and the JSON API under ``/api``.

:func:`create_app` builds one app on one store. Users, sessions, tokens, presence and
flags are read from the store at every request and nothing is cached between
requests, so any number of app processes on one store agree (a logout, a revoked
token, a flag changed by another process: the next request sees it).

Every response carries a strict Content-Security-Policy with a fresh nonce (no inline
script or style without it, no framing, forms post only here), ``nosniff`` and a
same-origin referrer policy; pages and API answers are ``Cache-Control: no-store``.
FastAPI's interactive docs are off (they load scripts from a CDN); the spec is at
``/openapi.json``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moments import settings
from moments.config import MomentsConfig, load_config
from search.backends import open_store
from triage import api, lead_pages, pages
from triage.auth import AuthProblem, NotAuthenticated, enforce_route_rule, is_api

STATIC_DIR = Path(__file__).resolve().parent / "static"


def content_security_policy(nonce: str) -> str:
    """The policy every response carries: nothing loads or runs unless it is ours or carries the nonce."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: a nonce per request (``request.state.csp_nonce``) and the security headers on every response.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so errors, redirects and static files
    get the headers too, without buffering any body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = content_security_policy(nonce)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def app_config(config_path: Path | None) -> MomentsConfig:
    """``config_path``, else ``$MOMENTS_CONFIG`` / ``./brands.yaml`` when it exists, else the defaults (SLAs, rules)."""
    if config_path is not None:
        return load_config(config_path)
    default = settings.config_path()
    return load_config(default) if default.is_file() else MomentsConfig()


def _auth_problem(request: Request, exc: Exception) -> Response:
    """401/403 as JSON on the API; on pages a redirect to the login form, or an error page."""
    assert isinstance(exc, AuthProblem)
    if is_api(request):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    if isinstance(exc, NotAuthenticated):
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET":
            target = "/"
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return pages.error_page(request, exc.status_code, exc.detail)


def create_app(
    store_url: str | None = None, config_path: Path | None = None, *, secure_cookies: bool | None = None
) -> FastAPI:
    """The triage app on one store.

    Args:
        store_url: The store (``--store``; default ``$MOMENTS_STORE`` or the embedded one).
        config_path: ``brands.yaml`` for SLAs and forecast rules (default: ``$MOMENTS_CONFIG``
            or ``./brands.yaml`` when present, else the built-in defaults).
        secure_cookies: Force the cookies' ``Secure`` attribute on or off; ``None``: on,
            unless the request is to a loopback host (plain-HTTP development on 127.0.0.1).

    Raises:
        StoreError: The store cannot be reached.
        ConfigError: The config file is invalid.
    """
    config = app_config(config_path)
    store = open_store(store_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="Moments triage",
        summary="The care team's queue of flags: read them, and act on them with compare-and-set.",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(enforce_route_rule)],
    )
    app.state.store = store
    app.state.config = config
    app.state.secure_cookies = secure_cookies
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(AuthProblem, _auth_problem)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(lead_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app
