"""The browser test setup works: Debian's Chromium starts under playwright and enforces a nonce'd CSP.

The triage web app will allow only scripts carrying the response's nonce
(``script-src 'nonce-...'``); these tests prove this Chromium runs an inline script with
the right nonce and refuses one without it (or with a wrong one, or an inline event
handler), both for a policy in a ``<meta>`` (a ``data:`` URL) and in a response header.
"""

from __future__ import annotations

import base64
import subprocess
from typing import TYPE_CHECKING

import pytest
from browser import browser_fixture, chromium_path, watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

pytestmark = pytest.mark.browser

browser = browser_fixture()

NONCE = "dGVzdC1ub25jZS0xMjM0NQ"
POLICY = f"default-src 'none'; script-src 'nonce-{NONCE}'; style-src 'unsafe-inline'"
PROBES = ("__nonced", "__plain", "__wrong", "__handler")
BODY = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>csp probe</title>{{meta}}</head>
<body onload="window.__handler = 1">
<p id="status">static</p>
<script nonce="{NONCE}">window.__nonced = 1; document.getElementById("status").textContent = "nonced ran";</script>
<script>window.__plain = 1;</script>
<script nonce="not-the-nonce">window.__wrong = 1;</script>
<img src="x" onerror="window.__handler = 2">
</body></html>
"""


def _assert_only_the_nonced_script_ran(browser: Browser, url: str, *, served: bool = False) -> None:
    """Open ``url`` (``served``: answered by a route with the policy in a header) and check what ran."""
    context = browser.new_context()
    try:
        page = context.new_page()
        events = watch(page)
        if served:

            def serve(route: Route) -> None:
                headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": POLICY}
                route.fulfill(status=200, headers=headers, body=BODY.format(meta=""))

            page.route(url, serve)
        page.goto(url, wait_until="load")
        ran = page.evaluate(f"() => [{', '.join(f'typeof window.{name}' for name in PROBES)}]")
        assert dict(zip(PROBES, ran, strict=True)) == {
            "__nonced": "number",
            "__plain": "undefined",
            "__wrong": "undefined",
            "__handler": "undefined",
        }
        assert page.locator("#status").inner_text() == "nonced ran"
        assert events.errors == []
        assert events.dialogs == []
        violations = [line for line in events.console_of("error") if "Content Security Policy" in line]
        assert len(violations) >= 2, events.console  # the plain and the wrong-nonce scripts, at least
    finally:
        context.close()


def test_the_browser_is_the_system_chromium_not_a_download(browser: Browser) -> None:
    path = chromium_path()
    assert path is not None and "ms-playwright" not in path
    reported = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    assert browser.version in reported, (browser.version, reported)


def test_csp_nonce_in_a_meta_of_a_data_url(browser: Browser) -> None:
    meta = f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
    html = BODY.format(meta=meta)
    url = "data:text/html;base64," + base64.b64encode(html.encode()).decode()
    _assert_only_the_nonced_script_ran(browser, url)


def test_csp_nonce_in_a_response_header(browser: Browser) -> None:
    # A routed origin: the response (with its header) is made here, nothing goes on the network.
    _assert_only_the_nonced_script_ran(browser, "https://app.test/", served=True)


def test_without_a_policy_every_script_runs(browser: Browser) -> None:
    """The control: the same page without a policy runs all of them, so the assertions above mean something."""
    page = browser.new_page()
    try:
        watch(page)
        url = "data:text/html;base64," + base64.b64encode(BODY.format(meta="").encode()).decode()
        page.goto(url, wait_until="load")
        ran = page.evaluate("() => [window.__nonced, window.__plain, window.__wrong, window.__handler]")
        assert ran[:3] == [1, 1, 1]
        assert ran[3] in (1, 2)  # body onload, or the broken image's onerror (whichever fired last)
    finally:
        page.close()
