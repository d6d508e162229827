"""Real-browser tests: Debian's Chromium driven by playwright, never a downloaded browser.

Import it from a test module (it is a helper, not a conftest)::

    from browser import browser_fixture, watch   # tests/ is on sys.path (its conftest.py)

    pytestmark = pytest.mark.browser
    browser = browser_fixture()          # a module-scoped ``browser`` fixture

    def test_page(browser: Browser) -> None:
        page = browser.new_page()
        events = watch(page)
        ...

* :func:`chromium_path`: ``$MOMENTS_CHROMIUM``, else ``chromium`` on ``PATH``, else
  ``/usr/bin/chromium``. ``make test`` runs ``.ci/ensure_chromium.sh``, which installs
  Debian's ``chromium`` through apt when it is missing and exports its path.
* :func:`chromium_browser`: a context manager launching it through ``playwright.sync_api``
  with ``executable_path``, headless, with ``--no-sandbox`` only when running as root
  (Chromium refuses to start its sandbox as root).
* When Chromium (or the playwright package) is missing, the test skips with a how-to;
  under ``CI=true`` it fails instead, so CI never passes by skipping browser tests.
* :func:`watch`: records a page's console messages, uncaught errors, dialogs (dismissed)
  and requests, for tests that assert a page ran nothing and loaded nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_HOWTO = (
    "the browser tests need Debian's Chromium: `make test` installs it when missing "
    "(.ci/ensure_chromium.sh: apt-get install chromium), or set MOMENTS_CHROMIUM to a Chromium binary"
)
PLAYWRIGHT_HOWTO = (
    "the browser tests need the playwright package: `make test` installs it (pip install -e '.[dev]'); "
    "never `playwright install`, the tests use Debian's chromium"
)
#: Milliseconds any single playwright action or navigation may take in a test.
DEFAULT_TIMEOUT_MS = 15_000


def in_ci() -> bool:
    """``CI=true`` (or ``1``/``yes``): a missing browser is then a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str | None:
    """The Chromium binary to drive: ``$MOMENTS_CHROMIUM``, ``chromium`` on PATH, ``/usr/bin/chromium``; else None."""
    configured = os.environ.get("MOMENTS_CHROMIUM", "").strip()
    for candidate in (configured, shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_args() -> list[str]:
    """Extra Chromium flags: ``--no-sandbox`` only as root, where Chromium cannot start its sandbox."""
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


@contextlib.contextmanager
def chromium_browser() -> Iterator[Browser]:
    """A headless Chromium launched through playwright with ``executable_path``; closed on exit.

    Skips the calling test (fails it under ``CI=true``) when Chromium or playwright is missing.
    """
    executable = chromium_path()
    if executable is None:
        _unavailable(f"no Chromium found (MOMENTS_CHROMIUM, chromium on PATH, /usr/bin/chromium); {CHROMIUM_HOWTO}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(PLAYWRIGHT_HOWTO)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=launch_args())
        try:
            yield browser
        finally:
            browser.close()


def browser_fixture(scope: str = "module") -> Callable[..., Any]:
    """A pytest fixture named ``browser`` (module-scoped by default): assign it in a test module as ``browser``."""

    @pytest.fixture(scope=scope, name="browser")  # type: ignore[call-overload]
    def _browser() -> Iterator[Browser]:
        with chromium_browser() as browser:
            yield browser

    return _browser


@dataclass
class PageEvents:
    """What a page did while watched: console lines (``type: text``), uncaught errors, dialogs, request URLs."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def console_of(self, *types: str) -> list[str]:
        """The console lines of these types (``error``, ``warning``, ``log``...)."""
        return [line for line in self.console if line.split(":", 1)[0] in types]


def watch(page: Page) -> PageEvents:
    """Record ``page``'s console messages, page errors, dialogs (each dismissed, so none blocks) and requests."""
    events = PageEvents()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)

    def on_dialog(dialog: Any) -> None:
        events.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(Exception):
            dialog.dismiss()

    page.on("console", lambda message: events.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: events.errors.append(str(error)))
    page.on("dialog", on_dialog)
    page.on("request", lambda request: events.requests.append(request.url))
    return events


def file_url(path: Path) -> str:
    """``file:///...`` for a local file (what a manager gets when opening a mailed report)."""
    return path.resolve().as_uri()
