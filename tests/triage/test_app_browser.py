"""The triage app in a real Chromium: an agent's whole flow, a read-only brand manager, two agents racing, XSS.

The app runs in-process on a loopback port (``test_app.py``'s ``server`` fixture, on
SQLite with its seeded flags and users); Debian's Chromium is driven through playwright
(``tests/browser.py``). No script of the app runs: every step is a link or a form.

With ``MOMENTS_SCREENSHOTS=1`` the queue and flag page screenshots taken on the way are
also written to ``docs/screenshots/queue.png`` and ``docs/screenshots/flag.png`` (for
the README); otherwise only under the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser import browser_fixture, watch
from test_app import HOSTILE_NAME, HOSTILE_TEXT, PASSWORD, Server

from moments.records import Flag
from search.store import Store

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

browser = browser_fixture()

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: The most a committed screenshot may weigh.
MAX_SCREENSHOT_BYTES = 300_000


def _context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)


def _log_in(context: BrowserContext, server: Server, name: str) -> Page:
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/")
    assert "/login" in page.url  # no session yet: the login form
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{server.url}/")
    return page


def _screenshot(page: Page, tmp_path: Path, name: str, *, height: int = 1400) -> Path:
    """The page's top ``height`` pixels under ``tmp_path`` (and docs/screenshots with ``MOMENTS_SCREENSHOTS=1``).

    Cut to a height so a committed screenshot stays under :data:`MAX_SCREENSHOT_BYTES`.
    """
    path = tmp_path / name
    size = page.viewport_size or {"width": 1200, "height": 900}
    clip = {"x": 0, "y": 0, "width": size["width"], "height": height}
    page.screenshot(path=str(path), full_page=True, scale="css", clip=clip)  # type: ignore[arg-type]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < path.stat().st_size < MAX_SCREENSHOT_BYTES, path.stat().st_size
    if os.environ.get("MOMENTS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    return path


def _event_rows(page: Page) -> list[str]:
    return [" ".join(text.split()) for text in page.locator("section.events tbody tr").all_inner_texts()]


def test_agent_works_a_flag_and_a_brand_manager_can_only_read(
    browser: Browser, server: Server, seeded: dict[str, Flag], store: Store, tmp_path: Path
) -> None:
    context = _context(browser)
    try:
        page = _log_in(context, server, "alice")
        events = watch(page)

        # Filter the queue to one brand: the other brand's flag goes, the P1 stands out on top.
        assert page.locator("tr.flag").count() == 6
        page.select_option("select[name=brand]", "northwind")
        page.click("button:has-text('Filter')")
        page.wait_for_url(re.compile(r".*brand=northwind.*"))
        rows = page.locator("tr.flag")
        assert rows.count() == 5
        assert rows.first.locator(".prio").inner_text() == "P1"
        assert "new-p1" in (rows.first.get_attribute("class") or "")
        _screenshot(page, tmp_path, "queue.png")

        # Open the top flag (c: P1, touchpoint baggage) and take it.
        rows.first.locator("a.open").click()
        top = seeded["c"]
        page.wait_for_url(re.compile(r".*/flags/.*"))
        assert page.locator("h1").inner_text().startswith("P1")
        page.click("button:has-text('Take it')")
        page.wait_for_url(re.compile(r".*done=assign"))
        assert "assigned to alice" in page.locator("p.meta").inner_text()

        # Pick a playbook template: its text, filled in for this customer, goes into the response form.
        template = page.locator("li.template[data-template='baggage.apologise.1']")
        assert "we are sorry about your baggage" in template.inner_text()
        template.locator("a.use-template").click()
        page.wait_for_url(re.compile(r".*template=baggage\.apologise\.1.*"))
        response = page.locator("form#respond textarea[name=text]")
        assert response.input_value().startswith("@userc, we are sorry about your baggage.")
        assert page.locator("form#respond select[name=template_id]").input_value() == "baggage.apologise.1"
        page.click("form#respond button:has-text('Log response')")
        page.wait_for_url(re.compile(r".*done=respond"))
        _screenshot(page, tmp_path, "flag.png")

        # Resolve it, and find every step in the event log.
        page.fill("form.action:has(input[value=resolve]) input[name=text]", "customer rebooked, thanked us")
        page.click("button:has-text('Resolve')")
        page.wait_for_url(re.compile(r".*done=resolve"))
        log = _event_rows(page)
        assert len(log) == 4, log
        assert "alice assigned" in log[1] and "assignee: - → alice" in log[1]
        assert "template baggage.apologise.1" in log[2] and "we are sorry about your baggage" in log[2]
        assert "responded → resolved" in log[3] and "customer rebooked" in log[3]
        stored = store.get_flag(top.id)
        assert stored is not None and stored.status == "resolved" and stored.assignee == "alice"
        assert events.dialogs == [] and events.errors == []
    finally:
        context.close()

    # A brand manager reads the same flag, is offered no action, and the API refuses each one.
    context = _context(browser)
    try:
        page = _log_in(context, server, "mia")
        page.goto(f"{server.url}/flags/{seeded['a'].id}")
        assert page.locator("section.events").is_visible()
        assert page.locator("form[action$='/actions']").count() == 0
        assert page.locator("a.use-template").count() == 0
        assert page.locator("main form").count() == 0  # only the log-out form, in the header
        page.goto(f"{server.url}/playbooks/booking")
        assert page.locator("main form").count() == 0
        csrf = page.request.get(f"{server.url}/api/me").json()["csrf_token"]
        flag = store.get_flag(seeded["a"].id)
        assert flag is not None
        bodies = [
            {"action": "assign", "assignee": "mia"},
            {"action": "acknowledge"},
            {"action": "respond", "text": "sorry", "template_id": "booking.apologise.1"},
            {"action": "resolve"},
            {"action": "dismiss", "reason": "spam"},
            {"action": "note", "text": "hm"},
        ]
        for body in bodies:
            answer = page.request.post(
                f"{server.url}/api/flags/{flag.id}/actions",
                data={**body, "if_version": flag.version},
                headers={"X-CSRF-Token": csrf},
            )
            assert answer.status == 403, (body, answer.status)
        playbook = {"steps": [], "if_revision": 0}
        edit = page.request.put(f"{server.url}/api/playbooks/booking", data=playbook, headers={"X-CSRF-Token": csrf})
        assert edit.status == 403
        assert [e.action for e in store.flag_events(flag.id)] == ["opened"]
    finally:
        context.close()


def test_two_agents_on_one_flag_the_second_is_told_to_reload(
    browser: Browser, server: Server, seeded: dict[str, Flag], store: Store
) -> None:
    flag = seeded["a"]
    first, second = _context(browser), _context(browser)
    try:
        alice = _log_in(first, server, "alice")
        bob = _log_in(second, server, "bob")
        for page in (alice, bob):
            page.goto(f"{server.url}/flags/{flag.id}")
        alice.click("button:has-text('Acknowledge')")
        alice.wait_for_url(re.compile(r".*done=acknowledge"))

        bob.fill("form.action:has(input[value=dismiss]) input[name=reason]", "not negative")
        bob.click("button:has-text('Dismiss')")
        problem = bob.locator("p.problem")
        assert re.search(r"changed by alice at \d{4}-\d\d-\d\d \d\d:\d\d UTC .*reload", problem.inner_text())
        assert problem.locator("a:has-text('Reload')").count() == 1
        assert [e.action for e in store.flag_events(flag.id)] == ["opened", "status"]
        stored = store.get_flag(flag.id)
        assert stored is not None and stored.status == "acknowledged"
    finally:
        first.close()
        second.close()


def test_hostile_post_runs_nothing_on_the_queue_and_the_flag_page(
    browser: Browser, server: Server, seeded: dict[str, Flag]
) -> None:
    context = _context(browser)
    try:
        page = _log_in(context, server, "alice")
        events = watch(page)
        for url in (f"{server.url}/", f"{server.url}/flags/{seeded['x'].id}"):
            page.goto(url)
            page.wait_for_timeout(200)  # a late onerror would have fired by now
            text = page.locator("main").inner_text()
            assert HOSTILE_TEXT in text and HOSTILE_NAME in text, url
            assert page.locator("main img, main script[src], main [onerror], main [onmouseover]").count() == 0
            assert page.locator("main a[href^='javascript']").count() == 0
        assert events.dialogs == [] and events.errors == []
        assert [line for line in events.console_of("error") if "Content Security Policy" in line] == []
    finally:
        context.close()
