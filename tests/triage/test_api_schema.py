"""Schemathesis against the triage API's own OpenAPI spec, as an authenticated agent.

The real app (``triage.app.create_app``) serves on a loopback port over a SQLite store
seeded with users of every role and a handful of flags and posts (the ``server`` and
``seeded`` fixtures of ``test_app.py``). Schemathesis reads ``/openapi.json`` from it
and generates requests for every ``/api`` operation, valid ones and invalid ones, each
sent with an agent's API token (``Authorization: Bearer``; a bearer caller needs no
CSRF token). Every response must:

* not be a 5xx (``not_a_server_error``);
* have a status code the spec declares for the operation (``status_code_conformance``);
* have a body that matches the schema declared for that status code
  (``response_schema_conformance``), and the declared content type.

Generated flag ids rarely name a stored flag, and a random ``if_version`` is rarely the
current one; so half the cases are steered to a seeded flag, and half of those to its
current version, which drives the actions through their real transitions (200s, then
409s for a closed flag) as well as the 404 and stale-version paths.

Examples are bounded and derandomized (same cases every run), so the fuzzing is
reproducible and takes about 15 seconds on 2 cores. Beside it, one plain contract test:
a response given as a playbook ``template_id`` alone logs the template's filled-in text.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_app import Server

import triage.accounts as accounts
from moments.records import Flag
from search.store import Store
from triage.actions import parse_response_note

#: Generated cases per operation and generation mode.
EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.path.startswith("/api/")]


def _steer(case: Any, flag_id: str | None, store: Store, use_current_version: bool) -> None:
    """Point a generated case at a seeded flag (and maybe its current version), so the real paths run."""
    if flag_id is None or "flag_id" not in (case.path_parameters or {}):
        return
    case.path_parameters["flag_id"] = flag_id
    stored = store.get_flag(flag_id)
    if use_current_version and stored is not None and isinstance(case.body, dict) and "if_version" in case.body:
        case.body["if_version"] = stored.version


def _fuzz(
    operation: Any, mode: GenerationMode, server: Server, store: Store, headers: dict[str, str], flag_ids: list[str]
) -> set[int]:
    """Run the checks on :data:`EXAMPLES` generated cases of one operation; the status codes seen."""
    seen: set[int] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        flag_id=st.sampled_from([*flag_ids, None, None]),
        current=st.booleans(),
    )
    def run(case: Any, flag_id: str | None, current: bool) -> None:
        _steer(case, flag_id, store, current)
        response = case.call(base_url=server.url, headers=headers, timeout=30)
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    return seen


def _fuzz_all(
    operations: list[Any], server: Server, store: Store, token: str, flag_ids: list[str]
) -> tuple[dict[str, set[int]], list[str]]:
    """Fuzz each operation, valid and invalid inputs: the status codes seen per operation, and every finding."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: dict[str, set[int]] = {}
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            try:
                seen[label] = _fuzz(operation, mode, server, store, headers, flag_ids)
            except Unsatisfiable:
                continue  # nothing to make invalid: no parameters, or a path string any value fits
            except (Exception, FailureGroup) as exc:  # every operation's findings at once, not only the first
                failures.append(f"{label}: {exc}")
    return seen, failures


@pytest.mark.slow
def test_api_conforms_to_its_openapi_spec_as_an_agent(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = _operations(schema)
    assert {op.path for op in operations} >= {"/api/flags", "/api/flags/{flag_id}", "/api/flags/{flag_id}/actions"}
    token = accounts.new_token(store, "alice").token

    seen, failures = _fuzz_all(operations, server, store, token, [flag.id for flag in seeded.values()])

    assert not failures, "\n\n".join(failures)
    # The run reached the real code, not only the auth and validation layers.
    assert {200, 404, 409, 422} <= seen["POST /api/flags/{flag_id}/actions (positive)"], seen
    assert {200, 404} <= seen["GET /api/flags/{flag_id} (positive)"], seen
    assert seen["PUT /api/slas (positive)"] == {403}, seen  # an agent may not; the lead test below may


@pytest.mark.slow
def test_lead_operations_conform_to_the_spec(server: Server, seeded: dict[str, Flag], store: Store) -> None:
    """What an agent gets 403 for (playbook and SLA edits, team metrics), fuzzed as a lead."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    lead_only = [("PUT", "/api/playbooks/{touchpoint}"), ("PUT", "/api/slas"), ("GET", "/api/metrics")]
    operations = [op for op in _operations(schema) if (op.method.upper(), op.path) in lead_only]
    assert len(operations) == len(lead_only)
    token = accounts.new_token(store, "lena").token

    seen, failures = _fuzz_all(operations, server, store, token, [flag.id for flag in seeded.values()])

    assert not failures, "\n\n".join(failures)
    assert 200 in seen["GET /api/metrics (positive)"], seen
    assert 200 in seen["PUT /api/slas (positive)"] | seen["PUT /api/slas (negative)"], seen


def test_respond_with_only_a_template_logs_its_filled_in_text(
    server: Server, seeded: dict[str, Flag], store: Store
) -> None:
    bot = server.client(headers={"Authorization": f"Bearer {accounts.new_token(store, 'alice').token}"})
    flag = seeded["a"]  # touchpoint "booking"; its post's author is @usera
    template_id = "booking.apologise.1"  # "{handle}, we are sorry about your {touchpoint}. ..."

    response = bot.post(
        f"/api/flags/{flag.id}/actions", json={"action": "respond", "template_id": template_id, "if_version": 1}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["flag"]["status"] == "responded"
    text, link, used = parse_response_note(body["event"]["note"])
    assert used == template_id and link is None
    assert text == "@usera, we are sorry about your booking. That is not the experience we want you to have."
    assert parse_response_note(store.flag_events(flag.id)[-1].note) == (text, None, template_id)

    # Text given with the template wins (the agent edited it); a template not in the playbook is a 422.
    edited = {"action": "respond", "template_id": template_id, "text": "Sorry, Ana!", "if_version": 2}
    assert parse_response_note(bot.post(f"/api/flags/{flag.id}/actions", json=edited).json()["event"]["note"])[0] == (
        "Sorry, Ana!"
    )
    unknown = {"action": "respond", "template_id": "baggage.apologise.1", "if_version": 3}
    refused = bot.post(f"/api/flags/{flag.id}/actions", json=unknown)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "template_id"]
    nothing = bot.post(f"/api/flags/{flag.id}/actions", json={"action": "respond", "if_version": 3})
    assert nothing.status_code == 422
    assert store.get_flag(flag.id).version == 3  # type: ignore[union-attr]
