"""``bench/triage_load.py`` runs from a clone: tiny numbers (5 agents, 200 flags, SQLite, 3 s), figures in JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = {"GET /api/flags", "GET /api/flags/{id}", "POST /api/flags/{id}/actions"}


@pytest.mark.slow
def test_bench_runs_agents_against_the_app_and_reports_every_endpoint(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench/triage_load.py"), "--stores", "sqlite", "--json"]
    command += ["--agents", "5", "--flags", "200", "--duration", "3", "--think", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["agents"], result["flags"]) == (5, 200)
    assert set(result["stores"]) == {"sqlite"}
    sqlite = result["stores"]["sqlite"]
    assert sqlite["flags"] == 200
    assert set(sqlite["endpoints"]) == ENDPOINTS
    for endpoint, row in sqlite["endpoints"].items():
        assert row["requests"] > 0 and row["requests_per_s"] > 0, endpoint
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"], endpoint
        assert sum(row["statuses"].values()) == row["requests"], endpoint
    # Every request answered: no 5xx, no transport error, no refused request; lost races are 409s, counted apart.
    assert sqlite["server_errors"] == 0 and sqlite["errors"] == 0, sqlite["error_examples"]
    assert sqlite["requests"] == sum(row["requests"] for row in sqlite["endpoints"].values())
    actions = sqlite["endpoints"]["POST /api/flags/{id}/actions"]["statuses"]
    assert actions.get("200", 0) > 0 and set(actions) <= {"200", "409"}
    assert sqlite["conflicts"] == actions.get("409", 0)


def test_bench_refuses_bad_usage() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/triage_load.py"), "--stores", "postgres"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--stores takes sqlite and/or elasticsearch" in done.stderr
